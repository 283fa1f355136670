//! The Prometheus text exposition of `/metrics`: ackscope's own health and, per stream and
//! consumer, ack latency histograms, counters by ack kind, redeliveries and consumer state.
//! Also as OpenMetrics text, whose latency buckets carry exemplars (the `trace_id` of the
//! latest traced ack in each bucket).
//!
//! Pure: a [`MetricsSnapshot`] in, text out.

use std::fmt::Write;

use crate::aggregate::buckets::{Exemplar, LatencyBuckets};
use crate::aggregate::window::Counts;
use crate::collect::consumer_state::ConsumerState;
use crate::telemetry::Counters;

/// One consumer's numbers since start.
#[derive(Debug, Clone)]
pub struct ConsumerMetrics {
    pub stream: String,
    pub consumer: String,
    /// Its JetStream domain, when its acks name one: a `domain` label.
    pub domain: Option<String>,
    pub totals: Counts,
    pub ack_buckets: LatencyBuckets,
    pub state: Option<ConsumerState>,
    /// The configured labels (`server`, …) with the value of its latest sample.
    pub labels: Vec<(String, String)>,
}

/// Everything `/metrics` shows, copied out of the collector.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub counters: Counters,
    pub ready: bool,
    pub nats_connected: bool,
    /// HTTP queries turned away (429) because no query slot came free.
    pub queries_refused: u64,
    pub join_pending: usize,
    pub join_capacity: usize,
    pub ring_samples: usize,
    pub ring_capacity: usize,
    /// The servers' clock minus ackscope's (median of recent ack metrics); `None` before one.
    pub server_clock_offset_ns: Option<i64>,
    /// Time without NATS over the outages that have ended.
    pub nats_down_ns: u64,
    /// Samples handed to the archive and not written yet; bytes of its segments on disk.
    pub archive_queued: u64,
    pub archive_bytes: u64,
    /// ackscope's own delays over the last seconds.
    pub own: crate::telemetry::OwnDelaysOver,
    pub alerts: AlertMetrics,
    /// The OTLP export's counts, when it is on: samples dropped at its queue, spans sent,
    /// spans over the rate limit, slow acks without a sampled `traceparent`, HTTP requests,
    /// failed requests.
    pub otlp: Option<[u64; 7]>,
    pub consumers: Vec<ConsumerMetrics>,
}

/// The alert pass and its receivers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertMetrics {
    /// Each pending or firing alert: its labels and state.
    pub open: Vec<(std::collections::BTreeMap<String, String>, &'static str)>,
    pub firing: usize,
    pub pending: usize,
    /// Conditions not tracked because the alert book was full.
    pub overflow: u64,
    pub sent: u64,
    pub retries: u64,
    pub failed: u64,
    pub dropped: u64,
}

/// A metric family of one value per consumer: name, help, and how to read the value.
type Family<T, V> = (&'static str, &'static str, fn(&T) -> V);

/// Escapes a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Which text format `/metrics` answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposition {
    /// The Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0: counters' families named without `_total`, exemplars on the latency
    /// buckets, `# EOF` at the end.
    OpenMetrics,
}

impl Exposition {
    /// From a request's `Accept` header: OpenMetrics when it is named there.
    pub fn from_accept(accept: &str) -> Self {
        if accept.contains("application/openmetrics-text") {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The text being written, and in which format.
struct Out {
    text: String,
    format: Exposition,
}

impl Write for Out {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.text.push_str(s);
        Ok(())
    }
}

fn header(out: &mut Out, name: &str, kind: &str, help: &str) {
    // OpenMetrics names a counter's family without the `_total` its samples end in.
    let family = match out.format {
        Exposition::OpenMetrics if kind == "counter" => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    let _ = writeln!(out, "# HELP {family} {help}");
    let _ = writeln!(out, "# TYPE {family} {kind}");
}

/// ` # {trace_id="…"} value timestamp`: an OpenMetrics exemplar (seconds, Unix seconds).
fn exemplar(e: &Exemplar) -> String {
    format!(
        " # {{trace_id=\"{}\"}} {} {:.3}",
        e.trace_id,
        e.latency_ns as f64 / 1e9,
        e.at_ns as f64 / 1e9
    )
}

/// A label name Prometheus accepts and this exposition does not use itself.
fn is_free_label_name(name: &str) -> bool {
    const OWN: [&str; 6] = ["stream", "consumer", "domain", "le", "kind", "state"];
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
        && !OWN.contains(&name)
}

fn format_bound(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_string()
    } else {
        format!("{bound}")
    }
}

/// Renders the exposition text.
pub fn render_metrics(s: &MetricsSnapshot, format: Exposition) -> String {
    let mut out = Out {
        text: String::new(),
        format,
    };
    for (name, help, value) in s.counters.iter() {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let gauges: [(&str, &str, f64); 8] = [
        (
            "ackscope_ready",
            "1 once NATS is connected and every tap is subscribed.",
            s.ready as u8 as f64,
        ),
        (
            "ackscope_nats_connected",
            "1 while the NATS connection is up.",
            s.nats_connected as u8 as f64,
        ),
        (
            "ackscope_join_pending",
            "Deliveries waiting for their ack.",
            s.join_pending as f64,
        ),
        (
            "ackscope_join_capacity",
            "Capacity of the join table.",
            s.join_capacity as f64,
        ),
        (
            "ackscope_ring_samples",
            "Raw samples held in the sample ring.",
            s.ring_samples as f64,
        ),
        (
            "ackscope_ring_capacity",
            "Capacity of the sample ring.",
            s.ring_capacity as f64,
        ),
        (
            "ackscope_archive_queued_samples",
            "Samples handed to the archive writer and not written yet (at most archive.queue_samples).",
            s.archive_queued as f64,
        ),
        (
            "ackscope_archive_bytes",
            "Bytes of the archive's segments on disk, after its last write or deletion.",
            s.archive_bytes as f64,
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let own: [(&str, &str, f64); 4] = [
        (
            "ackscope_tap_lag_seconds",
            "How late ackscope's tap loop ran behind its schedule, the worst of the last 10 s.",
            s.own.max_tap_lag_ns as f64 / 1e9,
        ),
        (
            "ackscope_nats_rtt_seconds",
            "Round trip from ackscope to the NATS server, the worst of the last 10 s (0: not measured).",
            s.own.max_rtt_ns as f64 / 1e9,
        ),
        (
            "ackscope_alerts_firing",
            "Alerts firing now.",
            s.alerts.firing as f64,
        ),
        (
            "ackscope_alerts_pending",
            "Alerts whose condition holds, not yet for their rule's `for`.",
            s.alerts.pending as f64,
        ),
    ];
    for (name, help, value) in own {
        header(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let alert_counters: [(&str, &str, u64); 5] = [
        (
            "ackscope_alerts_sent_total",
            "Alerts delivered, one per alert per receiver.",
            s.alerts.sent,
        ),
        (
            "ackscope_alerts_retries_total",
            "Alert deliveries that failed and were tried again.",
            s.alerts.retries,
        ),
        (
            "ackscope_alerts_failed_total",
            "Alert deliveries given up after every attempt failed.",
            s.alerts.failed,
        ),
        (
            "ackscope_alerts_dropped_total",
            "Alerts dropped because a receiver's queue was full.",
            s.alerts.dropped,
        ),
        (
            "ackscope_alerts_overflow_total",
            "Alert conditions, and consumers of the frame-budget ledger, not tracked because the alert book or the ledger was full.",
            s.alerts.overflow,
        ),
    ];
    for (name, help, value) in alert_counters {
        header(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    if let Some(otlp) = s.otlp {
        let names: [(&str, &str); 7] = [
            (
                "ackscope_otlp_queue_dropped_total",
                "Samples and ended spikes not handed to the OTLP export because its queue was \
                 full (otlp.queue).",
            ),
            (
                "ackscope_otlp_spans_total",
                "Slow-ack spans exported over OTLP.",
            ),
            (
                "ackscope_otlp_spike_spans_total",
                "Spans of ended P99 spikes exported over OTLP.",
            ),
            (
                "ackscope_otlp_spans_dropped_total",
                "Slow acks and ended spikes over otlp.spans_per_second in their second, with no \
                 span.",
            ),
            (
                "ackscope_otlp_spans_without_parent_total",
                "Slow acks with no span: no traceparent, or a trace its sender does not sample.",
            ),
            (
                "ackscope_otlp_requests_total",
                "HTTP requests to the OTLP receiver, retries included.",
            ),
            (
                "ackscope_otlp_requests_failed_total",
                "HTTP requests to the OTLP receiver that failed (no answer, or not 2xx).",
            ),
        ];
        for ((name, help), value) in names.into_iter().zip(otlp) {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    let name = "ackscope_http_queries_refused_total";
    header(
        &mut out,
        name,
        "counter",
        "HTTP queries turned away (429) because every query slot stayed taken.",
    );
    let _ = writeln!(out, "{name} {}", s.queries_refused);
    let name = "ackscope_nats_disconnected_seconds_total";
    header(
        &mut out,
        name,
        "counter",
        "Time without a NATS connection, over the outages that have ended.",
    );
    let _ = writeln!(out, "{name} {}", s.nats_down_ns as f64 / 1e9);
    if let Some(offset) = s.server_clock_offset_ns {
        let name = "ackscope_server_clock_offset_seconds";
        header(
            &mut out,
            name,
            "gauge",
            "The servers' clock minus ackscope's, median of recent ack metrics (their trip included).",
        );
        let _ = writeln!(out, "{name} {}", offset as f64 / 1e9);
    }

    let ids: Vec<String> = s
        .consumers
        .iter()
        .map(|c| {
            let id = format!(
                "stream=\"{}\",consumer=\"{}\"",
                label(&c.stream),
                label(&c.consumer)
            );
            match &c.domain {
                Some(d) => format!("{id},domain=\"{}\"", label(d)),
                None => id,
            }
        })
        .collect();

    let name = "ackscope_ack_latency_seconds";
    header(
        &mut out,
        name,
        "histogram",
        "Delivery seen to ack seen (or the server's ack_time), per consumer.",
    );
    for (c, id) in s.consumers.iter().zip(&ids) {
        let exemplars = c.ack_buckets.exemplars();
        for ((bound, count), e) in c.ack_buckets.cumulative().zip(exemplars) {
            let e = match (format, e) {
                (Exposition::OpenMetrics, Some(e)) => exemplar(e),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "{name}_bucket{{{id},le=\"{}\"}} {count}{e}",
                format_bound(bound)
            );
        }
        let _ = writeln!(out, "{name}_sum{{{id}}} {}", c.ack_buckets.sum_seconds());
        let _ = writeln!(out, "{name}_count{{{id}}} {}", c.ack_buckets.count());
    }

    // Info series: a consumer's configured labels, to join onto the others
    // (`* on (stream, consumer) group_left (server)`) and to list in dashboard variables.
    let name = "ackscope_consumer_info";
    header(
        &mut out,
        name,
        "gauge",
        "1 per consumer, labelled with the configured labels of its latest sample (server, ...).",
    );
    for (c, id) in s.consumers.iter().zip(&ids) {
        let extra: String = c
            .labels
            .iter()
            .filter(|(k, v)| !v.is_empty() && is_free_label_name(k))
            .map(|(k, v)| format!(",{k}=\"{}\"", label(v)))
            .collect();
        let _ = writeln!(out, "{name}{{{id}{extra}}} 1");
    }
    let name = "ackscope_alert_active";
    header(
        &mut out,
        name,
        "gauge",
        "1 per pending or firing alert of ackscope's own rules, with its labels and state.",
    );
    for (labels, state) in &s.alerts.open {
        let mut text: String = labels
            .iter()
            .filter(|(k, _)| {
                is_free_label_name(k) || k.as_str() == "stream" || k.as_str() == "consumer"
            })
            .map(|(k, v)| format!("{k}=\"{}\",", label(v)))
            .collect();
        text.push_str(&format!("state=\"{state}\""));
        let _ = writeln!(out, "{name}{{{text}}} 1");
    }

    let name = "ackscope_consumer_acks_total";
    header(
        &mut out,
        name,
        "counter",
        "Acks per consumer by kind (ack, nak, term, progress).",
    );
    for (c, id) in s.consumers.iter().zip(&ids) {
        let t = &c.totals;
        for (kind, value) in [
            ("ack", t.acks),
            ("nak", t.naks),
            ("term", t.terms),
            ("progress", t.progress),
        ] {
            let _ = writeln!(out, "{name}{{{id},kind=\"{kind}\"}} {value}");
        }
    }
    let per_consumer: [Family<Counts, u64>; 5] = [
        (
            "ackscope_consumer_deliveries_total",
            "Deliveries seen per consumer.",
            |t| t.deliveries,
        ),
        (
            "ackscope_consumer_redeliveries_total",
            "Deliveries with a delivery count above 1.",
            |t| t.redeliveries,
        ),
        (
            "ackscope_consumer_max_deliveries_total",
            "MAX_DELIVERIES advisories per consumer.",
            |t| t.max_deliveries,
        ),
        (
            "ackscope_consumer_unmatched_acks_total",
            "Acks whose delivery was not seen.",
            |t| t.unmatched_acks,
        ),
        (
            "ackscope_consumer_expired_deliveries_total",
            "Deliveries never acked.",
            |t| t.expired_deliveries,
        ),
    ];
    for (name, help, value) in per_consumer {
        header(&mut out, name, "counter", help);
        for (c, id) in s.consumers.iter().zip(&ids) {
            let _ = writeln!(out, "{name}{{{id}}} {}", value(&c.totals));
        }
    }
    let state: [Family<ConsumerState, f64>; 5] = [
        (
            "ackscope_consumer_ack_pending",
            "num_ack_pending from consumer info.",
            |s| s.num_ack_pending as f64,
        ),
        (
            "ackscope_consumer_max_ack_pending",
            "max_ack_pending from consumer info (-1: unlimited).",
            |s| s.max_ack_pending as f64,
        ),
        (
            "ackscope_consumer_num_pending",
            "Messages not yet delivered, from consumer info.",
            |s| s.num_pending as f64,
        ),
        (
            "ackscope_consumer_num_waiting",
            "Waiting pull requests, from consumer info.",
            |s| s.num_waiting as f64,
        ),
        (
            "ackscope_consumer_num_redelivered",
            "num_redelivered from consumer info.",
            |s| s.num_redelivered as f64,
        ),
    ];
    for (name, help, value) in state {
        header(&mut out, name, "gauge", help);
        for (c, id) in s.consumers.iter().zip(&ids) {
            if let Some(st) = &c.state {
                let _ = writeln!(out, "{name}{{{id}}} {}", value(st));
            }
        }
    }
    if format == Exposition::OpenMetrics {
        out.text.push_str("# EOF\n");
    }
    out.text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_histograms_counters_and_escaped_labels() {
        let mut buckets = LatencyBuckets::default();
        buckets.record(3_000_000);
        buckets.record(20_000_000);
        let snapshot = MetricsSnapshot {
            counters: Counters {
                samples: 2,
                ..Counters::default()
            },
            ready: true,
            nats_connected: true,
            queries_refused: 0,
            join_pending: 3,
            join_capacity: 10,
            ring_samples: 2,
            ring_capacity: 100,
            server_clock_offset_ns: Some(-250_000),
            nats_down_ns: 1_500_000_000,
            archive_queued: 0,
            archive_bytes: 0,
            own: crate::telemetry::OwnDelaysOver {
                max_tap_lag_ns: 2_000_000,
                ..Default::default()
            },
            otlp: None,
            alerts: AlertMetrics {
                open: vec![(
                    [
                        ("alertname", "AckP99Regression"),
                        ("cause", "gc_pause"),
                        ("consumer", "*"),
                        ("severity", "critical"),
                        ("stream", "GAME"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                    "firing",
                )],
                firing: 1,
                sent: 3,
                ..AlertMetrics::default()
            },
            consumers: vec![
                ConsumerMetrics {
                    stream: "GAME".into(),
                    consumer: "srv\"1".into(),
                    domain: None,
                    totals: Counts {
                        acks: 2,
                        redeliveries: 1,
                        ..Counts::default()
                    },
                    ack_buckets: buckets,
                    state: None,
                    labels: vec![("server".into(), "srv-1".into())],
                },
                ConsumerMetrics {
                    stream: "GAME".into(),
                    consumer: "srv\"1".into(),
                    domain: Some("leaf".into()),
                    totals: Counts {
                        acks: 5,
                        ..Counts::default()
                    },
                    ack_buckets: buckets,
                    state: None,
                    labels: vec![("server".into(), "srv-1".into())],
                },
            ],
        };
        let text = render_metrics(&snapshot, Exposition::Prometheus);
        assert!(text.contains("ackscope_samples_total 2\n"));
        assert!(text.contains("ackscope_ready 1\n"));
        assert!(text.contains("ackscope_server_clock_offset_seconds -0.00025\n"));
        assert!(text.contains("ackscope_nats_disconnected_seconds_total 1.5\n"));
        assert!(text.contains("ackscope_tap_lag_seconds 0.002\n"));
        assert!(text.contains("ackscope_nats_rtt_seconds 0\n"));
        assert!(text.contains("ackscope_alerts_firing 1\n"));
        assert!(text.contains("ackscope_alerts_sent_total 3\n"));
        let id = "stream=\"GAME\",consumer=\"srv\\\"1\"";
        assert!(text.contains(&format!(
            "ackscope_ack_latency_seconds_bucket{{{id},le=\"0.002\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "ackscope_ack_latency_seconds_bucket{{{id},le=\"0.004\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "ackscope_ack_latency_seconds_bucket{{{id},le=\"+Inf\"}} 2\n"
        )));
        assert!(text.contains(&format!("ackscope_ack_latency_seconds_count{{{id}}} 2\n")));
        assert!(text.contains(&format!(
            "ackscope_consumer_acks_total{{{id},kind=\"ack\"}} 2\n"
        )));
        assert!(text.contains(&format!("ackscope_consumer_redeliveries_total{{{id}}} 1\n")));
        // The same names in another domain are another series.
        assert!(text.contains(&format!(
            "ackscope_consumer_acks_total{{{id},domain=\"leaf\",kind=\"ack\"}} 5\n"
        )));
        assert!(
            !text.contains("ackscope_consumer_ack_pending{"),
            "no state, no gauge sample"
        );
        assert!(text.contains(&format!(
            "ackscope_consumer_info{{{id},server=\"srv-1\"}} 1\n"
        )));
        assert!(text.contains(
            "ackscope_alert_active{alertname=\"AckP99Regression\",cause=\"gc_pause\",consumer=\"*\",severity=\"critical\",stream=\"GAME\",state=\"firing\"} 1\n"
        ));
        assert!(
            !text.contains(" # {"),
            "no exemplars in the Prometheus format"
        );
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn openmetrics_names_counter_families_and_carries_exemplars() {
        let mut buckets = LatencyBuckets::default();
        let trace = crate::model::TraceId([0xab; 16]);
        buckets.record_traced(20_000_000, Some(trace), 1_700_000_000_250_000_000);
        buckets.record(3_000_000);
        let snapshot = MetricsSnapshot {
            counters: Counters::default(),
            ready: true,
            nats_connected: true,
            queries_refused: 0,
            join_pending: 0,
            join_capacity: 10,
            ring_samples: 0,
            ring_capacity: 100,
            server_clock_offset_ns: None,
            nats_down_ns: 0,
            archive_queued: 0,
            archive_bytes: 0,
            own: crate::telemetry::OwnDelaysOver::default(),
            otlp: None,
            alerts: AlertMetrics::default(),
            consumers: vec![ConsumerMetrics {
                stream: "GAME".into(),
                consumer: "srv-1".into(),
                domain: None,
                totals: Counts::default(),
                ack_buckets: buckets,
                state: None,
                labels: Vec::new(),
            }],
        };
        let text = render_metrics(&snapshot, Exposition::OpenMetrics);
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# TYPE ackscope_samples counter\n"));
        assert!(text.contains("\nackscope_samples_total 0\n"));
        assert!(text.contains("# TYPE ackscope_consumer_acks counter\n"));
        assert!(text.contains("# TYPE ackscope_ack_latency_seconds histogram\n"));
        let id = "stream=\"GAME\",consumer=\"srv-1\"";
        let hex = "ab".repeat(16);
        // 20 ms falls in the bucket le=0.033, and only that line carries it.
        assert!(text.contains(&format!(
            "ackscope_ack_latency_seconds_bucket{{{id},le=\"0.033\"}} 2 # {{trace_id=\"{hex}\"}} 0.02 1700000000.250\n"
        )));
        assert_eq!(text.matches(" # {").count(), 1);
        assert!(text.contains(&format!(
            "ackscope_ack_latency_seconds_bucket{{{id},le=\"0.004\"}} 1\n"
        )));
        assert_eq!(
            Exposition::from_accept(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
            ),
            Exposition::OpenMetrics
        );
        assert_eq!(
            Exposition::from_accept("text/plain"),
            Exposition::Prometheus
        );
    }
}
