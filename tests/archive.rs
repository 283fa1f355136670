//! The archive, with the real binary against a real server: a clean stop (SIGTERM) writes
//! every sample; `kill -9` loses at most what came after the last flush, and leaves nothing
//! torn behind; one process per data directory; foreign files skipped and named.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use polars::prelude::*;
use tokio::process::{Child, Command};

use crate::support::{
    Generation, NatsServer, free_addr, game_stream, http_get, play, poll, pull_consumer,
};

const BIN: &str = env!("CARGO_BIN_EXE_ackscope");

/// `ackscope serve` on `server` with its history in `data`, flushed every `flush`; ready.
async fn serve(server: &NatsServer, data: &Path, config: &Path, flush: &str) -> (Child, String) {
    std::fs::write(config, format!("[archive]\nflush_interval = \"{flush}\"\n")).unwrap();
    let addr = free_addr();
    let child = Command::new(BIN)
        .args(["serve", "--nats", &server.url(), "--listen", &addr])
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    poll(&addr, "/readyz", |status, _| status == 200).await;
    (child, addr)
}

/// A counter of ackscope's `/metrics`.
async fn counter(addr: &str, name: &str) -> u64 {
    let (_, text) = http_get(addr, "/metrics").await.unwrap();
    crate::support::metric(&text, name).unwrap_or(0.0) as u64
}

/// Waits until the counter `name` reaches `n`.
async fn counted(addr: &str, name: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while counter(addr, name).await < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} did not reach {n}: {}",
            counter(addr, name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn signal(child: &Child, signal: &str) {
    let pid = child.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn strings(df: &DataFrame, column: &str) -> Vec<String> {
    df.column(column)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_writes_every_sample_legacy_2_9() {
    let server = NatsServer::start(Generation::Legacy);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ackscope.toml");
    let (mut child, addr) = serve(&server, &data, &config, "1h").await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    play(&client, &consumer, 200).await;
    counted(&addr, "ackscope_samples_joined_total", 200).await;
    // Nothing is written before the hour is up: every sample waits in the collector's batch
    // or with the writer, and is written by the stop.
    assert_eq!(
        counter(&addr, "ackscope_archive_samples_written_total").await,
        0
    );
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let (df, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(df.height(), 200, "{df}");
    assert!(strings(&df, "stream").iter().all(|s| s == "GAME"));
    assert!(strings(&df, "consumer").iter().all(|s| s == "srv-1"));
    assert!(strings(&df, "subject").iter().all(|s| s == "game.srv-1"));
    assert!(strings(&df, "kind").iter().all(|s| s == "ack"));
    let column = |name: &str| df.column(name).unwrap().i64().unwrap().clone();
    // Every message once, its stream sequence and both instants kept.
    let mut seqs: Vec<i64> = column("stream_seq").no_null_iter().collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    let latencies = column("ack_latency_ns");
    assert_eq!(latencies.null_count(), 0);
    assert!(latencies.no_null_iter().all(|l| l > 0 && l < 5_000_000_000));
    let phases = column("phase_ns");
    assert!(phases.no_null_iter().all(|p| (0..16_000_000).contains(&p)));
    // Hive-style partitions by day and hour.
    let days: Vec<String> = std::fs::read_dir(data.join("samples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(days.iter().all(|d| d.starts_with("date=")), "{days:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_last_flush_current_2_15() {
    let server = NatsServer::start(Generation::Current);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ackscope.toml");
    let (mut child, addr) = serve(&server, &data, &config, "1s").await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    play(&client, &consumer, 100).await;
    // Written by a flush (at most a second later) ...
    counted(&addr, "ackscope_archive_samples_written_total", 100).await;
    assert!(counter(&addr, "ackscope_archive_segments_written_total").await >= 1);
    // A second ackscope on the same directory is refused, in words.
    let second = Command::new(BIN)
        .args(["serve", "--nats", &server.url(), "--listen", &free_addr()])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .await
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another ackscope"), "{err}");
    // ... then 50 more, and no time to write them.
    play(&client, &consumer, 50).await;
    signal(&child, "-KILL");
    child.wait().await.unwrap();
    let (df, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert!((100..=150).contains(&df.height()), "{}", df.height());
    // Started again on the same directory: what the crash left is read, and it goes on.
    let (mut child, addr) = serve(&server, &data, &config, "1s").await;
    play(&client, &consumer, 30).await;
    counted(&addr, "ackscope_archive_samples_written_total", 30).await;
    let (_, metrics) = http_get(&addr, "/metrics").await.unwrap();
    assert!(
        crate::support::metric(&metrics, "ackscope_archive_bytes").unwrap() > 0.0,
        "{metrics}"
    );
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    let (after, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(after.height(), df.height() + 30);
    // No temporary file is left anywhere.
    let mut found = Vec::new();
    let mut dirs = vec![data.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                found.push(path);
            }
        }
    }
    assert!(
        found.iter().all(|p| !p.to_string_lossy().ends_with(".tmp")),
        "{found:?}"
    );
    // A foreign or torn file in the data directory is skipped and named, never fatal.
    let segment =
        ackscope::archive::files::segments(&data, ackscope::archive::files::Table::Samples)
            .pop()
            .unwrap();
    std::fs::write(&segment.path, b"torn").unwrap();
    let (rest, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert_eq!(unreadable, vec![segment.path.clone()]);
    assert!(rest.height() < after.height());
    // So is a Parquet file of another table under a segment's name.
    let mut foreign = DataFrame::new(1, vec![Column::new("acked_ns".into(), ["late"])]).unwrap();
    let file = std::fs::File::create(&segment.path).unwrap();
    ParquetWriter::new(file).finish(&mut foreign).unwrap();
    let (same, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert_eq!(unreadable, vec![segment.path]);
    assert_eq!(same.height(), rest.height());
}

/// The report of the last ten minutes, as JSON.
async fn report(addr: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, "/api/v1/report?from=-10m").await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_goes_on_from_the_archived_history_current_2_15() {
    let server = NatsServer::start(Generation::Current);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ackscope.toml");
    let (mut child, addr) = serve(&server, &data, &config, "1h").await;
    let client = server.client().await;
    let stream = game_stream(&client).await;
    let consumer = pull_consumer(&stream, "srv-1", Duration::from_secs(30), 0).await;
    play(&client, &consumer, 150).await;
    counted(&addr, "ackscope_samples_joined_total", 150).await;
    let before = report(&addr).await;
    assert_eq!(before["counts"]["acks"], 150, "{before:#}");
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    // Started again on the same directory with nothing new: the same acks, latencies and
    // phases, and the consumer known.
    let (mut child, addr) = serve(&server, &data, &config, "1h").await;
    assert_eq!(
        counter(&addr, "ackscope_archive_samples_restored_total").await,
        150
    );
    let after = report(&addr).await;
    assert_eq!(after["counts"]["acks"], 150, "{after:#}");
    assert_eq!(after["latency_us"], before["latency_us"]);
    let phase_counts = |r: &serde_json::Value| -> Vec<u64> {
        r["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(phase_counts(&after), phase_counts(&before));
    let (_, consumers) = http_get(&addr, "/api/v1/consumers").await.unwrap();
    assert!(consumers.contains("srv-1"), "{consumers}");
    // New acks add to them, and what was loaded back is not archived twice.
    play(&client, &consumer, 20).await;
    counted(&addr, "ackscope_samples_joined_total", 20).await;
    assert_eq!(report(&addr).await["counts"]["acks"], 170);
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    let (df, unreadable) = ackscope::archive::read_samples(&data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    assert_eq!(df.height(), 170);
}
