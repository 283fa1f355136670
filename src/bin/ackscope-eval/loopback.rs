//! End to end on loopback, against a real nats-server.
//!
//! The server refuses client publishes whose reply subject is in `$JS.ACK`, so deliveries and
//! acks cannot be faked: every message here is a real JetStream delivery of a real stream and
//! a real ack, driven by pull consumers that ack as fast as they can.
//!
//! `ackscope-eval throughput [--messages N] [--consumers C] [--rounds R] [--archive] [--otlp]`
//!   N stored messages are delivered to C pull consumers and acked. Two receivers watch the
//!   same traffic in turn: a bare async-nats subscriber on the same subjects that only counts,
//!   and the full collector (taps, join, aggregation). Reports both rates, their ratio, and
//!   every dropped message (slow-consumer events and messages never seen).
//!
//! `ackscope-eval soak [--minutes M] [--rate ACKS_PER_S] [--consumers C]`
//!   Runs the `ackscope collect` binary beside a steady JetStream workload (publish, deliver,
//!   ack) and samples its resident memory every 10 s.
//!
//! `ackscope-eval core-soak [--minutes M] [--rate ACKS_PER_S] [--consumers C]`
//!   Feeds the collector core directly (no NATS: the server here cannot store 50,000
//!   messages/s beside 200 consumers) with M minutes of deliveries and acks at RATE, its clocks
//!   advancing as they would, as fast as it can, and reports this process's resident memory
//!   after every simulated minute.
//!
//! `ackscope-eval accuracy [--messages N] [--work-ms W] [--consumer process|task]`
//!   How far ackscope's delivery → ack latency is from the consuming client's own clock. A pull
//!   consumer fetches N stored messages one at a time, works W ms on each, acks it and times
//!   itself (receipt → ack handed to its client); the collector taps the same traffic. The
//!   consumer runs as its own process (this binary again), as a game server would, or with
//!   `--consumer task` on this process's runtime, as the integration test runs it. Reports the
//!   differences (ackscope minus the client) beside the client's own round trip to the server
//!   measured in the same run: a tap sees an ack only after it has gone client → server →
//!   ackscope, while it sees the delivery about when the client does, so about one round trip
//!   is the least difference any tap can have. Both server generations when both are installed.
//!
//! The server is `NATS_SERVER_BIN`, `ACKSCOPE_NATS_SERVER_CURRENT`, or `nats-server` on PATH.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream, stream::Stream};
use async_nats::{Client, ConnectOptions, Event, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;

use ackscope::aggregate::ring::RingRow;
use ackscope::collector::{Collector, lock};
use ackscope::config::RawConfig;
use ackscope::model::Seen;
use ackscope::nats_server::{self, NatsServer};
use ackscope::service::taps::{self, Taps};

type PullConsumer = consumer::Consumer<consumer::pull::Config>;
const SUB_CAPACITY: usize = 262_144;

fn server_binary() -> PathBuf {
    std::env::var_os("ACKSCOPE_NATS_SERVER_CURRENT")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| nats_server::find_binary().expect("nats-server"))
}

/// `throughput`.
#[derive(Debug, clap::Args)]
pub struct ThroughputArgs {
    /// Stored messages delivered and acked each round.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Pull consumers sharing them.
    #[arg(long, default_value_t = 8)]
    consumers: u64,
    /// Rounds, each of the bare subscriber and the collector.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Each round also runs the collector with the archive on (into a temporary directory),
    /// and compares it with the collector alone.
    #[arg(long)]
    archive: bool,
    /// Each round also runs the collector with OTLP export on (metrics every second and
    /// slow-ack spans, to a receiver in this process that decodes nothing), and compares it
    /// with the collector alone.
    #[arg(long)]
    otlp: bool,
}

/// `soak`.
#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Acks a second asked of the workload.
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    #[arg(long, default_value_t = 200)]
    consumers: u64,
}

/// `core-soak`.
#[derive(Debug, clap::Args)]
pub struct CoreSoakArgs {
    /// Simulated minutes.
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    #[arg(long, default_value_t = 50_000)]
    rate: u64,
    #[arg(long, default_value_t = 200)]
    consumers: u64,
}

/// `accuracy`.
#[derive(Debug, clap::Args)]
pub struct AccuracyArgs {
    #[arg(long, default_value_t = 200)]
    messages: u64,
    /// Work between receipt and ack, per message.
    #[arg(long, default_value_t = 20)]
    work_ms: u64,
    /// Where the consumer runs: its own process, or a task on this process's runtime.
    #[arg(long, value_enum, default_value_t = ConsumerIn::Process)]
    consumer: ConsumerIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumerIn {
    Process,
    Task,
}

/// `accuracy-consumer`: the consumer of `accuracy` as a process of its own.
#[derive(Debug, clap::Args)]
pub struct AccuracyConsumerArgs {
    url: String,
    count: u64,
    work_ms: u64,
}

fn headers(i: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-4bf92f3577b34da6{i:016x}-00f067aa0ba902b7-01").as_str(),
    );
    h.insert("X-Server-Id", "srv-1");
    h
}

async fn connect(url: &str, slow: Arc<AtomicU64>) -> Client {
    ConnectOptions::new()
        .subscription_capacity(SUB_CAPACITY)
        .event_callback(move |e| {
            let slow = slow.clone();
            async move {
                if let Event::SlowConsumer(_) = e {
                    slow.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
        .connect(url)
        .await
        .expect("connect")
}

/// A memory stream `name` on `<prefix>.>`: limits retention for the throughput runs (each
/// round reads it again with new consumers), work-queue retention for the soak.
async fn stream(js: &jetstream::Context, name: &str, prefix: &str, work_queue: bool) -> Stream {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::Memory,
        retention: if work_queue {
            stream::RetentionPolicy::WorkQueue
        } else {
            stream::RetentionPolicy::Limits
        },
        ..Default::default()
    })
    .await
    .expect("create stream")
}

async fn pull_consumer(stream: &Stream, name: &str, filter: String) -> PullConsumer {
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.into()),
            filter_subject: filter,
            ack_policy: consumer::AckPolicy::Explicit,
            max_ack_pending: 20_000,
            ..Default::default()
        })
        .await
        .expect("create consumer")
}

/// Takes `count` messages from `consumer` and acks each.
async fn drive(consumer: PullConsumer, count: u64) {
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(500)
        .messages()
        .await
        .expect("pull");
    let mut done = 0;
    while done < count {
        let msg = messages
            .next()
            .await
            .expect("stream open")
            .expect("message");
        msg.ack().await.expect("ack");
        done += 1;
    }
}

struct Run {
    received: u64,
    seconds: f64,
    slow_consumer_events: u64,
    /// CPU time of this whole process over the run (drivers, receiver, its threads), seconds.
    cpu_s: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }

    /// CPU time per message seen, in microseconds.
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_s * 1e6 / self.received.max(1) as f64
    }
}

#[path = "../../../benches/support/cpu.rs"]
mod cpu;

/// CPU time this process has used, every thread's (ended ones too), in seconds.
fn process_cpu_s() -> f64 {
    cpu::process_cpu().as_secs_f64()
}

/// Waits until `count()` reaches `expected` or stops moving for 2 s; returns the count and the
/// time from the first to the last message.
async fn watch(expected: u64, count: impl Fn() -> u64) -> (u64, f64) {
    let mut first: Option<Instant> = None;
    let mut last = 0;
    let mut last_at = Instant::now();
    loop {
        let n = count();
        if n > last {
            let now = Instant::now();
            first.get_or_insert(now);
            last = n;
            last_at = now;
        }
        if n >= expected || last_at.elapsed() > Duration::from_secs(2) {
            let secs = first.map_or(0.0, |f| (last_at - f).as_secs_f64());
            return (n, secs.max(1e-6));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// One receiver under test: started before the traffic, read through `count`.
enum Receiver {
    Bare {
        count: Arc<AtomicU64>,
        slow: Arc<AtomicU64>,
        task: tokio::task::JoinHandle<()>,
    },
    Collector {
        collector: Arc<Mutex<Collector>>,
        events: Arc<ackscope::telemetry::ClientEvents>,
        stop: tokio::sync::oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
        /// The archive it hands samples to, and its directory, when it archives.
        archive: Option<(ackscope::archive::Archive, tempfile::TempDir)>,
        /// The OTLP export, when it exports.
        otlp: Option<ackscope::otlp::Otlp>,
    },
}

impl Receiver {
    async fn bare(url: &str) -> Self {
        let slow = Arc::new(AtomicU64::new(0));
        let client = connect(url, slow.clone()).await;
        let mut subs = futures::stream::select_all(vec![
            client.subscribe("_INBOX.>").await.unwrap(),
            client.subscribe("deliver.>").await.unwrap(),
            client.subscribe("$JS.ACK.>").await.unwrap(),
        ]);
        client.flush().await.unwrap();
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = subs.next().await {
                // Count what the collector counts: acks and JetStream deliveries.
                let delivery = m.reply.as_ref().is_some_and(|r| r.starts_with("$JS.ACK."));
                if delivery || m.subject.starts_with("$JS.ACK.") {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Receiver::Bare { count, slow, task }
    }

    /// `otlp`: the base URL of an OTLP receiver to export to.
    async fn collector(url: &str, archive: bool, otlp: Option<&str>) -> Self {
        let mut raw = RawConfig::default();
        raw.nats.urls = vec![url.to_string()];
        raw.nats.subscription_capacity = SUB_CAPACITY;
        raw.taps.consumer_state = false;
        let config = raw.validate().unwrap();
        let events = Arc::new(ackscope::telemetry::ClientEvents::default());
        let client = taps::connect(&config.nats, events.clone(), false)
            .await
            .unwrap();
        let subs = Taps::subscribe(&client, &config).await.unwrap();
        let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
        let archive = archive.then(|| {
            let dir = tempfile::tempdir().unwrap();
            let mut settings = config.archive.clone();
            settings.dir = dir.path().join("data");
            let (archive, tap) =
                ackscope::archive::Archive::start(&settings, Vec::new()).expect("archive starts");
            lock(&collector).attach_archive(tap);
            (archive, dir)
        });
        let otlp = otlp.map(|endpoint| {
            let mut raw = ackscope::otlp::RawOtlp {
                endpoint: Some(endpoint.to_string()),
                ..Default::default()
            };
            raw.export_interval = "1s".parse().unwrap();
            let settings = raw.validate().unwrap();
            let (otlp, tap) = ackscope::otlp::Otlp::start(&settings, config.join.max_consumers)
                .expect("OTLP export starts")
                .expect("an endpoint is set");
            lock(&collector).attach_otlp(tap);
            let c = collector.clone();
            otlp.observe(move || lock(&c).otlp_observed());
            otlp
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(taps::run(
            subs,
            collector.clone(),
            events.clone(),
            |_, _| {},
            async {
                let _ = stopped.await;
            },
        ));
        Receiver::Collector {
            collector,
            events,
            stop,
            task,
            archive,
            otlp,
        }
    }

    fn count(&self) -> u64 {
        match self {
            Receiver::Bare { count, .. } => count.load(Ordering::Relaxed),
            Receiver::Collector { collector, .. } => {
                let c = lock(collector).counters();
                c.ack_messages + c.delivery_messages
            }
        }
    }

    /// Stops it; `cpu_from`: the process's CPU time when the run began.
    async fn finish(self, received: u64, seconds: f64, cpu_from: f64) -> Run {
        let slow_consumer_events = match self {
            Receiver::Bare { slow, task, .. } => {
                task.abort();
                slow.load(Ordering::Relaxed)
            }
            Receiver::Collector {
                collector,
                events,
                stop,
                task,
                archive,
                otlp,
            } => {
                let _ = stop.send(());
                task.await.unwrap();
                if let Some(otlp) = otlp {
                    let tap = lock(&collector).detach_otlp();
                    let stats = otlp.stats();
                    tokio::task::spawn_blocking(move || otlp.shutdown(tap))
                        .await
                        .unwrap();
                    println!(
                        "            otlp: {} requests ({} failed), {} spans, {} over the limit, {} samples dropped at its queue",
                        stats.requests.load(Ordering::Relaxed),
                        stats.failed_requests.load(Ordering::Relaxed),
                        stats.spans.load(Ordering::Relaxed),
                        stats.spans_dropped.load(Ordering::Relaxed),
                        stats.queue_dropped.load(Ordering::Relaxed),
                    );
                }
                if let Some((archive, _dir)) = archive {
                    lock(&collector).detach_archive();
                    let stats = archive.stats.clone();
                    tokio::task::spawn_blocking(move || archive.close())
                        .await
                        .unwrap();
                    let c = lock(&collector).counters();
                    println!(
                        "            archive: {} samples written in {} segments ({} bytes), {} dropped",
                        stats.samples_written.load(Ordering::Relaxed),
                        stats.segments_written.load(Ordering::Relaxed),
                        stats.bytes_written.load(Ordering::Relaxed),
                        c.archive_samples_dropped
                    );
                }
                let c = lock(&collector).counters();
                assert_eq!(c.ack_subject_errors, 0);
                println!(
                    "            collector: {} samples joined, {} acks before their delivery, {} unmatched acks, {} expired, {} join overflow",
                    c.samples_joined,
                    c.samples_reordered,
                    c.unmatched_acks,
                    c.expired_deliveries,
                    c.join_overflow
                );
                events.slow_consumers.load(Ordering::Relaxed)
            }
        };
        Run {
            received,
            seconds,
            slow_consumer_events,
            cpu_s: process_cpu_s() - cpu_from,
        }
    }
}

pub async fn throughput(args: &ThroughputArgs) {
    let &ThroughputArgs {
        messages,
        consumers,
        rounds,
        archive,
        otlp,
    } = args;
    // An OTLP receiver that answers 200 and decodes nothing: the export's cost is ackscope's.
    let receiver_url = if otlp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let ok = || async { axum::http::StatusCode::OK };
        let app = axum::Router::new()
            .route("/v1/metrics", axum::routing::post(ok))
            .route("/v1/traces", axum::routing::post(ok));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Some(format!("http://{addr}"))
    } else {
        None
    };
    let binary = server_binary();
    let server = NatsServer::start(&binary, "").expect("nats-server");
    let url = server.url();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let bench = stream(&js, "BENCH", "bench", false).await;
    let payload = Bytes::from_static(&[7u8; 64]);
    for i in 0..messages {
        let subject = format!("bench.c{}", i % consumers);
        client
            .publish_with_headers(subject, headers(i), payload.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    while jetstream::new(client.clone())
        .get_stream("BENCH")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
        < messages
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "loopback throughput: {messages} stored messages delivered to {consumers} pull consumers and acked ({} messages to see), {rounds} rounds, server {}",
        2 * messages,
        binary.display()
    );
    let expected = 2 * messages;
    let (mut bare_runs, mut full_runs, mut archiving_runs) = (Vec::new(), Vec::new(), Vec::new());
    let mut exporting_runs = Vec::new();
    let mut names: Vec<&str> = vec!["bare", "collector"];
    if archive {
        names.push("archiving");
    }
    if otlp {
        names.push("exporting");
    }
    for round in 1..=rounds {
        for &name in &names {
            let cpu_from = process_cpu_s();
            let receiver = match name {
                "bare" => Receiver::bare(&url).await,
                "collector" => Receiver::collector(&url, false, None).await,
                "archiving" => Receiver::collector(&url, true, None).await,
                _ => Receiver::collector(&url, false, receiver_url.as_deref()).await,
            };
            let mut drivers = Vec::new();
            for k in 0..consumers {
                let durable = format!("r{round}-{name}-{k}");
                let consumer = pull_consumer(&bench, &durable, format!("bench.c{k}")).await;
                let share = messages / consumers + u64::from(k < messages % consumers);
                drivers.push(tokio::spawn(drive(consumer, share)));
            }
            let (received, seconds) = watch(expected, || receiver.count()).await;
            for d in drivers {
                d.await.unwrap();
            }
            let run = receiver.finish(received, seconds, cpu_from).await;
            println!(
                "round {round} {name:>9}: {:>9.0} msg/s  {:>6.2} µs CPU/msg  seen {}/{expected}  missed {}  slow-consumer events {}",
                run.rate(),
                run.cpu_us_per_msg(),
                run.received,
                expected - run.received.min(expected),
                run.slow_consumer_events
            );
            match name {
                "bare" => bare_runs.push(run),
                "collector" => full_runs.push(run),
                "archiving" => archiving_runs.push(run),
                _ => exporting_runs.push(run),
            }
        }
    }
    let median = |runs: &[Run]| {
        let mut rates: Vec<f64> = runs.iter().map(Run::rate).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (b, f) = (median(&bare_runs), median(&full_runs));
    println!(
        "median: bare {b:.0} msg/s, collector {f:.0} msg/s, ratio {:.2} (per round: {})",
        f / b,
        per_round(&bare_runs, &full_runs, |b, f| f.rate() / b.rate())
    );
    if archive {
        let a = median(&archiving_runs);
        println!(
            "median: collector with the archive {a:.0} msg/s, archive on / off {:.2} (per round: {})",
            a / f,
            per_round(&full_runs, &archiving_runs, |f, a| a.rate() / f.rate())
        );
    }
    if otlp {
        let e = median(&exporting_runs);
        println!(
            "median: collector exporting OTLP {e:.0} msg/s, OTLP on / off {:.2} (per round: {})",
            e / f,
            per_round(&full_runs, &exporting_runs, |f, e| e.rate() / f.rate())
        );
        // CPU is what a busy machine runs out of; rates move with whatever else runs.
        let cpu = |runs: &[Run]| {
            let mut v: Vec<f64> = runs.iter().map(Run::cpu_us_per_msg).collect();
            median_of(&mut v)
        };
        let (cb, cf, ce) = (cpu(&bare_runs), cpu(&full_runs), cpu(&exporting_runs));
        println!(
            "median CPU per message: bare {cb:.2} µs, collector {cf:.2} µs, exporting OTLP {ce:.2} µs; \
             process CPU off / on {:.3} (per round: {}); the collector's own CPU (over bare) \
             off / on {:.3}",
            cf / ce,
            per_round(&full_runs, &exporting_runs, |f, e| f.cpu_us_per_msg()
                / e.cpu_us_per_msg()),
            (cf - cb) / (ce - cb)
        );
    }
}

/// `value(base, other)` of each round, for printing.
fn per_round(base: &[Run], other: &[Run], value: impl Fn(&Run, &Run) -> f64) -> String {
    let values: Vec<String> = base
        .iter()
        .zip(other)
        .map(|(b, o)| format!("{:.2}", value(b, o)))
        .collect();
    values.join(", ")
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub async fn soak(args: &SoakArgs) {
    let &SoakArgs {
        minutes,
        rate,
        consumers,
    } = args;
    let server = NatsServer::start(&server_binary(), "").expect("nats-server");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let soak_stream = stream(&js, "SOAK", "soak", true).await;
    let mut drivers = Vec::new();
    for k in 0..consumers {
        let consumer = pull_consumer(&soak_stream, &format!("c{k}"), format!("soak.c{k}")).await;
        drivers.push(tokio::spawn(drive(consumer, u64::MAX)));
    }
    let mut child = tokio::process::Command::new(crate::ackscope_binary())
        .args(["collect", "--nats", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ackscope collect");
    let pid = child.id().unwrap();
    // Count the acks ackscope reports in its all-consumers window lines.
    let seen_acks = Arc::new(AtomicU64::new(0));
    let lines = {
        let seen = seen_acks.clone();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let w: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if w["consumer"] == "*" {
                    seen.fetch_add(w["counts"]["acks"].as_u64().unwrap_or(0), Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "soak: ackscope collect (pid {pid}) beside {rate} msg/s published, delivered and acked over {consumers} pull consumers, {minutes} min"
    );

    let payload = Bytes::from_static(&[7u8; 64]);
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = start + Duration::from_secs(10);
    let mut i: u64 = 0;
    let mut samples = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        for _ in 0..per_tick {
            let subject = format!("soak.c{}", i % consumers);
            client
                .publish_with_headers(subject, headers(i), payload.clone())
                .await
                .unwrap();
            i += 1;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let t = start.elapsed().as_secs_f64();
            let rss = rss_kib(pid).expect("ackscope is running");
            let backlog = js
                .get_stream("SOAK")
                .await
                .unwrap()
                .info()
                .await
                .unwrap()
                .state
                .messages;
            samples.push((t, rss));
            println!(
                "t={t:>5.0}s  rss={:>6.1} MiB  published/s={:.0}  acks/s seen by ackscope={:.0}  stream backlog={backlog}",
                rss as f64 / 1024.0,
                i as f64 / t,
                seen_acks.load(Ordering::Relaxed) as f64 / t
            );
        }
    }
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let at = |secs: f64| {
        samples
            .iter()
            .min_by(|a, b| (a.0 - secs).abs().total_cmp(&(b.0 - secs).abs()))
            .map_or(0, |s| s.1)
    };
    let last = samples.last().map_or(0, |s| s.1);
    println!(
        "rss MiB: 1 min {:.1}, 5 min {:.1}, end {:.1}, max {:.1}; growth from half-time to end {:.1}",
        at(60.0) as f64 / 1024.0,
        at(300.0) as f64 / 1024.0,
        last as f64 / 1024.0,
        max as f64 / 1024.0,
        (last as f64 - at(minutes * 30.0) as f64) / 1024.0
    );
    for d in drivers {
        d.abort();
    }
    lines.abort();
    child.kill().await.unwrap();
}

pub fn core_soak(args: &CoreSoakArgs) {
    let &CoreSoakArgs {
        minutes,
        rate,
        consumers,
    } = args;
    let mut collector = Collector::new(ackscope::config::Config::default());
    let pid = std::process::id();
    let start_rss = rss_kib(pid).unwrap_or(0);
    println!(
        "core soak: {rate} acks/s over {consumers} consumers for {minutes} simulated minutes; rss at start {:.1} MiB",
        start_rss as f64 / 1024.0
    );
    let t0: i64 = 1_790_000_000_000_000_000;
    let step_ns = 1_000_000_000 / rate;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let started = Instant::now();
    let mut samples = Vec::new();
    for minute in 1..=minutes {
        for k in 0..60 * rate {
            let i = (minute - 1) * 60 * rate + k;
            let t = i * step_ns;
            let seq = i / consumers + 1;
            let reply = format!(
                "$JS.ACK.GAME.c{}.1.{seq}.{seq}.{}.0",
                i % consumers,
                t0 + t as i64
            );
            let headers = [("traceparent", traceparent), ("X-Server-Id", "srv-1")];
            let delivered = Seen {
                mono_ns: t,
                wall_ns: t0 + t as i64,
            };
            collector.on_delivery("game.srv-1.state", Some(&reply), headers, delivered);
            // Acked 2 to 18 ms later, as a game frame would.
            let latency = 2_000_000 + (i % 16) * 1_000_000;
            let acked = Seen {
                mono_ns: t + latency,
                wall_ns: t0 + (t + latency) as i64,
            };
            collector.on_ack(&reply, None, b"+ACK", acked);
            if k % (rate / 10) == 0 {
                collector.tick(acked);
                std::hint::black_box(collector.take_closed());
            }
        }
        let rss = rss_kib(pid).unwrap_or(0);
        samples.push(rss);
        println!(
            "minute {minute:>2}: rss {:>6.1} MiB, {} samples, join pending {}",
            rss as f64 / 1024.0,
            collector.counters().samples,
            collector.joiner().pending_len()
        );
    }
    let half = samples[samples.len() / 2];
    let last = *samples.last().unwrap_or(&0);
    println!(
        "rss MiB: end {:.1}, max {:.1}, growth from half-time to end {:.1}; {:.0} samples/s wall",
        last as f64 / 1024.0,
        *samples.iter().max().unwrap_or(&0) as f64 / 1024.0,
        (last as f64 - half as f64) / 1024.0,
        (minutes * 60 * rate) as f64 / started.elapsed().as_secs_f64()
    );
}

/// The median of `v` (sorted in place).
fn median_of(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the consuming client measured of one message.
struct OwnTiming {
    /// The trace id, in hex.
    trace: String,
    /// Receipt → before the ack, and → after the ack, in ns on the client's monotonic clock.
    before_ns: u64,
    after_ns: u64,
    /// Receipt, and halfway through the ack call, on the wall clock (the tap's other clock).
    received_wall_ns: i64,
    acked_wall_ns: i64,
}

impl OwnTiming {
    fn own_latency_ns(&self) -> f64 {
        (self.before_ns + self.after_ns) as f64 / 2.0
    }
}

/// The game server of the accuracy run: fetches one message at a time, works `work`, acks,
/// times itself. Returns its timings and the median of 50 round trips through the server (a
/// message to a subject the client itself subscribes to: the path of an ack to the tap).
async fn time_own_acks(url: &str, count: u64, work: Duration) -> (Vec<OwnTiming>, f64) {
    let client = async_nats::connect(url).await.expect("connect");
    let echo = client.new_inbox();
    let mut echoes = client.subscribe(echo.clone()).await.expect("subscribe");
    client.flush().await.expect("flush");
    let mut rtts = Vec::new();
    for _ in 0..50 {
        let start = Instant::now();
        client
            .publish(echo.clone(), "ping".into())
            .await
            .expect("publish");
        echoes.next().await.expect("echo");
        rtts.push(start.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let consumer: PullConsumer = jetstream::new(client.clone())
        .get_stream("ACC")
        .await
        .expect("stream ACC")
        .get_consumer("acc")
        .await
        .expect("consumer acc");
    let mut own = Vec::new();
    for _ in 0..count {
        let msg = consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("fetch")
            .next()
            .await
            .expect("a message before the fetch expires")
            .expect("a message");
        let received = Instant::now();
        let received_wall_ns = Seen::now().wall_ns;
        let trace = msg
            .headers
            .as_ref()
            .unwrap()
            .get("traceparent")
            .unwrap()
            .to_string();
        tokio::time::sleep(work).await;
        let before_ns = received.elapsed().as_nanos() as u64;
        let wall_before = Seen::now().wall_ns;
        msg.ack().await.expect("ack");
        let after_ns = received.elapsed().as_nanos() as u64;
        own.push(OwnTiming {
            trace: trace[3..35].to_string(),
            before_ns,
            after_ns,
            received_wall_ns,
            acked_wall_ns: (wall_before + Seen::now().wall_ns) / 2,
        });
    }
    client.flush().await.expect("flush");
    (own, median_of(&mut rtts))
}

/// `accuracy-consumer URL COUNT WORK_MS`: [`time_own_acks`] as a process of its own; prints
/// `rtt <ms>` and one line of [`OwnTiming`]'s fields per message.
pub async fn accuracy_consumer(args: &AccuracyConsumerArgs) {
    let work = Duration::from_millis(args.work_ms);
    let (own, rtt) = time_own_acks(&args.url, args.count, work).await;
    println!("rtt {rtt}");
    for t in own {
        println!(
            "{} {} {} {} {}",
            t.trace, t.before_ns, t.after_ns, t.received_wall_ns, t.acked_wall_ns
        );
    }
}

pub async fn accuracy(args: &AccuracyArgs) {
    let (messages, work_ms) = (args.messages, args.work_ms);
    let in_process = args.consumer == ConsumerIn::Task;
    let generations = [
        ("2.9", "ACKSCOPE_NATS_SERVER_LEGACY", ""),
        (
            "2.15",
            "ACKSCOPE_NATS_SERVER_CURRENT",
            "feature_flags { js_ack_fc_v2: true }",
        ),
    ];
    println!(
        "accuracy: {messages} messages, {work_ms} ms of work each, consumer in {}, {} build",
        if in_process {
            "this process's runtime"
        } else {
            "its own process"
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for (generation, var, flags) in generations {
        let Some(binary) = std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_file())
        else {
            println!("nats-server {generation}: {var} not set, skipped");
            continue;
        };
        let server = NatsServer::start(&binary, flags).expect("nats-server");
        let url = server.url();
        let receiver = Receiver::collector(&url, false, None).await;
        let client = async_nats::connect(&url).await.unwrap();
        // A bare subscriber beside the taps: when each ack reaches a client that does nothing
        // else, keyed by stream sequence.
        let bare_acks = Arc::new(Mutex::new(std::collections::HashMap::new()));
        let mut acks = client.subscribe("$JS.ACK.>").await.unwrap();
        let bare = {
            let bare_acks = bare_acks.clone();
            tokio::spawn(async move {
                while let Some(m) = acks.next().await {
                    let at = Seen::now().wall_ns;
                    if let Ok(a) = ackscope::collect::acks::parse_ack_subject(&m.subject) {
                        bare_acks.lock().unwrap().insert(a.stream_seq, at);
                    }
                }
            })
        };
        let js = jetstream::new(client.clone());
        let acc = stream(&js, "ACC", "acc", false).await;
        acc.create_consumer(consumer::pull::Config {
            durable_name: Some("acc".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("create consumer");
        for i in 0..messages {
            js.publish_with_headers("acc.m", headers(i), Bytes::from_static(b"tick"))
                .await
                .unwrap()
                .await
                .unwrap();
        }
        let (own, rtt) = if in_process {
            time_own_acks(&url, messages, Duration::from_millis(work_ms)).await
        } else {
            let out = tokio::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "accuracy-consumer",
                    &url,
                    &messages.to_string(),
                    &work_ms.to_string(),
                ])
                .stderr(Stdio::inherit())
                .output()
                .await
                .expect("the consumer process runs");
            assert!(out.status.success(), "consumer process: {}", out.status);
            let text = String::from_utf8(out.stdout).unwrap();
            let mut lines = text.lines();
            let rtt = lines
                .next()
                .unwrap()
                .strip_prefix("rtt ")
                .unwrap()
                .parse()
                .unwrap();
            let own = lines
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    OwnTiming {
                        trace: f[0].to_string(),
                        before_ns: f[1].parse().unwrap(),
                        after_ns: f[2].parse().unwrap(),
                        received_wall_ns: f[3].parse().unwrap(),
                        acked_wall_ns: f[4].parse().unwrap(),
                    }
                })
                .collect();
            (own, rtt)
        };
        let Receiver::Collector { collector, .. } = &receiver else {
            unreachable!()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(collector).counters().samples_joined < messages && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows: std::collections::HashMap<String, RingRow> = lock(collector)
            .aggregator()
            .ring()
            .iter()
            .filter_map(|r| Some((r.trace_id?.to_string(), r)))
            .collect();
        bare.abort();
        let bare_acks = bare_acks.lock().unwrap().clone();
        let (mut diffs, mut delivery_lag, mut ack_lag) = (Vec::new(), Vec::new(), Vec::new());
        let (mut to_bare, mut bare_to_tap) = (Vec::new(), Vec::new());
        for t in &own {
            let Some(r) = rows.get(&t.trace) else {
                continue;
            };
            let (Some(latency), Some(delivered)) = (r.ack_latency_ns, r.delivered_ns) else {
                continue;
            };
            diffs.push((latency as f64 - t.own_latency_ns()) / 1e6);
            delivery_lag.push((delivered - t.received_wall_ns) as f64 / 1e6);
            ack_lag.push((r.acked_ns - t.acked_wall_ns) as f64 / 1e6);
            if let Some(&at) = bare_acks.get(&r.stream_seq) {
                to_bare.push((at - t.acked_wall_ns) as f64 / 1e6);
                bare_to_tap.push((r.acked_ns - at) as f64 / 1e6);
            }
        }
        let n = diffs.len();
        let median = median_of(&mut diffs);
        println!(
            "nats-server {generation}: {n}/{messages} joined; ackscope minus client (ms): p10 {:.3}  median {median:.3}  p90 {:.3}  max {:.3}",
            diffs[n / 10],
            diffs[n * 9 / 10],
            diffs[n - 1],
        );
        println!(
            "    on the wall clock (ms): tap's delivery stamp minus client receipt, median {:.3}; tap's ack stamp minus the client's ack call, median {:.3}; client → server → client round trip, median {rtt:.3}",
            median_of(&mut delivery_lag),
            median_of(&mut ack_lag),
        );
        println!(
            "    the ack's way (ms): client's ack call → a bare subscriber, median {:.3}; bare subscriber → tap's stamp, median {:.3}",
            median_of(&mut to_bare),
            median_of(&mut bare_to_tap),
        );
        receiver.finish(0, 1.0, process_cpu_s()).await;
    }
}
