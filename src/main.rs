//! The `ackscope` command: parse the command line, load the config, run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use ackscope::collect::core::Collector;
use ackscope::collect::taps::{self, ClientEvents, Taps};
use ackscope::config::{Config, RawConfig};
use ackscope::http::{AppState, Readiness};

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
    Collect(TapArgs),
    /// Tap a NATS system and serve the HTTP API, heatmaps, metrics and dashboard.
    Serve(ServeArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    tap: TapArgs,
    /// Address to listen on (config `http.listen`, default 127.0.0.1:9464).
    #[arg(long)]
    listen: Option<String>,
}

/// Options shared by every command that taps NATS; each overrides its config-file key.
#[derive(Args)]
struct TapArgs {
    /// NATS server URL(s), comma-separated (config `nats.urls`).
    #[arg(long, env = "NATS_URL")]
    nats: Option<String>,
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Delivery subject pattern; repeatable; replaces the defaults (config `taps.delivery_patterns`).
    #[arg(long = "tap-deliveries", value_name = "PATTERN")]
    tap_deliveries: Vec<String>,
    /// Game tick period, e.g. 16ms or 16.667ms (config `tick.period`).
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
            raw.tick.period = tick.clone();
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

/// Connects, subscribes every tap and starts the consumer state poller.
async fn start_taps(
    config: &Config,
    collector: &Arc<Mutex<Collector>>,
    events: &Arc<ClientEvents>,
) -> anyhow::Result<Taps> {
    let client = taps::connect(&config.nats, events.clone()).await?;
    let subscriptions = Taps::subscribe(&client, &config.taps).await?;
    tracing::info!(urls = %config.nats.urls.join(","), "taps subscribed");
    if config.taps.consumer_state {
        tokio::spawn(taps::poll_consumer_state(
            client,
            collector.clone(),
            config.clone(),
        ));
    }
    Ok(subscriptions)
}

async fn collect(args: TapArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let events = Arc::new(ClientEvents::default());
    let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
    let subscriptions = start_taps(&config, &collector, &events).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut stop_tx = Some(stop_tx);
    let stdout = std::io::stdout();
    let print = move |c: &Collector, w| {
        let line = c.window_json(&w);
        let mut out = stdout.lock();
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            // The reader went away (a closed pipe): stop quietly.
            if let Some(tx) = stop_tx.take() {
                let _ = tx.send(());
            }
        }
    };
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = stop_rx => {}
        }
    };
    taps::run(subscriptions, collector, events, print, shutdown).await;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.tap.config_with(|raw| {
        if let Some(listen) = &args.listen {
            raw.http.listen = listen.clone();
        }
    })?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let events = Arc::new(ClientEvents::default());
    let readiness = Arc::new(Readiness::new(events.clone()));
    let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
    let state = AppState {
        collector: collector.clone(),
        readiness: readiness.clone(),
    };
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, ackscope::http::router(state))
            .with_graceful_shutdown(async {
                let _ = http_stopped.await;
            })
            .into_future(),
    );
    tracing::info!(listen = %config.listen, "serving the API and dashboard");
    let subscriptions = start_taps(&config, &collector, &events).await?;
    readiness.set_subscribed();
    taps::run(
        subscriptions,
        collector,
        events,
        |_, _| {},
        shutdown_signal(),
    )
    .await;
    let _ = stop_http.send(());
    server.await?.context("HTTP server failed")?;
    Ok(())
}
