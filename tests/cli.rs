//! The `ackscope` binary: `collect` against a real server, and start-up failures.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::{Generation, NatsServer, free_addr, game_stream, next_message};

const BIN: &str = env!("CARGO_BIN_EXE_ackscope");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_prints_windows_legacy_2_9() {
    collect_prints_windows(Generation::Legacy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_prints_windows_current_2_15() {
    collect_prints_windows(Generation::Current).await
}

async fn collect_prints_windows(generation: Generation) {
    let server = NatsServer::start(generation);
    let mut child = Command::new(BIN)
        .args(["collect", "--nats", &server.url()])
        .env("RUST_LOG", "ackscope=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ackscope starts");
    // Wait until the taps are subscribed.
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = stderr.next_line().await.unwrap() {
            if line.contains("taps subscribed") {
                return;
            }
        }
        panic!("ackscope exited before subscribing");
    })
    .await
    .expect("taps subscribed within 10s");

    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let stream = game_stream(&client).await;
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some("srv-7".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut traces = HashSet::new();
    for i in 0..10 {
        let trace = format!("0af7651916cd43dd8448eb211c80{i:04x}");
        let mut headers = HeaderMap::new();
        headers.insert("X-Trace-ID", trace.as_str());
        js.publish_with_headers("game.srv-7.input", headers, "x".into())
            .await
            .unwrap()
            .await
            .unwrap();
        traces.insert(trace);
    }
    // 20 ms of work for a bound of 9 ms: the tap may stamp a delivery late by a scheduling
    // slice on a busy machine (8.7 ms measured once for 10 ms of work), never early.
    for _ in 0..10 {
        let msg = next_message(&consumer).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        msg.ack().await.unwrap();
    }

    // Window lines arrive once their second is over.
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acks = 0;
    let mut exemplars = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while acks < 10 {
            let line = stdout.next_line().await.unwrap().expect("a window line");
            let w: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
            if w["consumer"] != "srv-7" {
                continue;
            }
            assert_eq!(w["stream"], "GAME");
            assert!(w["start"].as_str().unwrap().ends_with('Z'));
            let window_acks = w["counts"]["acks"].as_u64().unwrap();
            acks += window_acks;
            let ack = &w["ack_latency_us"];
            if window_acks > 0 {
                assert!(ack["p50"].as_f64().unwrap() >= 9_000.0, "{line}");
                assert!(ack["max"].as_f64().unwrap() < 200_000.0, "{line}");
            }
            assert_eq!(w["phase_counts"].as_array().unwrap().len(), 160);
            let phase_total: u64 = w["phase_counts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_u64().unwrap())
                .sum();
            assert_eq!(phase_total, window_acks);
            for t in w["exemplar_trace_ids"].as_array().unwrap() {
                exemplars.push(t.as_str().unwrap().to_string());
            }
        }
    })
    .await
    .expect("windows with all 10 acks within 10s");
    assert_eq!(acks, 10);
    assert!(!exemplars.is_empty());
    for t in &exemplars {
        assert!(
            traces.contains(t),
            "exemplar {t} is one of the published trace ids"
        );
    }

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn unreachable_server_is_a_one_line_start_up_error() {
    let out = Command::new(BIN)
        .args(["collect", "--nats", &format!("nats://{}", free_addr())])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("ackscope: error: cannot connect to NATS"),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ackscope.toml");
    std::fs::write(&path, "[tick]\nperiod = \"fast\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["collect", "--config", path.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("tick.period") && stderr.contains("fast"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["collect", "--tick", "0ms"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("tick.period")
    );
}

#[tokio::test]
async fn query_answers_or_says_why_not_in_one_line() {
    let run = |args: Vec<String>| async move {
        let out = Command::new(BIN).args(&args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let count = "SELECT COUNT(*) AS n FROM samples".to_string();
    // An empty data directory: the tables are there, empty.
    let (ok, stdout, stderr) = run(vec![
        "query".into(),
        "-e".into(),
        count.clone(),
        "--data-dir".into(),
        data.clone(),
        "--format".into(),
        "csv".into(),
    ])
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "n\n0\n");
    // No data directory, a bad statement, a bad range: one line each, in words.
    let missing = dir.path().join("nowhere").to_string_lossy().to_string();
    for (args, says) in [
        (
            vec!["-e".into(), count.clone(), "--data-dir".into(), missing],
            "no data directory",
        ),
        (
            vec![
                "-e".into(),
                "SELECT nothing FROM samples".into(),
                "--data-dir".into(),
                data.clone(),
            ],
            "nothing",
        ),
        (
            vec![
                "-e".into(),
                count.clone(),
                "--from".into(),
                "yesterday".into(),
                "--data-dir".into(),
                data.clone(),
            ],
            "--from",
        ),
        (
            vec!["queries/none.sql".into(), "--data-dir".into(), data.clone()],
            "cannot read",
        ),
    ] {
        let mut all = vec!["query".to_string()];
        all.extend(args);
        let (ok, _, stderr) = run(all.clone()).await;
        assert!(!ok, "{all:?}");
        assert!(stderr.contains(says), "{all:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{all:?}: {stderr}");
    }
}
