//! The frame clock: the game's tick period, its epoch, and the phase of an instant in the frame.
//!
//! Phase is `(t - epoch) mod period` over wall-clock Unix nanoseconds, computed in integers so a
//! fractional period such as 16.667 ms never drifts. This module knows nothing about samples or
//! latencies; it only maps instants to phases and phase bins. Its `[tick]` settings sit here too.

use crate::units::{Dur, Epoch, Invalid};

/// A frame clock error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("period must be between 1us and 10s, got {0}ns")]
    Period(u64),
    #[error("phase bins must be between 1 and 10000, got {0}")]
    Bins(u32),
}

/// Which instant of a sample its phase is taken from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PhaseOf {
    Ack,
    Delivery,
}

impl PhaseOf {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseOf::Ack => "ack",
            PhaseOf::Delivery => "delivery",
        }
    }
}

/// The game's frame clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameClock {
    period_ns: u64,
    epoch_ns: i64,
    phase_bins: u32,
    phase_of: PhaseOf,
}

impl FrameClock {
    pub fn new(
        period_ns: u64,
        epoch_ns: i64,
        phase_bins: u32,
        phase_of: PhaseOf,
    ) -> Result<Self, Error> {
        if !(1_000..=10_000_000_000).contains(&period_ns) {
            return Err(Error::Period(period_ns));
        }
        if !(1..=10_000).contains(&phase_bins) {
            return Err(Error::Bins(phase_bins));
        }
        Ok(Self {
            period_ns,
            epoch_ns,
            phase_bins,
            phase_of,
        })
    }

    pub fn period_ns(&self) -> u64 {
        self.period_ns
    }

    pub fn epoch_ns(&self) -> i64 {
        self.epoch_ns
    }

    pub fn phase_bins(&self) -> u32 {
        self.phase_bins
    }

    pub fn phase_of(&self) -> PhaseOf {
        self.phase_of
    }

    /// Nanoseconds into the frame at wall-clock instant `t_ns`, in `0..period`.
    pub fn phase_ns(&self, t_ns: i64) -> u64 {
        // The period is at most 10 s, so it fits an i64; 128-bit division only when the
        // offset itself overflows (instants centuries apart).
        match t_ns.checked_sub(self.epoch_ns) {
            Some(offset) => offset.rem_euclid(self.period_ns as i64) as u64,
            None => {
                let offset = t_ns as i128 - self.epoch_ns as i128;
                offset.rem_euclid(self.period_ns as i128) as u64
            }
        }
    }

    /// The phase bin of `t_ns`, in `0..phase_bins`.
    pub fn phase_bin(&self, t_ns: i64) -> u32 {
        // phase < 10^10 and bins <= 10^4: the product fits a u64.
        (self.phase_ns(t_ns) * self.phase_bins as u64 / self.period_ns) as u32
    }

    /// The phase range `[from, to)` of bin `bin`, in nanoseconds.
    pub fn bin_range_ns(&self, bin: u32) -> (u64, u64) {
        let edge =
            |b: u32| (b as u128 * self.period_ns as u128).div_ceil(self.phase_bins as u128) as u64;
        (edge(bin), edge(bin + 1))
    }
}

/// `[tick]`: the game's frame clock as the configuration writes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTick {
    /// Frame period, default `"16ms"`; fractional values such as `"16.667ms"` work.
    pub period: Dur,
    /// Alignment: an offset from the Unix epoch (`"3ms"`) or an RFC 3339 instant.
    pub epoch: Epoch,
    /// Phase bins across one frame, default 160.
    pub phase_bins: u32,
    /// `ack` (default) or `delivery`.
    pub phase_of: PhaseOf,
}

impl Default for RawTick {
    fn default() -> Self {
        Self {
            period: Dur::from_millis(16),
            epoch: Epoch(0),
            phase_bins: 160,
            phase_of: PhaseOf::Ack,
        }
    }
}

impl RawTick {
    /// The frame clock, or which key of `[tick]` is wrong.
    pub fn validate(&self) -> Result<FrameClock, Invalid> {
        FrameClock::new(
            self.period.ns(),
            self.epoch.0,
            self.phase_bins,
            self.phase_of,
        )
        .map_err(|e| {
            let (key, value) = match e {
                Error::Period(_) => ("period", self.period.to_string()),
                Error::Bins(_) => ("phase_bins", self.phase_bins.to_string()),
            };
            Invalid::new(key, value, e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn phase_of_reads_and_writes_its_name() {
        for p in [PhaseOf::Ack, PhaseOf::Delivery] {
            let json = serde_json::to_value(p).unwrap();
            assert_eq!(json, p.as_str());
            assert_eq!(serde_json::from_value::<PhaseOf>(json).unwrap(), p);
        }
    }

    fn clock(period_ns: u64, bins: u32) -> FrameClock {
        FrameClock::new(period_ns, 0, bins, PhaseOf::Ack).unwrap()
    }

    #[test]
    fn phase_at_period_boundaries() {
        let c = clock(16_000_000, 160);
        assert_eq!(c.phase_ns(0), 0);
        assert_eq!(c.phase_ns(15_999_999), 15_999_999);
        assert_eq!(c.phase_ns(16_000_000), 0);
        assert_eq!(c.phase_bin(15_999_999), 159);
        assert_eq!(c.phase_bin(16_000_000), 0);
        assert_eq!(c.phase_bin(99_999), 0);
        assert_eq!(c.phase_bin(100_000), 1);
        // Before the epoch the phase still lands in 0..period.
        assert_eq!(c.phase_ns(-1), 15_999_999);
    }

    #[test]
    fn fractional_period_does_not_drift() {
        let c = clock(16_667_000, 160);
        // One day of frames later, frame starts still have phase 0.
        let frames: i64 = 86_400_000_000_000 / 16_667_000;
        assert_eq!(c.phase_ns(frames * 16_667_000), 0);
        assert_eq!(c.phase_ns(frames * 16_667_000 + 16_666_999), 16_666_999);
        assert_eq!(c.phase_bin(frames * 16_667_000 + 16_666_999), 159);
        // A realistic Unix time.
        let t = 1_790_000_000_123_456_789i64;
        assert_eq!(c.phase_ns(t), (t % 16_667_000) as u64);
    }

    #[test]
    fn epoch_shifts_the_phase() {
        let c = FrameClock::new(16_000_000, 3_000_000, 16, PhaseOf::Ack).unwrap();
        assert_eq!(c.phase_ns(3_000_000), 0);
        assert_eq!(c.phase_ns(2_000_000), 15_000_000);
    }

    #[test]
    fn bin_ranges_tile_the_period() {
        let c = clock(16_667_000, 7);
        assert_eq!(c.bin_range_ns(0).0, 0);
        assert_eq!(c.bin_range_ns(6).1, 16_667_000);
        for b in 0..6 {
            assert_eq!(c.bin_range_ns(b).1, c.bin_range_ns(b + 1).0);
        }
    }

    #[test]
    fn invalid_clocks_are_rejected() {
        assert_eq!(
            FrameClock::new(0, 0, 160, PhaseOf::Ack),
            Err(Error::Period(0))
        );
        assert_eq!(
            FrameClock::new(16_000_000, 0, 0, PhaseOf::Ack),
            Err(Error::Bins(0))
        );
    }

    proptest! {
        #[test]
        fn phase_is_in_range_and_bin_agrees(
            period in 1_000u64..10_000_000_000,
            bins in 1u32..2000,
            epoch in any::<i64>(),
            t in any::<i64>(),
        ) {
            let c = FrameClock::new(period, epoch, bins, PhaseOf::Ack).unwrap();
            let phase = c.phase_ns(t);
            prop_assert!(phase < period);
            let bin = c.phase_bin(t);
            prop_assert!(bin < bins);
            let (lo, hi) = c.bin_range_ns(bin);
            prop_assert!(lo <= phase && phase < hi, "{lo} <= {phase} < {hi}");
        }
    }
}
