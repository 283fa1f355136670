//! Re-binning the raw sample ring on demand: another tick period, another phase resolution,
//! another filter, the other latency. Every function here is one pass over the ring's rows.

use super::histogram::LatencyHistogram;
use super::phase_grid::{LatencyAxis, PhaseGrid};
use super::ring::{RingRow, SampleRing};
use crate::clocks::PhaseClocks;
use crate::model::{AckKind, ConsumerId};
use crate::tick::{Frame, PhaseOf};

/// Which latency a question is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Latency {
    /// Delivery seen → ack seen.
    Ack,
    /// Stored in the stream → ack seen.
    E2e,
}

impl Latency {
    pub fn as_str(self) -> &'static str {
        match self {
            Latency::Ack => "ack",
            Latency::E2e => "e2e",
        }
    }

    /// This latency of a row, if the row has one.
    pub fn of(self, row: &RingRow) -> Option<u64> {
        match self {
            Latency::Ack => row.ack_latency_ns,
            Latency::E2e => row.e2e_latency_ns,
        }
    }
}

/// Which rows a question is about: some consumers (or all), acks in `[from_ns, to_ns)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Indexed by consumer id; `None` selects every consumer.
    pub consumers: Option<Vec<bool>>,
    pub from_ns: i64,
    pub to_ns: i64,
    pub latency: Latency,
}

impl Filter {
    /// A filter on `ids`, or on every consumer when `ids` is `None`.
    pub fn new(ids: Option<&[ConsumerId]>, from_ns: i64, to_ns: i64, latency: Latency) -> Self {
        let consumers = ids.map(|ids| {
            let len = ids.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
            let mut set = vec![false; len];
            for &c in ids {
                set[c as usize] = true;
            }
            set
        });
        Self {
            consumers,
            from_ns,
            to_ns,
            latency,
        }
    }

    /// Whether the row passes the consumer and time filter, whatever its latencies.
    pub fn matches(&self, row: &RingRow) -> bool {
        let consumer_ok = match &self.consumers {
            Some(set) => set.get(row.consumer as usize).copied().unwrap_or(false),
            None => true,
        };
        consumer_ok && row.acked_ns >= self.from_ns && row.acked_ns < self.to_ns
    }

    /// The row's latency of interest, if the row passes the filter and has one.
    pub fn latency(&self, row: &RingRow) -> Option<u64> {
        if !self.matches(row) {
            return None;
        }
        self.latency.of(row)
    }
}

/// The phase bin of a row under `clocks`, if the row has the instant they phase.
fn phase_bin(clocks: &PhaseClocks, row: &RingRow) -> Option<u32> {
    let t = match clocks.phase_of {
        PhaseOf::Ack => row.acked_ns,
        PhaseOf::Delivery => row.delivered_ns?,
    };
    Some(clocks.bin(row.consumer, t))
}

/// A phase × latency grid of the filtered rows, `clocks.bins` columns, each row phased in its
/// consumer's own frame (or the one frame `clocks` gives everyone).
pub fn phase_grid(
    ring: &SampleRing,
    filter: &Filter,
    clocks: &PhaseClocks,
    axis: LatencyAxis,
) -> PhaseGrid {
    let mut grid = PhaseGrid::new(clocks.bins, axis);
    for row in ring.iter() {
        if let (Some(ns), Some(bin)) = (filter.latency(&row), phase_bin(clocks, &row)) {
            grid.record(bin, ns);
        }
    }
    grid
}

/// A time × latency grid of the filtered rows: `columns` equal slices of `[from, to)`.
pub fn time_grid(ring: &SampleRing, filter: &Filter, columns: u32, axis: LatencyAxis) -> PhaseGrid {
    let mut grid = PhaseGrid::new(columns, axis);
    let span = (filter.to_ns as i128 - filter.from_ns as i128).max(1);
    for row in ring.iter() {
        if let Some(ns) = filter.latency(&row) {
            let offset = (row.acked_ns as i128 - filter.from_ns as i128).max(0);
            grid.record((offset * columns as i128 / span) as u32, ns);
        }
    }
    grid
}

/// Counts and latency distribution of the filtered rows.
#[derive(Debug, Clone)]
pub struct RangeStats {
    pub acks: u64,
    pub naks: u64,
    pub terms: u64,
    /// Rows whose delivery count was above 1.
    pub redelivered: u64,
    pub latency: LatencyHistogram,
}

pub fn range_stats(ring: &SampleRing, filter: &Filter, max_latency_ns: u64) -> RangeStats {
    let mut stats = RangeStats {
        acks: 0,
        naks: 0,
        terms: 0,
        redelivered: 0,
        latency: LatencyHistogram::new(max_latency_ns),
    };
    for row in ring.iter().filter(|r| filter.matches(r)) {
        match row.kind {
            AckKind::Ack => stats.acks += 1,
            AckKind::Nak => stats.naks += 1,
            AckKind::Term => stats.terms += 1,
            AckKind::Progress => {}
        }
        stats.redelivered += (row.deliveries > 1) as u64;
        if let Some(ns) = filter.latency(&row) {
            stats.latency.record(ns);
        }
    }
    stats
}

/// One interval of the frame in the per-phase table.
#[derive(
    Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct PhaseRow {
    pub from_us: f64,
    pub to_us: f64,
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// P50 / P99 and count per phase interval (`clocks.bins` intervals of each row's own frame,
/// shown in `shown`'s milliseconds), exact: each interval's latencies are collected and ranked.
pub fn phase_table(
    ring: &SampleRing,
    filter: &Filter,
    clocks: &PhaseClocks,
    shown: &Frame,
) -> Vec<PhaseRow> {
    let mut per_bin: Vec<Vec<u64>> = vec![Vec::new(); clocks.bins as usize];
    for row in ring.iter() {
        if let (Some(ns), Some(bin)) = (filter.latency(&row), phase_bin(clocks, &row)) {
            per_bin[bin as usize].push(ns);
        }
    }
    per_bin
        .iter_mut()
        .enumerate()
        .map(|(bin, values)| {
            let (from, to) = shown.bin_range_ns(bin as u32, clocks.bins);
            PhaseRow {
                from_us: from as f64 / 1_000.0,
                to_us: to as f64 / 1_000.0,
                count: values.len() as u64,
                p50_us: quantile(values, 0.50) as f64 / 1_000.0,
                p99_us: quantile(values, 0.99) as f64 / 1_000.0,
            }
        })
        .collect()
}

/// The nearest-rank quantile of `values` (reordered in place); 0 when empty.
pub fn quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    *values.select_nth_unstable(rank).1
}

/// The oldest and newest ack instants in the ring.
pub fn time_span(ring: &SampleRing) -> Option<(i64, i64)> {
    ring.iter().fold(None, |span, row| {
        let t = row.acked_ns;
        Some(span.map_or((t, t), |(lo, hi): (i64, i64)| (lo.min(t), hi.max(t))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clocks::{ClockSource, Clocks, Segment};
    use crate::model::{NO_LABELS, Sample, SampleSource, Sym};
    use crate::tick::{FrameClock, Period};

    const T0: i64 = 1_790_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn ring_with(samples: &[(ConsumerId, i64, u64)]) -> SampleRing {
        let mut ring = SampleRing::new(100);
        for &(consumer, acked_ns, ack_ns) in samples {
            ring.push(&Sample {
                consumer,
                stream_seq: 1,
                consumer_seq: 1,
                deliveries: if ack_ns > 30 * MS { 2 } else { 1 },
                pending: 0,
                stored_ns: None,
                delivered_ns: Some(acked_ns - ack_ns as i64),
                acked_ns,
                kind: AckKind::Ack,
                ack_latency_ns: Some(ack_ns),
                e2e_latency_ns: Some(ack_ns + MS),
                trace_id: None,
                parent_span: None,
                subject: Sym::NONE,
                labels: NO_LABELS,
                source: SampleSource::Observed,
                ack_sync: false,
            });
        }
        ring
    }

    fn all(consumer: Option<ConsumerId>) -> Filter {
        let ids = consumer.map(|c| vec![c]);
        Filter::new(ids.as_deref(), T0, T0 + 10_000_000_000, Latency::Ack)
    }

    #[test]
    fn rebinning_at_another_tick_moves_the_samples() {
        // Acks every 16 ms at phase 15 ms of a 16 ms frame.
        let samples: Vec<_> = (0..50)
            .map(|i| (0, T0 + 15 * MS as i64 + i * 16 * MS as i64, 2 * MS))
            .collect();
        let ring = ring_with(&samples);
        let axis = LatencyAxis::new(10_000, 10_000_000_000, 6);
        let at16 = FrameClock::new(16 * MS, 0, 16, PhaseOf::Ack).unwrap();
        let clocks = Clocks::new(*at16.frame());
        let grid = phase_grid(
            &ring,
            &all(None),
            &PhaseClocks::own(&clocks, &at16),
            axis.clone(),
        );
        assert_eq!(
            grid.column_totals()[15],
            50,
            "all in one bin at the true period"
        );
        let at20 = FrameClock::new(20 * MS, 0, 16, PhaseOf::Ack).unwrap();
        let smeared = phase_grid(&ring, &all(None), &PhaseClocks::one(&clocks, &at20), axis);
        assert!(
            smeared.column_totals().iter().filter(|&&c| c > 0).count() >= 4,
            "a wrong tick smears"
        );
    }

    #[test]
    fn each_consumer_is_phased_in_its_own_frame_before_merging() {
        // Two servers acking at 12 ms of their own 60 Hz frames, which start 5 ms apart.
        let sixty = Period::parse("60hz").unwrap();
        let own = |offset: i64| Frame::new(sixty, T0 + offset).unwrap();
        let samples: Vec<_> = (0..50i64)
            .flat_map(|f| {
                let frame_start = |offset: i64| T0 + offset + (f * 50_000_000 + 2) / 3;
                [
                    (0, frame_start(0) + 12 * MS as i64, 2 * MS),
                    (1, frame_start(5 * MS as i64) + 12 * MS as i64, 2 * MS),
                ]
            })
            .collect();
        let ring = ring_with(&samples);
        let axis = LatencyAxis::new(10_000, 10_000_000_000, 6);
        let configured = FrameClock::of(own(0), 16, PhaseOf::Ack).unwrap();
        let mut clocks = Clocks::new(own(0));
        let naive = phase_grid(
            &ring,
            &all(None),
            &PhaseClocks::own(&clocks, &configured),
            axis.clone(),
        );
        assert_eq!(
            naive.column_totals().iter().filter(|&&c| c > 0).count(),
            2,
            "two bands"
        );
        clocks.set(
            1,
            Segment {
                from_ns: T0,
                frame: own(5 * MS as i64),
                source: ClockSource::Announced,
                confidence: 1.0,
            },
        );
        let aligned = phase_grid(
            &ring,
            &all(None),
            &PhaseClocks::own(&clocks, &configured),
            axis,
        );
        // 12 ms of 16.67 is bin 11 of 16, for both.
        assert_eq!(
            aligned.column_totals()[11],
            100,
            "{:?}",
            aligned.column_totals()
        );
    }

    #[test]
    fn filters_by_consumer_time_and_latency() {
        let ring = ring_with(&[(0, T0, 2 * MS), (1, T0 + 1, 40 * MS), (0, T0 - 1, 5 * MS)]);
        let s = range_stats(&ring, &all(Some(0)), 60_000_000_000);
        assert_eq!((s.acks, s.redelivered, s.latency.len()), (1, 0, 1));
        let s = range_stats(&ring, &all(None), 60_000_000_000);
        assert_eq!((s.acks, s.redelivered), (2, 1));
        let e2e = Filter {
            latency: Latency::E2e,
            ..all(Some(1))
        };
        assert_eq!(
            range_stats(&ring, &e2e, 60_000_000_000)
                .latency
                .quantile_ns(1.0)
                / MS,
            41
        );
        assert_eq!(time_span(&ring), Some((T0 - 1, T0 + 1)));
    }

    #[test]
    fn phase_table_ranks_each_interval() {
        let clock = FrameClock::new(16 * MS, 0, 4, PhaseOf::Ack).unwrap();
        // 100 samples in the first quarter of the frame with latencies 1..=100 ms.
        let samples: Vec<_> = (1..=100u64)
            .map(|i| (0, T0 + i as i64 * 16 * MS as i64, i * MS))
            .collect();
        let clocks = Clocks::new(*clock.frame());
        let table = phase_table(
            &ring_with(&samples),
            &all(None),
            &PhaseClocks::own(&clocks, &clock),
            clock.frame(),
        );
        assert_eq!(table.len(), 4);
        assert_eq!(table[0].count, 100);
        assert_eq!((table[0].p50_us, table[0].p99_us), (50_000.0, 99_000.0));
        assert_eq!(
            (table[1].from_us, table[1].to_us, table[1].count),
            (4_000.0, 8_000.0, 0)
        );
    }

    #[test]
    fn time_grid_slices_the_range() {
        let ring = ring_with(&[
            (0, T0, MS),
            (0, T0 + 9_999_999_999, MS),
            (0, T0 + 5_000_000_000, MS),
        ]);
        let grid = time_grid(
            &ring,
            &all(None),
            10,
            LatencyAxis::new(10_000, 10_000_000_000, 6),
        );
        assert_eq!(grid.column_totals(), vec![1, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!(quantile(&mut v, 0.5), 3);
        assert_eq!(quantile(&mut v, 1.0), 5);
        assert_eq!(quantile(&mut v, 0.0), 1);
        assert_eq!(quantile(&mut [], 0.5), 0);
    }
}
