//! Each game server's own frame, against a real nats-server: a fleet at exactly 60 Hz whose
//! servers start their frames at their own offsets (one restarting at a new one, one drifting
//! 50 ppm), one of them holding its acks to 12 ms of its frame. With announcements (the older
//! server generation) and without (the newer, inferred clocks), that server's held acks must
//! be where it put them in its own frame, and thread preemption found in that band.

use std::time::Duration;

use ackscope::aggregate::ring::RingRow;
use ackscope::api::Cause;
use ackscope::clocks::ClockSource;
use ackscope::collector::Collector;
use ackscope::model::ConsumerId;
use ackscope::sim::scenario::RawScenario;
use ackscope::sim::{self, truth::Truth};

use crate::support::{Generation, NatsServer, Tapped, config};

const MS: f64 = 1e6;
const SIXTY: f64 = 1e9 / 60.0;

/// The fleet: three servers at 60 Hz on their own frames; srv-2 restarts at 8 s, srv-3
/// drifts; srv-1 cannot ack in the first 12 ms of its frames from 16 s on.
fn scenario(announce: bool) -> RawScenario {
    RawScenario::from_toml(&format!(
        r#"
name = "unaligned"
seed = 11
duration = "26s"

[fleet]
servers = 3
tick = "60hz"
events_per_frame = 3
frames = "own"
drifting = [3]
drift_ppm = 50.0
announce = {announce}

[[fleet.restarts]]
server = 2
at = "8s"

[jetstream]
stream = "GAME"
consumer = "pull"
ack_wait = "2s"
max_ack_pending = 40
max_deliver = 5

[processing]
logic = "3ms"
cost_median = "150us"
cost_p99 = "600us"

[[faults]]
kind = "thread_preemption"
start = "16s"
duration = "10s"
servers = [1]
block = "12ms"
"#
    ))
    .unwrap()
}

/// Runs the fleet against `generation` with ackscope tapping it under `toml`.
async fn run(generation: Generation, announce: bool, toml: &str) -> (Tapped, Truth) {
    let server = NatsServer::start(generation);
    let tapped = Tapped::start(config(&server, toml)).await;
    let client = server.client().await;
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let s = scenario(announce).validate().unwrap();
    let truth = sim::run(client, s, stop)
        .await
        .expect("the simulation runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The last inference pass sees the end of the run.
    tapped.with(|_| ());
    (tapped, truth)
}

fn id_of(c: &Collector, name: &str) -> ConsumerId {
    c.consumers()
        .find(|(_, _, n)| *n == name)
        .map(|(id, _, _)| id)
        .unwrap_or_else(|| panic!("{name} was seen"))
}

/// The acks of `name` in `[from, to)`, each with its phase in ackscope's clock for it and in
/// the server's own frame (the truth), ns.
fn phases(c: &Collector, truth: &Truth, name: &str, from: i64, to: i64) -> Vec<(f64, f64)> {
    let id = id_of(c, name);
    let own = truth.clocks.iter().find(|f| f.server == name).unwrap();
    let clocks = c.aggregator().clocks();
    c.aggregator()
        .ring()
        .iter()
        .filter(|r: &RingRow| r.consumer == id && r.acked_ns >= from && r.acked_ns < to)
        .map(|r| {
            (
                clocks.at(id, r.acked_ns).phase_ns(r.acked_ns) as f64,
                own.phase_ns(r.acked_ns),
            )
        })
        .collect()
}

/// Share of `(ours, own)` phase pairs within `tolerance_ns` of each other, round the frame.
fn agreeing(pairs: &[(f64, f64)], tolerance_ns: f64) -> f64 {
    let close = pairs
        .iter()
        .filter(|(a, b)| {
            ((a - b + SIXTY / 2.0).rem_euclid(SIXTY) - SIXTY / 2.0).abs() <= tolerance_ns
        })
        .count();
    close as f64 / pairs.len().max(1) as f64
}

/// Share of phases from `from_ms` to 1.5 ms past the frame end (timers fire late).
fn held(pairs: &[(f64, f64)], from_ms: f64, pick: impl Fn(&(f64, f64)) -> f64) -> f64 {
    let inside = pairs
        .iter()
        .map(pick)
        .filter(|&p| p >= from_ms * MS || p < 1.5 * MS)
        .count();
    inside as f64 / pairs.len().max(1) as f64
}

fn at(truth: &Truth, seconds: f64) -> i64 {
    let started = humantime::parse_rfc3339(&truth.started).unwrap();
    let started = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    started + (seconds * 1e9) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_clocks_put_each_servers_acks_in_its_own_frame() {
    let _loading = crate::support::CPU.lock().await;
    let (tapped, truth) = run(Generation::Legacy, true, "[tick]\nperiod = \"60hz\"").await;
    tapped.with(|c| {
        assert_eq!(c.counters().clock_announcement_errors, 0);
        assert_eq!(
            c.counters().clock_announcements,
            4,
            "three starts and a restart"
        );
        for name in ["srv-1", "srv-2", "srv-3"] {
            let id = id_of(c, name);
            let clock = c.aggregator().clocks().current(id);
            assert_eq!(clock.source, ClockSource::Announced, "{name}");
            // Every ack's phase is its server's own, to the microsecond.
            let pairs = phases(c, &truth, name, at(&truth, 0.5), at(&truth, 26.0));
            assert!(pairs.len() > 1_500, "{name}: {} acks", pairs.len());
            assert!(
                agreeing(&pairs, 1_000.0) > 0.999,
                "{name}: {}",
                agreeing(&pairs, 1_000.0)
            );
        }
        assert_eq!(c.aggregator().clocks().segments(id_of(c, "srv-2")).len(), 2);
        // srv-1's held acks are in its 12 ms band, as it put them; before, a third at most.
        let during = phases(c, &truth, "srv-1", at(&truth, 16.5), at(&truth, 26.0));
        let before = phases(c, &truth, "srv-1", at(&truth, 1.0), at(&truth, 16.0));
        let (d, b) = (held(&during, 11.5, |p| p.0), held(&before, 11.5, |p| p.0));
        assert!(
            d >= 0.8 && b < 0.6,
            "in 11.5 ms..1.5 ms: {d} during, {b} before"
        );
    });
    tapped.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inferred_clocks_find_each_servers_frame_and_the_band_it_holds() {
    let _loading = crate::support::CPU.lock().await;
    let toml = "[tick]\nperiod = \"60hz\"\n[clocks]\ninfer_every = \"2s\"\nmin_acks = 200\n\
                acks_resume_at = \"3ms\"";
    let (tapped, truth) = run(Generation::Current, false, toml).await;
    tapped.with(|c| {
        assert_eq!(c.counters().clock_announcements, 0);
        for (name, from, to) in [
            ("srv-1", 5.0, 16.0),
            // From three passes after its restart at 8 s (the pass under way mixes both offsets,
            // and fits neither).
            ("srv-2", 14.0, 26.0),
            ("srv-3", 5.0, 26.0),
        ] {
            let id = id_of(c, name);
            let clock = c.aggregator().clocks().current(id);
            assert_eq!(clock.source, ClockSource::Inferred, "{name}");
            // Phase 0 is placed from where the acks resume, which timers make up to a
            // millisecond or two late.
            let pairs = phases(c, &truth, name, at(&truth, from), at(&truth, to));
            let share = agreeing(&pairs, 2.0 * MS);
            assert!(
                share >= 0.8,
                "{name}: {share} of {} phases within 2 ms; its clocks {:#?}; its own {:?}",
                pairs.len(),
                c.aggregator().clocks().segments(id),
                truth.clocks.iter().find(|f| f.server == name)
            );
        }
        let during = phases(c, &truth, "srv-1", at(&truth, 16.5), at(&truth, 26.0));
        let (ours, own) = (held(&during, 10.5, |p| p.0), held(&during, 11.5, |p| p.1));
        assert!(own >= 0.8, "the fault holds srv-1's acks: {own}");
        assert!(ours >= 0.8, "ackscope sees them in srv-1's band: {ours}");
        // The spike is explained as preemption in that band of srv-1's frame.
        let id = id_of(c, "srv-1");
        let spikes = c.find_spikes(Some(&[id]), at(&truth, 16.0), at(&truth, 26.0));
        let (scope, spike, latency) = spikes.first().cloned().expect("a spike on srv-1");
        let report = c.spike_inputs(scope, spike, latency).explain();
        let preemption = report
            .causes
            .iter()
            .find(|f| f.cause == Cause::ThreadPreemption)
            .unwrap_or_else(|| panic!("{report:#?}"));
        assert!(preemption.confidence >= 0.5, "{report:#?}");
        let band = preemption.evidence["band_from_ms"].as_f64().unwrap();
        assert!(
            (10.0..=13.0).contains(&band),
            "band from {band} ms: {report:#?}"
        );
    });
    tapped.stop().await;
}
