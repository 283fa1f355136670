//! One window's statistics for one consumer (or for all of them): histograms of both latencies,
//! counts by kind, a phase × latency grid, and the summary it closes into.

use serde::Serialize;

use super::histogram::{LatencyHistogram, Quantiles};
use super::phase_grid::{LatencyAxis, PhaseGrid};
use crate::model::{AckKind, ConsumerId, Sample};

/// Event counts of a window (the contract's `counts` block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
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
    /// Samples per phase bin; emptied in retained history to bound memory.
    pub phase_counts: Vec<u32>,
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
}

impl WindowStats {
    pub fn new(max_latency_ns: u64, phase_bins: u32, axis: LatencyAxis) -> Self {
        Self {
            ack: LatencyHistogram::new(max_latency_ns),
            e2e: LatencyHistogram::new(max_latency_ns),
            counts: Counts::default(),
            grid: PhaseGrid::new(phase_bins, axis),
            phase_counts: vec![0; phase_bins as usize],
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
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_zero() && self.ack.is_empty() && self.e2e.is_empty()
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
            phase_counts: self.phase_counts.clone(),
        }
    }

    pub fn reset(&mut self) {
        self.ack.reset();
        self.e2e.reset();
        self.counts = Counts::default();
        self.grid.reset();
        self.phase_counts.fill(0);
    }
}
