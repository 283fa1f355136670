//! An hour of history at 10,000 acks/s (36,000,000 samples, 50 consumers, a server label and a
//! trace id on each), written by the archive's own segment writer in 10-second segments, then
//! asked for as a user would: the phase heatmap of the hour (all consumers, then one), cold
//! (the history collector loaded first) and warm, through the service's route; the report of
//! the hour. Beside them, in the same run, the baseline: the phase heatmap of 1,000,000
//! samples held in memory, through the same route. Peak RSS (VmHWM, reset before each step)
//! is printed with each.
//!
//! Not a criterion bench: one hour is written once (about a minute) and each question asked
//! three times. `ACKSCOPE_HOUR_DIR=DIR` keeps (or reuses) the hour there.
//!
//! `cargo bench --bench history`

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

use ackscope::archive::files::{self, Table};
use ackscope::archive::{ArchivedSample, Columns};
use ackscope::collector::Collector;
use ackscope::config::Config;
use ackscope::http::{AppState, Readiness, router};
use ackscope::model::rfc3339;

#[path = "support/fleet.rs"]
mod fleet;
use fleet::Fleet;

const CONSUMERS: u32 = 50;
const RATE: i64 = 10_000;
const SECONDS: i64 = 3_600;
const SEGMENT_S: i64 = 10;

/// The hour written into `dir` starting at `t0`: one segment per 10 s.
fn write_hour(dir: &std::path::Path, t0: i64) {
    let labels = vec!["server".to_string()];
    let fleet = Fleet {
        consumers: CONSUMERS,
        width: 2,
        hosts: 8,
        host_width: 0,
    };
    let names = fleet.names();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let per = (RATE * SEGMENT_S) as usize;
    for s in 0..SECONDS / SEGMENT_S {
        let rows: Vec<ArchivedSample> = (0..per)
            .map(|k| {
                let x = fleet::next(&mut x);
                let i = s as usize * per + k;
                let acked_ns = t0 + i as i64 * (1_000_000_000 / RATE);
                // 1–4 ms, and a slow band late in the frame.
                let slow = if acked_ns % 16_000_000 > 12_000_000 {
                    9_000_000
                } else {
                    0
                };
                fleet.sample(i, x, acked_ns, 1_000_000 + x % 3_000_000 + slow)
            })
            .collect();
        let mut columns = Columns::new(labels.len());
        for r in &rows {
            columns.push(r, &names);
        }
        let span = columns.span();
        let mut df = columns.frame(&labels).unwrap();
        files::write_segment(dir, Table::Samples, &span, &mut df).unwrap();
    }
}

/// A memory figure of this process from `/proc/self/status` (`VmHWM:` the peak since the
/// last reset, `VmRSS:` now), MiB.
fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn peak_mib() -> f64 {
    status_mib("VmHWM:")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// Resets the peak to what is resident now.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// GETs `path` of `app`, `n` times: each time in seconds, and the body's length.
async fn ask(app: &axum::Router, path: &str) -> (f64, usize) {
    let started = Instant::now();
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (started.elapsed().as_secs_f64(), body.len())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Two hours ago: older than anything a fresh collector holds.
    let now = ackscope::model::Seen::now().wall_ns;
    let t0 = (now - 2 * 3_600_000_000_000).div_euclid(3_600_000_000_000) * 3_600_000_000_000;
    let kept = std::env::var_os("ACKSCOPE_HOUR_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.clone().unwrap_or_else(|| temp.path().to_owned());
    let t0 = match files::segments(&dir, Table::Samples).first() {
        Some(first) if kept.is_some() => first.first_ns,
        _ => {
            std::fs::create_dir_all(&dir).unwrap();
            let started = Instant::now();
            write_hour(&dir, t0);
            println!(
                "wrote {} samples in {:.1} s",
                RATE * SECONDS,
                started.elapsed().as_secs_f64()
            );
            t0
        }
    };
    let bytes: u64 = files::segments(&dir, Table::Samples)
        .iter()
        .map(|s| s.bytes)
        .sum();
    println!(
        "the hour: {:.0} MiB on disk, {:.1} bytes a sample",
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / (RATE * SECONDS) as f64
    );
    let config = Config::default();
    let range = format!(
        "from={}&to={}",
        rfc3339(t0),
        rfc3339(t0 + SECONDS * 1_000_000_000)
    );

    // The hour, from the archive.
    let history = || {
        router(
            AppState::new(
                Arc::new(Mutex::new(Collector::new(config.clone()))),
                Arc::new(Readiness::new(Arc::default())),
            )
            .with_archive(dir.clone()),
        )
    };
    let mut results = Vec::new();
    for (what, query) in [
        ("all consumers", String::new()),
        ("one consumer", "&stream=GAME&consumer=srv-07".to_string()),
    ] {
        let (mut cold, mut warm, mut peaks) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..3 {
            let app = history();
            reset_peak();
            let before = rss_mib();
            let path = format!("/api/v1/heatmap/phase.svg?{range}{query}");
            cold.push(ask(&app, &path).await.0);
            warm.push(ask(&app, &path).await.0);
            peaks.push((peak_mib(), peak_mib() - before));
        }
        results.push((what, median(cold), median(warm), peaks));
    }
    // The report of the hour, in a fresh service too.
    let app = history();
    reset_peak();
    let before = rss_mib();
    let (report, _) = ask(&app, &format!("/api/v1/report?{range}")).await;
    let report_peak = (peak_mib(), peak_mib() - before);
    drop(app);
    // Baseline: 1,000,000 samples in memory (the hour's last 100 s), the same route.
    let (latest, _) = ackscope::archive::latest_samples(&dir, t0, i64::MAX, 1_000_000);
    let mut memory = Collector::new(config.clone());
    memory.restore(&latest);
    drop(latest);
    let live = router(AppState::new(
        Arc::new(Mutex::new(memory)),
        Arc::new(Readiness::new(Arc::default())),
    ));
    let last = format!(
        "from={}&to={}",
        rfc3339(t0 + (SECONDS - 100) * 1_000_000_000),
        rfc3339(t0 + SECONDS * 1_000_000_000)
    );
    let mut base = Vec::new();
    for _ in 0..3 {
        base.push(
            ask(&live, &format!("/api/v1/heatmap/phase.svg?{last}"))
                .await
                .0,
        );
    }
    let base = median(base);
    println!("baseline: phase heatmap of 1,000,000 samples in memory: {base:.3} s");

    for (what, cold, warm, peaks) in results {
        println!(
            "phase heatmap of the hour ({what}), 36,000,000 samples: cold {cold:.2} s \
             (history collector loaded first), warm {warm:.2} s; ratio warm / baseline \
             {:.1} for 36× the samples; peak RSS {:.0} MiB, {:.0} MiB above what the \
             process held before",
            warm / base,
            peaks.iter().map(|p: &(f64, f64)| p.0).fold(0.0, f64::max),
            peaks.iter().map(|p| p.1).fold(0.0, f64::max)
        );
    }
    println!(
        "report of the hour (from the latest 1,000,000 samples): {report:.2} s; peak RSS \
         {:.0} MiB, {:.0} MiB above what the process held before",
        report_peak.0, report_peak.1
    );
}
