//! The settings of the aggregate stage, beside it: `[aggregate]` (windows, histograms, the
//! phase grid and the raw sample ring) as the file writes them and as the stage runs on them.

use std::time::Duration;

use serde::Deserialize;

use super::ring::ROW_BYTES;
use crate::units::{Dur, Invalid};

/// The most the sample ring may reserve.
pub const MAX_RING_BYTES: usize = 4 << 30;

/// `[aggregate]`: windows, histograms and the raw sample ring.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAggregate {
    /// Window length, default `"1s"`.
    pub window: Dur,
    /// Closed window summaries kept per consumer.
    pub retained_windows: usize,
    /// Raw samples kept in the ring.
    pub ring_capacity: usize,
    /// Latencies above this are clamped into the top bucket and counted.
    pub max_latency: Dur,
    /// Latency rows of the phase grid (log-spaced between `grid_min_latency` and `max_latency`).
    pub latency_rows: u32,
    pub grid_min_latency: Dur,
}

impl Default for RawAggregate {
    fn default() -> Self {
        Self {
            window: Dur::from_millis(1_000),
            retained_windows: 300,
            ring_capacity: 1_000_000,
            max_latency: Dur::from_millis(60_000),
            latency_rows: 100,
            grid_min_latency: Dur::from_micros(10),
        }
    }
}

/// Aggregation settings after validation.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    pub window_ns: u64,
    pub retained_windows: usize,
    pub ring_capacity: usize,
    pub max_latency_ns: u64,
    pub latency_rows: u32,
    pub grid_min_latency_ns: u64,
}

impl Default for AggregateConfig {
    fn default() -> Self {
        RawAggregate::default()
            .validate()
            .expect("the default settings are valid")
    }
}

impl RawAggregate {
    /// Checks every value of `[aggregate]`; keys are named within the section.
    pub fn validate(&self) -> Result<AggregateConfig, Invalid> {
        let (window, max, min) = (self.window, self.max_latency, self.grid_min_latency);
        if window.0 < Duration::from_millis(10) {
            return Err(Invalid::new(
                "window",
                window.to_string(),
                "must be at least 10ms",
            ));
        }
        if max.0 < Duration::from_millis(1) || max.0 > Duration::from_secs(3600) {
            return Err(Invalid::new(
                "max_latency",
                max.to_string(),
                "must be between 1ms and 1h",
            ));
        }
        if min.0 < Duration::from_micros(1) || min >= max {
            return Err(Invalid::new(
                "grid_min_latency",
                min.to_string(),
                "must be at least 1us and below max_latency",
            ));
        }
        if !(2..=1000).contains(&self.latency_rows) {
            return Err(Invalid::new(
                "latency_rows",
                self.latency_rows.to_string(),
                "must be between 2 and 1000",
            ));
        }
        // The ring reserves its columns once: bound it in bytes, not only in rows.
        let ring_bytes = self.ring_capacity.saturating_mul(ROW_BYTES);
        if self.ring_capacity == 0 || ring_bytes > MAX_RING_BYTES {
            return Err(Invalid::new(
                "ring_capacity",
                self.ring_capacity.to_string(),
                format!(
                    "must be between 1 and {} ({ROW_BYTES} bytes a sample, {} GiB at most)",
                    MAX_RING_BYTES / ROW_BYTES,
                    MAX_RING_BYTES >> 30
                ),
            ));
        }
        if self.retained_windows == 0 || self.retained_windows > 100_000 {
            return Err(Invalid::new(
                "retained_windows",
                self.retained_windows.to_string(),
                "must be between 1 and 100000",
            ));
        }
        Ok(AggregateConfig {
            window_ns: window.ns(),
            retained_windows: self.retained_windows,
            ring_capacity: self.ring_capacity,
            max_latency_ns: max.ns(),
            latency_rows: self.latency_rows,
            grid_min_latency_ns: min.ns(),
        })
    }
}
