//! The attribution scorecard: runs fault scenarios through the simulator against a real
//! nats-server with ackscope collecting beside it, then scores ackscope's spikes and causes
//! against the simulator's truth: per cause, detection recall (a spike on the faulty consumer
//! starting within 2 windows of the fault's onset), top-1 and top-3 cause accuracy, and false
//! spikes on healthy consumers per hour.
//!
//! `cargo bench --bench scorecard -- [--seeds 1,2,3] [--servers 8] [--scale 1.0]`
//! Each run: 8 servers, 25 s healthy, then each fault in turn on its own server for 10 s with
//! 10 s healthy between; server 8 stays healthy throughout. A fault counts as detected when a
//! spike of its consumer is on within 2 windows of the moment it can first be seen (its onset,
//! or for lost acks, its onset plus `ack_wait`: the server redelivers no sooner).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackscope::analyze::report::spikes;
use ackscope::collect::core::Collector;
use ackscope::collect::taps::{self, ClientEvents, Taps};
use ackscope::config::RawConfig;
use ackscope::nats_server::{self, NatsServer};
use ackscope::sim::{self, scenario::RawScenario};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn scenario(seed: u64, servers: u32, scale: f64) -> String {
    let ms = |v: f64| format!("{}ms", (v * scale).round() as u64);
    format!(
        r#"name = "score-{seed}"
seed = {seed}
duration = "170s"
[fleet]
servers = {servers}
events_per_frame = 3
[jetstream]
ack_wait = "1s"
max_ack_pending = 40
[[faults]]
kind = "gc_pause"
start = "25s"
duration = "10s"
servers = [1]
pause = "{gc}"
every = "1s"
[[faults]]
kind = "thread_preemption"
start = "45s"
duration = "10s"
servers = [2]
block = "13ms"
[[faults]]
kind = "frame_end_batching"
start = "65s"
duration = "10s"
servers = [3]
[[faults]]
kind = "packet_loss"
start = "85s"
duration = "10s"
servers = [4]
fraction = 0.3
[[faults]]
kind = "flow_control"
start = "105s"
duration = "10s"
servers = [5]
cost = "{fc}"
[[faults]]
kind = "load_burst"
start = "125s"
duration = "10s"
servers = [6]
factor = {burst}
[[faults]]
kind = "slow_server"
start = "145s"
duration = "10s"
servers = [7]
cost = "{slow}"
"#,
        gc = ms(60.0),
        fc = ms(8.0),
        burst = (40.0 * scale).max(2.0),
        slow = ms(4.0),
    )
}

#[derive(Default, Debug)]
struct Score {
    faults: u32,
    detected: u32,
    top1: u32,
    top3: u32,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seeds: Vec<u64> = arg(&args, "--seeds", "1,2")
        .split(',')
        .filter_map(|s| s.parse().ok())
        .collect();
    let servers: u32 = arg(&args, "--servers", "8").parse().unwrap_or(8).max(8);
    let scale: f64 = arg(&args, "--scale", "1.0").parse().unwrap_or(1.0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let (mut false_spikes, mut healthy_ns) = (0u32, 0i64);
    let binary = std::env::var_os("ACKSCOPE_NATS_SERVER_CURRENT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| nats_server::find_binary().expect("nats-server"));
    for &seed in &seeds {
        let server = NatsServer::start(&binary, "").expect("nats-server");
        let s = RawScenario::from_toml(&scenario(seed, servers, scale))
            .unwrap()
            .validate()
            .unwrap();
        let (truth, collector) = runtime.block_on(async {
            let mut raw = RawConfig::default();
            raw.nats.urls = vec![server.url()];
            raw.taps.consumer_state_interval = "1s".into();
            let config = raw.validate().unwrap();
            let events = Arc::new(ClientEvents::default());
            let client = taps::connect(&config.nats, events.clone()).await.unwrap();
            let subs = Taps::subscribe(&client, &config.taps).await.unwrap();
            let collector = Arc::new(Mutex::new(Collector::new(config.clone())));
            tokio::spawn(taps::poll_consumer_state(client, collector.clone(), config));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let run = tokio::spawn(taps::run(
                subs,
                collector.clone(),
                events,
                |_, _| {},
                async {
                    let _ = stopped.await;
                },
            ));
            let sim_client = async_nats::connect(server.url()).await.unwrap();
            let (_keep, stop_sim) = tokio::sync::watch::channel(false);
            let truth = sim::run(sim_client, s, stop_sim).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let _ = stop.send(());
            run.await.unwrap();
            (truth, collector)
        });
        let c = taps::lock(&collector);
        let found = spikes(&c, None, i64::MIN, i64::MAX);
        let window = 1_000_000_000i64;
        for f in &truth.faults {
            let score = scores.entry(f.kind.clone()).or_default();
            score.faults += 1;
            let visible = f.start_ns
                + if f.kind == "packet_loss" {
                    1_000_000_000
                } else {
                    0
                };
            let at = |sp: &serde_json::Value, key: &str| {
                let t = humantime::parse_rfc3339(sp[key].as_str().unwrap()).unwrap();
                t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
            };
            // On by then: begun no later than 2 windows after the fault can be seen, and not
            // over before the fault began (a spike may start early when a blip merges into it).
            let hit = found.iter().find(|sp| {
                sp["consumer"] == f.servers[0].as_str()
                    && at(sp, "start") <= visible + 2 * window
                    && at(sp, "end") > f.start_ns
            });
            if let Some(sp) = hit {
                score.detected += 1;
                let causes: Vec<&str> = sp["causes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["cause"].as_str().unwrap())
                    .collect();
                score.top1 += u32::from(causes.first() == Some(&f.cause.as_str()));
                score.top3 += u32::from(causes.iter().take(3).any(|c| *c == f.cause));
                println!(
                    "seed {seed} {:<18} → {:?} ({} latency)",
                    f.kind,
                    &causes[..causes.len().min(3)],
                    sp["latency"].as_str().unwrap_or("?")
                );
                if causes.first() != Some(&f.cause.as_str()) {
                    for c in sp["causes"].as_array().unwrap().iter() {
                        println!("    {} {} {}", c["cause"], c["confidence"], c["evidence"]);
                    }
                }
            } else {
                let of_consumer: Vec<String> = found
                    .iter()
                    .filter(|sp| sp["consumer"] == f.servers[0].as_str())
                    .map(|sp| format!("{} ({})", sp["start"], sp["latency"]))
                    .collect();
                println!(
                    "seed {seed} {:<18} → not detected (fault at {}; its spikes: {of_consumer:?})",
                    f.kind, f.start
                );
            }
        }
        // Healthy consumers: srv-8 and up, for the whole run.
        let healthy: Vec<String> = (8..=servers).map(|i| format!("srv-{i}")).collect();
        false_spikes += found
            .iter()
            .filter(|sp| healthy.iter().any(|h| sp["consumer"] == h.as_str()))
            .count() as u32;
        healthy_ns += (truth.faults[0].end_ns - truth.faults[0].start_ns + 33_000_000_000)
            * healthy.len() as i64;
    }
    println!("\ncause (fault kind)   faults  recall  top-1  top-3");
    let mut total = Score::default();
    for (kind, s) in &scores {
        println!(
            "{kind:<20} {:>6}  {:>5.0}%  {:>4.0}%  {:>4.0}%",
            s.faults,
            100.0 * s.detected as f64 / s.faults as f64,
            100.0 * s.top1 as f64 / s.detected.max(1) as f64,
            100.0 * s.top3 as f64 / s.detected.max(1) as f64
        );
        total.faults += s.faults;
        total.detected += s.detected;
        total.top1 += s.top1;
        total.top3 += s.top3;
    }
    println!(
        "all                  {:>6}  {:>5.0}%  {:>4.0}%  {:>4.0}%",
        total.faults,
        100.0 * total.detected as f64 / total.faults as f64,
        100.0 * total.top1 as f64 / total.detected.max(1) as f64,
        100.0 * total.top3 as f64 / total.detected.max(1) as f64
    );
    println!(
        "false spikes on healthy consumers: {false_spikes} in {:.2} consumer-hours ({:.1}/hour); seeds {seeds:?}, {servers} servers, scale {scale}",
        healthy_ns as f64 / 3.6e12,
        false_spikes as f64 / (healthy_ns as f64 / 3.6e12)
    );
}
