//! Latency histograms: HDR histograms of nanoseconds with a fixed range.
//!
//! Values above the configured maximum are clamped into the top of the range and counted, so
//! a histogram never grows and never refuses a value.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Lowest latency distinguished from zero: 1 µs.
const LOWEST_NS: u64 = 1_000;
/// Three significant figures: quantiles are exact to 0.1%.
const SIGFIG: u8 = 3;

/// An HDR histogram of latencies in nanoseconds, `0..=max_ns`.
#[derive(Debug, Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u32>,
    max_ns: u64,
    /// Values above `max_ns`, recorded as `max_ns`.
    clamped: u64,
    /// Records refused because a bucket count would overflow `u32`.
    saturated: u64,
    sum_ns: u128,
}

/// Quantiles of a histogram in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Quantiles {
    pub count: u64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyHistogram {
    /// A histogram for latencies up to `max_ns` (at least 1 ms).
    pub fn new(max_ns: u64) -> Self {
        let max_ns = max_ns.max(2 * LOWEST_NS);
        let hist = Histogram::new_with_bounds(LOWEST_NS, max_ns, SIGFIG)
            .expect("bounds are valid: lowest >= 1, max >= 2 * lowest, sigfig <= 5");
        Self {
            hist,
            max_ns,
            clamped: 0,
            saturated: 0,
            sum_ns: 0,
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.record_n(ns, 1);
    }

    /// Records `ns` `n` times.
    fn record_n(&mut self, ns: u64, n: u32) {
        let v = if ns > self.max_ns {
            self.clamped += u64::from(n);
            self.max_ns
        } else {
            ns
        };
        if self.hist.record_n(v, n).is_err() {
            self.saturated += u64::from(n);
        } else {
            self.sum_ns += v as u128 * u128::from(n);
        }
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    /// Latencies recorded at or below `ns` (to the histogram's precision: a value in the
    /// bucket holding `ns` counts).
    pub fn count_at_or_below(&self, ns: u64) -> u64 {
        if self.hist.is_empty() {
            return 0;
        }
        self.hist.count_between(0, ns.min(self.max_ns))
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    pub fn saturated(&self) -> u64 {
        self.saturated
    }

    /// The latency at quantile `q` in nanoseconds (0 when empty).
    pub fn quantile_ns(&self, q: f64) -> u64 {
        if self.hist.is_empty() {
            0
        } else {
            self.hist
                .value_at_quantile(q.clamp(0.0, 1.0))
                .min(self.max_ns)
        }
    }

    pub fn quantiles(&self) -> Quantiles {
        let us = |ns: u64| ns as f64 / 1_000.0;
        let count = self.hist.len();
        Quantiles {
            count,
            p50: us(self.quantile_ns(0.50)),
            p90: us(self.quantile_ns(0.90)),
            p99: us(self.quantile_ns(0.99)),
            p999: us(self.quantile_ns(0.999)),
            max: us(if count == 0 {
                0
            } else {
                self.hist.max().min(self.max_ns)
            }),
            mean: if count == 0 {
                0.0
            } else {
                self.sum_ns as f64 / count as f64 / 1_000.0
            },
        }
    }

    /// Adds `other`'s counts into `self`. Both must share `max_ns`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        if self.hist.add(&other.hist).is_err() {
            self.saturated += other.hist.len();
        } else {
            self.sum_ns += other.sum_ns;
        }
        self.clamped += other.clamped;
        self.saturated += other.saturated;
    }

    /// The counts in HdrHistogram's V2 encoding (which the HdrHistogram libraries of other
    /// languages read), to be merged again by [`Self::merge_encoded`].
    pub fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if hdrhistogram::serialization::Serializer::serialize(
            &mut hdrhistogram::serialization::V2Serializer::new(),
            &self.hist,
            &mut out,
        )
        .is_err()
        {
            out.clear();
        }
        out
    }

    /// Adds the counts `bytes` encodes ([`Self::encoded`]) into `self`, values above `max_ns`
    /// clamped; `false` (and nothing added) when `bytes` is not such an encoding.
    pub fn merge_encoded(&mut self, bytes: &[u8]) -> bool {
        let decoded: Result<Histogram<u32>, _> =
            hdrhistogram::serialization::Deserializer::new().deserialize(&mut &bytes[..]);
        let Ok(other) = decoded else {
            return false;
        };
        for v in other.iter_recorded() {
            self.record_n(v.value_iterated_to(), v.count_at_value());
        }
        true
    }

    pub fn reset(&mut self) {
        self.hist.reset();
        self.clamped = 0;
        self.saturated = 0;
        self.sum_ns = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_encoded_histogram_merges_back_to_the_same_quantiles() {
        let mut h = LatencyHistogram::new(60_000_000_000);
        for i in 1..=10_000u64 {
            h.record(i * 7_919 % 50_000_000);
        }
        h.record(90_000_000_000);
        let bytes = h.encoded();
        assert!(
            !bytes.is_empty() && bytes.len() < 40_000,
            "{} bytes",
            bytes.len()
        );
        let mut back = LatencyHistogram::new(60_000_000_000);
        assert!(back.merge_encoded(&bytes));
        assert_eq!(back.len(), h.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(back.quantile_ns(q), h.quantile_ns(q), "q {q}");
        }
        // Twice is the sum of both; garbage is refused and adds nothing.
        assert!(back.merge_encoded(&bytes));
        assert_eq!(back.len(), 2 * h.len());
        assert!(!back.merge_encoded(b"not a histogram"));
        assert_eq!(back.len(), 2 * h.len());
    }

    #[test]
    fn quantiles_are_close_to_exact() {
        let mut h = LatencyHistogram::new(60_000_000_000);
        for i in 1..=1000u64 {
            h.record(i * 100_000); // 0.1 ms .. 100 ms
        }
        let q = h.quantiles();
        assert_eq!(q.count, 1000);
        assert!((q.p50 - 50_000.0).abs() <= 50.0, "{q:?}");
        assert!((q.p99 - 99_000.0).abs() <= 99.0, "{q:?}");
        assert!((q.max - 100_000.0).abs() <= 100.0, "{q:?}");
        assert!((q.mean - 50_050.0).abs() <= 1.0, "{q:?}");
    }

    #[test]
    fn values_above_max_are_clamped_and_counted() {
        let mut h = LatencyHistogram::new(1_000_000_000);
        h.record(5_000_000_000);
        h.record(1_000);
        assert_eq!(h.clamped(), 1);
        assert_eq!(h.len(), 2);
        assert!(h.quantile_ns(1.0) <= 1_000_000_000);
        assert!(h.quantile_ns(1.0) >= 999_000_000);
    }

    #[test]
    fn empty_histogram_reports_zero() {
        let h = LatencyHistogram::new(1_000_000_000);
        assert_eq!(h.quantiles(), Quantiles::default());
    }

    fn filled(values: &[u64]) -> LatencyHistogram {
        let mut h = LatencyHistogram::new(10_000_000_000);
        for &v in values {
            h.record(v);
        }
        h
    }

    proptest! {
        #[test]
        fn merge_is_associative_and_matches_recording_all(
            a in proptest::collection::vec(0u64..20_000_000_000, 0..50),
            b in proptest::collection::vec(0u64..20_000_000_000, 0..50),
            c in proptest::collection::vec(0u64..20_000_000_000, 0..50),
        ) {
            let (ha, hb, hc) = (filled(&a), filled(&b), filled(&c));
            let mut left = ha.clone();
            left.merge(&hb);
            left.merge(&hc);
            let mut bc = hb.clone();
            bc.merge(&hc);
            let mut right = ha.clone();
            right.merge(&bc);
            let all: Vec<u64> = a.iter().chain(&b).chain(&c).copied().collect();
            let direct = filled(&all);
            prop_assert_eq!(left.quantiles(), right.quantiles());
            prop_assert_eq!(left.quantiles(), direct.quantiles());
            prop_assert_eq!(left.clamped(), direct.clamped());
        }

        #[test]
        fn quantiles_never_decrease(values in proptest::collection::vec(0u64..20_000_000_000, 1..200)) {
            let h = filled(&values);
            let mut last = 0;
            for i in 0..=100 {
                let v = h.quantile_ns(i as f64 / 100.0);
                prop_assert!(v >= last);
                last = v;
            }
        }
    }
}
