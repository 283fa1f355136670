//! Cumulative latency buckets per consumer, with the classic boundaries Prometheus histograms
//! use: chosen for game latencies, 250 µs to 10 s. They only grow (counters), so a scraper can
//! take rates of them. Each bucket keeps the latest traced latency that fell in it as its
//! exemplar, so that a dashboard can jump from a slow bucket to that message's trace.

use crate::model::TraceId;

/// Upper bounds of the buckets, in seconds; a last `+Inf` bucket follows.
pub const BOUNDS_S: [f64; 16] = [
    0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.033, 0.066, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The same bounds in nanoseconds, for recording without floating point.
const BOUNDS_NS: [u64; 16] = [
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    4_000_000,
    8_000_000,
    16_000_000,
    33_000_000,
    66_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A latency that fell in a bucket, with the trace of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exemplar {
    pub trace_id: TraceId,
    pub latency_ns: u64,
    /// When it was acked, Unix nanoseconds.
    pub at_ns: i64,
}

/// Counts of latencies at or below each bound, plus the total and the sum.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyBuckets {
    /// Per bucket (not cumulative); the last is `+Inf`.
    counts: [u64; BOUNDS_S.len() + 1],
    sum_ns: u128,
    /// Per bucket: the latest traced latency in it.
    exemplars: [Option<Exemplar>; BOUNDS_S.len() + 1],
}

impl LatencyBuckets {
    pub fn record(&mut self, ns: u64) {
        self.record_traced(ns, None, 0);
    }

    /// Records `ns`; with a trace id it becomes its bucket's exemplar.
    pub fn record_traced(&mut self, ns: u64, trace_id: Option<TraceId>, at_ns: i64) {
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.counts[i] += 1;
        self.sum_ns += ns as u128;
        if let Some(trace_id) = trace_id {
            self.exemplars[i] = Some(Exemplar {
                trace_id,
                latency_ns: ns,
                at_ns,
            });
        }
    }

    /// Per bucket, in the order of [`Self::cumulative`]: its exemplar, if a traced latency
    /// fell in it.
    pub fn exemplars(&self) -> &[Option<Exemplar>] {
        &self.exemplars
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// (upper bound in seconds, cumulative count), the last with `f64::INFINITY`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = BOUNDS_S.iter().copied().chain([f64::INFINITY]);
        bounds.zip(self.counts.iter().scan(0u64, |acc, &c| {
            *acc += c;
            Some(*acc)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanosecond_bounds_match_the_exported_ones() {
        for (ns, s) in BOUNDS_NS.iter().zip(BOUNDS_S) {
            assert_eq!(*ns, (s * 1e9).round() as u64);
        }
    }

    #[test]
    fn buckets_are_cumulative_and_inclusive() {
        let mut b = LatencyBuckets::default();
        b.record(250_000); // exactly 250 µs: the first bucket (le is inclusive)
        b.record(16_000_000);
        b.record(20_000_000_000); // above 10 s: +Inf only
        let c: Vec<_> = b.cumulative().collect();
        assert_eq!(c[0], (0.00025, 1));
        assert_eq!(c[6], (0.016, 2));
        assert_eq!(c[15], (10.0, 2));
        assert_eq!(c[16], (f64::INFINITY, 3));
        assert_eq!(b.count(), 3);
        assert!((b.sum_seconds() - 20.01625).abs() < 1e-9);
        assert!(b.exemplars().iter().all(Option::is_none));
    }

    #[test]
    fn each_bucket_keeps_its_latest_traced_latency() {
        let mut b = LatencyBuckets::default();
        let t = |n: u8| Some(TraceId([n; 16]));
        b.record_traced(3_000_000, t(1), 10);
        b.record_traced(3_500_000, t(2), 20); // same bucket (le 4 ms): replaces the first
        b.record_traced(20_000_000, None, 30); // counted, no exemplar
        b.record_traced(12_000_000, t(3), 40);
        let e = b.exemplars();
        assert_eq!(e.len(), b.cumulative().count());
        assert_eq!(
            e[4],
            Some(Exemplar {
                trace_id: TraceId([2; 16]),
                latency_ns: 3_500_000,
                at_ns: 20
            })
        );
        assert_eq!(e[6].map(|x| x.trace_id), Some(TraceId([3; 16])));
        assert_eq!(e[7], None);
        assert_eq!(e.iter().flatten().count(), 2);
        assert_eq!(b.count(), 4);
    }
}
