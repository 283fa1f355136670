//! Spikes with their causes, for one consumer, a stream, or every consumer together: windows
//! from the aggregator's history, samples from the ring, consumer state from the collector.
//!
//! Reads the collector it is lent and returns plain values: [`find`] the spikes, then, for each,
//! [`SpikeInputs::gather`] copies what explaining it needs and [`SpikeInputs::explain`] runs
//! on that copy. Locking, threads and caching are the caller's.

use serde::{Deserialize, Serialize};

use super::causes::{CauseFinding, Dimension, Evidence, attribute};
use super::spikes::{Spike, WindowP99, find_spikes};
use crate::aggregate::rebin::{Latency, quantile};
use crate::aggregate::ring::RingRow;
use crate::aggregate::window::WindowSummary;
use crate::collector::Collector;
use crate::model::{ConsumerId, rfc3339};
use crate::names::Names;
use crate::tick::FrameClock;

/// How much time before a spike serves as its baseline.
pub const BASELINE_NS: i64 = 60_000_000_000;

/// A spike with its ranked causes (confidence to 3 decimals), as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpikeReport {
    /// RFC 3339: its first window's start, its last window's end.
    pub start: String,
    pub end: String,
    /// `*` for all consumers together.
    pub stream: String,
    pub consumer: String,
    /// The latency that spiked.
    pub latency: Latency,
    pub p99_us: f64,
    pub baseline_p99_us: f64,
    pub windows: usize,
    pub causes: Vec<CauseFinding>,
}

/// Windowed P99s of one latency.
fn p99s<'a>(windows: impl Iterator<Item = &'a WindowSummary>, latency: Latency) -> Vec<WindowP99> {
    windows
        .map(|w| {
            let q = match latency {
                Latency::Ack => &w.ack_latency_us,
                Latency::E2e => &w.e2e_latency_us,
            };
            WindowP99 {
                start_ns: w.start_ns,
                end_ns: w.end_ns,
                p99_ns: (q.p99 * 1_000.0) as u64,
                samples: q.count,
            }
        })
        .collect()
}

/// The spikes overlapping `[from, to)` of each consumer in `ids` (all when `None`, plus the
/// all-consumers scope), oldest first, not yet explained: per scope, those of both latencies,
/// where spikes of the two overlap the one that began first standing for both.
pub fn find(
    c: &Collector,
    ids: Option<&[ConsumerId]>,
    from: i64,
    to: i64,
) -> Vec<(Option<ConsumerId>, Spike, Latency)> {
    let all: Vec<ConsumerId> = (0..c.names().consumer_count() as ConsumerId).collect();
    let mut scopes: Vec<Option<ConsumerId>> =
        ids.unwrap_or(&all).iter().map(|&id| Some(id)).collect();
    if ids.is_none() {
        scopes.push(None);
    }
    let mut out = Vec::new();
    for scope in scopes {
        // Both latencies: e2e catches what ack latency cannot see (a redelivered message's
        // ack latency starts at its redelivery).
        let mut candidates: Vec<(Spike, Latency)> = Vec::new();
        for latency in [Latency::Ack, Latency::E2e] {
            let windows = p99s(c.aggregator().history(scope), latency);
            candidates.extend(
                find_spikes(&windows, &c.config().spikes)
                    .into_iter()
                    .map(|s| (s, latency)),
            );
        }
        candidates.sort_by_key(|(s, _)| s.start_ns);
        let mut found: Vec<(Spike, Latency)> = Vec::new();
        for (spike, latency) in candidates {
            if !found
                .iter()
                .any(|(s, _)| s.start_ns < spike.end_ns && spike.start_ns < s.end_ns)
            {
                found.push((spike, latency));
            }
        }
        out.extend(
            found
                .into_iter()
                .filter(|(s, _)| s.end_ns > from && s.start_ns < to)
                .map(|(s, latency)| (scope, s, latency)),
        );
    }
    out.sort_by_key(|(_, s, _)| s.start_ns);
    out
}

/// Per consumer id, its usual P99 of `latency` over `[from, to)`: the median of its windows'
/// P99s there (windows too quiet to spike left out; 0 when none is left).
fn usual_p99(c: &Collector, (from, to): (i64, i64), latency: Latency) -> Vec<u64> {
    let min_samples = c.config().spikes.min_samples;
    (0..c.names().consumer_count() as ConsumerId)
        .map(|id| {
            let mut p: Vec<u64> = p99s(c.aggregator().history(Some(id)), latency)
                .into_iter()
                .filter(|w| w.start_ns >= from && w.end_ns <= to && w.samples >= min_samples)
                .map(|w| w.p99_ns)
                .collect();
            quantile(&mut p, 0.5)
        })
        .collect()
}

/// What explaining one spike needs, copied out of the collector: [`SpikeInputs::explain`] runs
/// on it with the collector free.
pub struct SpikeInputs {
    scope: Option<ConsumerId>,
    spike: Spike,
    latency: Latency,
    spike_rows: Vec<RingRow>,
    baseline_rows: Vec<RingRow>,
    /// Every consumer's samples during the spike; empty when the spike is for all of them.
    context: Vec<RingRow>,
    baseline_ns: (i64, i64),
    usual_p99: Vec<u64>,
    ack_pending: Vec<(u64, i64)>,
    clock: FrameClock,
    names: Names,
    /// Label display names, by label index.
    labels: Vec<String>,
}

impl SpikeInputs {
    pub fn gather(
        c: &Collector,
        scope: Option<ConsumerId>,
        spike: Spike,
        latency: Latency,
    ) -> Self {
        let spike_ns = (spike.start_ns, spike.end_ns);
        // One pass over the ring: the scope's samples during the spike and before it, and,
        // for one consumer, every consumer's during it (whether this one stands out among
        // them, each against its own usual P99).
        let (mut spike_rows, mut baseline_rows, mut context) = (Vec::new(), Vec::new(), Vec::new());
        let baseline_from = spike.start_ns - BASELINE_NS;
        for r in c.aggregator().ring().iter() {
            let ours = scope.is_none_or(|id| r.consumer == id);
            if r.acked_ns >= spike_ns.0 && r.acked_ns < spike_ns.1 {
                if scope.is_some() {
                    context.push(r);
                }
                if ours {
                    spike_rows.push(r);
                }
            } else if ours && r.acked_ns >= baseline_from && r.acked_ns < spike_ns.0 {
                baseline_rows.push(r);
            }
        }
        // Rates are over the time the baseline really covers, not the time asked for.
        let first = baseline_rows
            .iter()
            .map(|r| r.acked_ns)
            .min()
            .unwrap_or(spike.start_ns - 1);
        let ack_pending = c
            .consumers()
            .filter(|(id, _, _)| scope.is_none_or(|s| s == *id))
            .filter_map(|(id, _, _)| c.facts(id))
            .flat_map(|f| f.ack_pending_history.iter())
            .filter(|(t, _, _)| *t >= spike_ns.0 && *t < spike_ns.1)
            .map(|&(_, pending, max)| (pending, max))
            .collect();
        Self {
            scope,
            spike,
            latency,
            spike_rows,
            baseline_rows,
            context,
            baseline_ns: (first, spike.start_ns),
            usual_p99: usual_p99(c, (spike.start_ns - BASELINE_NS, spike.start_ns), latency),
            ack_pending,
            clock: *c.aggregator().clock(),
            names: c.names().clone(),
            labels: c
                .config()
                .headers
                .labels
                .iter()
                .map(|l| l.1.clone())
                .collect(),
        }
    }

    /// The spike with its ranked causes.
    pub fn explain(&self) -> SpikeReport {
        let Self { spike, scope, .. } = *self;
        let name = |d: Dimension| match d {
            Dimension::Consumer(id) => {
                let (s, n) = self.names.consumer_names(id);
                format!("{s}/{n}")
            }
            Dimension::Subject(sym) => self.names.symbol_name(sym).unwrap_or("?").to_string(),
            Dimension::Label(i, sym) => format!(
                "{}={}",
                self.labels.get(i).map_or("label", String::as_str),
                self.names.symbol_name(sym).unwrap_or("?")
            ),
        };
        let causes = if self.spike_rows.is_empty() || self.baseline_rows.is_empty() {
            Vec::new()
        } else {
            attribute(&Evidence {
                spike: &self.spike_rows,
                baseline: &self.baseline_rows,
                context: scope.is_some().then_some(self.context.as_slice()),
                usual_p99: &self.usual_p99,
                spike_ns: (spike.start_ns, spike.end_ns),
                baseline_ns: self.baseline_ns,
                clock: &self.clock,
                ack_pending: &self.ack_pending,
                name: &name,
                latency: self.latency,
            })
        };
        let (stream, consumer) = match scope {
            Some(id) => self.names.consumer_names(id),
            None => ("*", "*"),
        };
        SpikeReport {
            start: rfc3339(spike.start_ns),
            end: rfc3339(spike.end_ns),
            stream: stream.to_string(),
            consumer: consumer.to_string(),
            latency: self.latency,
            p99_us: spike.peak_p99_ns as f64 / 1_000.0,
            baseline_p99_us: spike.baseline_p99_ns as f64 / 1_000.0,
            windows: spike.windows,
            causes: causes
                .into_iter()
                .map(|c| CauseFinding {
                    confidence: (c.confidence * 1_000.0).round() / 1_000.0,
                    ..c
                })
                .collect(),
        }
    }
}
