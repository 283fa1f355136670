//! The settings of spike detection, beside it: `[spikes]` as the file writes it and the
//! [`SpikeConfig`] that [`super::spikes::find_spikes`] runs on.

use std::time::Duration;

use serde::Deserialize;

use crate::units::{Dur, Invalid, optional_dur};

/// `[spikes]`: when a consumer's windowed P99 is a spike.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSpikes {
    /// A window spikes when its P99 exceeds the baseline P99 by this factor …
    pub factor: f64,
    /// … and by at least this much …
    pub min_margin: Dur,
    /// … and by this many robust standard deviations of the baseline windows' P99s.
    pub deviations: f64,
    /// Or when its P99 exceeds this, whatever the baseline ("" for none).
    #[serde(deserialize_with = "optional_dur")]
    pub slo: Option<Dur>,
    /// Windows with fewer samples neither spike nor count towards the baseline.
    pub min_samples: u64,
    /// Windows over the threshold a spike needs.
    pub min_windows: usize,
}

impl Default for RawSpikes {
    fn default() -> Self {
        let d = SpikeConfig::default();
        Self {
            factor: d.factor,
            min_margin: Dur(Duration::from_nanos(d.min_margin_ns)),
            deviations: d.deviations,
            slo: None,
            min_samples: d.min_samples,
            min_windows: d.min_windows,
        }
    }
}

/// Spike detection settings (`[spikes]`): when a window's P99 is a spike.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpikeConfig {
    /// A window spikes when its P99 exceeds `factor` × the baseline P99 …
    pub factor: f64,
    /// … and the baseline by at least this much …
    pub min_margin_ns: u64,
    /// … and by at least this many robust standard deviations (1.4826 × the median absolute
    /// deviation of the quiet windows' P99s): a consumer whose P99 always wobbles a lot needs
    /// a larger jump.
    pub deviations: f64,
    /// Or when its P99 exceeds this, whatever the baseline.
    pub slo_ns: Option<u64>,
    /// Windows with fewer samples are ignored.
    pub min_samples: u64,
    /// Quiet windows the baseline is the median of.
    pub baseline_windows: usize,
    /// Quiet windows needed before anything can spike (SLO breaches excepted).
    pub warmup_windows: usize,
    /// Spike windows this many windows apart or closer merge into one spike.
    pub merge_gap: usize,
    /// A spike needs at least this many windows over the threshold: one noisy window is not one.
    pub min_windows: usize,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            factor: 1.5,
            min_margin_ns: 3_000_000,
            deviations: 4.0,
            slo_ns: None,
            min_samples: 20,
            baseline_windows: 60,
            warmup_windows: 5,
            merge_gap: 2,
            min_windows: 3,
        }
    }
}

impl RawSpikes {
    /// Checks every value of `[spikes]`; keys are named within the section.
    pub fn validate(&self) -> Result<SpikeConfig, Invalid> {
        if !(self.factor.is_finite() && self.factor >= 1.0) {
            return Err(Invalid::new(
                "factor",
                self.factor.to_string(),
                "must be a number ≥ 1",
            ));
        }
        if !(self.deviations.is_finite() && self.deviations >= 0.0) {
            return Err(Invalid::new(
                "deviations",
                self.deviations.to_string(),
                "must be a number ≥ 0",
            ));
        }
        if self.min_windows == 0 {
            return Err(Invalid::new("min_windows", "0", "must be > 0"));
        }
        Ok(SpikeConfig {
            factor: self.factor,
            min_margin_ns: self.min_margin.ns(),
            deviations: self.deviations,
            slo_ns: self.slo.map(Dur::ns),
            min_samples: self.min_samples,
            min_windows: self.min_windows,
            ..SpikeConfig::default()
        })
    }
}
