//! Configuration: plain serde structs with documented defaults, validated into [`Config`].
//!
//! A config file is TOML. Every key has a default, so an empty file (or no file) is a valid
//! configuration. [`RawConfig`] is what the file says; [`RawConfig::validate`] turns it into the
//! [`Config`] the program runs on, or an [`Error`] that names the key and the bad value. Each
//! stage's section sits beside that stage and checks itself (`[join]` and `[headers]` in
//! `collect/config.rs`, `[aggregate]` in `aggregate/config.rs`, `[spikes]` in
//! `analyze/config.rs`, `[alerts]` in `analyze/alerts/config.rs`, `[tick]` in `tick.rs`,
//! `[archive]` in `archive/config.rs`); the service's own `[nats]`, `[taps]` and
//! `[http]` are here. This module does no I/O beyond [`RawConfig::from_file`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::aggregate::config::{AggregateConfig, RawAggregate};
use crate::analyze::alerts::{AlertsConfig, RawAlerts};
use crate::analyze::config::{RawSpikes, SpikeConfig};
use crate::analyze::report::BASELINE_NS;
use crate::archive::config::{ArchiveConfig, RawArchive};
use crate::clocks::config::{ClocksConfig, RawClocks};
use crate::collect::config::{HeadersConfig, JoinConfig, RawHeaders, RawJoin};
use crate::names::is_jetstream_name;
use crate::tick::{FrameClock, RawTick};
pub use crate::units::Secret;
use crate::units::{Dur, Invalid};

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
    #[error(transparent)]
    Invalid(#[from] Invalid),
}

fn invalid(key: &str, value: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid(Invalid::new(key, value, reason))
}

/// The configuration file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub nats: RawNats,
    pub taps: RawTaps,
    pub headers: RawHeaders,
    pub tick: RawTick,
    pub clocks: RawClocks,
    pub join: RawJoin,
    pub aggregate: RawAggregate,
    pub spikes: RawSpikes,
    pub http: RawHttp,
    pub archive: RawArchive,
    pub alerts: RawAlerts,
    pub otlp: crate::otlp::RawOtlp,
}

/// `[http]`: the API and dashboard of `ackscope serve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHttp {
    /// Address to listen on (`--listen`), default `127.0.0.1:9464`.
    pub listen: String,
    /// When set, every route but `/` and `open_routes` needs `Authorization: Bearer <token>`
    /// with this token or the admin token (`ACKSCOPE_READ_TOKEN` takes precedence).
    pub read_token: Option<Secret>,
    /// Reads too, and is the one token for admin routes such as exports
    /// (`ACKSCOPE_ADMIN_TOKEN` takes precedence).
    pub admin_token: Option<Secret>,
    /// Routes open without a token, default `/healthz`, `/readyz` and `/metrics`.
    pub open_routes: Vec<String>,
    /// Host header values answered (names or addresses, without the port; `*` for any): a
    /// browser tricked into calling ackscope under another name (DNS rebinding) is refused.
    /// Default: the loopback names when listening on loopback, else any.
    pub allowed_hosts: Vec<String>,
    /// Queries that walk the sample ring or draw (reports, spikes, heatmaps, the consumer
    /// list) running at once; more wait up to `query_wait` for a slot, then get a 429.
    pub max_concurrent_queries: usize,
    /// How long a query waits for a slot, default `"10s"`.
    pub query_wait: Dur,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            read_token: None,
            admin_token: None,
            open_routes: ["/healthz", "/readyz", "/metrics"]
                .map(String::from)
                .to_vec(),
            allowed_hosts: Vec::new(),
            max_concurrent_queries: QUERY_SLOTS,
            query_wait: Dur::from_millis(QUERY_WAIT_MS),
        }
    }
}

/// Query slots when no configuration says otherwise.
const QUERY_SLOTS: usize = 4;
const QUERY_WAIT_MS: u64 = 10_000;

/// Who may call the HTTP API and how much at once, after validation.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub read_token: Option<Secret>,
    pub admin_token: Option<Secret>,
    pub open_routes: Vec<String>,
    /// Lower-cased; empty or `*` for any.
    pub allowed_hosts: Vec<String>,
    pub max_concurrent_queries: usize,
    pub query_wait: Duration,
}

impl Default for AccessConfig {
    /// Open to all, on any Host, with the default query slots.
    fn default() -> Self {
        Self {
            read_token: None,
            admin_token: None,
            open_routes: Vec::new(),
            allowed_hosts: Vec::new(),
            max_concurrent_queries: QUERY_SLOTS,
            query_wait: Duration::from_millis(QUERY_WAIT_MS),
        }
    }
}

fn validate_http(raw: RawHttp) -> Result<(std::net::SocketAddr, AccessConfig), Error> {
    let listen: std::net::SocketAddr = raw.listen.parse().map_err(|_| {
        invalid(
            "http.listen",
            &raw.listen,
            "expected an address such as 127.0.0.1:9464",
        )
    })?;
    for (key, token) in [
        ("http.read_token", &raw.read_token),
        ("http.admin_token", &raw.admin_token),
    ] {
        if let Some(t) = token
            && (t.expose().len() < 16 || t.expose().contains(char::is_whitespace))
        {
            return Err(invalid(
                key,
                "***",
                "a token needs at least 16 characters and no white space",
            ));
        }
    }
    for route in &raw.open_routes {
        if !route.starts_with('/') {
            return Err(invalid(
                "http.open_routes",
                route.clone(),
                "a path such as /metrics",
            ));
        }
    }
    if !(1..=64).contains(&raw.max_concurrent_queries) {
        return Err(invalid(
            "http.max_concurrent_queries",
            raw.max_concurrent_queries.to_string(),
            "must be between 1 and 64",
        ));
    }
    let allowed_hosts = if raw.allowed_hosts.is_empty() && listen.ip().is_loopback() {
        // The loopback names, and the address listened on (127.0.0.2 is loopback too).
        let own = match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let mut names = ["localhost", "127.0.0.1", "[::1]"]
            .map(String::from)
            .to_vec();
        if !names.contains(&own) {
            names.push(own);
        }
        names
    } else {
        raw.allowed_hosts
            .iter()
            .map(|h| h.to_ascii_lowercase())
            .collect()
    };
    Ok((
        listen,
        AccessConfig {
            read_token: raw.read_token,
            admin_token: raw.admin_token,
            open_routes: raw.open_routes,
            allowed_hosts,
            max_concurrent_queries: raw.max_concurrent_queries,
            query_wait: raw.query_wait.0.min(Duration::from_secs(600)),
        },
    ))
}

/// `[nats]`: how to connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawNats {
    /// Server URLs; `NATS_URL` and `--nats` take precedence. Default `nats://127.0.0.1:4222`.
    pub urls: Vec<String>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub token: Option<Secret>,
    /// A user JWT and its seed (`nsc`'s `.creds`): operator mode.
    pub credentials_file: Option<PathBuf>,
    /// A file holding a user nkey seed (`SU…`), for a server that lists the user's public key.
    pub nkey_file: Option<PathBuf>,
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
            nkey_file: None,
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

/// A server URL fit for logs and errors: a password or token in it (`nats://user:pass@host`,
/// `nats://token@host`) is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    // The last `@` ends the user part: a password may hold `/` or `@` itself (NATS URLs
    // have no path worth keeping).
    match rest.rfind('@') {
        Some(at) => {
            let user = match rest[..at].split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None => "***".to_string(),
            };
            format!("{scheme}{user}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// NATS connection settings after validation. Its Debug output shows no secret.
#[derive(Clone)]
pub struct NatsConfig {
    pub urls: Vec<String>,
    pub user: Option<(String, Secret)>,
    pub token: Option<Secret>,
    pub credentials_file: Option<PathBuf>,
    pub nkey_file: Option<PathBuf>,
    pub tls_required: bool,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_client: Option<(PathBuf, PathBuf)>,
    pub inbox_prefix: String,
    pub subscription_capacity: usize,
}

impl NatsConfig {
    /// The server URLs, comma-separated, with any secret in them redacted.
    pub fn display_urls(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(|u| redact_url(u)).collect();
        urls.join(",")
    }
}

impl std::fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConfig")
            .field("urls", &self.display_urls())
            .field("user", &self.user)
            .field("token", &self.token)
            .field("credentials_file", &self.credentials_file)
            .field("nkey_file", &self.nkey_file)
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client", &self.tls_client)
            .field("inbox_prefix", &self.inbox_prefix)
            .field("subscription_capacity", &self.subscription_capacity)
            .finish()
    }
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

/// The validated configuration the program runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub nats: NatsConfig,
    pub taps: TapsConfig,
    pub headers: HeadersConfig,
    pub tick: FrameClock,
    pub clocks: ClocksConfig,
    pub join: JoinConfig,
    pub aggregate: AggregateConfig,
    pub spikes: SpikeConfig,
    /// Where `serve` listens.
    pub listen: std::net::SocketAddr,
    /// Who may call it.
    pub http: AccessConfig,
    /// History on disk.
    pub archive: ArchiveConfig,
    /// Incidents, alert rules and where alerts go.
    pub alerts: AlertsConfig,
    /// OpenTelemetry export (off until an endpoint is known).
    pub otlp: crate::otlp::OtlpConfig,
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
        let (listen, http) = validate_http(self.http)?;
        let config = Config {
            nats: validate_nats(self.nats)?,
            taps: validate_taps(self.taps)?,
            headers: self.headers.validate().map_err(|e| e.within("headers"))?,
            tick: self.tick.validate().map_err(|e| e.within("tick"))?,
            clocks: self.clocks.validate().map_err(|e| e.within("clocks"))?,
            join: self.join.validate().map_err(|e| e.within("join"))?,
            aggregate: self
                .aggregate
                .validate()
                .map_err(|e| e.within("aggregate"))?,
            spikes: self.spikes.validate().map_err(|e| e.within("spikes"))?,
            listen,
            http,
            archive: self.archive.validate().map_err(|e| e.within("archive"))?,
            alerts: self.alerts.validate().map_err(|e| e.within("alerts"))?,
            otlp: self.otlp.validate().map_err(|e| e.within("otlp"))?,
        };
        config.check_together()?;
        Ok(config)
    }
}

impl Config {
    /// What no single section can check: settings that contradict one another.
    fn check_together(&self) -> Result<(), Error> {
        let (spikes, retained) = (&self.spikes, self.aggregate.retained_windows);
        if spikes.warmup_windows + spikes.min_windows > retained {
            return Err(invalid(
                "spikes.min_windows",
                spikes.min_windows.to_string(),
                format!(
                    "a spike needs {} quiet windows and {} over the threshold, but \
                     aggregate.retained_windows keeps {retained}: none could ever be found",
                    spikes.warmup_windows, spikes.min_windows
                ),
            ));
        }
        // Forgetting must not touch what is still used: a delivery waiting for its ack, or a
        // sample analysis reads (the retained windows and the spike baseline before them).
        let analysed_ns = (self.aggregate.window_ns)
            .saturating_mul(retained as u64)
            .saturating_add(BASELINE_NS as u64);
        let forget = self.join.forget_after_ns;
        for (needed, what) in [
            (self.join.max_pending_age_ns, "join.max_pending_age"),
            (
                analysed_ns,
                "the retained windows (aggregate.retained_windows x aggregate.window) plus the 60s spike baseline",
            ),
        ] {
            if forget <= needed {
                return Err(invalid(
                    "join.forget_after",
                    format!("{:?}", Duration::from_nanos(forget)),
                    format!(
                        "must be longer than {what}, {:?}",
                        Duration::from_nanos(needed)
                    ),
                ));
            }
        }
        // A delivery pattern must not take in ackscope's own inbox or the subjects the other
        // taps read: `>` would feed every ack, event and reply to the delivery parser.
        let own_inbox = format!("{}.>", self.nats.inbox_prefix);
        let announcements = format!("{}.>", self.clocks.subject_prefix);
        for pattern in &self.taps.delivery_patterns {
            for (other, what) in [
                (
                    own_inbox.as_str(),
                    "ackscope's own inbox (nats.inbox_prefix)",
                ),
                (
                    announcements.as_str(),
                    "the frame clock announcements (clocks.subject_prefix)",
                ),
                ("$JS.ACK.>", "the ack tap"),
                ("$JS.EVENT.>", "the metric and advisory taps"),
                ("$JS.API.>", "the JetStream API"),
            ] {
                if subjects_overlap(pattern, other) {
                    return Err(invalid(
                        "taps.delivery_patterns",
                        pattern.clone(),
                        format!("overlaps {what} ({other})"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Whether some subject matches both patterns (`*` one token, `>` one or more at the end).
pub fn subjects_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&">"), Some(_)) | (Some(_), Some(&">")) => return true,
            (Some(x), Some(y)) if *x == "*" || *y == "*" || x == y => i += 1,
            (None, None) => return true,
            _ => return false,
        }
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
            return Err(invalid("nats.urls", redact_url(url), "not a server URL"));
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
    if let (Some(creds), Some(_)) = (&raw.credentials_file, &raw.nkey_file) {
        return Err(invalid(
            "nats.nkey_file",
            creds.display().to_string(),
            "a credentials file already holds the user's seed: give one or the other",
        ));
    }
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
        nkey_file: raw.nkey_file,
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
            Some((s, c)) if is_jetstream_name(s) && is_jetstream_name(c) => {
                consumers.push((s.into(), c.into()))
            }
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
    fn a_label_named_twice_is_refused() {
        let text = "[[headers.labels]]\nheader = \"x-server-id\"\nlabel = \"server\"\n\
                    [[headers.labels]]\nheader = \"x-host\"\nlabel = \"server\"\n";
        let err = RawConfig::from_toml(text).unwrap().validate().unwrap_err();
        assert!(err.to_string().contains("headers.labels.label"), "{err}");
    }

    #[test]
    fn a_label_named_like_ackscopes_own_is_refused() {
        for name in ["stream", "consumer", "kind", "state", "le", "__x", "1st"] {
            let text = format!("[[headers.labels]]\nheader = \"x-a\"\nlabel = \"{name}\"\n");
            let err = RawConfig::from_toml(&text).unwrap().validate().unwrap_err();
            assert!(
                err.to_string().contains("headers.labels.label"),
                "{name}: {err}"
            );
        }
        let ok = "[[headers.labels]]\nheader = \"x-region\"\nlabel = \"region\"\n";
        assert!(RawConfig::from_toml(ok).unwrap().validate().is_ok());
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
        let err = RawConfig::from_toml("[tick]\nphase_of = \"frame\"").unwrap_err();
        assert!(
            err.contains("tick.phase_of") && err.contains("frame"),
            "{err}"
        );
    }

    #[test]
    fn nonsense_that_parses_is_refused() {
        let refused = |text: &str, key: &str| {
            let err = RawConfig::from_toml(text)
                .unwrap()
                .validate()
                .expect_err(text)
                .to_string();
            assert!(err.contains(key), "{text}: {err}");
        };
        refused("[join]\nmax_pending_age = \"0s\"", "join.max_pending_age");
        refused("[join]\ndefault_ack_wait = \"0s\"", "join.default_ack_wait");
        refused("[join]\ncapacity = 1000000000000", "join.capacity");
        refused("[join]\ncompleted_capacity = 0", "join.completed_capacity");
        refused(
            "[aggregate]\nring_capacity = 100000000",
            "aggregate.ring_capacity",
        );
        refused(
            "[aggregate]\nretained_windows = 10000000",
            "aggregate.retained_windows",
        );
        refused(
            "[aggregate]\nretained_windows = 6\n[spikes]\nmin_windows = 3",
            "spikes.min_windows",
        );
        for pattern in [">", "*.>", "$JS.>", "_ACKSCOPE_INBOX.x", "*.ACK.>"] {
            refused(
                &format!("[taps]\ndelivery_patterns = [\"{pattern}\"]"),
                "taps.delivery_patterns",
            );
        }
        refused(
            "[nats]\ninbox_prefix = \"deliver\"",
            "taps.delivery_patterns",
        );
        refused(
            "[nats]\ncredentials_file = \"a.creds\"\nnkey_file = \"a.nk\"",
            "nats.nkey_file",
        );
        // Forgetting what analysis or the join still reads.
        refused("[join]\nforget_after = \"5m\"", "join.forget_after");
        refused(
            "[join]\nforget_after = \"2m\"\nmax_pending_age = \"3m\"\n[aggregate]\nretained_windows = 30",
            "join.forget_after",
        );
        // What is meant stays accepted.
        for ok in [
            "[join]\nforget_after = \"2m\"\nmax_pending_age = \"1m\"\n[aggregate]\nretained_windows = 30",
            "[aggregate]\nretained_windows = 8\n[spikes]\nmin_windows = 3",
            "[taps]\ndelivery_patterns = [\"_INBOX.>\", \"game.deliver.*\"]",
        ] {
            RawConfig::from_toml(ok).unwrap().validate().expect(ok);
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output_and_urls_in_logs() {
        let raw = RawConfig::from_toml(
            "[nats]\nurls = [\"nats://ops:hunter2@nats-1:4222\", \"tls://s3cr3t-token@nats-2\"]\n\
             user = \"ops\"\npassword = \"hunter2\"\ntoken = \"s3cr3t-token\"",
        )
        .unwrap();
        for shown in [
            format!("{:?}", raw.nats.password),
            format!("{:?}", raw.nats.token),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("s3cr3t"),
                "{shown}"
            );
        }
        let mut raw = raw;
        raw.nats.token = None;
        let c = raw.validate().unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert_eq!(
            c.nats.display_urls(),
            "nats://ops:***@nats-1:4222,tls://***@nats-2"
        );
        assert_eq!(c.nats.user.as_ref().unwrap().1.expose(), "hunter2");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact_url("nats://alice:pa/ss@host:4222"),
            "nats://alice:***@host:4222"
        );
        assert_eq!(redact_url("nats://t/k+n@host"), "nats://***@host");
        let raw =
            RawConfig::from_toml("[nats]\nurls = [\"nats://u:secret@h1 nats://u:secret@h2\"]")
                .unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(
            err.contains("nats.urls") && !err.contains("secret"),
            "{err}"
        );
    }

    #[test]
    fn patterns_overlap_when_one_subject_matches_both() {
        for (a, b, both) in [
            (">", "$JS.ACK.>", true),
            ("_INBOX.>", "$JS.ACK.>", false),
            ("*.ACK.>", "$JS.ACK.>", true),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.>", "a", false),
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
        ] {
            assert_eq!(subjects_overlap(a, b), both, "{a} ~ {b}");
            assert_eq!(subjects_overlap(b, a), both, "{b} ~ {a}");
        }
    }
}
