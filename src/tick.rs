//! The frame clock: the game's tick period, its epoch, and the phase of an instant in the frame.
//!
//! Phase is `(t - epoch) mod period` over wall-clock Unix nanoseconds. The period is a rational
//! number of nanoseconds ([`Period`]): `60hz` is exactly 50,000,000/3 ns, so a 60 Hz phase view
//! does not drift over hours, and every phase is computed in integers. This module knows nothing
//! about samples, consumers or latencies; it only maps instants to frames and phases. Its
//! `[tick]` settings sit here too; each consumer's own clock is kept in [`crate::clocks`].

use crate::units::{Epoch, Invalid, number_and_unit};

/// A frame clock error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("period must be between 1us and 10s, got {0}")]
    Period(String),
    #[error("phase bins must be between 1 and 10000, got {0}")]
    Bins(u32),
}

/// Largest denominator of a period: a picosecond fraction of a decimal period, or a frequency
/// with up to three decimals.
const MAX_DEN: u64 = 1_000_000_000_000;

/// A frame period: `num / den` nanoseconds exactly, in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    num: u64,
    den: u64,
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Period {
    /// A whole number of nanoseconds.
    pub const fn from_ns(ns: u64) -> Self {
        Self { num: ns, den: 1 }
    }

    /// `num / den` nanoseconds, in lowest terms; `None` for a zero or an oversized term.
    pub fn ratio(num: u64, den: u64) -> Option<Self> {
        if num == 0 || den == 0 {
            return None;
        }
        let g = gcd(num, den);
        let (num, den) = (num / g, den / g);
        (den <= MAX_DEN).then_some(Self { num, den })
    }

    /// The period of `hz` frames a second, exact for frequencies written with up to three
    /// decimals (`60`, `59.94`).
    pub fn from_hz(hz: f64) -> Option<Self> {
        if !hz.is_finite() || hz <= 0.0 {
            return None;
        }
        let milli_hz = (hz * 1_000.0).round();
        if !(1.0..=1e15).contains(&milli_hz) {
            return None;
        }
        Self::ratio(1_000_000_000_000, milli_hz as u64)
    }

    /// A period given as fractional nanoseconds (an announced `period_ns`), to the picosecond.
    pub fn from_ns_f64(ns: f64) -> Option<Self> {
        if !ns.is_finite() || ns <= 0.0 {
            return None;
        }
        let ps = (ns * 1_000.0).round();
        if !(1.0..=1e19).contains(&ps) {
            return None;
        }
        Self::ratio(ps as u64, 1_000)
    }

    /// Parses a period as written in configuration and queries: a duration (`16ms`,
    /// `16.667ms`, `16666666.667ns`, exact to the picosecond) or a frequency (`60hz`, `59.94Hz`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if let Some(hz) = t
            .strip_suffix("hz")
            .or_else(|| t.strip_suffix("Hz"))
            .or_else(|| t.strip_suffix("HZ"))
        {
            let (n, d) = decimal(hz.trim(), 3)
                .ok_or_else(|| format!("{t:?} is not a frequency (e.g. 60hz, 59.94hz)"))?;
            // hz = n / d, period = 1e9 * d / n ns.
            return 1_000_000_000u64
                .checked_mul(d)
                .and_then(|num| Self::ratio(num, n))
                .ok_or_else(|| format!("{t:?} is out of range"));
        }
        // The exact form this type prints: `num/den ns`.
        if let Some((num, den)) = t.strip_suffix("ns").and_then(|r| r.trim().split_once('/')) {
            let whole = |v: &str| v.trim().parse::<u64>().ok();
            return whole(num)
                .zip(whole(den))
                .and_then(|(n, d)| Self::ratio(n, d))
                .ok_or_else(|| format!("{t:?} is not num/den ns in range"));
        }
        let (number, unit_ns) =
            number_and_unit(t).map_err(|e| format!("{e}, or a frequency such as 60hz"))?;
        let (n, d) = decimal(number, 12)
            .ok_or_else(|| format!("{t:?} is not a decimal number of at most 12 decimals"))?;
        n.checked_mul(unit_ns)
            .and_then(|num| Self::ratio(num, d))
            .filter(|p| p.den <= 1_000)
            .ok_or_else(|| format!("{t:?} is finer than a picosecond or too large"))
    }

    /// The period in nanoseconds, rounded.
    pub fn ns(&self) -> u64 {
        ((self.num as u128 + self.den as u128 / 2) / self.den as u128) as u64
    }

    /// The period in nanoseconds, as a float.
    pub fn ns_f64(&self) -> f64 {
        self.num as f64 / self.den as f64
    }

    /// `offset` (ns) modulo the period, in units of `1/den` ns, and the whole frames in it.
    fn split(&self, offset: i128) -> (i128, u128) {
        let scaled = offset * self.den as i128;
        let num = self.num as i128;
        (scaled.div_euclid(num), scaled.rem_euclid(num) as u128)
    }

    /// The frame and the phase (in `1/den` ns) of `offset` ns from the epoch; integer
    /// arithmetic in 64 bits when it fits (offsets of the last centuries at whole and 60 Hz
    /// periods), else 128.
    fn frame_and_scaled(&self, offset: i64) -> (i64, u64) {
        // `den <= MAX_DEN` fits an i64; below 2^62 the estimate's correction cannot overflow.
        if let (Some(scaled), Ok(num)) =
            (offset.checked_mul(self.den as i64), i64::try_from(self.num))
            && scaled.unsigned_abs() < 1 << 62
        {
            let (frame, phase) = div_rem_from(scaled, num, scaled as f64 / num as f64);
            return (frame, phase as u64);
        }
        let (frame, phase) = self.split(offset as i128);
        (frame as i64, phase as u64)
    }
}

/// `scaled` divided by `num` (positive), floored, and the remainder: the quotient estimated in
/// floating point as `approx` (off by one at most below 2^62), corrected in integers. Cheaper
/// than a 64-bit division on the hot path.
fn div_rem_from(scaled: i64, num: i64, approx: f64) -> (i64, i64) {
    let mut quotient = approx as i64;
    let mut rem = scaled - quotient * num;
    while rem < 0 {
        rem += num;
        quotient -= 1;
    }
    while rem >= num {
        rem -= num;
        quotient += 1;
    }
    (quotient, rem)
}

impl std::fmt::Display for Period {
    /// Whole nanoseconds as `16000000ns`, a rational one as a frequency when it is one
    /// (`60hz`), else as `num/den ns`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.den == 1 {
            return write!(f, "{}ns", self.num);
        }
        // 1e12 / (period in ns * 1000) mHz: whole when 1e12 * den is a multiple of num.
        let milli_hz = 1_000_000_000_000u128 * self.den as u128;
        if milli_hz.is_multiple_of(self.num as u128) {
            let m = milli_hz / self.num as u128;
            return if m.is_multiple_of(1_000) {
                write!(f, "{}hz", m / 1_000)
            } else {
                write!(f, "{}.{:03}hz", m / 1_000, m % 1_000)
            };
        }
        write!(f, "{}/{}ns", self.num, self.den)
    }
}

/// A non-negative decimal `number` with at most `max_decimals` decimals, as `n / 10^k`.
fn decimal(number: &str, max_decimals: usize) -> Option<(u64, u64)> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty())
        || frac.len() > max_decimals
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let scale = 10u64.pow(frac.len() as u32);
    let int: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let frac: u64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let n = int.checked_mul(scale)?.checked_add(frac)?;
    (n > 0).then_some((n, scale))
}

/// One frame clock's timing: a period and an instant at which a frame starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Frame {
    pub period: Period,
    pub epoch_ns: i64,
}

impl Frame {
    /// Checks the period's range (1 µs to 10 s).
    pub fn new(period: Period, epoch_ns: i64) -> Result<Self, Error> {
        if !(1_000.0..=10_000_000_000.0).contains(&period.ns_f64()) {
            return Err(Error::Period(period.to_string()));
        }
        Ok(Self { period, epoch_ns })
    }

    /// The frame `t_ns` falls in (counted from the epoch) and its phase in `1/den` ns.
    pub fn frame_and_scaled(&self, t_ns: i64) -> (i64, u64) {
        match t_ns.checked_sub(self.epoch_ns) {
            Some(offset) => self.period.frame_and_scaled(offset),
            None => {
                let (frame, phase) = self.period.split(t_ns as i128 - self.epoch_ns as i128);
                (frame as i64, phase as u64)
            }
        }
    }

    /// Nanoseconds into the frame at wall-clock instant `t_ns`, in `0..period` (floored).
    pub fn phase_ns(&self, t_ns: i64) -> u64 {
        self.frame_and_scaled(t_ns).1 / self.period.den
    }

    /// The bin of `t_ns` among `bins` equal bins of the frame, in `0..bins`.
    pub fn bin(&self, t_ns: i64, bins: u32) -> u32 {
        self.frame_and_bin(t_ns, bins).1
    }

    /// The first nanosecond of frame `k` (counted from the epoch).
    pub fn start_of(&self, k: i64) -> i64 {
        let offset = (k as i128 * self.period.num as i128).div_euclid(self.period.den as i128)
            + i128::from(
                (k as i128 * self.period.num as i128).rem_euclid(self.period.den as i128) != 0,
            );
        self.epoch_ns
            .saturating_add(offset.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }

    /// The frame `t_ns` falls in and its bin among `bins` equal bins of the frame.
    pub fn frame_and_bin(&self, t_ns: i64, bins: u32) -> (i64, u32) {
        let (frame, scaled) = self.frame_and_scaled(t_ns);
        (frame, self.bin_of_scaled(scaled, bins))
    }

    /// The phase of `t_ns` (ns, floored) and its bin among `bins` equal bins of the frame.
    pub fn phase_and_bin(&self, t_ns: i64, bins: u32) -> (u64, u32) {
        let scaled = self.frame_and_scaled(t_ns).1;
        (scaled / self.period.den, self.bin_of_scaled(scaled, bins))
    }

    fn bin_of_scaled(&self, scaled: u64, bins: u32) -> u32 {
        let bin = match scaled.checked_mul(bins as u64) {
            Some(v) => v / self.period.num,
            None => (scaled as u128 * bins as u128 / self.period.num as u128) as u64,
        };
        bin as u32
    }

    /// The phase range `[from, to)` of bin `bin` of `bins`, in nanoseconds.
    pub fn bin_range_ns(&self, bin: u32, bins: u32) -> (u64, u64) {
        let edge = |b: u32| {
            (b as u128 * self.period.num as u128).div_ceil(bins as u128 * self.period.den as u128)
                as u64
        };
        (edge(bin), edge(bin + 1))
    }

    /// The same period with its epoch moved by `shift_ns` (later when positive).
    pub fn shifted(&self, shift_ns: i64) -> Self {
        Self {
            period: self.period,
            epoch_ns: self.epoch_ns.saturating_add(shift_ns),
        }
    }
}

/// A frame's arithmetic near one instant, for folding many instants fast: frames counted from
/// a frame start near it (on a whole nanosecond, so exactly a frame start), the phase
/// estimated in floating point and corrected in integers (no integer division per instant).
/// Bins agree with [`Frame::bin`] but within a rounding of a bin edge.
#[derive(Debug, Clone, Copy)]
pub struct Folder {
    origin: i64,
    num: i64,
    den: i64,
    inv_num: f64,
}

impl Frame {
    /// A frame start at or before `t_ns` that falls on a whole nanosecond (for a fractional
    /// period, a frame a multiple of its denominator from the epoch), at most a million
    /// frames back; `None` when there is none that near.
    pub fn whole_start_near(&self, t_ns: i64) -> Option<i64> {
        let den = i64::try_from(self.period.den)
            .ok()
            .filter(|&d| d <= 1_000_000)?;
        let k = self.frame_and_scaled(t_ns).0;
        Some(self.start_of(k - k.rem_euclid(den)))
    }

    /// Whether `other` has the same period and frame starts.
    pub fn same_grid(&self, other: &Frame) -> bool {
        self.period == other.period && self.frame_and_scaled(other.epoch_ns).1 == 0
    }

    /// A folder for instants near `near_ns`; `None` for a period too large to fold fast.
    pub fn folder(&self, near_ns: i64) -> Option<Folder> {
        let num = i64::try_from(self.period.num).ok()?;
        let den = i64::try_from(self.period.den).ok()?;
        Some(Folder {
            origin: self.whole_start_near(near_ns)?,
            num,
            den,
            inv_num: 1.0 / num as f64,
        })
    }
}

impl Folder {
    /// The frame `t_ns` falls in (counted from the folder's origin) and its bin among `bins`;
    /// `None` when `t_ns` is too far from the origin to fold fast.
    pub fn frame_and_bin(&self, t_ns: i64, bins: u32) -> Option<(i64, u32)> {
        let scaled = t_ns.checked_sub(self.origin)?.checked_mul(self.den)?;
        if bins == 0 || scaled.unsigned_abs() >= 1 << 62 {
            return None;
        }
        let (frame, phase) = div_rem_from(scaled, self.num, scaled as f64 * self.inv_num);
        let bin = ((phase as f64 * bins as f64 * self.inv_num) as u32).min(bins - 1);
        Some((frame, bin))
    }
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

/// The game's frame clock as a view bins it: a frame, its phase bins, and which instant of a
/// sample is phased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameClock {
    frame: Frame,
    phase_bins: u32,
    phase_of: PhaseOf,
}

impl FrameClock {
    /// A clock of a whole number of nanoseconds.
    pub fn new(
        period_ns: u64,
        epoch_ns: i64,
        phase_bins: u32,
        phase_of: PhaseOf,
    ) -> Result<Self, Error> {
        Self::of(
            Frame::new(Period::from_ns(period_ns), epoch_ns)?,
            phase_bins,
            phase_of,
        )
    }

    pub fn of(frame: Frame, phase_bins: u32, phase_of: PhaseOf) -> Result<Self, Error> {
        if !(1..=10_000).contains(&phase_bins) {
            return Err(Error::Bins(phase_bins));
        }
        Ok(Self {
            frame,
            phase_bins,
            phase_of,
        })
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    pub fn period(&self) -> Period {
        self.frame.period
    }

    /// The period in nanoseconds, rounded.
    pub fn period_ns(&self) -> u64 {
        self.frame.period.ns()
    }

    pub fn epoch_ns(&self) -> i64 {
        self.frame.epoch_ns
    }

    pub fn phase_bins(&self) -> u32 {
        self.phase_bins
    }

    pub fn phase_of(&self) -> PhaseOf {
        self.phase_of
    }

    /// Nanoseconds into the frame at wall-clock instant `t_ns`, in `0..period`.
    pub fn phase_ns(&self, t_ns: i64) -> u64 {
        self.frame.phase_ns(t_ns)
    }

    /// The phase bin of `t_ns`, in `0..phase_bins`.
    pub fn phase_bin(&self, t_ns: i64) -> u32 {
        self.frame.bin(t_ns, self.phase_bins)
    }

    /// The phase range `[from, to)` of bin `bin`, in nanoseconds.
    pub fn bin_range_ns(&self, bin: u32) -> (u64, u64) {
        self.frame.bin_range_ns(bin, self.phase_bins)
    }
}

/// `[tick]`: the game's frame clock as the configuration writes it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTick {
    /// Frame period, default `"16ms"`; fractional values such as `"16.667ms"` and frequencies
    /// such as `"60hz"` (exactly 1/60 s) work.
    pub period: PeriodText,
    /// Alignment: an offset from the Unix epoch (`"3ms"`) or an RFC 3339 instant.
    pub epoch: Epoch,
    /// Phase bins across one frame, default 160.
    pub phase_bins: u32,
    /// `ack` (default) or `delivery`.
    pub phase_of: PhaseOf,
}

/// A period as written (`"16ms"`, `"60hz"`), read with [`Period::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodText(pub Period);

impl std::str::FromStr for PeriodText {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Period::parse(s).map(PeriodText)
    }
}

impl<'de> serde::Deserialize<'de> for PeriodText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|reason| serde::de::Error::custom(format!("invalid value {text:?}: {reason}")))
    }
}

impl Default for RawTick {
    fn default() -> Self {
        Self {
            period: PeriodText(Period::from_ns(16_000_000)),
            epoch: Epoch(0),
            phase_bins: 160,
            phase_of: PhaseOf::Ack,
        }
    }
}

impl RawTick {
    /// The frame clock, or which key of `[tick]` is wrong.
    pub fn validate(&self) -> Result<FrameClock, Invalid> {
        let period = self.period.0;
        Frame::new(period, self.epoch.0)
            .and_then(|frame| FrameClock::of(frame, self.phase_bins, self.phase_of))
            .map_err(|e| {
                let (key, value) = match e {
                    Error::Period(_) => ("period", period.to_string()),
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
            Err(Error::Period("0ns".into()))
        );
        assert_eq!(
            FrameClock::new(16_000_000, 0, 0, PhaseOf::Ack),
            Err(Error::Bins(0))
        );
    }

    #[test]
    fn periods_parse_exactly() {
        let p = Period::parse("60hz").unwrap();
        assert_eq!((p.num, p.den), (50_000_000, 3));
        assert_eq!(p.to_string(), "60hz");
        assert_eq!(p.ns(), 16_666_667);
        assert_eq!(Period::parse("59.94Hz").unwrap().to_string(), "59.940hz");
        assert_eq!(Period::parse("16ms").unwrap(), Period::from_ns(16_000_000));
        assert_eq!(
            Period::parse("16.667ms").unwrap(),
            Period::from_ns(16_667_000)
        );
        let frac = Period::parse("16666666.667ns").unwrap();
        assert_eq!((frac.num, frac.den), (16_666_666_667, 1_000));
        assert_eq!(Period::from_ns_f64(16_666_666.667), Some(frac));
        assert_eq!(Period::from_hz(60.0), Some(p));
        for bad in [
            "",
            "60",
            "hz",
            "-60hz",
            "0hz",
            "1.2.3ms",
            "16 parsecs",
            "0.0001ns",
            "60.0001hz",
        ] {
            assert!(Period::parse(bad).is_err(), "{bad:?} should not parse");
        }
        // What Display prints reads back.
        for p in [
            p,
            frac,
            Period::ratio(16_667_500_833, 1_000).unwrap(),
            Period::from_ns(7_000),
        ] {
            assert_eq!(Period::parse(&p.to_string()), Ok(p), "{p}");
        }
        assert!(Period::parse("1/0ns").is_err());
        assert_eq!(Period::from_hz(f64::NAN), None);
        assert_eq!(Period::from_ns_f64(-1.0), None);
    }

    #[test]
    fn sixty_hertz_does_not_drift_in_a_day() {
        let f = Frame::new(Period::parse("60hz").unwrap(), 0).unwrap();
        // 60 frames a second for a day: frame starts keep phase 0 to the nanosecond.
        let day = 86_400_000_000_000i64;
        assert_eq!(f.phase_ns(day), 0);
        assert_eq!(f.frame_and_scaled(day).0, 86_400 * 60);
        // A nanosecond before: 16,666,665.67 ns into the frame before.
        assert_eq!(f.phase_ns(day - 1), 16_666_665);
        // At a realistic Unix time, 1/60 s later is the same phase.
        let t = 1_790_000_000_123_456_789i64;
        assert_eq!(f.phase_ns(t), f.phase_ns(t + 1_000_000_000));
        // Whole-nanosecond approximations drift: 16,666,667 ns by 1.2 µs a minute, 16.667 ms
        // by 1.2 ms.
        let near = Frame::new(Period::from_ns(16_666_667), 0).unwrap();
        assert_eq!(near.phase_ns(60_000_000_000), 16_666_667 - 1_200);
        let rounded = Frame::new(Period::from_ns(16_667_000), 0).unwrap();
        assert_eq!(rounded.phase_ns(60_000_000_000), 16_667_000 - 1_200_000);
    }

    #[test]
    fn a_grid_is_the_same_from_any_of_its_frame_starts() {
        let f = Frame::new(Period::parse("60hz").unwrap(), 100).unwrap();
        let near = f.whole_start_near(1_790_000_000_000_000_000).unwrap();
        assert_eq!(f.phase_ns(near), 0);
        assert_eq!(f.frame_and_scaled(near).1, 0, "exactly a frame start");
        let moved = Frame {
            epoch_ns: near,
            ..f
        };
        assert!(f.same_grid(&moved) && moved.same_grid(&f));
        assert!(!f.same_grid(&Frame {
            epoch_ns: near + 1,
            ..f
        }));
        assert!(!f.same_grid(&Frame::new(Period::from_ns(16_666_667), near).unwrap()));
    }

    #[test]
    fn frame_starts_are_the_first_nanosecond_of_each_frame() {
        let f = Frame::new(Period::parse("60hz").unwrap(), 100).unwrap();
        for k in [-3i64, 0, 1, 2, 3, 1_000_001] {
            let start = f.start_of(k);
            assert_eq!(f.phase_ns(start), 0, "frame {k}");
            assert_eq!(f.frame_and_scaled(start).0, k);
            assert_eq!(f.frame_and_scaled(start - 1).0, k - 1);
        }
    }

    #[test]
    fn a_folder_agrees_with_its_frame() {
        let f = Frame::new(Period::parse("60hz").unwrap(), 1_790_000_000_000_000_001).unwrap();
        let near = 1_790_000_100_000_000_000i64;
        let folder = f.folder(near).unwrap();
        let first = folder.frame_and_bin(near, 32).unwrap().0;
        // Every frame start from a few frames back on, and instants in between.
        let starts = (-20..20).map(|k| f.start_of(f.frame_and_scaled(near).0 + k));
        let between = (0..10_000i64).map(|k| near - 7_000_000_000 + k * 1_234_567);
        for t in starts.chain(between) {
            let (frame, bin) = folder.frame_and_bin(t, 32).unwrap();
            let (exact_frame, exact_bin) = f.frame_and_bin(t, 32);
            assert_eq!(
                frame - first,
                exact_frame - f.frame_and_bin(near, 32).0,
                "{t}"
            );
            assert!(bin.abs_diff(exact_bin) <= 1, "{t}: {bin} vs {exact_bin}");
        }
    }

    #[test]
    fn bins_of_a_rational_period_tile_it() {
        let f = Frame::new(Period::parse("60hz").unwrap(), 5).unwrap();
        assert_eq!(f.bin_range_ns(0, 10).0, 0);
        assert_eq!(f.bin_range_ns(9, 10).1, 16_666_667);
        assert_eq!(f.bin(5, 10), 0);
        assert_eq!(f.bin(4, 10), 9);
    }

    proptest! {
        #[test]
        fn a_rational_phase_is_in_range_and_bin_agrees(
            num in 1_000_000u64..100_000_000_000,
            den in 1u64..100_000,
            epoch in any::<i64>(),
            t in any::<i64>(),
            bins in 1u32..2000,
        ) {
            let Some(period) = Period::ratio(num, den) else { return Ok(()) };
            let Ok(f) = Frame::new(period, epoch) else { return Ok(()) };
            let phase = f.phase_ns(t);
            prop_assert!((phase as f64) < period.ns_f64());
            let bin = f.bin(t, bins);
            prop_assert!(bin < bins);
            let (lo, hi) = f.bin_range_ns(bin, bins);
            // Bin edges fall between nanoseconds of a fractional period; the floored phase
            // and the edge rounded up may be one apart.
            prop_assert!(lo <= phase + 1 && phase < hi.max(lo + 1), "{lo} <= {phase} < {hi}");
            // The 64-bit path agrees with the 128-bit one.
            let offset = t as i128 - epoch as i128;
            let (frame, scaled) = period.split(offset);
            prop_assert_eq!(f.frame_and_scaled(t), (frame as i64, scaled as u64));
        }

        #[test]
        fn any_text_parses_or_errs(text in ".{0,24}") {
            let _ = Period::parse(&text);
        }

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
