//! Spikes with their causes, for one consumer, a stream, or every consumer together.
//!
//! Pure: [`scope_spikes`] finds a scope's spikes in its window history, and
//! [`SpikeInputs::explain`] ranks one spike's causes from a copy of what explaining it needs.
//! Reading that copy out of the collector ([`crate::collector::Collector::spike_inputs`]),
//! locking, threads and caching are the caller's.

use serde::{Deserialize, Serialize};

use super::causes::{CauseFinding, Deliveries, Dimension, Evidence, attribute};
use super::config::SpikeConfig;
use super::spikes::{Spike, WindowP99, find_spikes};
use crate::aggregate::rebin::{Latency, quantile};
use crate::aggregate::ring::RingRow;
use crate::aggregate::window::WindowSummary;
use crate::clocks::Clocks;
use crate::model::{ConsumerId, rfc3339};
use crate::names::Names;

/// How much time before a spike serves as its baseline.
pub const BASELINE_NS: i64 = 60_000_000_000;

/// A spike with its ranked causes (confidence to 3 decimals), as the API answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
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
pub fn p99s<'a>(
    windows: impl Iterator<Item = &'a WindowSummary>,
    latency: Latency,
) -> Vec<WindowP99> {
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

/// The spikes of one scope, of both latencies, oldest first: where spikes of the two overlap,
/// the one that began first stands for both. `history` gives the scope's closed windows.
pub fn scope_spikes<'a, I>(history: impl Fn() -> I, cfg: &SpikeConfig) -> Vec<(Spike, Latency)>
where
    I: Iterator<Item = &'a WindowSummary>,
{
    // Both latencies: e2e catches what ack latency cannot see (a redelivered message's
    // ack latency starts at its redelivery).
    let mut candidates: Vec<(Spike, Latency)> = Vec::new();
    for latency in [Latency::Ack, Latency::E2e] {
        let windows = p99s(history(), latency);
        candidates.extend(find_spikes(&windows, cfg).into_iter().map(|s| (s, latency)));
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
    found
}

/// What explaining one spike needs, copied out of the collector: [`SpikeInputs::explain`] runs
/// on it with the collector free.
pub struct SpikeInputs {
    /// The consumer the spike is of; `None` for all consumers together.
    pub scope: Option<ConsumerId>,
    pub spike: Spike,
    pub latency: Latency,
    /// The scope's samples during the spike, and in the quiet time of the [`BASELINE_NS`]
    /// before it (the scope's earlier spikes left out).
    pub spike_rows: Vec<RingRow>,
    pub baseline_rows: Vec<RingRow>,
    /// Every consumer's samples during the spike; empty when the spike is for all of them.
    pub context: Vec<RingRow>,
    /// The quiet time the baseline rows really cover: rates are over it, not the time asked for.
    pub baseline_quiet_ns: i64,
    /// Per consumer id, its usual P99 before the spike (see [`usual_p99`]).
    pub usual_p99: Vec<u64>,
    /// Consumer state polls during the spike: (ack pending, max ack pending).
    pub ack_pending: Vec<(u64, i64)>,
    /// Deliveries the scope's windows counted during the spike and in the baseline.
    pub deliveries: Deliveries,
    /// Each consumer's frame clocks over the spike and its baseline.
    pub clocks: Clocks,
    pub names: Names,
    /// Label display names, by label index.
    pub labels: Vec<String>,
}

/// A consumer's usual P99 over a stretch of its windows: the median of their P99s, windows
/// with fewer than `min_samples` left out (0 when none is left).
pub fn usual_p99(windows: Vec<WindowP99>, min_samples: u64) -> u64 {
    let mut p: Vec<u64> = windows
        .into_iter()
        .filter(|w| w.samples >= min_samples)
        .map(|w| w.p99_ns)
        .collect();
    quantile(&mut p, 0.5)
}

impl SpikeInputs {
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
                baseline_quiet_ns: self.baseline_quiet_ns,
                baseline_p99: spike.baseline_p99_ns,
                clocks: &self.clocks,
                ack_pending: &self.ack_pending,
                deliveries: self.deliveries,
                name: &name,
                latency: self.latency,
            })
        };
        let (stream, consumer, _) = self.names.scope_names(scope);
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
