//! One window's statistics for one consumer (or for all of them): histograms of both latencies,
//! counts by kind, a phase × latency grid, and the summary it closes into.

use serde::{Deserialize, Serialize};

use super::Event;
use super::histogram::{LatencyHistogram, Quantiles};
use super::phase_grid::{LatencyAxis, PhaseGrid};
use crate::model::{AckKind, ConsumerId, Sample, TraceId};

/// Exemplar trace ids kept per window: those of its slowest traced samples.
pub const EXEMPLARS: usize = 5;

/// Event counts of a window (the contract's `counts` block).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Counts {
    pub deliveries: u64,
    pub acks: u64,
    pub naks: u64,
    pub terms: u64,
    pub progress: u64,
    pub redeliveries: u64,
    pub max_deliveries: u64,
    pub unmatched_acks: u64,
    pub expired_deliveries: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        self.deliveries += other.deliveries;
        self.acks += other.acks;
        self.naks += other.naks;
        self.terms += other.terms;
        self.progress += other.progress;
        self.redeliveries += other.redeliveries;
        self.max_deliveries += other.max_deliveries;
        self.unmatched_acks += other.unmatched_acks;
        self.expired_deliveries += other.expired_deliveries;
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }

    /// Counts one event that is not a sample.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Delivery { redelivery } => {
                self.deliveries += 1;
                self.redeliveries += redelivery as u64;
            }
            Event::Progress => self.progress += 1,
            Event::UnmatchedAck => self.unmatched_acks += 1,
            Event::ExpiredDelivery => self.expired_deliveries += 1,
            Event::MaxDeliveries => self.max_deliveries += 1,
        }
    }

    pub fn count_kind(&mut self, kind: AckKind) {
        match kind {
            AckKind::Ack => self.acks += 1,
            AckKind::Nak => self.naks += 1,
            AckKind::Term => self.terms += 1,
            AckKind::Progress => self.progress += 1,
        }
    }
}

/// A closed window, ready to print or keep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    /// `None` for the all-consumers window.
    #[serde(skip)]
    pub consumer: Option<ConsumerId>,
    #[serde(skip)]
    pub start_ns: i64,
    #[serde(skip)]
    pub end_ns: i64,
    pub counts: Counts,
    pub ack_latency_us: Quantiles,
    pub e2e_latency_us: Quantiles,
    /// Trace ids of the window's slowest traced samples, slowest first.
    pub exemplar_trace_ids: Vec<TraceId>,
    /// Samples per phase bin; emptied in retained history to bound memory.
    pub phase_counts: Vec<u32>,
    /// Milliseconds of the window during which NATS was down: its counts miss that time.
    pub nats_gap_ms: u64,
    /// Ack latencies within one frame of the consumer's clock (the frame budget): the good
    /// events of the frame-budget SLI, out of `ack_latency_us.count`.
    pub within_budget: u64,
}

/// The open window of one consumer.
#[derive(Debug, Clone)]
pub struct WindowStats {
    pub ack: LatencyHistogram,
    pub e2e: LatencyHistogram,
    pub counts: Counts,
    /// Ack latency per phase bin and latency row.
    pub grid: PhaseGrid,
    /// Every sample per phase bin, with or without an ack latency.
    pub phase_counts: Vec<u32>,
    /// The slowest traced samples (ack latency, or e2e without one), unordered.
    slowest: [(u64, Option<TraceId>); EXEMPLARS],
}

impl WindowStats {
    pub fn new(max_latency_ns: u64, phase_bins: u32, axis: LatencyAxis) -> Self {
        Self {
            ack: LatencyHistogram::new(max_latency_ns),
            e2e: LatencyHistogram::new(max_latency_ns),
            counts: Counts::default(),
            grid: PhaseGrid::new(phase_bins, axis),
            phase_counts: vec![0; phase_bins as usize],
            slowest: [(0, None); EXEMPLARS],
        }
    }

    /// Records a sample whose phase bin is `bin` (`None` when its phase instant is unknown).
    pub fn record(&mut self, s: &Sample, bin: Option<u32>) {
        self.counts.count_kind(s.kind);
        if let Some(ns) = s.ack_latency_ns {
            self.ack.record(ns);
            if let Some(b) = bin {
                self.grid.record(b, ns);
            }
        }
        if let Some(ns) = s.e2e_latency_ns {
            self.e2e.record(ns);
        }
        if let Some(b) = bin {
            let c = &mut self.phase_counts[b as usize];
            *c = c.saturating_add(1);
        }
        if let (Some(trace), Some(latency)) = (s.trace_id, s.ack_latency_ns.or(s.e2e_latency_ns)) {
            self.offer_exemplar(latency, Some(trace));
        }
    }

    /// Trace ids of the slowest traced samples, slowest first.
    pub fn exemplars(&self) -> Vec<TraceId> {
        let mut slowest: Vec<_> = self.slowest.iter().filter(|(_, t)| t.is_some()).collect();
        slowest.sort_by_key(|(latency, _)| std::cmp::Reverse(*latency));
        slowest.into_iter().filter_map(|(_, t)| *t).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_zero() && self.ack.is_empty() && self.e2e.is_empty()
    }

    /// Adds `other` (a window of the same shape) into `self`.
    pub fn merge(&mut self, other: &WindowStats) {
        self.ack.merge(&other.ack);
        self.e2e.merge(&other.e2e);
        self.counts.add(&other.counts);
        self.grid.merge(&other.grid);
        for (a, b) in self.phase_counts.iter_mut().zip(&other.phase_counts) {
            *a = a.saturating_add(*b);
        }
        for &(latency, trace) in other.slowest.iter().filter(|(_, t)| t.is_some()) {
            self.offer_exemplar(latency, trace);
        }
    }

    fn offer_exemplar(&mut self, latency: u64, trace: Option<TraceId>) {
        let fastest = self
            .slowest
            .iter_mut()
            .min_by_key(|(l, t)| (t.is_some(), *l))
            .expect("EXEMPLARS > 0");
        if fastest.1.is_none() || fastest.0 < latency {
            *fastest = (latency, trace);
        }
    }

    pub fn summary(
        &self,
        consumer: Option<ConsumerId>,
        start_ns: i64,
        end_ns: i64,
    ) -> WindowSummary {
        WindowSummary {
            consumer,
            start_ns,
            end_ns,
            counts: self.counts,
            ack_latency_us: self.ack.quantiles(),
            e2e_latency_us: self.e2e.quantiles(),
            exemplar_trace_ids: self.exemplars(),
            phase_counts: self.phase_counts.clone(),
            nats_gap_ms: 0,
            within_budget: 0,
        }
    }

    pub fn reset(&mut self) {
        self.ack.reset();
        self.e2e.reset();
        self.counts = Counts::default();
        self.grid.reset();
        self.phase_counts.fill(0);
        self.slowest = [(0, None); EXEMPLARS];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NO_LABELS, SampleSource, Sym};

    fn traced(ack_ms: u64, trace: u8) -> Sample {
        Sample {
            consumer: 0,
            stream_seq: 1,
            consumer_seq: 1,
            deliveries: 1,
            pending: 0,
            stored_ns: None,
            delivered_ns: None,
            acked_ns: 0,
            kind: AckKind::Ack,
            ack_latency_ns: Some(ack_ms * 1_000_000),
            e2e_latency_ns: None,
            trace_id: (trace > 0).then_some(TraceId([trace; 16])),
            parent_span: None,
            subject: Sym::NONE,
            labels: NO_LABELS,
            source: SampleSource::Observed,
            ack_sync: false,
        }
    }

    #[test]
    fn exemplars_are_the_slowest_traced_samples() {
        let mut w = WindowStats::new(
            60_000_000_000,
            16,
            LatencyAxis::new(10_000, 10_000_000_000, 10),
        );
        for (ms, trace) in [
            (5, 1),
            (50, 2),
            (1, 3),
            (90, 0),
            (20, 4),
            (30, 5),
            (40, 6),
            (2, 7),
        ] {
            w.record(&traced(ms, trace), Some(0));
        }
        let hex = |b: u8| TraceId([b; 16]);
        assert_eq!(w.exemplars(), vec![hex(2), hex(6), hex(5), hex(4), hex(1)]);
        let mut merged = WindowStats::new(
            60_000_000_000,
            16,
            LatencyAxis::new(10_000, 10_000_000_000, 10),
        );
        merged.record(&traced(45, 9), Some(3));
        merged.merge(&w);
        assert_eq!(
            merged.exemplars(),
            vec![hex(2), hex(9), hex(6), hex(5), hex(4)]
        );
        assert_eq!(merged.counts.acks, 9);
        assert_eq!(merged.ack.len(), 9);
        assert_eq!(merged.phase_counts[0], 8);
        assert_eq!(merged.grid.total(), 9);
        w.reset();
        assert!(w.exemplars().is_empty());
    }
}
