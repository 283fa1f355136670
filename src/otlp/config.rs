//! `[otlp]` as the file writes it and as the exporter runs on it.

use serde::Deserialize;

use crate::units::{Dur, Invalid};

/// `[otlp]`: OpenTelemetry export of metrics and slow-ack spans over OTLP/HTTP (protobuf).
/// Off until an endpoint is known: `endpoint` here, or the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `…_METRICS_ENDPOINT`, `…_TRACES_ENDPOINT`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOtlp {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`, plain HTTP); `/v1/metrics`
    /// and `/v1/traces` are appended.
    pub endpoint: Option<String>,
    /// Export metrics (latency histograms, ack counts, consumer state), default on.
    pub metrics: bool,
    /// Export a span for each slow ack, default on.
    pub traces: bool,
    /// How often metrics are exported, default `"10s"`.
    pub export_interval: Dur,
    /// How long one export may take, retries included, default `"10s"`.
    pub timeout: Dur,
    /// An ack slower than this gets a span. Default: one frame of its consumer's clock.
    pub slow_ack: Option<Dur>,
    /// Slow-ack spans per second at most (up to 16,384), the slowest of each second first,
    /// default 100; the rest are counted (`ackscope_otlp_spans_dropped_total`).
    pub spans_per_second: u32,
    /// Samples waiting for the exporter's thread, default 65,536 (at most 1,000,000): beyond it
    /// the collector drops what it would hand over (counted) rather than wait.
    pub queue: usize,
    /// `service.instance.id` of the resource, default the host name and process id.
    pub instance_id: Option<String>,
}

impl Default for RawOtlp {
    fn default() -> Self {
        Self {
            endpoint: None,
            metrics: true,
            traces: true,
            export_interval: Dur::from_millis(10_000),
            timeout: Dur::from_millis(10_000),
            slow_ack: None,
            spans_per_second: 100,
            queue: 65_536,
            instance_id: None,
        }
    }
}

/// `[otlp]` after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    pub endpoint: Option<String>,
    pub metrics: bool,
    pub traces: bool,
    pub export_interval_ns: u64,
    pub timeout_ns: u64,
    pub slow_ack_ns: Option<u64>,
    pub spans_per_second: u32,
    pub queue: usize,
    pub instance_id: Option<String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        RawOtlp::default()
            .validate()
            .expect("the default settings are valid")
    }
}

impl RawOtlp {
    /// Checks every value of `[otlp]`; keys are named within the section.
    pub fn validate(self) -> Result<OtlpConfig, Invalid> {
        if let Some(e) = &self.endpoint
            && !e.starts_with("http://")
        {
            return Err(Invalid::new(
                "endpoint",
                e.clone(),
                "an http:// URL of an OTLP/HTTP receiver (no TLS: put a collector beside ackscope)",
            ));
        }
        let interval = self.export_interval.ns();
        if !(100_000_000..=3_600_000_000_000).contains(&interval) {
            return Err(Invalid::new(
                "export_interval",
                self.export_interval.to_string(),
                "must be between 100ms and 1h",
            ));
        }
        let timeout = self.timeout.ns();
        if !(100_000_000..=60_000_000_000).contains(&timeout) {
            return Err(Invalid::new(
                "timeout",
                self.timeout.to_string(),
                "must be between 100ms and 60s",
            ));
        }
        if self.slow_ack.is_some_and(|d| d.ns() == 0) {
            return Err(Invalid::new("slow_ack", "0", "must be above zero"));
        }
        // The span processor's queue holds four seconds at the limit, at most 65,536 spans.
        if self.spans_per_second > 16_384 {
            return Err(Invalid::new(
                "spans_per_second",
                self.spans_per_second.to_string(),
                "at most 16384",
            ));
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(Invalid::new(
                "queue",
                self.queue.to_string(),
                "between 1 and 1000000",
            ));
        }
        if self
            .instance_id
            .as_ref()
            .is_some_and(|i| i.is_empty() || i.len() > 256)
        {
            return Err(Invalid::new(
                "instance_id",
                self.instance_id.clone().unwrap_or_default(),
                "1 to 256 characters",
            ));
        }
        Ok(OtlpConfig {
            endpoint: self.endpoint,
            metrics: self.metrics,
            traces: self.traces,
            export_interval_ns: interval,
            timeout_ns: timeout,
            slow_ack_ns: self.slow_ack.map(|d| d.ns()),
            spans_per_second: self.spans_per_second,
            queue: self.queue,
            instance_id: self.instance_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(toml: &str) -> RawOtlp {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn defaults_are_off_with_a_second_frame_threshold() {
        let c = OtlpConfig::default();
        assert_eq!(c.endpoint, None);
        assert!(c.metrics && c.traces);
        assert_eq!(c.export_interval_ns, 10_000_000_000);
        assert_eq!(c.slow_ack_ns, None);
        assert_eq!(c.spans_per_second, 100);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, key) in [
            ("endpoint = \"collector:4318\"", "endpoint"),
            ("endpoint = \"https://collector:4318\"", "endpoint"),
            ("export_interval = \"10ms\"", "export_interval"),
            ("timeout = \"2m\"", "timeout"),
            ("slow_ack = \"0s\"", "slow_ack"),
            ("spans_per_second = 20000", "spans_per_second"),
            ("queue = 0", "queue"),
            ("instance_id = \"\"", "instance_id"),
        ] {
            let e = raw(toml).validate().unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
        let ok = raw("endpoint = \"http://127.0.0.1:4318\"\nslow_ack = \"8ms\"")
            .validate()
            .unwrap();
        assert_eq!(ok.slow_ack_ns, Some(8_000_000));
    }
}
