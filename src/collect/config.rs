//! The settings of the collect stage, beside it: `[join]` (the delivery ↔ ack join table and
//! the name tables) and `[headers]` (where trace ids and labels come from), as the file writes
//! them and as the stage runs on them. [`crate::config`] reads the file and calls `validate`.

use std::time::Duration;

use serde::Deserialize;

use crate::model::MAX_LABELS;
use crate::units::{Dur, Invalid};

/// `[join]`: the delivery ↔ ack join table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawJoin {
    /// Deliveries waiting for their ack, at most.
    pub capacity: usize,
    /// Completed deliveries remembered to drop duplicates (double acks, server ack metrics).
    pub completed_capacity: usize,
    /// Longest a delivery waits for its ack, whatever the consumer's `ack_wait`.
    pub max_pending_age: Dur,
    /// Used when a consumer's `ack_wait` is not known yet (the JetStream default is 30s).
    pub default_ack_wait: Dur,
    /// How long an ack whose delivery was not seen waits for the server's ack metric of the
    /// same delivery, which carries the ack latency the ack alone cannot give.
    pub metric_wait: Dur,
    /// Distinct streams/consumers tracked, at most.
    pub max_consumers: usize,
    /// Distinct message subjects and label values tracked, at most.
    pub max_symbols: usize,
    /// A consumer (no message, no successful consumer info poll) or a subject or label value
    /// unused this long is forgotten and its slot given to new ones. Longer than
    /// `max_pending_age` and than the retained windows plus the spike baseline.
    pub forget_after: Dur,
    /// How far behind ackscope's clock a server's own timestamp (an ack metric's) may be and
    /// still be used; one more than 20 ms ahead of it, or further behind, is replaced by the
    /// time ackscope saw the message and counted.
    pub max_clock_skew: Dur,
}

impl Default for RawJoin {
    fn default() -> Self {
        Self {
            capacity: 200_000,
            completed_capacity: 100_000,
            max_pending_age: Dur::from_millis(300_000),
            default_ack_wait: Dur::from_millis(30_000),
            metric_wait: Dur::from_millis(500),
            max_consumers: 1_000,
            max_symbols: 10_000,
            forget_after: Dur::from_millis(900_000),
            max_clock_skew: Dur::from_millis(2_000),
        }
    }
}

/// Join settings after validation.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    pub capacity: usize,
    pub completed_capacity: usize,
    pub max_pending_age_ns: u64,
    pub default_ack_wait_ns: u64,
    pub metric_wait_ns: u64,
    pub max_consumers: usize,
    pub max_symbols: usize,
    pub forget_after_ns: u64,
    pub max_clock_skew_ns: u64,
}

impl Default for JoinConfig {
    fn default() -> Self {
        RawJoin::default()
            .validate()
            .expect("the default settings are valid")
    }
}

impl RawJoin {
    /// Checks every value of `[join]`; keys are named within the section.
    pub fn validate(&self) -> Result<JoinConfig, Invalid> {
        if self.metric_wait.0 > Duration::from_secs(10) {
            return Err(Invalid::new(
                "metric_wait",
                self.metric_wait.to_string(),
                "must be at most 10s",
            ));
        }
        for (key, d, min, max) in [
            ("max_pending_age", self.max_pending_age, 1, 86_400),
            ("default_ack_wait", self.default_ack_wait, 1, 86_400),
            ("max_clock_skew", self.max_clock_skew, 0, 3_600),
            ("forget_after", self.forget_after, 60, 30 * 86_400),
        ] {
            let (min, max) = (Duration::from_secs(min), Duration::from_secs(max));
            if d.0 < min || d.0 > max {
                return Err(Invalid::new(
                    key,
                    d.to_string(),
                    format!("must be between {min:?} and {max:?}"),
                ));
            }
        }
        // Upper bounds keep a typo from reserving gigabytes: each entry is a fixed-size record.
        for (key, v, max) in [
            ("capacity", self.capacity, 10_000_000),
            ("completed_capacity", self.completed_capacity, 10_000_000),
            ("max_consumers", self.max_consumers, 1_000_000),
            ("max_symbols", self.max_symbols, 10_000_000),
        ] {
            if v == 0 || v > max {
                return Err(Invalid::new(
                    key,
                    v.to_string(),
                    format!("must be between 1 and {max}"),
                ));
            }
        }
        Ok(JoinConfig {
            capacity: self.capacity,
            completed_capacity: self.completed_capacity,
            max_pending_age_ns: self.max_pending_age.ns(),
            default_ack_wait_ns: self.default_ack_wait.ns(),
            metric_wait_ns: self.metric_wait.ns(),
            max_consumers: self.max_consumers,
            max_symbols: self.max_symbols,
            forget_after_ns: self.forget_after.ns(),
            max_clock_skew_ns: self.max_clock_skew.ns(),
        })
    }
}

/// `[headers]`: where trace ids and dimension labels come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHeaders {
    /// Header names tried in order; `traceparent` is parsed as W3C trace-context.
    pub trace_id: Vec<String>,
    /// Header name → label name, at most [`MAX_LABELS`] entries.
    pub labels: Vec<RawLabel>,
}

/// One dimension header and the label it fills.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLabel {
    pub header: String,
    pub label: String,
}

impl Default for RawHeaders {
    fn default() -> Self {
        Self {
            trace_id: vec!["traceparent".into(), "X-Trace-ID".into()],
            labels: vec![RawLabel {
                header: "X-Server-Id".into(),
                label: "server".into(),
            }],
        }
    }
}

/// Header settings after validation; header names are kept lower-cased for matching.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub trace_id: Vec<String>,
    /// (lower-cased header name, label name)
    pub labels: Vec<(String, String)>,
}

impl HeadersConfig {
    /// The label names, in configuration order.
    pub fn label_names(&self) -> Vec<String> {
        self.labels.iter().map(|(_, name)| name.clone()).collect()
    }
}

impl RawHeaders {
    /// Checks every value of `[headers]`; keys are named within the section.
    pub fn validate(self) -> Result<HeadersConfig, Invalid> {
        for name in &self.trace_id {
            if !is_header_name(name) {
                return Err(Invalid::new("trace_id", name.clone(), "not a header name"));
            }
        }
        if self.labels.len() > MAX_LABELS {
            return Err(Invalid::new(
                "labels",
                format!("{} entries", self.labels.len()),
                format!("at most {MAX_LABELS} label headers"),
            ));
        }
        let mut labels = Vec::new();
        for l in self.labels {
            if !is_header_name(&l.header) {
                return Err(Invalid::new("labels.header", l.header, "not a header name"));
            }
            if l.label.is_empty()
                || !l
                    .label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Invalid::new(
                    "labels.label",
                    l.label,
                    "use letters, digits and `_`",
                ));
            }
            // Exported beside these in /metrics and OTLP; a leading digit or `__` is not a
            // Prometheus label name.
            const TAKEN: [&str; 7] = [
                "stream",
                "consumer",
                "domain",
                "le",
                "kind",
                "state",
                "alertname",
            ];
            if TAKEN.contains(&l.label.as_str())
                || l.label.starts_with("__")
                || l.label.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(Invalid::new(
                    "labels.label",
                    l.label,
                    "taken by ackscope's own series, or not a Prometheus label name",
                ));
            }
            if labels.iter().any(|(_, name)| *name == l.label) {
                return Err(Invalid::new(
                    "labels.label",
                    l.label,
                    "named twice: each label needs its own name",
                ));
            }
            labels.push((l.header.to_ascii_lowercase(), l.label));
        }
        Ok(HeadersConfig {
            trace_id: self
                .trace_id
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            labels,
        })
    }
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}
