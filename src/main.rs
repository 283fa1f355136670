//! The `ackscope` command: parse the command line, load the config, run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use ackscope::collect::core::Collector;
use ackscope::collect::taps::{self, Taps};
use ackscope::config::{Config, RawConfig};

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

async fn collect(args: TapArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let slow = Arc::new(AtomicU64::new(0));
    let client = taps::connect(&config.nats, slow.clone()).await?;
    let subscriptions = Taps::subscribe(&client, &config.taps).await?;
    tracing::info!(urls = %config.nats.urls.join(","), "taps subscribed");
    let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
    if config.taps.consumer_state {
        tokio::spawn(taps::poll_consumer_state(
            client.clone(),
            collector.clone(),
            config.clone(),
        ));
    }
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
    taps::run(subscriptions, collector, slow, print, shutdown).await;
    Ok(())
}
