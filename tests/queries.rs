//! The SQL files in `queries/`, run by `ackscope query` over an archive a real run wrote, each
//! answer checked against the same figures computed here in Rust from the archived rows.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use polars::prelude::*;
use serde_json::Value;
use tokio::process::Command;

use crate::archive::{Setup, setup_with, signal};
use crate::support::Generation;

const BIN: &str = env!("CARGO_BIN_EXE_ackscope");

/// Every archived sample's fields the queries read.
struct Row {
    acked_ns: i64,
    stream: String,
    consumer: String,
    subject: Option<String>,
    trace_id: Option<String>,
    ack_ns: Option<i64>,
    phase_ns: Option<i64>,
    deliveries: i64,
    kind: String,
    stream_seq: i64,
}

fn ints(df: &DataFrame, name: &str) -> Vec<Option<i64>> {
    df.column(name).unwrap().i64().unwrap().iter().collect()
}

fn texts(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    df.column(name)
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn rows(data: &Path) -> Vec<Row> {
    let (df, unreadable) = ackscope::archive::read_samples(data, i64::MIN, i64::MAX);
    assert!(unreadable.is_empty(), "{unreadable:?}");
    let (acked, ack, phase) = (
        ints(&df, "acked_ns"),
        ints(&df, "ack_latency_ns"),
        ints(&df, "phase_ns"),
    );
    let (deliveries, seq) = (ints(&df, "deliveries"), ints(&df, "stream_seq"));
    let (stream, consumer, subject) = (
        texts(&df, "stream"),
        texts(&df, "consumer"),
        texts(&df, "subject"),
    );
    let (trace, kind) = (texts(&df, "trace_id"), texts(&df, "kind"));
    (0..df.height())
        .map(|i| Row {
            acked_ns: acked[i].unwrap(),
            stream: stream[i].clone().unwrap(),
            consumer: consumer[i].clone().unwrap(),
            subject: subject[i].clone(),
            trace_id: trace[i].clone(),
            ack_ns: ack[i],
            phase_ns: phase[i],
            deliveries: deliveries[i].unwrap(),
            kind: kind[i].clone().unwrap(),
            stream_seq: seq[i].unwrap(),
        })
        .collect()
}

/// The quantile `q` of `values` interpolated linearly between the closest ranks (SQL's
/// `QUANTILE_CONT`).
fn quantile_cont(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = q * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// `YYYY-MM-DD HH:MM` (UTC) of `t_ns`.
fn minute(t_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_nanos(t_ns as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..16].replace('T', " ")
}

fn us(ns: i64) -> f64 {
    ns as f64 / 1_000.0
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// `ackscope query FILE --format json` over `data`.
async fn query(data: &Path, file: &Path) -> Vec<Value> {
    let out = Command::new(BIN)
        .arg("query")
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .args(["--format", "json"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// Publishes for `seconds` at 50 a second on three subjects with trace ids, while a pull
/// consumer acks each batch backwards (later sequences of a subject first), NAKs every
/// eleventh message once, and holds its acks 15 ms in `slow` (seconds 4 to 8).
async fn traffic(s: &Setup, seconds: u64) {
    let js = async_nats::jetstream::new(s.client.clone());
    let slow = Arc::new(AtomicBool::new(false));
    let publisher = {
        let slow = slow.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut published = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while started.elapsed() < Duration::from_secs(seconds) {
                tick.tick().await;
                let t = started.elapsed().as_secs();
                slow.store((4..8).contains(&t), Ordering::Relaxed);
                let mut headers = async_nats::HeaderMap::new();
                let trace = format!("{:032x}", 0xabc0_0000_u64 + published);
                headers.insert("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"));
                let subject = format!("game.srv-1.{}", ["a", "b", "c"][published as usize % 3]);
                js.publish_with_headers(subject, headers, "state".into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                published += 1;
            }
            slow.store(false, Ordering::Relaxed);
            published
        })
    };
    let mut acked: HashSet<u64> = HashSet::new();
    let mut published = None;
    loop {
        if publisher.is_finished() && published.is_none() {
            published = Some(publisher.await.unwrap());
            break;
        }
        let mut batch = Vec::new();
        let mut messages = s
            .consumer
            .batch()
            .max_messages(4)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .unwrap();
        while let Some(m) = messages.next().await {
            batch.push(m.unwrap());
        }
        if slow.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
        for m in batch.into_iter().rev() {
            let info = m.info().unwrap();
            let (seq, delivered) = (info.stream_sequence, info.delivered);
            if seq % 11 == 0 && delivered == 1 {
                m.ack_with(async_nats::jetstream::AckKind::Nak(None))
                    .await
                    .unwrap();
            } else {
                m.ack().await.unwrap();
                acked.insert(seq);
            }
        }
    }
    // What is left: redeliveries of the last NAKs.
    let published = published.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (acked.len() as u64) < published {
        assert!(
            Instant::now() < deadline,
            "{} of {published} acked",
            acked.len()
        );
        let m = crate::support::next_message(&s.consumer).await;
        acked.insert(m.info().unwrap().stream_sequence);
        m.ack().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_queries_answer_as_the_archived_samples_say_current_2_15() {
    // An SLO of 10 ms makes the slow seconds a spike without a long baseline first.
    const SLO: &str = "[spikes]\nslo = \"10ms\"\n";
    let (s, mut child, addr) = setup_with(Generation::Current, "1s", SLO).await;
    traffic(&s, 12).await;
    // The spike is archived once closed windows follow it (and the next 5 s pass finds it).
    let spikes_dir = s.data.join("spikes");
    let deadline = Instant::now() + Duration::from_secs(40);
    while ackscope::archive::query::run(&s.data, "SELECT * FROM spikes", i64::MIN, i64::MAX)
        .unwrap()
        .frame
        .height()
        == 0
    {
        assert!(
            Instant::now() < deadline,
            "no spike archived in {}",
            spikes_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Samples recorded after their window closed count in the open one instead.
    let (_, metrics) = crate::support::http_get(&addr, "/metrics").await.unwrap();
    let late = crate::support::metric(&metrics, "ackscope_late_events_total").unwrap_or(0.0) as i64;
    signal(&child, "-TERM");
    child.wait().await.unwrap();

    let rows = rows(&s.data);
    assert!(rows.len() > 500, "{} samples", rows.len());
    let with_latency: Vec<&Row> = rows.iter().filter(|r| r.ack_ns.is_some()).collect();
    let mut checked = Vec::new();
    let mut files: Vec<_> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
    files.sort();
    for file in files {
        let name = file.file_stem().unwrap().to_string_lossy().to_string();
        let answer = query(&s.data, &file).await;
        match name.as_str() {
            "p99_per_consumer_minute" => {
                let mut groups: BTreeMap<(String, String, String), Vec<f64>> = BTreeMap::new();
                for r in &with_latency {
                    groups
                        .entry((r.stream.clone(), r.consumer.clone(), minute(r.acked_ns)))
                        .or_default()
                        .push(us(r.ack_ns.unwrap()));
                }
                assert_eq!(answer.len(), groups.len(), "{name}");
                for a in &answer {
                    let key = (
                        text(a, "stream").to_string(),
                        text(a, "consumer").to_string(),
                        text(a, "minute").to_string(),
                    );
                    let v = &groups[&key];
                    assert_eq!(u(a, "samples"), v.len() as u64, "{name} {a}");
                    assert!(close(f(a, "p99_us"), quantile_cont(v, 0.99)), "{name} {a}");
                }
            }
            "p99_by_frame_band" => {
                let mut bands: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
                for r in with_latency.iter().filter(|r| r.phase_ns.is_some()) {
                    bands
                        .entry(r.phase_ns.unwrap() / 1_000_000)
                        .or_default()
                        .push(us(r.ack_ns.unwrap()));
                }
                let got: Vec<i64> = answer
                    .iter()
                    .map(|a| a["band_ms"].as_i64().unwrap())
                    .collect();
                assert_eq!(got, bands.keys().copied().collect::<Vec<_>>(), "{name}");
                for a in &answer {
                    let v = &bands[&a["band_ms"].as_i64().unwrap()];
                    assert_eq!(u(a, "samples"), v.len() as u64, "{name} {a}");
                    assert!(close(f(a, "p99_us"), quantile_cont(v, 0.99)), "{name} {a}");
                }
            }
            "slowest_acks" => {
                let mut slowest: Vec<f64> =
                    with_latency.iter().map(|r| us(r.ack_ns.unwrap())).collect();
                slowest.sort_by(|a, b| b.total_cmp(a));
                slowest.truncate(20);
                let got: Vec<f64> = answer.iter().map(|a| f(a, "ack_latency_us")).collect();
                assert_eq!(got.len(), slowest.len(), "{name}");
                for (g, w) in got.iter().zip(&slowest) {
                    assert!(close(*g, *w), "{name}: {got:?} against {slowest:?}");
                }
                // Each comes with its own trace id, and the slow seconds' acks lead.
                for a in &answer {
                    let its_own = with_latency.iter().any(|r| {
                        r.trace_id.as_deref() == a["trace_id"].as_str()
                            && close(us(r.ack_ns.unwrap()), f(a, "ack_latency_us"))
                    });
                    assert!(its_own, "{name}: {a} has the trace id sent with it");
                }
                assert!(got[0] >= 15_000.0, "{name}: {got:?}");
            }
            "redelivery_nak_rates" => {
                let mut per: BTreeMap<(String, String), (u64, u64, u64)> = BTreeMap::new();
                for r in rows.iter().filter(|r| r.kind != "progress") {
                    let e = per
                        .entry((r.stream.clone(), r.consumer.clone()))
                        .or_default();
                    e.0 += 1;
                    e.1 += u64::from(r.deliveries > 1);
                    e.2 += u64::from(r.kind == "nak");
                }
                assert_eq!(answer.len(), per.len(), "{name}");
                for a in &answer {
                    let (n, redelivered, naks) = per[&(
                        text(a, "stream").to_string(),
                        text(a, "consumer").to_string(),
                    )];
                    assert_eq!(u(a, "samples"), n, "{name} {a}");
                    assert_eq!(u(a, "redelivered"), redelivered, "{name} {a}");
                    assert_eq!(u(a, "naks"), naks, "{name} {a}");
                    assert!(naks > 0 && redelivered > 0, "{name}: NAKs were sent: {a}");
                    assert!(
                        close(f(a, "nak_rate"), naks as f64 / n as f64),
                        "{name} {a}"
                    );
                }
            }
            "ordering_failures_per_subject" => {
                let mut acks: Vec<&Row> = rows
                    .iter()
                    .filter(|r| r.kind == "ack" && r.subject.is_some())
                    .collect();
                acks.sort_by_key(|r| (r.acked_ns, r.stream_seq));
                let mut highest: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
                let mut per: BTreeMap<(&str, &str, &str), (u64, u64)> = BTreeMap::new();
                for r in &acks {
                    let key = (
                        r.stream.as_str(),
                        r.consumer.as_str(),
                        r.subject.as_deref().unwrap(),
                    );
                    let top = highest.entry(key).or_insert(i64::MIN);
                    let e = per.entry(key).or_default();
                    e.0 += 1;
                    e.1 += u64::from(r.stream_seq < *top);
                    *top = (*top).max(r.stream_seq);
                }
                assert_eq!(answer.len(), per.len(), "{name}");
                for a in &answer {
                    let (checked, out) =
                        per[&(text(a, "stream"), text(a, "consumer"), text(a, "subject"))];
                    assert_eq!(u(a, "checked"), checked, "{name} {a}");
                    assert_eq!(u(a, "out_of_order"), out, "{name} {a}");
                    assert!(out > 0, "{name}: batches were acked backwards: {a}");
                }
            }
            "frame_budget_per_hour" => {
                let mut per: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
                for r in &with_latency {
                    let hour = format!("{}:00", &minute(r.acked_ns)[..13]);
                    let e = per
                        .entry((r.stream.clone(), r.consumer.clone(), hour))
                        .or_default();
                    e.0 += 1;
                    e.1 += u64::from(r.ack_ns.unwrap() <= 16_000_000);
                }
                assert_eq!(answer.len(), per.len(), "{name}");
                for a in &answer {
                    let key = (
                        text(a, "stream").to_string(),
                        text(a, "consumer").to_string(),
                        text(a, "hour").to_string(),
                    );
                    let (n, within) = per[&key];
                    assert_eq!(u(a, "samples"), n, "{name} {a}");
                    assert_eq!(u(a, "within_budget"), within, "{name} {a}");
                    let share = within as f64 / n as f64;
                    assert!(close(f(a, "compliance"), share), "{name} {a}");
                    assert_eq!(a["meets_objective"].as_bool(), Some(share >= 0.99995));
                }
            }
            "spikes_by_cause" => {
                let frame = ackscope::archive::query::run(
                    &s.data,
                    "SELECT start_ns, consumer, top_cause FROM spikes",
                    i64::MIN,
                    i64::MAX,
                )
                .unwrap()
                .frame;
                let (start, consumer, cause) = (
                    ints(&frame, "start_ns"),
                    texts(&frame, "consumer"),
                    texts(&frame, "top_cause"),
                );
                let mut per: BTreeMap<(String, String), u64> = BTreeMap::new();
                for i in 0..frame.height() {
                    if consumer[i].as_deref() != Some("*") {
                        let day = minute(start[i].unwrap())[..10].to_string();
                        *per.entry((day, cause[i].clone().unwrap())).or_default() += 1;
                    }
                }
                assert!(!per.is_empty(), "{name}: srv-1's slow seconds spiked");
                assert_eq!(answer.len(), per.len(), "{name}: {answer:?}");
                for a in &answer {
                    let key = (text(a, "day").to_string(), text(a, "top_cause").to_string());
                    assert_eq!(u(a, "spikes"), per[&key], "{name} {a}");
                }
            }
            other => panic!("queries/{other}.sql has no check here: add one"),
        }
        checked.push(name);
    }
    assert_eq!(checked.len(), 7, "{checked:?}");

    // The windows table: each of srv-1's closed windows counts its acks, and its P99 is its
    // archived histogram's.
    let windows = ackscope::archive::query::run(
        &s.data,
        "SELECT start_ns, end_ns, acks, p99_us, ack_hdr FROM windows WHERE consumer = 'srv-1'",
        i64::MIN,
        i64::MAX,
    )
    .unwrap()
    .frame;
    assert!(windows.height() >= 10, "{windows}");
    let max_ns = ackscope::aggregate::config::RawAggregate::default()
        .validate()
        .unwrap()
        .max_latency_ns;
    let (start, end, acks) = (
        ints(&windows, "start_ns"),
        ints(&windows, "end_ns"),
        ints(&windows, "acks"),
    );
    let p99: Vec<f64> = windows
        .column("p99_us")
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect();
    let mut moved = 0;
    for i in 0..windows.height() {
        let (hist, bad) =
            ackscope::archive::windows::merged(&windows.slice(i as i64, 1), false, max_ns);
        assert_eq!(bad, 0);
        assert_eq!(hist.quantiles().p99, p99[i], "window {i}");
        let (from, to) = (start[i].unwrap(), end[i].unwrap());
        let n = rows
            .iter()
            .filter(|r| r.consumer == "srv-1" && r.kind == "ack")
            .filter(|r| r.acked_ns >= from && r.acked_ns < to)
            .count();
        moved += (acks[i].unwrap() - n as i64).abs();
    }
    assert!(
        moved <= 2 * late,
        "{moved} acks in other windows than their own, {late} late"
    );

    // The advisories of the NAKs and srv-1's consumer info polls (every 5 s) are tables too.
    let first = |sql: &str| -> i64 {
        let frame = ackscope::archive::query::run(&s.data, sql, i64::MIN, i64::MAX)
            .unwrap()
            .frame;
        frame
            .column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .extract::<i64>()
            .unwrap()
    };
    let naks = rows.iter().filter(|r| r.kind == "nak").count() as i64;
    let naked = first(
        "SELECT COUNT(*) AS n FROM advisories WHERE kind = 'msg_naked' AND consumer = 'srv-1'",
    );
    assert!(
        naked > 0 && naked <= naks,
        "{naked} NAK advisories for {naks} NAKs"
    );
    let polls = first(
        "SELECT COUNT(*) AS n FROM consumer_state WHERE consumer = 'srv-1' AND ack_wait_ns = 30000000000",
    );
    assert!(polls >= 2, "{polls} polls of srv-1");

    // A restart serves the consumer and the spike found before it again, and does not
    // archive the spike twice.
    let spike_rows = |data: &Path| {
        ackscope::archive::query::run(data, "SELECT * FROM spikes", i64::MIN, i64::MAX)
            .unwrap()
            .frame
            .height()
    };
    let archived = spike_rows(&s.data);
    let (mut child, addr) =
        crate::archive::serve_with(&s.server, &s.data, &s.config, "1s", SLO).await;
    let (_, consumers) = crate::support::http_get(&addr, "/api/v1/consumers")
        .await
        .unwrap();
    assert!(consumers.contains("srv-1"), "{consumers}");
    let (_, spikes) = crate::support::http_get(&addr, "/api/v1/spikes?from=-10m")
        .await
        .unwrap();
    let spikes: Vec<Value> = serde_json::from_str(&spikes).unwrap();
    assert!(
        spikes.iter().any(|s| s["consumer"] == "srv-1"),
        "{spikes:?}"
    );
    // A spike pass (every 5 s) and the one at the stop.
    tokio::time::sleep(Duration::from_secs(6)).await;
    signal(&child, "-TERM");
    child.wait().await.unwrap();
    assert_eq!(spike_rows(&s.data), archived);
}
