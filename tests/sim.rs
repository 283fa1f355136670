//! The simulator against a real nats-server: one fault of each kind, each on its own server,
//! must leave its signature in what ackscope collects, and the truth file must say exactly
//! what was injected. Then `ackscope demo`: ready within 30 s, clean after SIGTERM.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ackscope::aggregate::rebin::quantile;
use ackscope::aggregate::ring::RingRow;
use ackscope::sim::scenario::{FaultKind, RawScenario, Scenario};
use ackscope::sim::{self, truth::Truth};

use crate::support::{Generation, NatsServer, Tapped, config};

const MS: u64 = 1_000_000;

fn smoke() -> Scenario {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/smoke.toml");
    RawScenario::from_file(&path).unwrap().validate().unwrap()
}

/// The rows of one server's consumer acked in `[from, to)`.
fn rows_of(rows: &[(String, RingRow)], server: &str, from: i64, to: i64) -> Vec<RingRow> {
    rows.iter()
        .filter(|(name, r)| name == server && r.acked_ns >= from && r.acked_ns < to)
        .map(|(_, r)| *r)
        .collect()
}

fn p50(rows: &[RingRow]) -> u64 {
    let mut v: Vec<u64> = rows.iter().filter_map(|r| r.ack_latency_ns).collect();
    quantile(&mut v, 0.5)
}

/// Share of the acks whose frame phase (16 ms tick) is at least `from_ns` or below `wrap_ns`.
fn share_between(rows: &[RingRow], from_ns: i64, wrap_ns: i64) -> f64 {
    let inside = rows
        .iter()
        .filter(|r| {
            let phase = r.acked_ns.rem_euclid(16 * MS as i64);
            phase >= from_ns || phase < wrap_ns
        })
        .count();
    inside as f64 / rows.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_leaves_its_signature_and_the_truth_says_so() {
    let _loading = crate::support::CPU.lock().await;
    let server = NatsServer::start(Generation::Current);
    let tapped = Tapped::start(config(&server, "[aggregate]\nring_capacity = 200000")).await;
    let scenario = smoke();
    let max_ack_pending = scenario.max_ack_pending as u64;

    // Follow srv-5's ack pending through the consumer state tap.
    let peak_pending = Arc::new(AtomicU64::new(0));
    let watcher = {
        let peak = peak_pending.clone();
        let collector = tapped.collector.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let c = ackscope::collector::lock(&collector);
                let pending = c
                    .consumers()
                    .find(|(_, _, name)| *name == "srv-5")
                    .and_then(|(id, _, _)| c.facts(id)?.state.as_ref().map(|s| s.num_ack_pending));
                if let Some(p) = pending {
                    peak.fetch_max(p, Ordering::Relaxed);
                }
            }
        })
    };

    let client = server.client().await;
    let (_stop, stop) = tokio::sync::watch::channel(false);
    let truth: Truth = sim::run(client, scenario.clone(), stop)
        .await
        .expect("the simulation runs");
    tokio::time::sleep(Duration::from_millis(500)).await;
    watcher.abort();

    // The truth file: every fault, its cause, its target and its exact window.
    let started = truth
        .faults
        .iter()
        .map(|f| f.start_ns - scenario.faults[0].start_ns as i64)
        .min()
        .unwrap();
    assert_eq!(truth.faults.len(), 7);
    for (injected, planned) in truth.faults.iter().zip(&scenario.faults) {
        assert_eq!(injected.kind, planned.kind.name());
        assert_eq!(injected.cause, planned.kind.cause());
        assert_eq!(
            injected.servers,
            vec![Scenario::server_name(planned.servers[0])]
        );
        assert_eq!(injected.consumers[0].consumer, injected.servers[0]);
        assert_eq!(injected.start_ns - started, planned.start_ns as i64);
        assert_eq!(injected.end_ns - started, planned.end_ns as i64);
    }
    let causes: Vec<&str> = truth.faults.iter().map(|f| f.cause.as_str()).collect();
    assert_eq!(
        causes,
        [
            "gc_pause",
            "thread_preemption",
            "thread_preemption",
            "redelivery",
            "flow_control",
            "load_burst",
            "hot_spot"
        ]
    );
    assert!(truth.fleet.frames > 8 * 400, "{:?}", truth.fleet);
    assert!(truth.fleet.frame_jitter_p99_us > 0.0);
    assert!(truth.fleet.acks_dropped > 0, "packet loss dropped acks");

    let (rows, counters) = tapped.with(|c| {
        let rows: Vec<(String, RingRow)> = c
            .aggregator()
            .ring()
            .iter()
            .map(|r| (c.names().consumer_names(r.consumer).1.to_string(), r))
            .collect();
        (rows, c.counters())
    });
    assert_eq!(counters.ack_subject_errors, 0);
    let window = &truth.faults[0];
    // Skip the first half second of the fault and of the run.
    let (from, to) = (window.start_ns + 500 * MS as i64, window.end_ns);
    let (base_from, base_to) = (started + 500 * MS as i64, window.start_ns);
    let during = |server: &str| rows_of(&rows, server, from, to);
    let before = |server: &str| rows_of(&rows, server, base_from, base_to);

    // gc_pause: no acks while the loop is stopped, then a burst with latencies ≈ the pause.
    let FaultKind::GcPause { pause_ns, .. } = scenario.faults[0].kind else {
        unreachable!()
    };
    let pauses: Vec<_> = truth
        .gc_pauses
        .iter()
        .filter(|p| p.server == "srv-1")
        .collect();
    assert!(pauses.len() >= 3, "{pauses:?}");
    for p in &pauses {
        // A gap: the longest silence between srv-1's acks around the pause is most of it.
        let mut around = rows_of(
            &rows,
            "srv-1",
            p.start_ns - 30 * MS as i64,
            p.end_ns + 100 * MS as i64,
        );
        around.sort_by_key(|r| r.acked_ns);
        let gap = around
            .windows(2)
            .map(|w| w[1].acked_ns - w[0].acked_ns)
            .max()
            .unwrap_or(0);
        assert!(
            gap as u64 >= pause_ns * 6 / 10,
            "longest silence {gap} ns around a {pause_ns} ns pause"
        );
        // Then the backlog goes out in one burst: its first acks waited about the pause.
        let mut after = rows_of(&rows, "srv-1", p.end_ns, p.end_ns + 500 * MS as i64);
        after.sort_by_key(|r| r.acked_ns);
        let first = after.first().expect("acks after the pause");
        assert!(
            first.acked_ns - p.end_ns < 100 * MS as i64,
            "the burst comes within 100 ms"
        );
        let slowest = after
            .iter()
            .take(5)
            .filter_map(|r| r.ack_latency_ns)
            .max()
            .unwrap_or(0);
        assert!(
            slowest >= pause_ns * 8 / 10,
            "burst after the pause: slowest {slowest} ns, pause {pause_ns} ns"
        );
    }

    // Messages are published at 4, 8 and 12 ms into each frame, so a healthy server's acks
    // go out about then, one in three from 12 ms on. The healthy srv-8 in the same seconds
    // is the baseline: the same machine, as busy.
    let healthy =
        |from_ms: u64| share_between(&during("srv-8"), (from_ms * MS) as i64, 3 * MS as i64);

    // thread_preemption: srv-2's acks move past the blocked first 13 ms of the frame (from
    // 12 ms to 3 ms past the frame end: timers fire up to a few milliseconds late).
    let pre = share_between(&during("srv-2"), 12 * MS as i64, 3 * MS as i64);
    let base = share_between(&before("srv-2"), 12 * MS as i64, 3 * MS as i64);
    assert!(
        pre >= 0.8 && base < 0.6 && healthy(12) < 0.6,
        "share of acks from 12 ms to 3 ms past the frame end: {pre} during, {base} before, {} on the healthy srv-8",
        healthy(12)
    );

    // frame_end_batching: srv-3's acks go out together at the end of the frame (their phase
    // lands in its last 3 ms, or, seen a few milliseconds late, just past the boundary).
    let batched = share_between(&during("srv-3"), 13 * MS as i64, 3 * MS as i64);
    let base = share_between(&before("srv-3"), 13 * MS as i64, 3 * MS as i64);
    assert!(
        batched >= 0.8 && base < 0.5 && healthy(13) < 0.5,
        "share of acks from 13 ms to 3 ms past the frame end: {batched} during, {base} before, {} on the healthy srv-8",
        healthy(13)
    );

    // packet_loss: lost acks come back as redeliveries.
    let redelivered = during("srv-4").iter().filter(|r| r.deliveries > 1).count()
        + rows_of(
            &rows,
            "srv-4",
            window.end_ns,
            window.end_ns + 3_000 * MS as i64,
        )
        .iter()
        .filter(|r| r.deliveries > 1)
        .count();
    assert!(redelivered >= 10, "{redelivered} redelivered samples");
    assert_eq!(
        rows.iter()
            .filter(|(n, r)| n == "srv-8" && r.deliveries > 1)
            .count(),
        0
    );

    // flow_control: srv-5 runs into max_ack_pending and its latency climbs.
    let peak = peak_pending.load(Ordering::Relaxed);
    assert!(
        peak * 10 >= max_ack_pending * 9,
        "peak ack pending {peak} of {max_ack_pending}"
    );
    assert!(p50(&during("srv-5")) > 5 * p50(&before("srv-5")));

    // load_burst: srv-6's rate multiplies.
    let rate = |rows: &[RingRow], span: i64| rows.len() as f64 / (span as f64 / 1e9);
    let burst_rate = rate(&during("srv-6"), to - from);
    let base_rate = rate(&before("srv-6"), base_to - base_from);
    assert!(
        burst_rate >= 3.0 * base_rate,
        "{burst_rate}/s during, {base_rate}/s before"
    );

    // slow_server: srv-7 slower than the healthy srv-8 during the fault, not before it.
    let gap_during = p50(&during("srv-7")) as i64 - p50(&during("srv-8")) as i64;
    let gap_before = p50(&before("srv-7")) as i64 - p50(&before("srv-8")) as i64;
    assert!(
        gap_during >= 3 * MS as i64 && gap_during > 2 * gap_before.abs(),
        "srv-7 p50 minus srv-8 p50: {gap_during} ns during, {gap_before} ns before"
    );

    tapped.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_is_ready_within_30s_and_cleans_up_on_sigterm() {
    let _loading = crate::support::CPU.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let addr = crate::support::free_addr();
    let binary =
        std::env::var("ACKSCOPE_NATS_SERVER_LEGACY").unwrap_or("/usr/sbin/nats-server".into());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackscope"))
        .args(["demo", "--listen", &addr])
        .env("NATS_SERVER_BIN", &binary)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        if crate::http::http_get_status(&addr, "/readyz").await == Some(200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "demo not ready within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The nats-server child and its temporary directory exist while the demo runs.
    let dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("ackscope-nats-")
            })
            .collect()
    };
    let server_dirs = dirs();
    assert_eq!(server_dirs.len(), 1, "one nats-server directory");
    // So does its history's.
    let demo_dirs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("ackscope-demo-"))
            .collect()
    };
    assert_eq!(demo_dirs().len(), 1, "one data directory");
    assert!(demo_dirs()[0].join("data").is_dir());
    let conf = server_dirs[0].join("server.conf");
    let child_running = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| {
                std::fs::read(e.path().join("cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).contains(&*conf.to_string_lossy()))
                    .unwrap_or(false)
            })
    };
    assert!(child_running());

    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("the demo stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(dirs().is_empty(), "temporary directory removed");
    assert!(demo_dirs().is_empty(), "data directory removed");
    assert!(!child_running(), "nats-server child stopped");
}

#[tokio::test]
async fn demo_without_nats_server_says_how_to_install_it() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackscope"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("NATS_SERVER_BIN", "/nonexistent/nats-server")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("apt-get install nats-server") && stderr.contains("NATS_SERVER_BIN"),
        "{stderr}"
    );
}
