//! Spike detection over windowed P99s: a robust rolling baseline (the median of recent quiet
//! windows, and their median absolute deviation), a spike when a window's P99 exceeds it by a
//! factor, a minimum margin and a multiple of the deviation, or exceeds an absolute SLO.
//! Nearby spike windows merge into one spike. Windows with too few samples neither spike nor
//! count towards the baseline, so quiet consumers never spike on noise.

use super::config::SpikeConfig;

/// One window's P99, as aggregation closed it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowP99 {
    pub start_ns: i64,
    pub end_ns: i64,
    pub p99_ns: u64,
    pub samples: u64,
}

/// A detected spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    pub start_ns: i64,
    pub end_ns: i64,
    /// The highest window P99 inside the spike.
    pub peak_p99_ns: u64,
    /// The baseline P99 when the spike began.
    pub baseline_p99_ns: u64,
    /// Windows that exceeded the threshold.
    pub windows: usize,
}

fn median(values: &[u64]) -> u64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    v[v.len() / 2]
}

/// Finds the spikes in `windows` (oldest first).
pub fn find_spikes(windows: &[WindowP99], cfg: &SpikeConfig) -> Vec<Spike> {
    let mut quiet: Vec<u64> = Vec::new();
    let mut spikes: Vec<Spike> = Vec::new();
    let mut last_spike_window: Option<usize> = None;
    for (i, w) in windows.iter().enumerate() {
        if w.samples < cfg.min_samples {
            continue;
        }
        let recent = &quiet[quiet.len().saturating_sub(cfg.baseline_windows)..];
        let baseline = (recent.len() >= cfg.warmup_windows).then(|| {
            let m = median(recent);
            let deviation: Vec<u64> = recent.iter().map(|&p| p.abs_diff(m)).collect();
            (m, 1.4826 * median(&deviation) as f64)
        });
        let over_baseline = baseline.is_some_and(|(b, sigma)| {
            w.p99_ns as f64 > b as f64 * cfg.factor
                && w.p99_ns >= b + cfg.min_margin_ns
                && (w.p99_ns - b) as f64 >= cfg.deviations * sigma
        });
        let over_slo = cfg.slo_ns.is_some_and(|slo| w.p99_ns > slo);
        if !(over_baseline || over_slo) {
            quiet.push(w.p99_ns);
            continue;
        }
        let merge = last_spike_window.is_some_and(|j| i - j <= cfg.merge_gap + 1);
        match spikes.last_mut() {
            Some(s) if merge => {
                s.end_ns = w.end_ns;
                s.peak_p99_ns = s.peak_p99_ns.max(w.p99_ns);
                s.windows += 1;
            }
            _ => spikes.push(Spike {
                start_ns: w.start_ns,
                end_ns: w.end_ns,
                peak_p99_ns: w.p99_ns,
                baseline_p99_ns: baseline.map_or(0, |(b, _)| b),
                windows: 1,
            }),
        }
        last_spike_window = Some(i);
    }
    spikes.retain(|s| s.windows >= cfg.min_windows);
    spikes
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const S: i64 = 1_000_000_000;

    fn windows(p99_ms: &[u64]) -> Vec<WindowP99> {
        p99_ms
            .iter()
            .enumerate()
            .map(|(i, &p)| WindowP99 {
                start_ns: i as i64 * S,
                end_ns: (i as i64 + 1) * S,
                p99_ns: p * MS,
                samples: 100,
            })
            .collect()
    }

    #[test]
    fn a_jump_over_the_baseline_is_one_spike() {
        let w = windows(&[8, 9, 8, 8, 9, 8, 8, 47, 52, 8, 45, 8, 8, 8, 8, 8, 8, 8]);
        let spikes = find_spikes(&w, &SpikeConfig::default());
        assert_eq!(spikes.len(), 1, "{spikes:?}");
        let s = spikes[0];
        assert_eq!(
            (s.start_ns, s.end_ns),
            (7 * S, 11 * S),
            "windows 7, 8 and 10 merge"
        );
        assert_eq!(
            (s.peak_p99_ns, s.baseline_p99_ns, s.windows),
            (52 * MS, 8 * MS, 3)
        );
    }

    #[test]
    fn noise_and_quiet_consumers_do_not_spike() {
        // Wobbling between 8 and 12 ms: never 1.5x the median.
        let w = windows(&[8, 12, 9, 11, 8, 12, 10, 12, 9, 12]);
        assert!(find_spikes(&w, &SpikeConfig::default()).is_empty());
        // A huge P99 in a window of three samples is noise.
        let mut w = windows(&[8, 8, 8, 8, 8, 8, 300]);
        w[6].samples = 3;
        assert!(find_spikes(&w, &SpikeConfig::default()).is_empty());
        // Before the baseline exists nothing spikes, unless an SLO is set.
        let w = windows(&[8, 300]);
        assert!(find_spikes(&w, &SpikeConfig::default()).is_empty());
        let slo = SpikeConfig {
            slo_ns: Some(100 * MS),
            min_windows: 1,
            ..SpikeConfig::default()
        };
        assert_eq!(find_spikes(&w, &slo).len(), 1);
        // Two windows over the threshold are noise by default (a machine's hiccup).
        let w = windows(&[8, 8, 8, 8, 8, 8, 60, 60, 8, 8, 8, 8]);
        assert!(find_spikes(&w, &SpikeConfig::default()).is_empty());
    }

    #[test]
    fn a_consumer_that_always_wobbles_needs_a_larger_jump() {
        // P99 swinging between 5 and 15 ms: 20 ms is within its usual range (over 1.5x and
        // 3 ms above the median of 10, but under 4 robust deviations); 60 ms is not.
        let mut p: Vec<u64> = (0..40).map(|i| [5, 10, 15, 8, 12][i % 5]).collect();
        p.extend([20, 20, 20, 10, 10, 10, 10, 60, 60, 60]);
        let spikes = find_spikes(&windows(&p), &SpikeConfig::default());
        assert_eq!(spikes.len(), 1, "{spikes:?}");
        assert_eq!(spikes[0].peak_p99_ns, 60 * MS);
        // The same 20 ms after a steady 10 ms is a spike.
        let mut steady = vec![10; 40];
        steady.extend([20, 20, 20]);
        assert_eq!(
            find_spikes(&windows(&steady), &SpikeConfig::default()).len(),
            1
        );
    }

    #[test]
    fn spikes_far_apart_stay_apart_and_do_not_raise_the_baseline() {
        let mut p = vec![8; 30];
        p[10..13].fill(60);
        p[20..23].fill(60);
        let spikes = find_spikes(&windows(&p), &SpikeConfig::default());
        assert_eq!(spikes.len(), 2);
        assert_eq!(spikes[1].baseline_p99_ns, 8 * MS);
    }
}
