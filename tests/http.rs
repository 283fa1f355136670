//! The HTTP API: handler tests on `router(state)` with a collector fed directly, and an end to
//! end run of `ackscope serve` against a real nats-server, checked with promtool and Chromium.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use ackscope::api::{Cause, ConsumerSummary, ErrorBody, Report, Spike};
use ackscope::collector::Collector;
use ackscope::config::Config;
use ackscope::http::{AppState, Readiness, router};
use ackscope::model::Seen;
use ackscope::telemetry::ClientEvents;

use crate::support::{Generation, NatsServer};

const MS: u64 = 1_000_000;
const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A collector holding `n` samples of GAME/srv-1 acked over the last seconds: 98% at 2 ms,
/// 2% at 40 ms, all acked 15 ms into a 16 ms frame.
fn test_state(n: u64) -> AppState {
    let mut c = Collector::new(Config::default());
    let now = Seen::now();
    let frame = 16 * MS as i64;
    // Align the first ack to phase 15 ms, a few seconds ago.
    let start = (now.wall_ns - 5_000_000_000).div_euclid(frame) * frame + 15 * MS as i64;
    for i in 0..n {
        let latency = if i % 50 == 0 { 40 * MS } else { 2 * MS };
        let acked = start + i as i64 * frame;
        let delivered = Seen {
            mono_ns: now.mono_ns + i * 16 * MS,
            wall_ns: acked - latency as i64,
        };
        let acked = Seen {
            mono_ns: delivered.mono_ns + latency,
            wall_ns: acked,
        };
        let reply = format!(
            "$JS.ACK.GAME.srv-1.1.{}.{}.{}.0",
            i + 1,
            i + 1,
            acked.wall_ns - 50 * MS as i64
        );
        c.on_delivery(
            "game.srv-1.state",
            Some(&reply),
            [("traceparent", TP)],
            delivered,
        );
        c.on_ack(&reply, None, b"+ACK", acked);
    }
    AppState::new(
        Arc::new(Mutex::new(c)),
        Arc::new(Readiness::new(Arc::new(ClientEvents::default()))),
    )
}

async fn get(state: &AppState, uri: &str) -> (StatusCode, String, String) {
    let response = router(state.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

async fn get_json(state: &AppState, uri: &str) -> (StatusCode, Value) {
    get_typed(state, uri).await
}

/// A JSON answer read back as the API's own type.
async fn get_typed<T: serde::de::DeserializeOwned>(state: &AppState, uri: &str) -> (StatusCode, T) {
    let (status, _, body) = get(state, uri).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{uri}: {e}: {body}")),
    )
}

#[tokio::test]
async fn health_and_readiness() {
    let state = test_state(0);
    assert_eq!(
        get_json(&state, "/healthz").await,
        (StatusCode::OK, serde_json::json!({"status": "ok"}))
    );
    let (status, body) = get_json(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body["reason"].as_str().unwrap().contains("subscrib"));
    // Subscribed, but readiness follows the NATS client's own state, and there is none here
    // (`outage::` has the way back to ready against a real server).
    state.readiness.set_subscribed();
    let (status, body) = get_json(&state, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("disconnected from NATS")
    );
}

/// `GET uri` with `headers`: the status and the response's headers.
async fn get_with(
    state: &AppState,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router(state.clone())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    (response.status(), response.headers().clone())
}

#[tokio::test]
async fn queries_wait_for_a_slot_then_get_a_429_and_pictures_are_bounded() {
    let raw = ackscope::config::RawConfig::from_toml(
        "[http]\nmax_concurrent_queries = 1\nquery_wait = \"200ms\"",
    )
    .unwrap();
    let state = test_state(10).with_access(raw.validate().unwrap().http);
    // Something else holds the one slot: queries wait, then are turned away, counted.
    let held = state.queries.clone().acquire_owned().await.unwrap();
    for uri in [
        "/api/v1/report",
        "/api/v1/heatmap/phase.svg",
        "/api/v1/consumers",
    ] {
        let (status, headers) = get_with(&state, uri, &[]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{uri}");
        assert_eq!(headers["retry-after"], "1");
    }
    // Cheap routes do not queue.
    let (status, _, metrics) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        metrics.contains("ackscope_http_queries_refused_total 3\n"),
        "{metrics}"
    );
    drop(held);
    assert_eq!(get(&state, "/api/v1/report").await.0, StatusCode::OK);
    // One postmortem export at a time: another meanwhile is turned away at once; then it
    // goes (a bundle with its sample tables empty: this state keeps no archive).
    let export = state.exports.clone().try_acquire_owned().unwrap();
    let (status, headers) = get_with(&state, "/api/v1/export", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
    drop(export);
    let (status, headers) = get_with(&state, "/api/v1/export", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "application/gzip");

    // 2,000 columns × 1,000 latency rows would be ~400 MB of SVG: refused by name.
    let mut c = Config::default();
    c.aggregate.latency_rows = 1_000;
    let state = AppState::new(
        Arc::new(Mutex::new(Collector::new(c))),
        Arc::new(Readiness::new(Arc::new(ClientEvents::default()))),
    );
    let (status, body) = get_json(&state, "/api/v1/heatmap/time.svg?phase_bins=2000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["parameter"], "phase_bins");
    let (status, _, _) = get(&state, "/api/v1/heatmap/time.svg?phase_bins=200").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn tokens_hosts_and_the_dashboard_policy() {
    let mut raw = ackscope::config::RawConfig::from_toml(
        "[http]\nread_token = \"read-token-0123456789\"\nadmin_token = \"admin-token-0123456789\"",
    )
    .unwrap();
    raw.http.listen = "127.0.0.1:9464".into();
    let access = raw.validate().unwrap().http;
    let state = test_state(10).with_access(access);
    let host = ("host", "127.0.0.1:9464");
    let read = ("authorization", "Bearer read-token-0123456789");
    let admin = ("authorization", "Bearer admin-token-0123456789");
    let wrong = ("authorization", "Bearer read-token-0123456788");
    for (uri, headers, status) in [
        // Open routes and the page itself need no token.
        ("/healthz", vec![host], StatusCode::OK),
        ("/readyz", vec![host], StatusCode::SERVICE_UNAVAILABLE),
        ("/metrics", vec![host], StatusCode::OK),
        ("/", vec![host], StatusCode::OK),
        // Data does.
        ("/api/v1/report", vec![host], StatusCode::UNAUTHORIZED),
        (
            "/api/v1/report",
            vec![host, wrong],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "/api/v1/heatmap/phase.svg",
            vec![host],
            StatusCode::UNAUTHORIZED,
        ),
        ("/api/v1/export", vec![host], StatusCode::UNAUTHORIZED),
        ("/api/v1/report", vec![host, read], StatusCode::OK),
        ("/api/v1/consumers", vec![host, admin], StatusCode::OK),
        // A name rebound to ackscope's address is refused, token or not.
        (
            "/api/v1/report",
            vec![("host", "evil.example:9464"), read],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "/healthz",
            vec![("host", "evil.example")],
            StatusCode::MISDIRECTED_REQUEST,
        ),
        (
            "/api/v1/report",
            vec![("host", "LOCALHOST:9464"), read],
            StatusCode::OK,
        ),
    ] {
        let (got, response) = get_with(&state, uri, &headers).await;
        assert_eq!(got, status, "{uri} {headers:?}");
        assert_eq!(response["x-content-type-options"], "nosniff", "{uri}");
        if got == StatusCode::UNAUTHORIZED {
            assert!(response.contains_key("www-authenticate"));
        }
    }
    let (_, page) = get_with(&state, "/", &[host]).await;
    let csp = page["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // Without tokens configured everything is open, as before.
    let (status, _) = get_with(&test_state(10), "/api/v1/report", &[]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn consumers_and_report_carry_the_injected_latencies() {
    let state = test_state(200);
    let (status, list) = get_typed::<Vec<ConsumerSummary>>(&state, "/api/v1/consumers").await;
    assert_eq!(status, StatusCode::OK);
    let c = &list[0];
    assert_eq!((c.stream.as_str(), c.consumer.as_str()), ("GAME", "srv-1"));
    assert_eq!(c.acks, 200);
    assert_eq!(c.p50_us, 2_000.0);
    assert_eq!(c.p99_us, 40_000.0);
    assert!(c.last_seen.ends_with('Z'));

    // From a minute ago: by default the range begins at the first retained ack, and the first
    // sample's delivery (40 ms before it) may fall in the second before.
    let uri = "/api/v1/report?stream=GAME&consumer=srv-1&from=-1m";
    let (status, report) = get_typed::<Report>(&state, uri).await;
    assert_eq!(status, StatusCode::OK, "{report:?}");
    assert_eq!(report.counts.acks, 200, "{report:?}");
    assert_eq!(report.counts.deliveries, 200);
    let p99 = report.latency_us.p99;
    assert!((p99 - 40_000.0).abs() <= 40.0, "{p99}");
    let p50 = report.latency_us.p50;
    assert!((p50 - 2_000.0).abs() <= 2.0, "{p50}");
    assert_eq!(report.tick.period_us, 16_000.0);
    assert_eq!(report.tick.phase_bins, 32);
    // 200 acks 16 ms apart: the frame clock is confirmed.
    assert_eq!(report.tick.detected_period_us, Some(16_000.0));
    assert_eq!(report.spikes, []);
    assert_eq!(report.ordering.checked, 200);
    assert_eq!(report.ordering.out_of_order, 0);
    assert!(report.warnings.is_empty(), "{report:?}");
    let phases = &report.phases;
    assert_eq!(phases.len(), 32);
    // 15 ms into a 16 ms frame is the 31st of 32 intervals of 500 µs: every ack is there.
    assert_eq!(phases[30].count, 200);
    assert_eq!((phases[30].from_us, phases[30].to_us), (15_000.0, 15_500.0));
    assert_eq!(phases[30].p99_us, 40_000.0);

    // Re-binned at another tick, the same acks spread over the frame.
    let (_, other) = get_typed::<Report>(&state, "/api/v1/report?tick=20ms&phase_bins=10").await;
    let spread = other.phases.iter().filter(|p| p.count > 0).count();
    assert!(spread >= 5, "{other:?}");
    assert_eq!(other.tick.period_us, 20_000.0);
    // No period near 20 ms explains acks 16 ms apart.
    assert_eq!(other.tick.detected_period_us, None, "{other:?}");

    let (_, e2e) = get_typed::<Report>(&state, "/api/v1/report?latency=e2e").await;
    assert_eq!((e2e.latency_us.p50 / 1_000.0).round(), 50.0);
}

#[tokio::test]
async fn bad_requests_name_the_parameter_and_unknown_names_are_404() {
    let state = test_state(10);
    for (uri, param) in [
        ("/api/v1/report?latency=p99", "latency"),
        ("/api/v1/report?tick=0ms", "tick"),
        ("/api/v1/report?from=yesterday", "from"),
        ("/api/v1/report?phase_bins=-3", "phase_bins"),
        ("/api/v1/report?colour=red", "colour"),
        ("/api/v1/heatmap/phase.svg?scale=cubic", "scale"),
        ("/api/v1/heatmap/time.svg?width=wide", "width"),
        // Once an overflow: a 500 in debug builds, a nonsense axis in release.
        ("/api/v1/heatmap/time.svg?from=-5000000h", "from"),
        ("/api/v1/report?to=9999-01-01T00:00:00Z", "to"),
        ("/api/v1/consumers?stream=GAME", "stream"),
    ] {
        let (status, body) = get_json(&state, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(body["parameter"], param, "{uri}: {body}");
        assert!(body["error"].as_str().unwrap().contains(param));
    }
    let (status, body) = get_json(&state, "/api/v1/report?stream=GAME&consumer=nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = get_json(&state, "/api/v1/heatmap/phase.svg?stream=NOPE").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A range with no retained samples says so.
    let (status, body) = get_json(
        &state,
        "/api/v1/report?from=2020-01-01T00:00:00Z&to=2020-01-02T00:00:00Z",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no retained samples"),
        "{body}"
    );
    assert_eq!(body["counts"]["acks"], 0);
}

/// The `<rect>`s inside the heatmap's cell group, parsed as XML.
fn svg_cells(svg: &str) -> Vec<(u32, String)> {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is well-formed XML");
    let group = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("cells"))
        .expect("a cell group");
    group
        .children()
        .filter(|n| n.has_tag_name("rect"))
        .map(|r| {
            let title = r
                .children()
                .find(|c| c.has_tag_name("title"))
                .expect("a tooltip");
            let text = title.text().unwrap().to_string();
            // "lo–hi · phase a–b · count · …"
            let count = text.split(" · ").nth(2).unwrap().parse().unwrap();
            (count, text)
        })
        .collect()
}

#[tokio::test]
async fn heatmaps_are_svg_with_one_cell_per_non_empty_bin() {
    let state = test_state(200);
    let (status, content_type, svg) = get(
        &state,
        "/api/v1/heatmap/phase.svg?stream=GAME&consumer=srv-1",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "image/svg+xml");
    let cells = svg_cells(&svg);
    // Two latencies, one phase bin (15.0–15.1 ms of 160 bins): two cells, 196 + 4 acks.
    assert_eq!(cells.len(), 2, "{cells:?}");
    let mut counts: Vec<u32> = cells.iter().map(|c| c.0).collect();
    counts.sort();
    assert_eq!(counts, vec![4, 196]);
    assert!(
        cells.iter().all(|c| c.1.contains("phase 15ms–15.1ms")),
        "{cells:?}"
    );
    assert!(svg.contains("class=\"p99\"") && svg.contains("class=\"frame-end\""));
    assert!(svg.len() < 40_000, "{} bytes", svg.len());

    let (status, _, time_svg) = get(
        &state,
        "/api/v1/heatmap/time.svg?phase_bins=60&scale=linear",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let time_cells = svg_cells(&time_svg);
    assert_eq!(time_cells.iter().map(|c| c.0).sum::<u32>(), 200);
    assert!(time_cells.len() > 2);
}

fn promtool() -> std::path::PathBuf {
    let path = std::path::PathBuf::from("/usr/bin/promtool");
    assert!(
        path.is_file(),
        "promtool not found: run ./scripts/test.sh, which installs Debian's prometheus"
    );
    path
}

/// Runs `promtool check metrics` on `text`; returns its complaints.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn metrics_pass_promtool() {
    let state = test_state(100);
    let (status, content_type, text) = get(&state, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"));
    assert!(text.contains("ackscope_ack_latency_seconds_bucket{stream=\"GAME\",consumer=\"srv-1\",le=\"0.002\"} 98\n"), "{text}");
    assert!(
        text.contains(
            "ackscope_ack_latency_seconds_count{stream=\"GAME\",consumer=\"srv-1\"} 100\n"
        )
    );
    assert!(text.contains("ackscope_samples_joined_total 100\n"));
    let (ok, output) = promtool_check(&text);
    assert!(ok, "promtool: {output}");
}

#[tokio::test]
async fn dashboard_is_self_contained() {
    let state = test_state(0);
    let (status, content_type, html) = get(&state, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"));
    assert!(html.contains("/api/v1/consumers") && html.contains("/api/v1/heatmap/phase.svg"));
    for external in ["http://", "https://", "//cdn"] {
        assert!(
            !html.contains(external),
            "the page loads nothing from outside: {external}"
        );
    }
}

/// The status of a GET, or `None` when nothing answers.
pub async fn http_get_status(addr: &str, path: &str) -> Option<u16> {
    if tokio::net::TcpStream::connect(addr).await.is_err() {
        return None;
    }
    tokio::time::timeout(Duration::from_secs(2), http_get(addr, path))
        .await
        .ok()
        .map(|(status, _)| status)
}

/// A plain HTTP/1.1 GET against a running server.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    // Undo chunked transfer encoding if present.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if size == 0 {
                break;
            }
            out.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_end_to_end_with_a_browser() {
    let _loading = crate::support::CPU.lock().await;
    use async_nats::jetstream::{self, consumer};
    use futures::StreamExt;

    let server = NatsServer::start(Generation::Current);
    let addr = crate::support::free_addr();
    let data = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackscope"))
        .args(["serve", "--nats", &server.url(), "--listen", &addr])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        if http_get_status(&addr, "/readyz").await == Some(200) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve was not ready within 15s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Real JetStream traffic: srv-1 acks after 8 ms, srv-2 after 2 ms.
    let client = server.client().await;
    let js = jetstream::new(client.clone());
    let stream = crate::support::game_stream(&client).await;
    let mut workers = Vec::new();
    for (name, delay_ms) in [("srv-1", 8u64), ("srv-2", 2)] {
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.into()),
                filter_subject: format!("game.{name}.>"),
                ack_policy: consumer::AckPolicy::Explicit,
                max_ack_pending: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        workers.push(tokio::spawn(async move {
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(1)
                .messages()
                .await
                .unwrap();
            for _ in 0..40 {
                let msg = messages.next().await.unwrap().unwrap();
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                msg.ack().await.unwrap();
            }
        }));
    }
    for i in 0..40 {
        for name in ["srv-1", "srv-2"] {
            js.publish(format!("game.{name}.state"), format!("{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (status, body) = http_get(&addr, "/api/v1/report?stream=GAME&consumer=srv-1").await;
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["counts"]["acks"], 40, "{report}");
    let p50 = report["latency_us"]["p50"].as_f64().unwrap();
    let p99 = report["latency_us"]["p99"].as_f64().unwrap();
    assert!((8_000.0..11_000.0).contains(&p50), "srv-1 p50 {p50}");
    assert!((8_000.0..30_000.0).contains(&p99), "srv-1 p99 {p99}");
    let (_, body) = http_get(&addr, "/api/v1/report?stream=GAME&consumer=srv-2").await;
    let other: Value = serde_json::from_str(&body).unwrap();
    assert!(
        other["latency_us"]["p50"].as_f64().unwrap() < 5_000.0,
        "{other}"
    );

    let (status, svg) = http_get(
        &addr,
        "/api/v1/heatmap/phase.svg?stream=GAME&consumer=srv-1",
    )
    .await;
    assert_eq!(status, 200);
    let cells = svg_cells(&svg);
    assert_eq!(
        cells.iter().map(|c| c.0).sum::<u32>(),
        40,
        "every ack is in one cell"
    );

    let (status, metrics) = http_get(&addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("ackscope_ready 1\n"));
    let (ok, output) = promtool_check(&metrics);
    assert!(ok, "promtool: {output}");

    // The dashboard in a real browser: rows for both consumers, srv-1 selected by the URL,
    // its heatmaps inlined and its per-phase table filled.
    let artifacts = artifacts();
    let url = format!("http://{addr}/#stream=GAME&consumer=srv-1");
    let dom = browser(&url, "--dump-dom");
    std::fs::write(artifacts.join("dashboard.html"), &dom).unwrap();
    assert!(
        dom.contains("data-consumer=\"srv-1\"") && dom.contains("data-consumer=\"srv-2\""),
        "rows: {dom}"
    );
    assert!(
        dom.contains("<tr data-stream=\"GAME\" data-consumer=\"srv-1\" class=\"selected\">"),
        "selection"
    );
    // Each row says whose frame its phases are in (too few acks here to infer one).
    assert!(
        dom.contains("<td title=\"frame start 1970-01-01T00:00:00.000000000Z, confidence 0\">configured 16000000ns</td>"),
        "frame clock column: {dom}"
    );
    let phase_map = &dom[dom.find("id=\"phase-map\"").expect("phase map")..];
    assert!(
        phase_map.contains("<svg") && phase_map.contains("class=\"cells\""),
        "heatmap inlined"
    );
    let time_map = &dom[dom.find("id=\"time-map\"").expect("time map")..];
    assert!(time_map.contains("<svg"));
    // Each picture has its "SVG" export: the picture shown, as a file.
    for map in [phase_map, time_map] {
        let link = &map[map.find("class=\"export\"").expect("an SVG link")..];
        assert!(
            link.contains("href=\"blob:") && link.contains(".svg\""),
            "{}",
            &link[..200]
        );
    }
    // Wall-clock labels on the time axis, the frame budget on both.
    assert!(time_map.contains("time of day (UTC)"));
    assert!(phase_map.contains("class=\"budget\""));
    let phases = &dom[dom.find("id=\"phases\"").unwrap()..];
    assert!(
        phases.matches("<tr>").count() >= 32,
        "per-phase table filled"
    );
    let shot = artifacts.join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    browser(&url, &format!("--screenshot={}", shot.display()));
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "screenshot written"
    );

    let _ = child.kill().await;
}

/// Serves `state` on a free port; the dashboard's URL that opens spike `s` (of GAME/srv-1).
async fn spike_view(state: AppState, s: &Value) -> String {
    let key = format!(
        "{} GAME/srv-1 {}",
        s["start"].as_str().unwrap(),
        s["latency"].as_str().unwrap()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let encoded: String = key
        .bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("http://{addr}/#spike={encoded}")
}

/// Where browser tests leave their DOM dumps and screenshots.
fn artifacts() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url` with one extra flag (`--dump-dom` or `--screenshot=…`), with
/// six seconds of virtual time for the page's scripts; returns what it printed.
fn browser(url: &str, flag: &str) -> String {
    let chromium = std::path::PathBuf::from("/usr/bin/chromium");
    assert!(
        chromium.is_file(),
        "chromium not found: run ./scripts/test.sh, which installs it"
    );
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1100",
            "--virtual-time-budget=6000",
            &format!("--user-data-dir={}", profile.path().display()),
            flag,
            url,
        ])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap()
}

/// The sum of the cell counts in the tooltips of the heatmap inside `html` (a DOM fragment)
/// whose phase range starts with `phase` ("" for every cell).
fn tooltip_counts(html: &str, phase: &str) -> u32 {
    html.split("<title>")
        .skip(1)
        .filter_map(|t| t.split("</title>").next())
        .filter_map(|t| {
            let fields: Vec<&str> = t.split(" · ").collect();
            let at = fields.get(1)?.strip_prefix("phase ")?.starts_with(phase);
            Some(if at {
                fields.get(2)?.parse::<u32>().ok()?
            } else {
                0
            })
        })
        .sum()
}

/// 30 seconds of GAME/srv-1 acks, 50 a second at 4 ms into the frame with 2 ms latency, except
/// seconds 20–22, when acks are held back to 13 ms into the frame (11 ms latency).
fn preempted_state() -> AppState {
    played_state(|_| (13 * MS, 11 * MS))
}

/// As [`preempted_state`], but in seconds 20-22 the acks come 11 ms late at every phase of the
/// frame: a spike nothing explains.
fn slowed_state() -> AppState {
    played_state(|k| ((k as u64 * 5) % 16 * MS, 11 * MS))
}

/// srv-1 acking 50 messages a second for 30 s, 2 ms after delivery at 4 ms into the frame;
/// in seconds 20-22 the k-th ack of a second comes at `held(k)` = (phase, latency).
fn played_state(held: impl Fn(i64) -> (u64, u64)) -> AppState {
    // Phases as configured: the frames of these acks start on multiples of 16 ms.
    let config = ackscope::config::RawConfig::from_toml("[clocks]\ninfer = false")
        .unwrap()
        .validate()
        .unwrap();
    let mut c = Collector::new(config);
    let now = Seen::now();
    let frame = 16 * MS as i64;
    let start = (now.wall_ns - 40_000_000_000).div_euclid(1_000_000_000) * 1_000_000_000;
    let mut seq = 0u64;
    for second in 0..30i64 {
        for k in 0..50i64 {
            seq += 1;
            let frame_start =
                (start + second * 1_000_000_000 + k * 19 * MS as i64).div_euclid(frame) * frame;
            let (phase, latency) = if (20..23).contains(&second) {
                held(k)
            } else {
                (4 * MS, 2 * MS)
            };
            let acked_wall = frame_start + phase as i64;
            // Only differences of the monotonic clock matter.
            let mono = 1_000_000_000_000 + (acked_wall - start + 1_000_000_000) as u64;
            let delivered = Seen {
                mono_ns: mono - latency,
                wall_ns: acked_wall - latency as i64,
            };
            let acked = Seen {
                mono_ns: mono,
                wall_ns: acked_wall,
            };
            let reply = format!(
                "$JS.ACK.GAME.srv-1.1.{seq}.{seq}.{}.0",
                delivered.wall_ns - MS as i64
            );
            let trace = format!("00-{:032x}-00f067aa0ba902b7-01", seq);
            c.on_delivery(
                "game.srv-1.state",
                Some(&reply),
                [("traceparent", trace.as_str())],
                delivered,
            );
            c.on_ack(&reply, None, b"+ACK", acked);
        }
    }
    c.tick(now);
    AppState::new(
        Arc::new(Mutex::new(c)),
        Arc::new(Readiness::new(Arc::new(ClientEvents::default()))),
    )
}

#[tokio::test]
async fn spikes_are_found_and_attributed() {
    let state = preempted_state();
    let uri = "/api/v1/spikes?stream=GAME&consumer=srv-1";
    let (status, spikes) = get_typed::<Vec<Spike>>(&state, uri).await;
    assert_eq!(status, StatusCode::OK, "{spikes:?}");
    assert_eq!(spikes.len(), 1, "{spikes:#?}");
    let s = &spikes[0];
    assert_eq!((s.stream.as_str(), s.consumer.as_str()), ("GAME", "srv-1"));
    assert!((s.p99_us - 11_000.0).abs() < 100.0, "{s:?}");
    assert!((s.baseline_p99_us - 2_000.0).abs() < 20.0, "{s:?}");
    let top = &s.causes[0];
    assert_eq!(top.cause, Cause::ThreadPreemption, "{s:#?}");
    assert!(top.confidence >= 0.5);
    let band = (
        top.evidence["band_from_ms"].as_f64().unwrap(),
        top.evidence["band_to_ms"].as_f64().unwrap(),
    );
    assert!(
        band.0 <= 13.0 && 13.0 < band.1,
        "the band holds the held-back acks: {top:?}"
    );
    assert_eq!(top.exemplar_trace_ids.len(), 5);
    // The report carries the same spikes; all consumers together spike too.
    let (_, report) = get_typed::<Report>(&state, "/api/v1/report").await;
    let all: Vec<&str> = report.spikes.iter().map(|s| s.consumer.as_str()).collect();
    assert_eq!(all, vec!["srv-1", "*"], "{report:?}");
    let (status, body) = get_typed::<ErrorBody>(&state, "/api/v1/spikes?stream=NOPE").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_linked_by_url_shows_its_causes_and_heatmaps_beside_the_baseline() {
    let state = preempted_state();
    let (_, spikes) = get_json(&state, "/api/v1/spikes?stream=GAME&consumer=srv-1").await;
    let s = &spikes[0];
    assert!(
        s["causes"][0]["summary"]
            .as_str()
            .unwrap()
            .contains("of slow acks"),
        "{s}"
    );
    let url = spike_view(state, s).await;
    let shot = artifacts().join("dashboard-spike.png");
    let dom = tokio::task::spawn_blocking(move || {
        browser(&url, &format!("--screenshot={}", shot.display()));
        browser(&url, "--dump-dom")
    })
    .await
    .unwrap();
    std::fs::write(artifacts().join("dashboard-spike.html"), &dom).unwrap();
    let detail = &dom[dom.find("id=\"spike-detail\"").expect("spike detail")..];
    assert!(
        !detail.starts_with("id=\"spike-detail\" hidden"),
        "shown: {detail}"
    );
    let causes = &detail[..detail.find("id=\"spike-map\"").unwrap()];
    assert!(
        causes.contains("<b>thread_preemption") && causes.contains("of slow acks vs"),
        "causes in words: {causes}"
    );
    assert!(
        detail.contains("<button id=\"spike-export\" type=\"button\">Export postmortem</button>"),
        "{detail}"
    );
    // 3 seconds of 50 held-back acks (13 ms into the frame) beside the 20 seconds of 50 at
    // 4 ms before them.
    let during = &detail
        [detail.find("id=\"spike-map\"").unwrap()..detail.find("id=\"baseline-map\"").unwrap()];
    let before = &detail[detail.find("id=\"baseline-map\"").unwrap()..];
    assert!(
        during.contains("<svg") && before.contains("<svg"),
        "{detail}"
    );
    // The windows are whole seconds of ack time; a frame can straddle a second, so one ack
    // either side may fall in the next window.
    assert_eq!(tooltip_counts(during, "13ms"), 150, "{during}");
    assert!(
        (150..=152).contains(&tooltip_counts(during, "")),
        "{during}"
    );
    assert_eq!(tooltip_counts(before, "13ms"), 0, "{before}");
    assert!(
        (998..=1_002).contains(&tooltip_counts(before, "")),
        "{before}"
    );
}

/// An alert's link opens the dashboard on its incident: firing alerts at the top, the incident
/// selected with its members listed, each member's spike one click away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firing_alerts_come_first_and_an_alert_link_opens_its_incident() {
    use ackscope::analyze::alerts::{Finding, Severity, config::default_rules};
    let state = preempted_state();
    let (status, incidents) = get_json(&state, "/api/v1/incidents").await;
    assert_eq!(status, StatusCode::OK, "{incidents}");
    let incidents = incidents.as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    assert_eq!(incident["kind"], "consumer");
    assert_eq!(incident["top_cause"], "thread_preemption", "{incident:#}");
    let id = incident["id"].as_str().unwrap().to_string();
    let members = incident["members"].as_array().unwrap().len();
    assert!(
        members >= 2,
        "srv-1's spike and all consumers': {incident:#}"
    );
    {
        let mut a = ackscope::collector::lock(&state.alerts);
        let finding = Finding {
            rule: "AckP99Regression".into(),
            stream: "GAME".into(),
            consumer: "srv-1".into(),
            extra: Default::default(),
            severity: Severity::Warning,
            cause: ackscope::analyze::causes::Cause::ThreadPreemption,
            value: 11_000.0,
            annotations: [
                (
                    "summary".to_string(),
                    "ack P99 11.0 ms on GAME/srv-1".to_string(),
                ),
                ("incident".to_string(), id.clone()),
            ]
            .into(),
        };
        let now = Seen::now().wall_ns;
        let rules = default_rules();
        a.book.evaluate(
            &rules,
            vec![finding.clone()],
            now - 10_000_000_000,
            60_000_000_000,
        );
        let sent = a.book.evaluate(&rules, vec![finding], now, 60_000_000_000);
        assert_eq!(sent.len(), 1, "fires after its 5 s");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    let encoded: String = id
        .bytes()
        .map(|b| match b {
            b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url = format!("http://{addr}/?stream=GAME&consumer=srv-1&incident={encoded}");
    let dom = tokio::task::spawn_blocking(move || browser(&url, "--dump-dom"))
        .await
        .unwrap();
    std::fs::write(artifacts().join("dashboard-incident.html"), &dom).unwrap();
    let alerts = &dom[dom.find("id=\"alerts\"").expect("alerts table")..];
    let first_row = &alerts[..alerts.find("</tr>").unwrap()];
    assert!(
        first_row.contains("class=\"alert firing\"")
            && first_row.contains("<td>AckP99Regression</td>")
            && first_row.contains("<td>GAME/srv-1</td>")
            && first_row.contains("<td>thread_preemption</td>"),
        "{first_row}"
    );
    assert!(
        dom.find("id=\"alerts\"").unwrap() < dom.find("id=\"consumers\"").unwrap(),
        "alerts above the consumers"
    );
    let table = &dom[dom.find("id=\"incidents\"").expect("incidents table")..];
    let table = &table[..table.find("</tbody>").unwrap()];
    assert!(
        table.contains("class=\"incident selected\""),
        "the linked incident is open: {table}"
    );
    assert!(
        table.contains("<td>thread_preemption 1.00</td>")
            || table.contains("<td>thread_preemption 0."),
        "{table}"
    );
    assert_eq!(table.matches("class=\"member").count(), members, "{table}");
    assert!(table.contains("show the spike"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_nothing_explains_says_so_in_words() {
    let state = slowed_state();
    let (_, spikes) = get_json(&state, "/api/v1/spikes?stream=GAME&consumer=srv-1").await;
    let s = &spikes[0];
    let unknown = &s["causes"][0];
    assert_eq!(unknown["cause"], "unknown", "{s}");
    assert_eq!(unknown["confidence"], 0.0);
    // The evidence quotes the spike's own baseline.
    let quoted_us = unknown["evidence"]["slow_threshold_ms"].as_f64().unwrap() * 1_000.0;
    assert!(
        (quoted_us - s["baseline_p99_us"].as_f64().unwrap()).abs() <= 5.0,
        "{s}"
    );
    let url = spike_view(state, s).await;
    let dom = tokio::task::spawn_blocking(move || browser(&url, "--dump-dom"))
        .await
        .unwrap();
    std::fs::write(artifacts().join("dashboard-no-cause.html"), &dom).unwrap();
    let detail = &dom[dom.find("id=\"spike-detail\"").expect("spike detail")..];
    let causes = &detail[..detail.find("id=\"spike-map\"").unwrap()];
    assert!(
        causes.contains("<b>no cause found</b>: no cause found for the ")
            && causes.contains(" samples above the baseline P99 of 2"),
        "in words, with no confidence: {causes}"
    );
    assert!(!causes.contains("unknown 1.00") && !causes.contains("unknown 0.00"));
    // Its incident says so too.
    let table = &dom[dom.find("id=\"incidents\"").unwrap()..];
    assert!(table.contains("no cause found"), "{table}");
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

/// The contract's field names, read as plain JSON: the typed answers must not rename one.
#[tokio::test]
async fn answers_carry_the_contracts_field_names() {
    let state = preempted_state();
    let (_, report) = get_json(&state, "/api/v1/report").await;
    #[rustfmt::skip]
    let expected = [
        (&report, vec!["counts", "latency", "latency_us", "ordering", "phases", "range", "spikes", "tick", "warnings"]),
        (&report["range"], vec!["from", "to"]),
        (&report["tick"], vec!["clocks", "detected_period_us", "epoch", "period_us", "phase_bins", "phase_of", "source"]),
        (&report["tick"]["clocks"][0], vec!["confidence", "consumer", "domain", "epoch", "period", "period_ns", "since", "source", "stream"]),
        (&report["counts"], vec!["acks", "deliveries", "expired_deliveries", "max_deliveries", "naks", "progress", "redeliveries", "terms", "unmatched_acks"]),
        (&report["latency_us"], vec!["count", "max", "mean", "p50", "p90", "p99", "p999"]),
        (&report["phases"][0], vec!["count", "from_us", "p50_us", "p99_us", "to_us"]),
        (&report["spikes"][0], vec!["baseline_p99_us", "causes", "consumer", "end", "latency", "p99_us", "start", "stream", "windows"]),
        (&report["spikes"][0]["causes"][0], vec!["cause", "caused_by", "confidence", "evidence", "exemplar_trace_ids", "summary"]),
        (&report["ordering"], vec!["checked", "out_of_order", "rate"]),
    ];
    for (object, names) in expected {
        assert_eq!(keys(object), names, "{object}");
    }
    let (_, consumers) = get_json(&state, "/api/v1/consumers").await;
    #[rustfmt::skip]
    assert_eq!(
        keys(&consumers[0]),
        ["ack_pending", "ack_wait_us", "acks", "advisories", "clock", "consumer", "deliveries", "domain", "expired_deliveries", "last_seen", "max_ack_pending", "max_deliveries", "naks", "num_pending", "p50_us", "p99_us", "progress", "recent_acks_per_s", "recent_window_s", "redeliveries", "stream", "terms", "unmatched_acks"]
    );
    let (_, error) = get_json(&state, "/api/v1/report?latency=fast").await;
    assert_eq!(keys(&error), ["error", "parameter"]);
    let (_, error) = get_json(&state, "/api/v1/report?stream=NOPE").await;
    assert_eq!(keys(&error), ["error"]);
}
