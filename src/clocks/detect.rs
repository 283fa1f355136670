//! Tick detection: the frame period actually present in the ack times, found by epoch folding
//! near the configured period. A wrong tick smears the phase heatmap; this says by how much.
//!
//! For a candidate period `P`, every ack instant folds to a phase angle `2π (t mod P) / P`; the
//! mean resultant length `R` of those angles is near 1 when acks keep to one part of the frame
//! and near `1/√N` when they do not. The search is coarse to fine: a short stretch of recent
//! acks tolerates a coarse period step, a long one pins the period to the microsecond.

/// How far from the configured period the search looks, as a fraction.
pub const SEARCH_FRACTION: f64 = 0.05;
/// Most ack instants folded per step.
const MAX_POINTS: usize = 4_000;
/// Stretches of recent acks used, shortest first (nanoseconds).
const SPANS_NS: [i64; 4] = [1_000_000_000, 4_000_000_000, 16_000_000_000, 64_000_000_000];

/// A detected period and how clearly it stands out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detected {
    pub period_ns: u64,
    /// Mean resultant length at the detected period, 0..1.
    pub strength: f64,
}

/// Mean resultant length of `times` folded at `period_ns`.
fn resultant(times: &[i64], period_ns: u64) -> f64 {
    if period_ns == 0 {
        return 0.0;
    }
    let p = period_ns as i64;
    let (mut c, mut s) = (0.0f64, 0.0f64);
    for &t in times {
        let angle = std::f64::consts::TAU * (t.rem_euclid(p) as f64 / p as f64);
        c += angle.cos();
        s += angle.sin();
    }
    (c * c + s * s).sqrt() / times.len().max(1) as f64
}

/// At most `max_points` of `times`, evenly spaced.
fn thin(times: &[i64], max_points: usize) -> Vec<i64> {
    let stride = times.len().div_ceil(max_points.max(1)).max(1);
    times.iter().step_by(stride).copied().collect()
}

/// Finds the period near `configured_ns` that the ack instants `times` (Unix ns) follow, or
/// `None` when there are too few acks or no period stands out.
pub fn detect_period(times: &[i64], configured_ns: u64) -> Option<Detected> {
    detect_period_in(times, configured_ns, MAX_POINTS)
}

/// [`detect_period`] folding at most `max_points` acks a step: fewer is coarser and cheaper
/// (the cost is points × candidate periods, a sine and a cosine each).
pub fn detect_period_in(times: &[i64], configured_ns: u64, max_points: usize) -> Option<Detected> {
    if times.len() < 200 || configured_ns < 1_000 {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let end = *sorted.last()?;
    let start = sorted[0];
    // Relative times keep the arithmetic small; a shift only rotates every angle alike.
    let p = configured_ns as f64;
    let (floor, ceiling) = (p * (1.0 - SEARCH_FRACTION), p * (1.0 + SEARCH_FRACTION));
    let (mut lo, mut hi) = (floor, ceiling);
    let mut best = (configured_ns, 0.0);
    let mut used_span = 0;
    for span in SPANS_NS {
        let span = span.min(end - start);
        if span <= used_span {
            break;
        }
        used_span = span;
        let from = sorted.partition_point(|&t| t < end - span);
        let window: Vec<i64> = thin(&sorted[from..], max_points)
            .iter()
            .map(|t| t - start)
            .collect();
        // Phases drift by a whole frame when the period is off by p²/span: step a quarter of it.
        let step = (p * p / span.max(1) as f64 / 4.0).max(1_000.0);
        let mut candidate = lo;
        best = (best.0, 0.0);
        while candidate <= hi {
            let period = candidate.round() as u64;
            let r = resultant(&window, period);
            if r > best.1 {
                best = (period, r);
            }
            candidate += step;
        }
        // Never beyond the search range: a step wider than the range at short periods would
        // reach zero.
        lo = (best.0 as f64 - 2.0 * step).max(floor);
        hi = (best.0 as f64 + 2.0 * step).min(ceiling);
    }
    // Last, every microsecond between the neighbours of the best coarse candidate.
    let folded: Vec<i64> = thin(&sorted, max_points)
        .iter()
        .map(|t| t - start)
        .collect();
    let (lo_us, hi_us) = (
        ((lo / 1_000.0).floor() as u64).max(1),
        (hi / 1_000.0).ceil() as u64,
    );
    let (period_ns, strength) = (lo_us..=hi_us)
        .map(|us| (us * 1_000, resultant(&folded, us * 1_000)))
        .fold((best.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    // Uniform phases give R ≈ 1/√N; demand a clear margin above that.
    let noise = 1.0 / (folded.len() as f64).sqrt();
    (strength >= (6.0 * noise).max(0.2)).then_some(Detected {
        period_ns,
        strength,
    })
}

/// Whether `detected` differs from `configured` by more than half a percent.
pub fn differs(detected_ns: u64, configured_ns: u64) -> bool {
    (detected_ns as f64 - configured_ns as f64).abs() > 0.005 * configured_ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    const T0: i64 = 1_790_000_000_123_456_789;

    /// Acks of a game at `period_ns`, 40 per frame, near `phase_ns` of each frame.
    fn acks(period_ns: i64, phase_ns: i64, seconds: i64, seed: u64) -> Vec<i64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let frames = seconds * 1_000_000_000 / period_ns;
        (0..frames)
            .flat_map(|f| (0..40).map(move |k| (f, k)))
            .map(|(f, _)| T0 + f * period_ns + phase_ns + rng.random_range(-800_000..800_000))
            .collect()
    }

    #[test]
    fn finds_a_fractional_period_near_the_configured_one() {
        let times = acks(16_667_000, 5_000_000, 20, 1);
        let d = detect_period(&times, 16_000_000).expect("a period");
        assert!(d.period_ns.abs_diff(16_667_000) <= 2_000, "{d:?}");
        assert!(d.strength > 0.5, "{d:?}");
        assert!(differs(d.period_ns, 16_000_000));
    }

    #[test]
    fn confirms_the_configured_period() {
        let times = acks(16_000_000, 12_000_000, 10, 2);
        let d = detect_period(&times, 16_000_000).expect("a period");
        assert!(d.period_ns.abs_diff(16_000_000) <= 1_000, "{d:?}");
        assert!(!differs(d.period_ns, 16_000_000));
    }

    #[test]
    fn the_shortest_periods_search_no_period_of_zero() {
        for period in [1_000i64, 2_000, 3_000] {
            let times: Vec<i64> = (0..1_000).map(|k| T0 + k * period + 100).collect();
            if let Some(d) = detect_period(&times, period as u64) {
                assert!(d.period_ns >= 950, "{d:?}");
            }
        }
    }

    #[test]
    fn random_acks_have_no_period() {
        let mut rng = StdRng::seed_from_u64(3);
        let times: Vec<i64> = (0..20_000)
            .map(|_| T0 + rng.random_range(0..10_000_000_000))
            .collect();
        assert_eq!(detect_period(&times, 16_000_000), None);
        assert_eq!(
            detect_period(&times[..100], 16_000_000),
            None,
            "too few acks"
        );
    }
}
