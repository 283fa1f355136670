//! The `ackscope` command: parse the command line, load the config, run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use ackscope::api::WindowLine;
use ackscope::collector::Collector;
use ackscope::config::{Config, RawConfig, Secret};
use ackscope::service::taps;
use ackscope::sim::scenario::RawScenario;
use ackscope::{nats_server, service, sim};

#[derive(Parser)]
#[command(
    version,
    about = "Delivery → ack latency analytics for NATS JetStream game backends"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Tap a NATS system and print one JSON line per closed window per consumer.
    Collect(CollectArgs),
    /// Tap a NATS system and serve the HTTP API, heatmaps, metrics and dashboard.
    Serve(ServeArgs),
    /// Run the game fleet simulator against a NATS system.
    Simulate(SimulateArgs),
    /// Start a local nats-server, the simulator and the service: the one-command default.
    Demo(DemoArgs),
    /// Write a postmortem bundle of a time range, from a data directory or a running service.
    Export(ExportArgs),
    /// Run SQL over the archive (`samples`, `windows`, `spikes`, `advisories`, `consumer_state`); see queries/.
    Query(QueryArgs),
}

#[derive(Args)]
struct QueryArgs {
    /// A file of SQL (one statement), e.g. queries/p99_per_consumer_minute.sql.
    #[arg(required_unless_present = "execute", conflicts_with = "execute")]
    file: Option<PathBuf>,
    /// The SQL itself instead of a file.
    #[arg(short = 'e', long = "execute", value_name = "SQL")]
    execute: Option<String>,
    /// Only rows from this instant on: RFC 3339, `now` or `-<duration>` (default: all).
    #[arg(long, allow_hyphen_values = true)]
    from: Option<String>,
    /// Only rows before this instant (default: all).
    #[arg(long, allow_hyphen_values = true)]
    to: Option<String>,
    /// The data directory (default: `archive.dir` of --config, else ./ackscope-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How the answer is written.
    #[arg(long, value_enum, default_value = "table")]
    format: ackscope::archive::query::Format,
    /// Write the answer here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// TOML config file (for `archive.dir`).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct ExportArgs {
    /// Start of the range: RFC 3339, `now` or `-<duration>` (`-2h`).
    #[arg(long, allow_hyphen_values = true)]
    from: String,
    /// End of the range (default now).
    #[arg(long, default_value = "now", allow_hyphen_values = true)]
    to: String,
    /// Only this stream's consumers.
    #[arg(long)]
    stream: Option<String>,
    /// Only this consumer (with --stream).
    #[arg(long, requires = "stream")]
    consumer: Option<String>,
    /// One frame period for every consumer (`16ms`, `60hz`) instead of their own clocks.
    #[arg(long)]
    tick: Option<String>,
    /// `ack` (delivery → ack, default) or `e2e` (stored → ack).
    #[arg(long)]
    latency: Option<String>,
    /// Read the archive in this data directory, without NATS or a running service (default:
    /// `archive.dir` of --config, else ./ackscope-data).
    #[arg(long, conflicts_with = "url")]
    data_dir: Option<PathBuf>,
    /// Ask a running service instead (`http://host:9464`; ACKSCOPE_READ_TOKEN is sent when set).
    #[arg(long)]
    url: Option<String>,
    /// Where to write: a directory, or a file ending in .tar.gz.
    #[arg(long)]
    out: PathBuf,
    /// TOML config file (its tick, windows, spikes and labels are used offline).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    tap: TapArgs,
    /// Scenario file (TOML); see scenarios/.
    #[arg(long)]
    scenario: PathBuf,
    /// Write the ground truth of the injected faults here (JSON).
    #[arg(long)]
    truth: Option<PathBuf>,
}

#[derive(Args)]
struct DemoArgs {
    /// Address of the dashboard (default 127.0.0.1:9464).
    #[arg(long)]
    listen: Option<String>,
    /// Keep the demo's history here (default: a temporary directory, removed when it stops).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    alerts: AlertArgs,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    tap: TapArgs,
    /// Address to listen on (config `http.listen`, default 127.0.0.1:9464).
    #[arg(long)]
    listen: Option<String>,
    /// Keep history here (config `archive.dir`, default ./ackscope-data; `archive.enabled =
    /// false` turns it off).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    alerts: AlertArgs,
}

#[derive(Args)]
struct CollectArgs {
    #[command(flatten)]
    tap: TapArgs,
    /// Keep history here too (config `archive.dir`; off unless given or `archive.enabled`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    alerts: AlertArgs,
}

/// Where alerts go, beside the config file's receivers.
#[derive(Args)]
struct AlertArgs {
    /// Alertmanager to send alerts to (its base URL); repeatable (config `alerts.alertmanager`).
    #[arg(long = "alertmanager", value_name = "URL")]
    alertmanager: Vec<String>,
    /// URL that gets each alert as a JSON POST; repeatable (config `alerts.webhooks`).
    #[arg(long = "webhook", value_name = "URL")]
    webhooks: Vec<String>,
}

impl AlertArgs {
    fn apply(&self, raw: &mut RawConfig) {
        raw.alerts
            .alertmanager
            .extend(self.alertmanager.iter().cloned());
        raw.alerts.webhooks.extend(self.webhooks.iter().cloned());
        if let Some(secret) = std::env::var_os("ACKSCOPE_WEBHOOK_SECRET") {
            raw.alerts.webhook_secret = Some(Secret::new(secret.to_string_lossy()));
        }
    }
}

/// Options shared by every command that taps NATS; each overrides its config-file key.
#[derive(Args)]
struct TapArgs {
    /// NATS server URL(s), comma-separated (config `nats.urls`).
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    nats: Option<String>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Delivery subject pattern; repeatable; replaces the defaults (config `taps.delivery_patterns`).
    #[arg(long = "tap-deliveries", value_name = "PATTERN")]
    tap_deliveries: Vec<String>,
    /// Game tick period, e.g. 16ms, 16.667ms or 60hz (config `tick.period`).
    #[arg(long)]
    tick: Option<String>,
}

impl TapArgs {
    fn config(&self) -> anyhow::Result<Config> {
        self.config_with(|_| {})
    }

    /// The config file with every flag applied, then `more`, validated.
    fn config_with(&self, more: impl FnOnce(&mut RawConfig)) -> anyhow::Result<Config> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
        if let Some(urls) = &self.nats {
            raw.nats.urls = urls.split(',').map(|u| u.trim().to_string()).collect();
        }
        if !self.tap_deliveries.is_empty() {
            raw.taps.delivery_patterns = self.tap_deliveries.clone();
        }
        if let Some(tick) = &self.tick {
            raw.tick.period = tick.parse().map_err(|reason: String| {
                anyhow::anyhow!("config key `tick.period`: invalid value {tick:?}: {reason}")
            })?;
        }
        // Tokens from the environment, so that they need not sit in a file.
        for (var, token) in [
            ("ACKSCOPE_READ_TOKEN", &mut raw.http.read_token),
            ("ACKSCOPE_ADMIN_TOKEN", &mut raw.http.admin_token),
        ] {
            if let Some(value) = std::env::var_os(var) {
                *token = Some(Secret::new(value.to_string_lossy()));
            }
        }
        more(&mut raw);
        Ok(raw.validate()?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "ackscope=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| {
            rt.block_on(async {
                match cli.command {
                    Command::Collect(args) => collect(args).await,
                    Command::Serve(args) => serve(args).await,
                    Command::Simulate(args) => simulate(args).await,
                    Command::Demo(args) => demo(args).await,
                    Command::Export(args) => export(args).await,
                    Command::Query(args) => {
                        tokio::task::spawn_blocking(move || query(args)).await?
                    }
                }
            })
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ackscope: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Window lines waiting for stdout, at most: a reader that stalls loses lines (counted and
/// logged), never the taps.
const PRINT_QUEUE: usize = 4_096;

async fn collect(args: CollectArgs) -> anyhow::Result<()> {
    let config = args.tap.config_with(|raw| {
        if let Some(dir) = &args.data_dir {
            raw.archive.dir = Some(dir.clone());
            raw.archive.enabled = Some(true);
        }
        raw.archive.enabled.get_or_insert(false);
        args.alerts.apply(raw);
    })?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The taps hand each line over without waiting; a thread of its own writes them.
    let (lines, queued) = std::sync::mpsc::sync_channel::<WindowLine>(PRINT_QUEUE);
    let (written_all, all_written) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        for line in queued {
            let mut out = stdout.lock();
            let written = serde_json::to_writer(&mut out, &line).map_err(std::io::Error::from);
            if written
                .and_then(|_| writeln!(out))
                .and_then(|_| out.flush())
                .is_err()
            {
                // The reader went away (a closed pipe): stop quietly.
                let _ = stop_tx.send(());
                return;
            }
        }
        let _ = written_all.send(());
    });
    let mut dropped = 0u64;
    let print = move |c: &Collector, w| {
        if let Err(std::sync::mpsc::TrySendError::Full(_)) = lines.try_send(WindowLine::of(c, &w)) {
            dropped += 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "stdout is not read fast enough: window lines dropped"
                );
            }
        }
    };
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stop_rx => {}
        }
    };
    let collected = service::collect(config, print, shutdown).await;
    // The last windows still queued reach stdout before the process ends (unless the reader
    // has stalled for 2 s).
    let _ = all_written.recv_timeout(std::time::Duration::from_secs(2));
    collected?;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.tap.config_with(|raw| {
        if let Some(listen) = &args.listen {
            raw.http.listen = listen.clone();
        }
        if let Some(dir) = &args.data_dir {
            raw.archive.dir = Some(dir.clone());
        }
        raw.archive.enabled.get_or_insert(true);
        args.alerts.apply(raw);
    })?;
    service::serve(config, shutdown_signal()).await?;
    Ok(())
}

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let config = args.tap.config()?;
    let scenario = RawScenario::from_file(&args.scenario)?.validate()?;
    let client = taps::connect_with(
        &config.nats,
        async_nats::ConnectOptions::new().name("ackscope-simulator"),
    )
    .await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let truth = sim::run(client, scenario, stop_rx).await?;
    eprintln!(
        "ackscope simulate: {} frames, {} messages, {} acks ({} lost on purpose), frame jitter p99 {:.0} us",
        truth.fleet.frames,
        truth.fleet.published,
        truth.fleet.acks_sent,
        truth.fleet.acks_dropped,
        truth.fleet.frame_jitter_p99_us
    );
    if let Some(path) = &args.truth {
        let text = serde_json::to_string_pretty(&truth)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let binary = nats_server::find_binary()?;
    let mut server = nats_server::NatsServer::start(&binary, "")?;
    let url = server.url();
    let mut raw = RawConfig::default();
    raw.nats.urls = vec![url.clone()];
    if let Some(listen) = &args.listen {
        raw.http.listen = listen.clone();
    }
    // The demo's history lives as long as it runs, unless it is to be kept.
    let temporary = tempfile::Builder::new()
        .prefix("ackscope-demo-")
        .tempdir()
        .context("cannot make the demo's data directory")?;
    raw.archive.enabled = Some(true);
    raw.archive.dir = Some(
        args.data_dir
            .clone()
            .unwrap_or(temporary.path().join("data")),
    );
    let scenario = RawScenario::from_toml(sim::scenario::DEMO)
        .map_err(|e| anyhow::anyhow!("the built-in scenario: {e}"))?
        .validate()?;
    // The simulated game handles messages after its logic: inferred clocks put phase 0 that
    // long before the acks resume, at the frame start.
    raw.clocks.acks_resume_at =
        ackscope::units::Dur(std::time::Duration::from_nanos(scenario.logic_ns));
    args.alerts.apply(&mut raw);
    let config = raw.validate()?;
    let listen = config.listen;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut service_stop = stop_rx.clone();
    let service = tokio::spawn(service::serve(config.clone(), async move {
        let _ = service_stop.changed().await;
    }));
    let client = taps::connect_with(
        &config.nats,
        async_nats::ConnectOptions::new().name("ackscope-simulator"),
    )
    .await?;
    let simulation = tokio::spawn(sim::run(client, scenario, stop_rx));
    println!(
        "ackscope demo: dashboard at http://{listen}/ (nats-server {} at {url}, scenario `demo`). Ctrl-C stops it.",
        binary.display()
    );
    let mut service = service;
    let mut service_done = false;
    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        status = crashed(&mut server) => {
            Err(anyhow::anyhow!("nats-server exited unexpectedly ({status}); the demo stops"))
        }
        done = &mut service => {
            service_done = true;
            match done {
                Ok(result) => result.map_err(anyhow::Error::from),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        }
    };
    let _ = stop_tx.send(true);
    let _ = simulation.await;
    if !service_done {
        let _ = service.await;
    }
    // Dropping the server kills the child and removes its temporary directory.
    drop(server);
    outcome
}

/// Resolves when the nats-server child exits, with its status.
async fn crashed(server: &mut nats_server::NatsServer) -> std::process::ExitStatus {
    let mut watch = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        watch.tick().await;
        if let Ok(Some(status)) = server.try_status() {
            return status;
        }
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    use ackscope::export::{self, ExportQuery, Sources};
    let now = ackscope::model::Seen::now().wall_ns;
    let instant = |flag: &str, value: &str| {
        ackscope::http::parse_instant(value, now)
            .map_err(|reason| anyhow::anyhow!("--{flag} {value:?}: {reason}"))
    };
    let (from, to) = (instant("from", &args.from)?, instant("to", &args.to)?);
    anyhow::ensure!(from < to, "--from must be before --to");
    let query = ExportQuery {
        from: ackscope::model::rfc3339(from),
        to: ackscope::model::rfc3339(to),
        stream: args.stream.clone(),
        consumer: args.consumer.clone(),
        tick: args.tick.clone(),
        latency: args.latency.clone(),
        ..ExportQuery::default()
    };
    let bar = progress_bar();
    if let Some(url) = &args.url {
        bar.set_message(format!("asking {url}"));
        let path = format!(
            "{}/api/v1/export?{}",
            url.trim_end_matches('/'),
            query.encoded()
        );
        let out = args.out.clone();
        tokio::task::spawn_blocking(move || {
            if export::is_tar_gz(&out) {
                let mut file = std::fs::File::create(&out)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                fetch(&path, &mut file)
            } else {
                // Streamed to a temporary file, then unpacked: the bundle never sits in memory.
                let mut file = tempfile::tempfile().context("cannot make a temporary file")?;
                fetch(&path, &mut file)?;
                std::io::Seek::rewind(&mut file)?;
                unpack(file, &out)
            }
        })
        .await??;
        bar.finish_and_clear();
        eprintln!("wrote {}", args.out.display());
        return Ok(());
    }
    let config = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    }
    .validate()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| config.archive.dir.clone());
    anyhow::ensure!(
        dir.is_dir(),
        "no data directory at {} (give --data-dir, or --url of a running service)",
        dir.display()
    );
    bar.set_message(format!("reading {}", dir.display()));
    let loaded = {
        let (config, dir) = (config.clone(), dir.clone());
        tokio::task::spawn_blocking(move || export::offline_collector(&config, &dir, from, to))
            .await?
    };
    let (collector, during, notes) = loaded;
    let scope = export::Scope {
        stream: args.stream.as_deref(),
        consumer: args.consumer.as_deref(),
        domain: None,
    };
    let windows = export::windows(&ackscope::collector::lock(&collector), from, to, scope);
    let sources = Sources {
        samples: export::narrowed(during, scope),
        windows,
        notes,
        settings: vec![
            ("data directory".to_string(), dir.display().to_string()),
            (
                "config".to_string(),
                args.config
                    .as_ref()
                    .map_or("defaults".to_string(), |p| p.display().to_string()),
            ),
        ],
    };
    let app = export::routes(collector, Some(&dir));
    let step = |what: &str| bar.set_message(format!("drawing {what}"));
    let bundle = export::build(&app, &query, sources, &step).await?;
    bundle
        .save(&args.out)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    bar.finish_and_clear();
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

/// `ackscope query`: the statement run over the archive, the answer written as asked.
fn query(args: QueryArgs) -> anyhow::Result<()> {
    use ackscope::archive::query::{self, Format};
    let now = ackscope::model::Seen::now().wall_ns;
    let instant = |flag: &str, value: Option<&String>, default: i64| match value {
        None => Ok(default),
        Some(v) => ackscope::http::parse_instant(v, now)
            .map_err(|reason| anyhow::anyhow!("--{flag} {v:?}: {reason}")),
    };
    let from = instant("from", args.from.as_ref(), i64::MIN)?;
    let to = instant("to", args.to.as_ref(), i64::MAX)?;
    anyhow::ensure!(from < to, "--from must be before --to");
    let sql = match (&args.execute, &args.file) {
        (Some(sql), _) => sql.clone(),
        (None, Some(file)) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?,
        (None, None) => anyhow::bail!("give a SQL file or -e SQL"),
    };
    let config = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    }
    .validate()?;
    let dir = args.data_dir.unwrap_or_else(|| config.archive.dir.clone());
    anyhow::ensure!(
        dir.is_dir(),
        "no data directory at {} (give --data-dir)",
        dir.display()
    );
    let labels = config.headers.label_names();
    let mut answer = query::run_with_labels(&dir, &sql, (from, to), &labels)?;
    if !answer.skipped.is_empty() {
        eprintln!(
            "ackscope: {} unreadable segment(s) skipped: {}",
            answer.skipped.len(),
            answer
                .skipped
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    match &args.out {
        Some(path) => {
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot write {}", path.display()))?,
            );
            query::write(&mut answer.frame, args.format, &mut file)?;
            file.flush()?;
        }
        None => {
            use std::io::IsTerminal;
            anyhow::ensure!(
                args.format != Format::Parquet || !std::io::stdout().is_terminal(),
                "Parquet is not for a terminal: give --out FILE or redirect standard output"
            );
            let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
            query::write(&mut answer.frame, args.format, &mut stdout)?;
            stdout.flush()?;
        }
    }
    Ok(())
}

/// A spinner on stderr when it is a terminal; nothing otherwise.
fn progress_bar() -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// GET `url` (plain HTTP) with the read token when set, the body of a 200 written to `out`;
/// else the error in words.
fn fetch(url: &str, out: &mut std::fs::File) -> anyhow::Result<()> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent.get(url);
    if let Some(token) = std::env::var_os("ACKSCOPE_READ_TOKEN") {
        request = request.header(
            "Authorization",
            format!("Bearer {}", token.to_string_lossy()),
        );
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.body_mut().read_to_string().unwrap_or_default();
        anyhow::bail!("{url}: HTTP {status}: {body}");
    }
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    std::io::copy(&mut reader, out).with_context(|| format!("reading {url}"))?;
    out.sync_all()?;
    Ok(())
}

/// Unpacks a bundle's tar.gz into `dir`, its files directly in it.
fn unpack(bundle: impl std::io::Read, dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle));
    for entry in archive.entries()? {
        let mut entry = entry?;
        // Files only, by their names alone: nothing a server sends lands elsewhere.
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.into_owned();
        let Some(name) = path.file_name() else {
            continue;
        };
        entry.unpack(dir.join(name))?;
    }
    Ok(())
}
