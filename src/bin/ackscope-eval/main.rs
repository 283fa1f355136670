//! `ackscope-eval`: measuring ackscope against real parts, apart from the product and from the
//! criterion benches. Each subcommand starts what it needs (a `nats-server` child, the
//! simulator, `ackscope serve` as its own process) and prints its figures with the baseline
//! measured in the same run.
//!
//! - `scorecard`: detection, attribution and paging against the simulator's ground truth;
//! - `throughput`: the collector against a bare subscriber on loopback;
//! - `soak`, `core-soak`: memory over time, beside a real workload or fed directly;
//! - `accuracy`: ackscope's latency against a consumer's own clock.
//!
//! The server is `ACKSCOPE_NATS_SERVER_CURRENT`, `NATS_SERVER_BIN` or `nats-server` on PATH;
//! `scorecard` and `soak` run the `ackscope` binary beside this one
//! (`cargo build --release --bins` builds both).

mod loopback;
mod pages;
mod scorecard;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ackscope-eval", about = "Measures ackscope against real parts")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs fault scenarios through the simulator with `ackscope serve` beside them and scores
    /// its spikes and causes against the truth.
    Scorecard(scorecard::ScorecardArgs),
    /// Stored messages delivered and acked on loopback: a bare subscriber against the collector.
    Throughput(loopback::ThroughputArgs),
    /// Resident memory of `ackscope collect` beside a steady JetStream workload.
    Soak(loopback::SoakArgs),
    /// Resident memory of the collector core fed directly, minute by simulated minute.
    CoreSoak(loopback::CoreSoakArgs),
    /// ackscope's delivery → ack latency against a consumer's own clock.
    Accuracy(loopback::AccuracyArgs),
    /// The consumer of `accuracy`, as a process of its own.
    #[command(hide = true)]
    AccuracyConsumer(loopback::AccuracyConsumerArgs),
}

/// The `ackscope` binary beside this one.
fn ackscope_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("this binary's path");
    let path = exe.with_file_name("ackscope");
    assert!(
        path.is_file(),
        "{} not found: build it beside ackscope-eval (cargo build --release --bins)",
        path.display()
    );
    path
}

/// The loopback runs' runtime: two workers, as the machine they were measured on has.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn main() {
    match &Cli::parse().command {
        Command::Scorecard(args) => scorecard::main(args),
        Command::Throughput(args) => runtime().block_on(loopback::throughput(args)),
        Command::Soak(args) => runtime().block_on(loopback::soak(args)),
        Command::CoreSoak(args) => loopback::core_soak(args),
        Command::Accuracy(args) => runtime().block_on(loopback::accuracy(args)),
        Command::AccuracyConsumer(args) => runtime().block_on(loopback::accuracy_consumer(args)),
    }
}
