//! OTLP export end to end: `serve` exports to a receiver inside the test (axum routes decoding
//! `ExportMetricsServiceRequest` and `ExportTraceServiceRequest` with opentelemetry-proto)
//! while the simulator runs a game fleet with one server pausing. The receiver refuses
//! metrics until the simulator's first 3 s are over: export failures are counted and
//! retried, and the taps go on meanwhile. The pause is a P99 spike, whose span links to the
//! slow-ack spans of its exemplars.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use ackscope::config::RawConfig;
use ackscope::sim::{self, scenario::RawScenario};

use crate::support::{Generation, NatsServer, free_addr, http_get, metric, poll};

/// What the receiver got, and until when it refuses (503) metrics.
struct Receiver {
    refuse_until: Instant,
    refused: usize,
    metrics: Vec<ExportMetricsServiceRequest>,
    traces: Vec<ExportTraceServiceRequest>,
}

type Shared = Arc<Mutex<Receiver>>;

async fn metrics_route(State(r): State<Shared>, body: Bytes) -> StatusCode {
    let mut r = r.lock().unwrap();
    if Instant::now() < r.refuse_until {
        r.refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let request = ExportMetricsServiceRequest::decode(body).expect("an OTLP metrics request");
    r.metrics.push(request);
    StatusCode::OK
}

/// Spans are never refused: a batch refused past its retries is lost, and every span sent
/// must arrive.
async fn traces_route(State(r): State<Shared>, body: Bytes) -> StatusCode {
    let mut r = r.lock().unwrap();
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP traces request");
    r.traces.push(request);
    StatusCode::OK
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// srv-2 pauses 60 ms every second from 7 s to 20 s: its acks are slower than a frame, and its
/// P99 spikes against the 7 s before.
const SCENARIO: &str = r#"
name = "otlp"
seed = 3
duration = "25s"

[fleet]
servers = 4
tick = "16ms"
events_per_frame = 3

[jetstream]
ack_wait = "2s"
max_ack_pending = 200

[[faults]]
kind = "gc_pause"
start = "7s"
duration = "13s"
servers = [2]
pause = "60ms"
every = "1s"
"#;

/// Per consumer: the count of the latest exported ack latency histogram point.
fn exported_counts(requests: &[ExportMetricsServiceRequest]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for m in requests
        .iter()
        .flat_map(|r| &r.resource_metrics)
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "ackscope.ack.latency")
    {
        let Some(metric::Data::ExponentialHistogram(h)) = &m.data else {
            panic!(
                "{} is not a base-2 exponential histogram: {:?}",
                m.name, m.data
            );
        };
        for p in &h.data_points {
            let consumer = attr_str(&p.attributes, "consumer").unwrap().to_string();
            // Cumulative: the later point holds everything before it.
            counts.insert(consumer, p.count);
        }
    }
    counts
}

fn span_count(requests: &[ExportTraceServiceRequest]) -> usize {
    requests
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_match_ackscope_and_slow_acks_sit_in_their_traces() {
    let _loading = crate::support::CPU.lock().await;
    let server = NatsServer::start(Generation::Current);
    let client = server.client().await;

    // What the simulator sends: trace id → the sender's span id, off the wire.
    let sent = crate::support::traceparents(&client, "game.>").await;

    let receiver: Shared = Arc::new(Mutex::new(Receiver {
        // Until the simulator starts, then 3 s more (the fault begins at 7 s: no slow ack's
        // span is refused, so every span sent must arrive).
        refuse_until: Instant::now() + Duration::from_secs(3_600),
        refused: 0,
        metrics: Vec::new(),
        traces: Vec::new(),
    }));
    let otlp_addr = free_addr();
    let listener = tokio::net::TcpListener::bind(&otlp_addr).await.unwrap();
    let app = axum::Router::new()
        .route("/v1/metrics", axum::routing::post(metrics_route))
        .route("/v1/traces", axum::routing::post(traces_route))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let addr = free_addr();
    let mut raw = RawConfig::from_toml(&format!(
        r#"
[http]
listen = "{addr}"
[otlp]
endpoint = "http://{otlp_addr}"
export_interval = "1s"
timeout = "2s"
spans_per_second = 5
"#
    ))
    .unwrap();
    raw.nats.urls = vec![server.url()];
    let config = raw.validate().unwrap();
    let (stop_serve, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(ackscope::service::serve(config, async {
        let _ = stopped.await;
    }));
    poll(&addr, "/readyz", |status, _| status == 200).await;

    let scenario = RawScenario::from_toml(SCENARIO)
        .unwrap()
        .validate()
        .unwrap();
    let (_stop_sim, stop) = tokio::sync::watch::channel(false);
    receiver.lock().unwrap().refuse_until = Instant::now() + Duration::from_secs(3);
    let run = tokio::spawn(sim::run(client.clone(), scenario, stop));

    // While the receiver refuses: exports fail and are retried, and the taps go on.
    let samples = |text: &str| metric(text, "ackscope_samples_total").unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, early) = http_get(&addr, "/metrics").await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, later) = http_get(&addr, "/metrics").await.unwrap();
    assert!(
        samples(&later) > samples(&early) + 100.0,
        "the taps go on while the receiver refuses: {} then {}",
        samples(&early),
        samples(&later)
    );
    assert!(
        metric(&later, "ackscope_otlp_requests_failed_total").unwrap() >= 2.0,
        "failed exports are counted: {later}"
    );

    let truth = run.await.unwrap().unwrap();
    assert!(!truth.faults.is_empty());

    // After the run: the exported histograms reach ackscope's own counts.
    // Settled: the same state twice, 1.5 s apart (longer than the exporters' periods), with
    // every count exported and every span sent received.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    let (own, exported, text) = loop {
        let (_, text) = http_get(&addr, "/metrics").await.unwrap();
        let own: BTreeMap<String, u64> = (1..=4)
            .map(|i| {
                let name = format!(
                    "ackscope_ack_latency_seconds_count{{stream=\"GAME\",consumer=\"srv-{i}\"}}"
                );
                (
                    format!("srv-{i}"),
                    metric(&text, &name).unwrap_or(0.0) as u64,
                )
            })
            .collect();
        let (exported, spans_received) = {
            let r = receiver.lock().unwrap();
            (exported_counts(&r.metrics), span_count(&r.traces))
        };
        let spans_sent = metric(&text, "ackscope_otlp_spans_total").unwrap_or(-1.0)
            + metric(&text, "ackscope_otlp_spike_spans_total").unwrap_or(0.0);
        let now = (own.clone(), exported.clone(), spans_received, spans_sent);
        let settled = own == exported && spans_received as f64 == spans_sent;
        if (settled && last.as_ref() == Some(&now)) || Instant::now() > deadline {
            break (own, exported, text);
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    };
    assert!(own.values().all(|&n| n > 500), "{own:?}");
    assert_eq!(
        exported, own,
        "exported histogram counts = ackscope's own counts"
    );

    assert_eq!(
        metric(&text, "ackscope_otlp_queue_dropped_total"),
        Some(0.0)
    );
    let dropped = metric(&text, "ackscope_otlp_spans_dropped_total").unwrap();
    let spans_sent = metric(&text, "ackscope_otlp_spans_total").unwrap();
    let spike_spans_sent = metric(&text, "ackscope_otlp_spike_spans_total").unwrap();

    // What arrived, taken out of the receiver (nothing more is awaited on).
    let r = {
        let mut g = receiver.lock().unwrap();
        Receiver {
            refuse_until: g.refuse_until,
            refused: g.refused,
            metrics: std::mem::take(&mut g.metrics),
            traces: std::mem::take(&mut g.traces),
        }
    };
    assert!(
        r.refused >= 2,
        "the receiver refused {} requests",
        r.refused
    );
    // The resource names the service and this instance.
    let resource = r.metrics[0].resource_metrics[0].resource.as_ref().unwrap();
    assert_eq!(
        attr_str(&resource.attributes, "service.name"),
        Some("ackscope")
    );
    assert!(attr_str(&resource.attributes, "service.instance.id").is_some());
    // The acks are counted by kind too.
    let kinds: Vec<&str> = r
        .metrics
        .iter()
        .flat_map(|m| &m.resource_metrics)
        .flat_map(|m| &m.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "ackscope.acks")
        .filter_map(|m| match &m.data {
            Some(metric::Data::Sum(s)) => Some(s),
            _ => None,
        })
        .flat_map(|s| &s.data_points)
        .filter_map(|p| attr_str(&p.attributes, "kind"))
        .collect();
    assert!(kinds.contains(&"ack"), "{kinds:?}");

    // Every slow-ack span is a child of its message's own span, in its trace.
    let all: Vec<_> = r
        .traces
        .iter()
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    let spans: Vec<_> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Consumer as i32)
        .copied()
        .collect();
    assert!(spans.len() >= 10, "{} slow-ack spans", spans.len());
    assert_eq!(
        spans.len() as f64,
        spans_sent,
        "every slow-ack span sent arrived once"
    );
    assert_eq!(
        (all.len() - spans.len()) as f64,
        spike_spans_sent,
        "every spike span sent arrived once"
    );
    let sent = sent.lock().unwrap().clone();
    let mut per_consumer: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &spans {
        let trace = hex(&s.trace_id);
        let parent = sent
            .get(&trace)
            .unwrap_or_else(|| panic!("span in trace {trace}, which the simulator never sent"));
        assert_eq!(hex(&s.parent_span_id), *parent, "parent of {}", s.name);
        assert_eq!(s.kind, SpanKind::Consumer as i32);
        assert_eq!(attr_str(&s.attributes, "messaging.system"), Some("nats"));
        assert!(
            attr_str(&s.attributes, "messaging.destination.name")
                .is_some_and(|d| d.starts_with("game.srv-"))
        );
        let latency = match attr(&s.attributes, "ackscope.ack.latency_us") {
            Some(any_value::Value::DoubleValue(v)) => *v,
            other => panic!("latency: {other:?}"),
        };
        assert!(
            latency > 16_000.0,
            "only acks slower than a frame: {latency} µs"
        );
        let took = s.end_time_unix_nano - s.start_time_unix_nano;
        assert!(
            (took as f64 / 1e3 - latency).abs() < 0.01,
            "the span runs from delivery to ack: {took} ns against {latency} µs"
        );
        *per_consumer
            .entry(attr_str(&s.attributes, "messaging.consumer.group.name").unwrap())
            .or_default() += 1;
    }
    assert!(
        per_consumer.get("srv-2").is_some_and(|&n| n >= 10),
        "{per_consumer:?}"
    );
    // The rate limit held: at most 5 a second over the ~20 s of slow acks, the rest counted.
    assert!(spans.len() <= 5 * 30, "{} spans", spans.len());
    assert!(
        dropped > 0.0,
        "60 ms pauses give more than 5 slow acks a second"
    );
    println!(
        "acks per consumer {own:?}; {} spans {per_consumer:?}, {dropped} over the limit; {} requests refused",
        spans.len(),
        r.refused
    );

    // The spike: it ended before the stop, and the stop hands over those not handed yet.
    let _ = stop_serve.send(());
    service.await.unwrap().unwrap();
    let later = receiver.lock().unwrap();
    let all: Vec<_> = r
        .traces
        .iter()
        .chain(&later.traces)
        .flat_map(|t| &t.resource_spans)
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .collect();
    // Slow-ack spans by trace id: what a spike span may link to.
    let slow_acks: BTreeMap<String, Vec<String>> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Consumer as i32)
        .fold(BTreeMap::new(), |mut m, s| {
            m.entry(hex(&s.trace_id)).or_default().push(hex(&s.span_id));
            m
        });
    let spikes: Vec<_> = all
        .iter()
        .filter(|s| s.kind == SpanKind::Internal as i32)
        .collect();
    let srv2 = spikes
        .iter()
        .find(|s| s.name == "p99 spike GAME/srv-2")
        .unwrap_or_else(|| {
            let names: Vec<_> = spikes.iter().map(|s| &s.name).collect();
            panic!("no spike span for srv-2 among {names:?}")
        });
    assert!(srv2.parent_span_id.is_empty(), "a spike span is a root");
    let number = |key| match attr(&srv2.attributes, key) {
        Some(any_value::Value::DoubleValue(v)) => *v,
        other => panic!("{key}: {other:?}"),
    };
    let (p99, baseline) = (
        number("ackscope.p99_us"),
        number("ackscope.baseline_p99_us"),
    );
    assert!(
        p99 > 16_000.0 && p99 > baseline * 1.5,
        "the spike's P99 {p99} µs against its baseline {baseline} µs"
    );
    let wall = srv2.end_time_unix_nano - srv2.start_time_unix_nano;
    assert!(
        (3e9..=20e9).contains(&(wall as f64)),
        "the spike span covers its windows: {wall} ns"
    );
    let exemplars: Vec<String> = match attr(&srv2.attributes, "ackscope.exemplar_trace_ids") {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match v.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("exemplar trace ids: {other:?}"),
    };
    assert!(!exemplars.is_empty());
    assert_eq!(
        srv2.events.len(),
        match attr(&srv2.attributes, "ackscope.causes") {
            Some(any_value::Value::ArrayValue(a)) => a.values.len(),
            other => panic!("causes: {other:?}"),
        },
        "an event per cause"
    );
    // Each link is a slow-ack span this export sent, in the trace of one of the exemplars.
    assert!(
        !srv2.links.is_empty(),
        "the spike links to its exemplars' spans"
    );
    for link in &srv2.links {
        let trace = hex(&link.trace_id);
        assert!(exemplars.contains(&trace), "{trace} is an exemplar");
        assert!(
            sent.contains_key(&trace),
            "{trace} is a trace the simulator sent"
        );
        assert!(
            slow_acks
                .get(&trace)
                .is_some_and(|ids| ids.contains(&hex(&link.span_id))),
            "the link names a slow-ack span of {trace}"
        );
    }
    println!(
        "spike spans {:?}; srv-2's: P99 {p99} µs against {baseline} µs, {} exemplars, {} links",
        spikes.iter().map(|s| &s.name).collect::<Vec<_>>(),
        exemplars.len(),
        srv2.links.len()
    );
}
