//! Durations and instants as people write them in configuration, scenarios and query
//! parameters (`"16ms"`, `"16.667ms"`, `"250us"`, an RFC 3339 instant): one exact parser, and
//! the serde types the configuration reads them into. Plain functions, no I/O.

use std::time::Duration;

use serde::Deserialize;

/// A duration as the configuration writes it (`"16ms"`, `"16.667ms"`, `"250us"`), read with
/// [`parse_duration`] when the file is read: exact to the nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }

    pub const fn from_micros(us: u64) -> Self {
        Dur(Duration::from_micros(us))
    }

    /// Nanoseconds, saturating.
    pub fn ns(self) -> u64 {
        duration_ns(self.0)
    }
}

impl std::str::FromStr for Dur {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_duration(s).map(Dur)
    }
}

impl std::fmt::Display for Dur {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}ns", self.ns())
    }
}

/// A size in bytes as the configuration writes it (`"10GiB"`, `"512MiB"`, `"1GB"`, `"4096B"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

impl std::str::FromStr for Bytes {
    type Err = String;

    /// A whole or decimal number and a unit: `B`, `KB`/`MB`/`GB`/`TB` (powers of 1000) or
    /// `KiB`/`MiB`/`GiB`/`TiB` (powers of 1024); the size rounds down to a whole byte.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("{s:?} has no unit (use B, KB, MB, GB, KiB, MiB, GiB, …)"))?;
        let (number, unit) = s.split_at(split);
        let unit: u64 = match unit.trim() {
            "B" => 1,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown unit {other:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"
                ));
            }
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a decimal number"))?;
        let bytes = value * unit as f64;
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(Bytes(bytes as u64))
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, str::parse)
    }
}

/// A configured value that parses but is not allowed: the key (dotted from its section, such
/// as `join.capacity`), the value as written and why. Each component checks its own section
/// and names keys within it; [`Invalid::within`] prefixes the section.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: invalid value {value:?}: {reason}")]
pub struct Invalid {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl Invalid {
    pub fn new(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            key: key.to_string(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// The same error with its key under `section` (`capacity` → `join.capacity`).
    pub fn within(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

/// Reads a string and parses it with `parse`; a value that does not parse is an error that
/// quotes it.
fn read<'de, D: serde::Deserializer<'de>, T>(
    deserializer: D,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .map_err(|reason| serde::de::Error::custom(format!("invalid value {text:?}: {reason}")))
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, str::parse)
    }
}

/// An optional duration, where `""` means none (`spikes.slo`).
pub fn optional_dur<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Dur>, D::Error> {
    read(deserializer, |text| match text.trim() {
        "" => Ok(None),
        t => t.parse().map(Some),
    })
}

/// `tick.epoch`: an offset from the Unix epoch (`"3ms"`) or an RFC 3339 instant, in Unix ns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(pub i64);

impl<'de> Deserialize<'de> for Epoch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, |text| parse_epoch(text).map(Epoch))
    }
}

/// Nanoseconds of a duration, saturating at `u64::MAX`.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Parses a human duration: a decimal number and a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`,
/// `d`),
/// e.g. `16ms`, `16.667ms`, `250us`, `30s`. The value must be a whole number of nanoseconds, so
/// fractional periods are exact.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit_ns) = number_and_unit(s)?;
    let unit_ns = u128::from(unit_ns);
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(format!("{s:?} has no number"));
    }
    if frac.contains('.') || frac.len() > 18 {
        return Err(format!("{s:?} is not a decimal number"));
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| format!("{s:?} is too large"))?
    };
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse()
            .map_err(|_| format!("{s:?} is not a decimal number"))?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let frac_ns = frac_value * unit_ns;
    if !frac_ns.is_multiple_of(scale) {
        return Err(format!("{s:?} is finer than a nanosecond"));
    }
    let total = int
        .checked_mul(unit_ns)
        .and_then(|v| v.checked_add(frac_ns / scale))
        .filter(|v| *v <= u64::MAX as u128)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    Ok(Duration::from_nanos(total as u64))
}

/// A duration's decimal number and its unit in nanoseconds: `16.667ms` → (`16.667`, 10⁶).
pub fn number_and_unit(s: &str) -> Result<(&str, u64), String> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?} has no unit (use ns, us, ms, s, m, h or d)"))?;
    let (number, unit) = s.split_at(split);
    let unit_ns = match unit.trim() {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "d" => 86_400_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use ns, us, ms, s, m, h or d)"
            ));
        }
    };
    Ok((number, unit_ns))
}

/// Parses `tick.epoch`: an offset from the Unix epoch (`"3ms"`) or an RFC 3339 instant.
pub fn parse_epoch(s: &str) -> Result<i64, String> {
    if let Ok(d) = parse_duration(s) {
        return i64::try_from(d.as_nanos()).map_err(|_| "too large".to_string());
    }
    let t = humantime::parse_rfc3339(s)
        .map_err(|_| "expected a duration (\"3ms\") or an RFC 3339 time".to_string())?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "before 1970".to_string())?;
    i64::try_from(d.as_nanos()).map_err(|_| "too large".to_string())
}

/// A secret from the configuration (a password, a token): `***` in Debug output and logs;
/// [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_exactly() {
        assert_eq!(parse_duration("16ms").unwrap(), Duration::from_millis(16));
        assert_eq!(parse_duration("16.667ms").unwrap().as_nanos(), 16_667_000);
        assert_eq!(parse_duration("250us").unwrap().as_nanos(), 250_000);
        assert_eq!(parse_duration("250µs").unwrap().as_nanos(), 250_000);
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1500);
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration(".5ms").unwrap().as_micros(), 500);
        assert_eq!(parse_duration("7ns").unwrap().as_nanos(), 7);
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
    }

    #[test]
    fn sizes_parse_in_both_kinds_of_unit() {
        let b = |s: &str| s.parse::<Bytes>().map(|b| b.0);
        assert_eq!(b("10GiB"), Ok(10 << 30));
        assert_eq!(b("1.5KiB"), Ok(1536));
        assert_eq!(b("2MB"), Ok(2_000_000));
        assert_eq!(b("4096B"), Ok(4096));
        for bad in ["", "10", "GiB", "10 parsecs", "1e30TiB", "1.2.3MB", "-1GB"] {
            assert!(b(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_durations_are_errors() {
        for bad in [
            "",
            "16",
            "ms",
            "16 parsecs",
            "1.2.3ms",
            "0.5ns",
            "-3ms",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn epoch_accepts_offsets_and_instants() {
        assert_eq!(parse_epoch("3ms").unwrap(), 3_000_000);
        assert_eq!(parse_epoch("1970-01-01T00:00:01Z").unwrap(), 1_000_000_000);
        assert!(parse_epoch("yesterday").is_err());
    }
}
