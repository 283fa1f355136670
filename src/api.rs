//! The answers of the HTTP API and the lines `ackscope collect` prints, as types: handlers
//! return them, tests read them back, and what comes next (alerts, exports, an OpenAPI
//! document) reuses them. Plain data with serde; the field names are the contract's.

use serde::{Deserialize, Serialize};

use crate::aggregate::histogram::Quantiles;
use crate::aggregate::rebin::{Latency, PhaseRow};
use crate::aggregate::window::{Counts, WindowSummary};
use crate::clocks::{ClockSource, Segment};
use crate::collect::advisories::AdvisoryCounts;
use crate::collector::Collector;
use crate::model::{TraceId, rfc3339};
use crate::tick::PhaseOf;

pub use crate::analyze::causes::{Cause, CauseFinding};
pub use crate::analyze::ordering::Ordering;
pub use crate::analyze::report::SpikeReport as Spike;

/// One (stream, consumer) of `GET /api/v1/consumers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsumerSummary {
    pub stream: String,
    pub consumer: String,
    /// Its JetStream domain, when its acks name one (the same names in two domains are two
    /// consumers); `None` otherwise.
    pub domain: Option<String>,
    /// Totals since start.
    pub acks: u64,
    /// Ack latency percentiles over the last `recent_window_s`.
    pub p50_us: f64,
    pub p99_us: f64,
    pub redeliveries: u64,
    pub last_seen: String,
    pub recent_window_s: i64,
    pub recent_acks_per_s: f64,
    pub deliveries: u64,
    pub naks: u64,
    pub terms: u64,
    pub progress: u64,
    pub unmatched_acks: u64,
    pub expired_deliveries: u64,
    pub max_deliveries: u64,
    /// The last consumer state poll; `None` before the first.
    pub ack_pending: Option<u64>,
    pub max_ack_pending: Option<i64>,
    pub num_pending: Option<u64>,
    pub ack_wait_us: Option<f64>,
    pub advisories: AdvisoryCounts,
    /// The frame clock its phases use now.
    pub clock: ClockInfo,
}

/// A consumer's frame clock: where it comes from, its period and a frame start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ClockInfo {
    /// `announced` (by the game server), `inferred` (from its acks) or `configured`.
    pub source: ClockSource,
    /// The period as ackscope holds it, exactly: `60hz`, `16000000ns` or `num/den ns`.
    pub period: String,
    /// The period in nanoseconds (fractional); an inferred clock's is the one its acks follow.
    pub period_ns: f64,
    /// A frame start, RFC 3339 to the nanosecond.
    pub epoch: String,
    /// 1 for an announced clock, the inference's confidence (0..1) for an inferred one, 0 for
    /// the configured one.
    pub confidence: f64,
    /// Since when this clock is used; `None` for the configured one.
    pub since: Option<String>,
}

impl ClockInfo {
    pub fn of(segment: &Segment) -> Self {
        Self {
            source: segment.source,
            period: segment.frame.period.to_string(),
            period_ns: segment.frame.period.ns_f64(),
            epoch: rfc3339(segment.frame.epoch_ns),
            confidence: segment.confidence,
            since: (segment.source != ClockSource::Configured).then(|| rfc3339(segment.from_ns)),
        }
    }
}

/// The clock of one consumer of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConsumerClock {
    pub stream: String,
    pub consumer: String,
    pub domain: Option<String>,
    #[serde(flatten)]
    pub clock: ClockInfo,
}

/// `GET /api/v1/report`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub range: Range,
    pub tick: ReportTick,
    /// The latency the percentiles and phases are of.
    pub latency: Latency,
    pub counts: Counts,
    /// Percentiles over the range, in µs.
    pub latency_us: Quantiles,
    pub phases: Vec<PhaseRow>,
    pub spikes: Vec<Spike>,
    pub ordering: Ordering,
    pub warnings: Vec<String>,
}

/// A time range, RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Range {
    pub from: String,
    pub to: String,
}

/// The frame clock a report was binned with, and the period found in the acks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReportTick {
    pub period_us: f64,
    pub epoch: String,
    pub phase_bins: u32,
    pub phase_of: PhaseOf,
    /// The period the range's acks follow, all consumers folded together.
    pub detected_period_us: Option<f64>,
    /// `configured` for a request's `tick` (one clock for every row); for one consumer, its
    /// current clock's source; for several, `per_consumer`.
    pub source: String,
    /// The clocks each consumer of the report had over the range, oldest first (each sample
    /// is phased with the clock it had).
    pub clocks: Vec<ConsumerClock>,
}

/// One closed window of one (stream, consumer), or of all (`*`), as `ackscope collect` prints
/// it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WindowLine {
    pub stream: String,
    pub consumer: String,
    pub start: String,
    pub end: String,
    pub counts: Counts,
    pub ack_latency_us: Quantiles,
    pub e2e_latency_us: Quantiles,
    pub tick: WindowTick,
    /// The window's slowest traced samples.
    pub exemplar_trace_ids: Vec<TraceId>,
    pub phase_counts: Vec<u32>,
    /// Milliseconds of the window without a NATS connection (its counts miss them); 0 normally.
    pub nats_gap_ms: u64,
}

/// The frame clock a window's phases are binned with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WindowTick {
    /// The consumer's period at the window's end (the configured one for `*`).
    pub period_us: f64,
    pub phase_bins: u32,
    pub phase_of: PhaseOf,
    /// The consumer's clock at the window's end: `announced`, `inferred` or `configured`;
    /// `per_consumer` for `*` (each consumer's samples in its own frame).
    pub source: String,
}

impl WindowLine {
    /// A closed window of `c`, with its names.
    pub fn of(c: &Collector, w: &WindowSummary) -> Self {
        let (stream, consumer, _) = c.names().scope_names(w.consumer);
        let tick = c.aggregator().clock();
        let (period_ns, source) = match w.consumer {
            Some(id) => {
                let s = c.aggregator().clocks().segment_at(id, w.end_ns - 1);
                (s.frame.period.ns_f64(), s.source.as_str())
            }
            None => (tick.period().ns_f64(), "per_consumer"),
        };
        Self {
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            start: rfc3339(w.start_ns),
            end: rfc3339(w.end_ns),
            counts: w.counts,
            ack_latency_us: w.ack_latency_us,
            e2e_latency_us: w.e2e_latency_us,
            tick: WindowTick {
                period_us: period_ns / 1_000.0,
                phase_bins: tick.phase_bins(),
                phase_of: tick.phase_of(),
                source: source.to_string(),
            },
            exemplar_trace_ids: w.exemplar_trace_ids.clone(),
            phase_counts: w.phase_counts.clone(),
            nats_gap_ms: w.nats_gap_ms,
        }
    }
}

/// The body of every 4xx and 5xx answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    /// The query parameter at fault, for a 400.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parameter: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::tests::{reply, seen};
    use crate::config::Config;

    #[test]
    fn windows_print_with_names_and_counts() {
        let mut c = Collector::new(Config::default());
        c.keep_closed();
        let r = reply(2, 5);
        c.on_delivery("game.srv-1.state", Some(&r), [], seen(100));
        c.on_ack(&r, None, b"-NAK", seen(108));
        c.on_advisory(
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.GAME.srv-1",
            b"{}",
            seen(200),
        );
        c.tick(seen(1_000));
        let closed = c.take_closed();
        assert_eq!(closed.len(), 2);
        let line = serde_json::to_value(WindowLine::of(&c, &closed[0])).unwrap();
        assert_eq!(line["stream"], "GAME");
        assert_eq!(line["consumer"], "srv-1");
        assert_eq!(line["counts"]["naks"], 1);
        assert_eq!(line["counts"]["redeliveries"], 1);
        assert_eq!(line["counts"]["max_deliveries"], 1);
        let p99 = line["ack_latency_us"]["p99"].as_f64().unwrap();
        assert!((p99 - 8_000.0).abs() <= 8.0, "{p99}");
        assert_eq!(line["start"], "2026-09-21T14:13:20.000000000Z");
        assert_eq!(line["phase_counts"].as_array().unwrap().len(), 160);
        assert_eq!(WindowLine::of(&c, &closed[1]).stream, "*");
        // What is printed reads back as the same type.
        let back: WindowLine = serde_json::from_value(line).unwrap();
        assert_eq!(back, WindowLine::of(&c, &closed[0]));
        assert_eq!(c.facts(0).unwrap().advisories.max_deliveries, 1);
    }
}
