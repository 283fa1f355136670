//! Configuration: plain serde structs with documented defaults, validated into [`Config`].
//!
//! A config file is TOML. Every key has a default, so an empty file (or no file) is a valid
//! configuration. [`RawConfig`] is what the file says; [`RawConfig::validate`] turns it into the
//! [`Config`] the program runs on, or an [`Error`] that names the key and the bad value. This
//! module does no I/O beyond [`RawConfig::from_file`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tick::{FrameClock, PhaseOf};

use crate::model::MAX_LABELS;
use crate::units::{Dur, Epoch, optional_dur};

/// A configuration error. Each variant names the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: invalid value {value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
}

fn invalid(key: &'static str, value: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        key,
        value: value.into(),
        reason: reason.into(),
    }
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub nats: RawNats,
    pub taps: RawTaps,
    pub headers: RawHeaders,
    pub tick: RawTick,
    pub join: RawJoin,
    pub aggregate: RawAggregate,
    pub spikes: RawSpikes,
    pub http: RawHttp,
}

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

/// `[http]`: the API and dashboard of `ackscope serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Address to listen on (`--listen`), default `127.0.0.1:9464`.
    pub listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// `[nats]`: how to connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNats {
    /// Server URLs; `NATS_URL` and `--nats` take precedence. Default `nats://127.0.0.1:4222`.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    pub credentials_file: Option<PathBuf>,
    /// Require TLS even for `nats://` URLs.
    pub tls_required: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Inbox prefix for ackscope's own requests, so they never match the delivery taps.
    pub inbox_prefix: String,
    /// Messages buffered per subscription before the client drops and reports a slow consumer.
    pub subscription_capacity: usize,
}

impl Default for RawNats {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".into()],
            user: None,
            password: None,
            token: None,
            credentials_file: None,
            tls_required: false,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            inbox_prefix: "_ACKSCOPE_INBOX".into(),
            subscription_capacity: 262_144,
        }
    }
}

/// `[taps]`: which subjects to read. Each tap can be switched off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTaps {
    pub acks: bool,
    pub deliveries: bool,
    /// Wildcard patterns that carry deliveries: pull inboxes and push deliver subjects.
    pub delivery_patterns: Vec<String>,
    pub ack_metrics: bool,
    pub advisories: bool,
    pub consumer_state: bool,
    /// How often consumer info is polled, e.g. `"5s"`.
    pub consumer_state_interval: Dur,
    /// Consumers to poll even before traffic is seen, as `"stream/consumer"`.
    pub consumers: Vec<String>,
}

impl Default for RawTaps {
    fn default() -> Self {
        Self {
            acks: true,
            deliveries: true,
            delivery_patterns: vec!["_INBOX.>".into(), "deliver.>".into()],
            ack_metrics: true,
            advisories: true,
            consumer_state: true,
            consumer_state_interval: Dur::from_millis(5_000),
            consumers: Vec::new(),
        }
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

/// `[tick]`: the game's frame clock.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTick {
    /// Frame period, default `"16ms"`; fractional values such as `"16.667ms"` work.
    pub period: Dur,
    /// Alignment: an offset from the Unix epoch (`"3ms"`) or an RFC 3339 instant.
    pub epoch: Epoch,
    /// Phase bins across one frame, default 160.
    pub phase_bins: u32,
    /// `ack` (default) or `delivery`.
    pub phase_of: String,
}

impl Default for RawTick {
    fn default() -> Self {
        Self {
            period: Dur::from_millis(16),
            epoch: Epoch(0),
            phase_bins: 160,
            phase_of: "ack".into(),
        }
    }
}

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
        }
    }
}

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

/// NATS connection settings after validation.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    pub urls: Vec<String>,
    pub user: Option<(String, String)>,
    pub token: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub tls_required: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub inbox_prefix: String,
    pub subscription_capacity: usize,
}

/// Tap settings after validation.
#[derive(Debug, Clone)]
pub struct TapsConfig {
    pub acks: bool,
    pub deliveries: bool,
    pub delivery_patterns: Vec<String>,
    pub ack_metrics: bool,
    pub advisories: bool,
    pub consumer_state: bool,
    pub consumer_state_interval: Duration,
    pub consumers: Vec<(String, String)>,
}

/// Header settings after validation; header names are kept lower-cased for matching.
#[derive(Debug, Clone)]
pub struct HeadersConfig {
    pub trace_id: Vec<String>,
    /// (lower-cased header name, label name)
    pub labels: Vec<(String, String)>,
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

/// The validated configuration the program runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsConfig,
    pub taps: TapsConfig,
    pub headers: HeadersConfig,
    pub tick: FrameClock,
    pub join: JoinConfig,
    pub aggregate: AggregateConfig,
    pub spikes: SpikeConfig,
    /// Where `serve` listens.
    pub listen: std::net::SocketAddr,
}

impl Default for Config {
    fn default() -> Self {
        RawConfig::default()
            .validate()
            .expect("the default configuration is valid")
    }
}

impl RawConfig {
    /// Reads and parses a TOML file (without validating it).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| Error::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text (without validating it). A value that does not parse (a duration, a
    /// number) is an error naming its key, on one line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let one_line = |e: &toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            match line {
                Some(n) => format!("line {n}: {}", e.message().trim()),
                None => e.message().trim().to_string(),
            }
        };
        let deserializer = toml::de::Deserializer::parse(text).map_err(|e| one_line(&e))?;
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let inner = one_line(e.inner());
            match e.path().to_string().as_str() {
                "." | "" => inner,
                key => format!("config key `{key}`: {inner}"),
            }
        })
    }

    /// Checks every value and builds the [`Config`] the program runs on.
    pub fn validate(self) -> Result<Config, Error> {
        Ok(Config {
            nats: validate_nats(self.nats)?,
            taps: validate_taps(self.taps)?,
            headers: validate_headers(self.headers)?,
            tick: validate_tick(&self.tick)?,
            join: validate_join(&self.join)?,
            aggregate: validate_aggregate(&self.aggregate)?,
            spikes: validate_spikes(&self.spikes)?,
            listen: self.http.listen.parse().map_err(|_| {
                invalid(
                    "http.listen",
                    &self.http.listen,
                    "expected an address such as 127.0.0.1:9464",
                )
            })?,
        })
    }
}

fn validate_nats(raw: RawNats) -> Result<NatsConfig, Error> {
    if raw.urls.is_empty() {
        return Err(invalid(
            "nats.urls",
            "[]",
            "at least one server URL is needed",
        ));
    }
    for url in &raw.urls {
        if url.trim().is_empty() || url.contains(char::is_whitespace) {
            return Err(invalid("nats.urls", url, "not a server URL"));
        }
    }
    let user = match (raw.user, raw.password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        (Some(u), None) => return Err(invalid("nats.password", u, "a user needs a password")),
        (None, Some(_)) => {
            return Err(invalid("nats.user", "", "a password needs a user"));
        }
    };
    let tls_client = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(c), None) => {
            return Err(invalid(
                "nats.tls_key_file",
                c.display().to_string(),
                "a client certificate needs its key",
            ));
        }
        (None, Some(k)) => {
            return Err(invalid(
                "nats.tls_cert_file",
                k.display().to_string(),
                "a client key needs its certificate",
            ));
        }
    };
    let prefix = raw.inbox_prefix;
    if prefix.is_empty() || prefix.contains(['*', '>', ' ']) || prefix.starts_with("_INBOX") {
        return Err(invalid(
            "nats.inbox_prefix",
            prefix,
            "must be a literal subject prefix that does not start with _INBOX",
        ));
    }
    if raw.subscription_capacity == 0 {
        return Err(invalid("nats.subscription_capacity", "0", "must be > 0"));
    }
    Ok(NatsConfig {
        urls: raw.urls,
        user,
        token: raw.token,
        credentials_file: raw.credentials_file,
        tls_required: raw.tls_required,
        tls_ca_file: raw.tls_ca_file,
        tls_client,
        inbox_prefix: prefix,
        subscription_capacity: raw.subscription_capacity,
    })
}

fn validate_taps(raw: RawTaps) -> Result<TapsConfig, Error> {
    for pattern in &raw.delivery_patterns {
        validate_subject_pattern(pattern)
            .map_err(|reason| invalid("taps.delivery_patterns", pattern.clone(), reason))?;
    }
    let interval = raw.consumer_state_interval.0;
    if interval < Duration::from_millis(100) {
        return Err(invalid(
            "taps.consumer_state_interval",
            raw.consumer_state_interval.to_string(),
            "must be at least 100ms",
        ));
    }
    let mut consumers = Vec::new();
    for entry in &raw.consumers {
        match entry.split_once('/') {
            Some((s, c)) if is_name(s) && is_name(c) => consumers.push((s.into(), c.into())),
            _ => {
                return Err(invalid(
                    "taps.consumers",
                    entry.clone(),
                    "expected \"stream/consumer\"",
                ));
            }
        }
    }
    Ok(TapsConfig {
        acks: raw.acks,
        deliveries: raw.deliveries,
        delivery_patterns: raw.delivery_patterns,
        ack_metrics: raw.ack_metrics,
        advisories: raw.advisories,
        consumer_state: raw.consumer_state,
        consumer_state_interval: interval,
        consumers,
    })
}

/// A stream or consumer name: non-empty, no subject separators or wildcards.
fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.contains(['.', '*', '>', ' ', '/'])
}

/// Checks a subscription pattern: non-empty tokens, `>` only last, wildcards only as whole tokens.
pub fn validate_subject_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("empty pattern".into());
    }
    let tokens: Vec<&str> = pattern.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("empty token".into());
        }
        if token.contains(char::is_whitespace) {
            return Err("whitespace in subject".into());
        }
        if token.len() > 1 && token.contains(['*', '>']) {
            return Err("a wildcard must be a whole token".into());
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err("`>` must be the last token".into());
        }
    }
    Ok(())
}

fn validate_headers(raw: RawHeaders) -> Result<HeadersConfig, Error> {
    for name in &raw.trace_id {
        if !is_header_name(name) {
            return Err(invalid(
                "headers.trace_id",
                name.clone(),
                "not a header name",
            ));
        }
    }
    if raw.labels.len() > MAX_LABELS {
        return Err(invalid(
            "headers.labels",
            format!("{} entries", raw.labels.len()),
            format!("at most {MAX_LABELS} label headers"),
        ));
    }
    let mut labels = Vec::new();
    for l in raw.labels {
        if !is_header_name(&l.header) {
            return Err(invalid(
                "headers.labels.header",
                l.header,
                "not a header name",
            ));
        }
        if l.label.is_empty()
            || !l
                .label
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(invalid(
                "headers.labels.label",
                l.label,
                "use letters, digits and `_`",
            ));
        }
        labels.push((l.header.to_ascii_lowercase(), l.label));
    }
    Ok(HeadersConfig {
        trace_id: raw
            .trace_id
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect(),
        labels,
    })
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn validate_tick(raw: &RawTick) -> Result<FrameClock, Error> {
    let phase_of = match raw.phase_of.as_str() {
        "ack" => PhaseOf::Ack,
        "delivery" => PhaseOf::Delivery,
        other => {
            return Err(invalid(
                "tick.phase_of",
                other,
                "expected `ack` or `delivery`",
            ));
        }
    };
    FrameClock::new(raw.period.ns(), raw.epoch.0, raw.phase_bins, phase_of).map_err(|e| {
        let (key, value) = match e {
            crate::tick::Error::Period(_) => ("tick.period", raw.period.to_string()),
            crate::tick::Error::Bins(_) => ("tick.phase_bins", raw.phase_bins.to_string()),
        };
        invalid(key, value, e.to_string())
    })
}

fn validate_spikes(raw: &RawSpikes) -> Result<SpikeConfig, Error> {
    if !(raw.factor.is_finite() && raw.factor >= 1.0) {
        return Err(invalid(
            "spikes.factor",
            raw.factor.to_string(),
            "must be a number ≥ 1",
        ));
    }
    if !(raw.deviations.is_finite() && raw.deviations >= 0.0) {
        return Err(invalid(
            "spikes.deviations",
            raw.deviations.to_string(),
            "must be a number ≥ 0",
        ));
    }
    if raw.min_windows == 0 {
        return Err(invalid("spikes.min_windows", "0", "must be > 0"));
    }
    Ok(SpikeConfig {
        factor: raw.factor,
        min_margin_ns: raw.min_margin.ns(),
        deviations: raw.deviations,
        slo_ns: raw.slo.map(Dur::ns),
        min_samples: raw.min_samples,
        min_windows: raw.min_windows,
        ..SpikeConfig::default()
    })
}

fn validate_join(raw: &RawJoin) -> Result<JoinConfig, Error> {
    if raw.metric_wait.0 > Duration::from_secs(10) {
        return Err(invalid(
            "join.metric_wait",
            raw.metric_wait.to_string(),
            "must be at most 10s",
        ));
    }
    for (key, v) in [
        ("join.capacity", raw.capacity),
        ("join.completed_capacity", raw.completed_capacity),
        ("join.max_consumers", raw.max_consumers),
        ("join.max_symbols", raw.max_symbols),
    ] {
        if v == 0 {
            return Err(invalid(key, "0", "must be > 0"));
        }
    }
    for (key, v) in [
        ("join.max_consumers", raw.max_consumers),
        ("join.max_symbols", raw.max_symbols),
    ] {
        if v > u32::MAX as usize / 2 {
            return Err(invalid(key, v.to_string(), "too large"));
        }
    }
    Ok(JoinConfig {
        capacity: raw.capacity,
        completed_capacity: raw.completed_capacity,
        max_pending_age_ns: raw.max_pending_age.ns(),
        default_ack_wait_ns: raw.default_ack_wait.ns(),
        metric_wait_ns: raw.metric_wait.ns(),
        max_consumers: raw.max_consumers,
        max_symbols: raw.max_symbols,
    })
}

fn validate_aggregate(raw: &RawAggregate) -> Result<AggregateConfig, Error> {
    let (window, max, min) = (raw.window, raw.max_latency, raw.grid_min_latency);
    if window.0 < Duration::from_millis(10) {
        return Err(invalid(
            "aggregate.window",
            window.to_string(),
            "must be at least 10ms",
        ));
    }
    if max.0 < Duration::from_millis(1) || max.0 > Duration::from_secs(3600) {
        return Err(invalid(
            "aggregate.max_latency",
            max.to_string(),
            "must be between 1ms and 1h",
        ));
    }
    if min.0 < Duration::from_micros(1) || min >= max {
        return Err(invalid(
            "aggregate.grid_min_latency",
            min.to_string(),
            "must be at least 1us and below max_latency",
        ));
    }
    if !(2..=1000).contains(&raw.latency_rows) {
        return Err(invalid(
            "aggregate.latency_rows",
            raw.latency_rows.to_string(),
            "must be between 2 and 1000",
        ));
    }
    if raw.ring_capacity == 0 || raw.ring_capacity > 100_000_000 {
        return Err(invalid(
            "aggregate.ring_capacity",
            raw.ring_capacity.to_string(),
            "must be between 1 and 100000000",
        ));
    }
    if raw.retained_windows == 0 {
        return Err(invalid("aggregate.retained_windows", "0", "must be > 0"));
    }
    Ok(AggregateConfig {
        window_ns: window.ns(),
        retained_windows: raw.retained_windows,
        ring_capacity: raw.ring_capacity,
        max_latency_ns: max.ns(),
        latency_rows: raw.latency_rows,
        grid_min_latency_ns: min.ns(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_with_the_file() {
        let text = "[tick]\nperiod = \"16.667ms\"\nepoch = \"3ms\"\n[spikes]\nslo = \"\"\n\
                    [join]\nmetric_wait = \"250us\"";
        let c = RawConfig::from_toml(text).unwrap().validate().unwrap();
        assert_eq!(c.tick.period_ns(), 16_667_000);
        assert_eq!(c.tick.epoch_ns(), 3_000_000);
        assert_eq!(c.spikes.slo_ns, None);
        assert_eq!(c.join.metric_wait_ns, 250_000);
        let c = RawConfig::from_toml("[spikes]\nslo = \"16ms\"").unwrap();
        assert_eq!(c.validate().unwrap().spikes.slo_ns, Some(16_000_000));
    }

    #[test]
    fn default_config_is_valid() {
        let c = Config::default();
        assert_eq!(c.tick.period_ns(), 16_000_000);
        assert_eq!(c.tick.phase_bins(), 160);
        assert_eq!(c.headers.trace_id, vec!["traceparent", "x-trace-id"]);
        assert_eq!(
            c.headers.labels,
            vec![("x-server-id".into(), "server".into())]
        );
        assert_eq!(c.taps.delivery_patterns, vec!["_INBOX.>", "deliver.>"]);
    }

    #[test]
    fn errors_name_the_key_and_value() {
        // A value that does not read is refused with the file, naming its key, on one line.
        let err = RawConfig::from_toml("[tick]\nperiod = \"16 parsecs\"").unwrap_err();
        assert!(
            err.contains("tick.period") && err.contains("16 parsecs") && !err.contains('\n'),
            "{err}"
        );
        let err = RawConfig::from_toml("[spikes]\nslo = \"fast\"").unwrap_err();
        assert!(err.contains("spikes.slo") && err.contains("fast"), "{err}");
        let err = RawConfig::from_toml("[join]\ncapacity = \"many\"").unwrap_err();
        assert!(err.contains("join.capacity"), "{err}");

        let raw = RawConfig::from_toml("[tick]\nphase_bins = 0").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains("tick.phase_bins"), "{err}");

        // Each limit names itself (the consumer limit was once reported as `join.max_symbols`).
        for key in ["max_consumers", "max_symbols"] {
            let raw = RawConfig::from_toml(&format!("[join]\n{key} = 4294967295")).unwrap();
            let err = raw.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("join.{key}")) && err.contains("4294967295"),
                "{err}"
            );
        }

        let raw = RawConfig::from_toml("[taps]\ndelivery_patterns = [\"a.>.b\"]").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(
            err.contains("taps.delivery_patterns") && err.contains("a.>.b"),
            "{err}"
        );

        let raw = RawConfig::from_toml("[http]\nlisten = \"localhost\"").unwrap();
        assert!(
            raw.validate()
                .unwrap_err()
                .to_string()
                .contains("http.listen")
        );

        let raw = RawConfig::from_toml("[nats]\ninbox_prefix = \"_INBOX.me\"").unwrap();
        assert!(
            raw.validate()
                .unwrap_err()
                .to_string()
                .contains("nats.inbox_prefix")
        );

        assert!(RawConfig::from_toml("[tick]\nperiodd = \"16ms\"").is_err());
    }
}
