//! End to end on loopback, against a real nats-server.
//!
//! `cargo bench --bench loopback -- throughput [--pairs N] [--rounds R]`
//!   A publisher floods N synthetic deliveries and their acks. Two receivers drain the same
//!   subjects in turn: a bare async-nats subscriber that only counts, and the full collector
//!   (taps, join, aggregation). Reports both rates, their ratio, and every dropped message.
//!
//! `cargo bench --bench loopback -- soak [--minutes M] [--rate ACKS_PER_S] [--consumers C]`
//!   Runs the `ackscope collect` binary against a steady stream of deliveries and acks and
//!   samples its resident memory every 10 s.
//!
//! The server is `NATS_SERVER_BIN`, `ACKSCOPE_NATS_SERVER_CURRENT`, or `nats-server` on PATH.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event, HeaderMap};
use bytes::Bytes;
use futures::StreamExt;

use ackscope::collect::core::Collector;
use ackscope::collect::taps::{self, Taps};
use ackscope::config::RawConfig;
use ackscope::nats_server::{self, NatsServer};

const T0: i64 = 1_790_000_000_000_000_000;
const SUB_CAPACITY: usize = 262_144;

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn server_binary() -> PathBuf {
    std::env::var_os("ACKSCOPE_NATS_SERVER_CURRENT")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .unwrap_or_else(|| nats_server::find_binary().expect("nats-server"))
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    match args.first().map(String::as_str) {
        Some("soak") => runtime.block_on(soak(&args)),
        Some("throughput") | None => runtime.block_on(throughput(&args)),
        Some(other) => panic!("unknown mode {other:?}: use throughput or soak"),
    }
}

/// The reply subject of synthetic delivery `i`.
fn reply(i: u64, consumers: u64) -> String {
    let seq = i / consumers + 1;
    format!(
        "$JS.ACK.GAME.c{}.1.{seq}.{seq}.{}.0",
        i % consumers,
        T0 + i as i64
    )
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

/// Publishes `pairs` deliveries, each followed by its ack.
async fn flood(url: &str, pairs: u64) {
    let client = async_nats::connect(url).await.unwrap();
    let payload = Bytes::from_static(&[7u8; 64]);
    for i in 0..pairs {
        let r = reply(i, 200);
        let inbox = format!("_INBOX.bench.c{}", i % 200);
        client
            .publish_with_reply_and_headers(inbox, r.clone(), headers(i), payload.clone())
            .await
            .unwrap();
        client
            .publish(r, Bytes::from_static(b"+ACK"))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

struct Run {
    received: u64,
    seconds: f64,
    slow_consumer_events: u64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.received as f64 / self.seconds
    }
}

/// Waits until `count()` reaches `expected` or stops moving for 2 s; returns the count and the
/// time from the first to the last message.
async fn watch(expected: u64, count: impl Fn() -> u64) -> (u64, f64) {
    let mut first: Option<Instant> = None;
    let mut last_change = Instant::now();
    let mut last = 0;
    let mut last_at = Instant::now();
    loop {
        let n = count();
        if n > last {
            let now = Instant::now();
            first.get_or_insert(now);
            last = n;
            last_at = now;
            last_change = now;
        }
        if n >= expected || last_change.elapsed() > Duration::from_secs(2) {
            let secs = first.map_or(0.0, |f| (last_at - f).as_secs_f64());
            return (n, secs.max(1e-6));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn bare(url: &str, pairs: u64) -> Run {
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
    let drain = tokio::spawn(async move {
        while let Some(m) = subs.next().await {
            std::hint::black_box(&m);
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    let publisher = tokio::spawn({
        let url = url.to_string();
        async move { flood(&url, pairs).await }
    });
    let (received, seconds) = watch(2 * pairs, || count.load(Ordering::Relaxed)).await;
    publisher.await.unwrap();
    drain.abort();
    Run {
        received,
        seconds,
        slow_consumer_events: slow.load(Ordering::Relaxed),
    }
}

async fn collector(url: &str, pairs: u64) -> Run {
    let mut raw = RawConfig::default();
    raw.nats.urls = vec![url.to_string()];
    raw.nats.subscription_capacity = SUB_CAPACITY;
    raw.taps.consumer_state = false;
    let config = raw.validate().unwrap();
    let slow = Arc::new(AtomicU64::new(0));
    let client = taps::connect(&config.nats, slow.clone()).await.unwrap();
    let subs = Taps::subscribe(&client, &config.taps).await.unwrap();
    let collector = Arc::new(Mutex::new(Collector::new(config)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(taps::run(
        subs,
        collector.clone(),
        slow.clone(),
        |_, _| {},
        async {
            let _ = stopped.await;
        },
    ));
    let publisher = tokio::spawn({
        let url = url.to_string();
        async move { flood(&url, pairs).await }
    });
    let (received, seconds) = watch(2 * pairs, || {
        let c = taps::lock(&collector).counters();
        c.ack_messages + c.delivery_messages + c.non_delivery_messages
    })
    .await;
    publisher.await.unwrap();
    let _ = stop.send(());
    run.await.unwrap();
    let c = taps::lock(&collector).counters();
    assert_eq!(c.ack_subject_errors, 0);
    eprintln!(
        "  collector: {} samples joined, {} unmatched acks, {} join overflow",
        c.samples_joined, c.unmatched_acks, c.join_overflow
    );
    Run {
        received,
        seconds,
        slow_consumer_events: slow.load(Ordering::Relaxed),
    }
}

async fn throughput(args: &[String]) {
    let pairs: u64 = arg(args, "--pairs", 200_000);
    let rounds: usize = arg(args, "--rounds", 3);
    let binary = server_binary();
    let server = NatsServer::start(&binary, "max_pending: 1073741824").expect("nats-server");
    let url = server.url();
    println!(
        "loopback throughput: {pairs} deliveries + {pairs} acks per run, {rounds} rounds, server {}",
        binary.display()
    );
    let (mut bare_runs, mut full_runs) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        for (name, runs) in [("bare", &mut bare_runs), ("collector", &mut full_runs)] {
            let run = if name == "bare" {
                bare(&url, pairs).await
            } else {
                collector(&url, pairs).await
            };
            println!(
                "round {round} {name:>9}: {:>9.0} msg/s  received {}/{}  dropped {}  slow-consumer events {}",
                run.rate(),
                run.received,
                2 * pairs,
                2 * pairs - run.received.min(2 * pairs),
                run.slow_consumer_events
            );
            runs.push(run);
        }
    }
    let median = |runs: &[Run]| {
        let mut rates: Vec<f64> = runs.iter().map(Run::rate).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (b, f) = (median(&bare_runs), median(&full_runs));
    let ratios: Vec<String> = bare_runs
        .iter()
        .zip(&full_runs)
        .map(|(b, f)| format!("{:.2}", f.rate() / b.rate()))
        .collect();
    println!(
        "median: bare {b:.0} msg/s, collector {f:.0} msg/s, ratio {:.2} (per round: {})",
        f / b,
        ratios.join(", ")
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn soak(args: &[String]) {
    let minutes: f64 = arg(args, "--minutes", 10.0);
    let rate: u64 = arg(args, "--rate", 50_000);
    let consumers: u64 = arg(args, "--consumers", 200);
    let server =
        NatsServer::start(&server_binary(), "max_pending: 1073741824").expect("nats-server");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackscope"))
        .args(["collect", "--nats", &server.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ackscope collect");
    let pid = child.id().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "soak: ackscope collect (pid {pid}) at {rate} acks/s over {consumers} consumers for {minutes} min"
    );

    let client = async_nats::connect(server.url()).await.unwrap();
    let payload = Bytes::from_static(&[7u8; 64]);
    let per_tick = (rate / 100).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(minutes * 60.0);
    let mut next_report = start + Duration::from_secs(10);
    let mut i: u64 = 0;
    let mut unacked: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        // Ack last tick's deliveries (about 10 ms later), then deliver this tick's.
        for r in unacked.drain(..) {
            client
                .publish(r, Bytes::from_static(b"+ACK"))
                .await
                .unwrap();
        }
        for _ in 0..per_tick {
            let r = reply(i, consumers);
            let inbox = format!("_INBOX.soak.c{}", i % consumers);
            client
                .publish_with_reply_and_headers(inbox, r.clone(), headers(i), payload.clone())
                .await
                .unwrap();
            unacked.push(r);
            i += 1;
        }
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(10);
            let t = start.elapsed().as_secs_f64();
            let rss = rss_kib(pid).expect("ackscope is running");
            samples.push((t, rss));
            println!(
                "t={t:>5.0}s  rss={:>6.1} MiB  acks/s so far={:.0}",
                rss as f64 / 1024.0,
                i as f64 / t
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
    child.kill().await.unwrap();
}
