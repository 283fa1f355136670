//! `[archive]` as the file writes it and as the archive runs on it.

use std::path::PathBuf;

use serde::Deserialize;

use crate::units::{Bytes, Dur, Invalid};

/// `[archive]`: where the history is kept on disk (`--data-dir`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawArchive {
    /// Keep history on disk. Default: on for `serve` and `demo`, off for `collect`.
    pub enabled: Option<bool>,
    /// The data directory, default `./ackscope-data` (the demo's is in its temporary
    /// directory unless `--data-dir` is given).
    pub dir: Option<PathBuf>,
    /// How often what was collected is written out, default `"10s"`: what a `kill -9` can
    /// lose. A clean stop (SIGTERM, Ctrl-C) writes everything first.
    pub flush_interval: Dur,
    /// Segments older than this are deleted, default `"7d"`.
    pub retention: Dur,
    /// The oldest segments are deleted while the archive is larger, default `"10GiB"`.
    pub max_size: Bytes,
    /// Samples waiting for the writer, default 1,000,000: beyond it the collector drops what it
    /// would hand over (counted in `/metrics`) rather than wait for the disk.
    pub queue_samples: usize,
}

impl Default for RawArchive {
    fn default() -> Self {
        Self {
            enabled: None,
            dir: None,
            flush_interval: Dur::from_millis(10_000),
            retention: Dur::from_millis(7 * 86_400_000),
            max_size: Bytes(10 << 30),
            queue_samples: 1_000_000,
        }
    }
}

/// The longest retention: a hundred years.
const MAX_RETENTION_NS: u64 = 36_500 * 86_400_000_000_000;

/// The data directory when none is configured.
pub const DEFAULT_DIR: &str = "ackscope-data";

/// Archive settings after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveConfig {
    /// `None`: as the command decides (on for `serve` and `demo`).
    pub enabled: Option<bool>,
    pub dir: PathBuf,
    pub flush_interval_ns: u64,
    pub retention_ns: u64,
    pub max_bytes: u64,
    pub queue_samples: usize,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        RawArchive::default()
            .validate()
            .expect("the default settings are valid")
    }
}

impl RawArchive {
    /// Checks every value of `[archive]`; keys are named within the section.
    pub fn validate(self) -> Result<ArchiveConfig, Invalid> {
        let flush = self.flush_interval.ns();
        if !(100_000_000..=3_600_000_000_000).contains(&flush) {
            return Err(Invalid::new(
                "flush_interval",
                self.flush_interval.to_string(),
                "must be between 100ms and 1h",
            ));
        }
        if !(60_000_000_000..=MAX_RETENTION_NS).contains(&self.retention.ns()) {
            return Err(Invalid::new(
                "retention",
                self.retention.to_string(),
                "must be between 1m and 36500d",
            ));
        }
        if self.max_size.0 < 1 << 20 {
            return Err(Invalid::new(
                "max_size",
                self.max_size.to_string(),
                "must be at least 1MiB",
            ));
        }
        if !(1_000..=100_000_000).contains(&self.queue_samples) {
            return Err(Invalid::new(
                "queue_samples",
                self.queue_samples.to_string(),
                "must be between 1000 and 100000000",
            ));
        }
        let dir = self.dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
        if dir.as_os_str().is_empty() {
            return Err(Invalid::new("dir", "", "must name a directory"));
        }
        Ok(ArchiveConfig {
            enabled: self.enabled,
            dir,
            flush_interval_ns: flush,
            retention_ns: self.retention.ns(),
            max_bytes: self.max_size.0,
            queue_samples: self.queue_samples,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let c = ArchiveConfig::default();
        assert_eq!(c.dir, PathBuf::from("ackscope-data"));
        assert_eq!(c.flush_interval_ns, 10_000_000_000);
        assert_eq!(c.retention_ns, 7 * 86_400_000_000_000);
        assert_eq!(c.max_bytes, 10 << 30);
        let bad = |f: fn(&mut RawArchive), key: &str| {
            let mut raw = RawArchive::default();
            f(&mut raw);
            assert_eq!(raw.validate().unwrap_err().key, key);
        };
        bad(|r| r.flush_interval = Dur::from_millis(1), "flush_interval");
        bad(|r| r.retention = Dur::from_millis(1_000), "retention");
        // "Keep forever" written as a huge number is refused, not wrapped into the past.
        bad(|r| r.retention = "200000d".parse().unwrap(), "retention");
        bad(|r| r.max_size = Bytes(1), "max_size");
        bad(|r| r.queue_samples = 0, "queue_samples");
        bad(|r| r.dir = Some(PathBuf::new()), "dir");
    }
}
