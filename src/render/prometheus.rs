//! The Prometheus text exposition of `/metrics`: ackscope's own health and, per stream and
//! consumer, ack latency histograms, counters by ack kind, redeliveries and consumer state.
//!
//! Pure: a [`MetricsSnapshot`] in, text out.

use std::fmt::Write;

use crate::aggregate::buckets::LatencyBuckets;
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
    pub consumers: Vec<ConsumerMetrics>,
}

/// The alert pass and its receivers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertMetrics {
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

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn format_bound(bound: f64) -> String {
    if bound.is_infinite() {
        "+Inf".to_string()
    } else {
        format!("{bound}")
    }
}

/// Renders the exposition text.
pub fn render_metrics(s: &MetricsSnapshot) -> String {
    let mut out = String::new();
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
        for (bound, count) in c.ack_buckets.cumulative() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{id},le=\"{}\"}} {count}",
                format_bound(bound)
            );
        }
        let _ = writeln!(out, "{name}_sum{{{id}}} {}", c.ack_buckets.sum_seconds());
        let _ = writeln!(out, "{name}_count{{{id}}} {}", c.ack_buckets.count());
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
    out
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
            alerts: AlertMetrics {
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
                },
            ],
        };
        let text = render_metrics(&snapshot);
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
    }
}
