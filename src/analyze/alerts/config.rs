//! `[alerts]` as the file writes it, and the [`AlertsConfig`] the alert pass runs on: where
//! alerts go, how spikes group into incidents, the frame-budget objective, and the rules.
//!
//! Every rule has a good default, so that no configuration still alerts. `[[alerts.rules]]`
//! entries change a default rule of the same name (only the keys given) or add a rule of
//! their own (then `kind` is needed); `enabled = false` turns one off.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::analyze::incidents::IncidentConfig;
use crate::units::{Dur, Invalid};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// An incident (spikes grouped) that lasts: a P99 regression of game servers.
    P99Regression,
    /// The frame-budget SLO's error budget burning `threshold` times too fast over both
    /// `over` and `short`.
    SloBurn,
    /// Redeliveries over deliveries, per consumer, over `over`.
    RedeliveryRate,
    /// Acks after a later sequence of the same subject, per consumer, over `over`.
    OrderingFailureRate,
    /// MAX_DELIVERIES advisories (messages given up) over `over`.
    MaxDeliveries,
    /// ackscope's own health: taps down, messages dropped, the archive falling behind.
    Health,
}

/// How urgent an alert is: the `severity` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One rule as the alert pass runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The `alertname`.
    pub name: String,
    pub kind: RuleKind,
    /// How long the condition holds before the alert fires (pending meanwhile).
    pub for_ns: i64,
    /// How long a firing alert stays firing once the condition is gone: what keeps it from
    /// flapping.
    pub keep_firing_for_ns: i64,
    /// A fixed severity; `None`: the rule's own (a P99 regression's from its P99 against the
    /// frame budget).
    pub severity: Option<Severity>,
    /// The rule's limit: a rate (0..1), a burn-rate factor, or a count.
    pub threshold: f64,
    /// The window rates and counts are taken over; a burn rate's long window.
    pub over_ns: i64,
    /// A burn rate's short window.
    pub short_ns: i64,
    /// Fewer events than this over `over` never fire a rate rule.
    pub min_events: u64,
}

/// `[alerts]`: where alerts go and what fires them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAlerts {
    /// Alertmanager base URLs (`http://host:9093`); alerts are posted to `/api/v2/alerts`.
    pub alertmanager: Vec<String>,
    /// URLs that get each alert as a JSON body.
    pub webhooks: Vec<String>,
    /// When set, each webhook body is signed: `X-Ackscope-Signature: sha256=<hex HMAC>`.
    pub webhook_secret: Option<crate::units::Secret>,
    /// Alerts are published on `<nats_subject_prefix>.<rule>.<stream>.<consumer>` ("" for none).
    pub nats_subject_prefix: String,
    /// The dashboard as alert receivers reach it, for the links in annotations (default: the
    /// listen address).
    pub dashboard_url: Option<String>,
    /// How often the rules are evaluated.
    pub evaluate_every: Dur,
    /// How often a firing alert is sent again (Alertmanager resolves an alert that is not).
    pub resend: Dur,
    /// Batches of alerts (one per evaluation) waiting for a slow receiver, per receiver; more
    /// are dropped and counted.
    pub queue: usize,
    /// The frame-budget objective: the share of acks within one frame.
    pub objective: f64,
    pub incidents: RawIncidents,
    pub rules: Vec<RawRule>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        Self {
            alertmanager: Vec::new(),
            webhooks: Vec::new(),
            webhook_secret: None,
            nats_subject_prefix: "ackscope.alerts".into(),
            dashboard_url: None,
            evaluate_every: Dur::from_millis(5_000),
            resend: Dur::from_millis(60_000),
            queue: 1_024,
            objective: 0.999,
            incidents: RawIncidents::default(),
            rules: Vec::new(),
        }
    }
}

/// `[alerts.incidents]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIncidents {
    pub join_within: Dur,
    pub fleet_share: f64,
    /// "" for none.
    pub group_by: String,
}

impl Default for RawIncidents {
    fn default() -> Self {
        let d = IncidentConfig::default();
        Self {
            join_within: Dur(Duration::from_nanos(d.join_within_ns as u64)),
            fleet_share: d.fleet_share,
            group_by: d.group_by.unwrap_or_default(),
        }
    }
}

/// One `[[alerts.rules]]` entry: every key but `name` optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: String,
    pub kind: Option<RuleKind>,
    pub enabled: Option<bool>,
    #[serde(rename = "for")]
    pub for_: Option<Dur>,
    pub keep_firing_for: Option<Dur>,
    pub severity: Option<Severity>,
    pub threshold: Option<f64>,
    pub over: Option<Dur>,
    pub short: Option<Dur>,
    pub min_events: Option<u64>,
}

/// Where alerts go.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Receivers {
    pub alertmanager: Vec<String>,
    pub webhooks: Vec<String>,
    pub webhook_secret: Option<crate::units::Secret>,
    pub nats_subject_prefix: Option<String>,
    pub queue: usize,
}

/// `[alerts]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub receivers: Receivers,
    pub dashboard_url: Option<String>,
    pub evaluate_every_ns: i64,
    pub resend_ns: i64,
    pub objective: f64,
    pub incidents: IncidentConfig,
    pub rules: Vec<Rule>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        RawAlerts::default()
            .validate()
            .expect("the default alerts are valid")
    }
}

const SECOND: i64 = 1_000_000_000;
/// The longest window a rule may read (the frame-budget ledger keeps that much per consumer).
const MAX_WINDOW_NS: i64 = 7 * 24 * 3_600 * SECOND;
/// The longest `for` and `keep_firing_for`.
const MAX_HOLD_NS: i64 = 24 * 3_600 * SECOND;

/// The rules with no configuration: the Google SRE workbook's two burn-rate pairs for the
/// frame-budget SLO, a P99 regression sustained for a few windows, rates, and health.
pub fn default_rules() -> Vec<Rule> {
    let rule = |name: &str, kind, for_s: i64, keep_s: i64, severity, threshold, over_s: i64| Rule {
        name: name.into(),
        kind,
        for_ns: for_s * SECOND,
        keep_firing_for_ns: keep_s * SECOND,
        severity,
        threshold,
        over_ns: over_s * SECOND,
        short_ns: 0,
        min_events: 0,
    };
    use RuleKind::*;
    vec![
        rule("AckP99Regression", P99Regression, 5, 15, None, 0.0, 0),
        Rule {
            short_ns: 300 * SECOND,
            min_events: 100,
            ..rule(
                "FrameBudgetBurnFast",
                SloBurn,
                0,
                60,
                Some(Severity::Critical),
                14.4,
                3_600,
            )
        },
        Rule {
            short_ns: 1_800 * SECOND,
            min_events: 100,
            ..rule(
                "FrameBudgetBurnSlow",
                SloBurn,
                0,
                300,
                Some(Severity::Warning),
                6.0,
                21_600,
            )
        },
        Rule {
            min_events: 100,
            ..rule(
                "RedeliveryRate",
                RedeliveryRate,
                10,
                30,
                Some(Severity::Warning),
                0.05,
                60,
            )
        },
        Rule {
            min_events: 100,
            ..rule(
                "OrderingFailureRate",
                OrderingFailureRate,
                10,
                30,
                Some(Severity::Warning),
                0.01,
                60,
            )
        },
        rule(
            "MaxDeliveriesReached",
            MaxDeliveries,
            0,
            60,
            Some(Severity::Warning),
            0.0,
            60,
        ),
        rule(
            "AckscopeUnhealthy",
            Health,
            10,
            30,
            Some(Severity::Warning),
            0.0,
            60,
        ),
    ]
}

/// An alert name Alertmanager and the NATS subject take: letters, digits and `_`, not first a
/// digit.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_url(url: &str) -> bool {
    url.strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
}

impl RawAlerts {
    /// Checks every value of `[alerts]`; keys are named within the section.
    pub fn validate(&self) -> Result<AlertsConfig, Invalid> {
        for (key, urls) in [
            ("alertmanager", &self.alertmanager),
            ("webhooks", &self.webhooks),
        ] {
            if let Some(bad) = urls.iter().find(|u| !is_url(u)) {
                return Err(Invalid::new(
                    key,
                    bad.clone(),
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if let Some(url) = self.dashboard_url.as_ref().filter(|u| !is_url(u)) {
            return Err(Invalid::new(
                "dashboard_url",
                url.clone(),
                "must be an http:// or https:// URL",
            ));
        }
        let prefix = self.nats_subject_prefix.trim();
        if !prefix.is_empty()
            && (prefix.contains(['*', '>', ' ']) || prefix.split('.').any(str::is_empty))
        {
            return Err(Invalid::new(
                "nats_subject_prefix",
                prefix,
                "must be a subject of literal tokens (no wildcards, no empty token)",
            ));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(Invalid::new(
                "objective",
                self.objective.to_string(),
                "must be between 0 and 1 (e.g. 0.999)",
            ));
        }
        if self.evaluate_every.ns() < 100_000_000 {
            return Err(Invalid::new(
                "evaluate_every",
                self.evaluate_every.to_string(),
                "must be at least 100ms",
            ));
        }
        if self.resend.ns() < self.evaluate_every.ns() {
            return Err(Invalid::new(
                "resend",
                self.resend.to_string(),
                "must be at least evaluate_every",
            ));
        }
        if self.queue == 0 {
            return Err(Invalid::new("queue", "0", "must be > 0"));
        }
        let inc = &self.incidents;
        if !(inc.fleet_share > 0.0 && inc.fleet_share <= 1.0) {
            return Err(Invalid::new(
                "incidents.fleet_share",
                inc.fleet_share.to_string(),
                "must be in (0, 1]",
            ));
        }
        let label = self.incidents.group_by.trim();
        if !label.is_empty()
            && (!valid_name(label)
                || [
                    "alertname",
                    "severity",
                    "stream",
                    "consumer",
                    "cause",
                    "problem",
                ]
                .contains(&label))
        {
            return Err(Invalid::new(
                "incidents.group_by",
                label,
                "must be a label name (letters, digits and _, not first a digit) other than alertname, severity, stream, consumer, cause and problem",
            ));
        }
        let mut rules = default_rules();
        let mut named = std::collections::HashSet::new();
        for (i, raw) in self.rules.iter().enumerate() {
            let key = |k: &str| format!("rules[{i}].{k}");
            if !named.insert(raw.name.as_str()) {
                return Err(Invalid::new(
                    &key("name"),
                    raw.name.clone(),
                    "is given twice",
                ));
            }
            if !valid_name(&raw.name) {
                return Err(Invalid::new(
                    &key("name"),
                    raw.name.clone(),
                    "must be letters, digits and _ (not first a digit)",
                ));
            }
            let at = rules.iter().position(|r| r.name == raw.name);
            if raw.enabled == Some(false) {
                if let Some(at) = at {
                    rules.remove(at);
                }
                continue;
            }
            let mut rule = match (at, raw.kind) {
                (Some(at), kind) if kind.is_none_or(|k| k == rules[at].kind) => rules[at].clone(),
                (Some(at), Some(_)) => {
                    return Err(Invalid::new(
                        &key("kind"),
                        format!("{:?}", raw.kind.expect("some")),
                        format!(
                            "`{}` is a default rule of another kind; give it another name",
                            rules[at].name
                        ),
                    ));
                }
                (None, Some(kind)) => Rule {
                    name: raw.name.clone(),
                    kind,
                    ..default_rules()
                        .into_iter()
                        .find(|r| r.kind == kind)
                        .expect("every kind has a default rule")
                },
                (None, None) => {
                    return Err(Invalid::new(
                        &key("kind"),
                        "",
                        "a rule that is not a default one needs a kind",
                    ));
                }
                (Some(_), None) => unreachable!("matched by the first arm"),
            };
            let ns = |d: Option<Dur>| d.map(|d| i64::try_from(d.ns()).unwrap_or(i64::MAX));
            rule.for_ns = ns(raw.for_).unwrap_or(rule.for_ns);
            rule.keep_firing_for_ns = ns(raw.keep_firing_for).unwrap_or(rule.keep_firing_for_ns);
            rule.severity = raw.severity.or(rule.severity);
            rule.threshold = raw.threshold.unwrap_or(rule.threshold);
            rule.over_ns = ns(raw.over).unwrap_or(rule.over_ns);
            rule.short_ns = ns(raw.short).unwrap_or(rule.short_ns);
            rule.min_events = raw.min_events.unwrap_or(rule.min_events);
            if !(rule.threshold.is_finite() && rule.threshold >= 0.0) {
                return Err(Invalid::new(
                    &key("threshold"),
                    rule.threshold.to_string(),
                    "must be a number ≥ 0",
                ));
            }
            let rate = matches!(
                rule.kind,
                RuleKind::RedeliveryRate | RuleKind::OrderingFailureRate
            );
            if rate && rule.threshold >= 1.0 {
                return Err(Invalid::new(
                    &key("threshold"),
                    rule.threshold.to_string(),
                    "a rate must be below 1 (0.05 is 5%)",
                ));
            }
            if rule.kind == RuleKind::SloBurn {
                if rule.threshold < 1.0 {
                    return Err(Invalid::new(
                        &key("threshold"),
                        rule.threshold.to_string(),
                        "a burn-rate factor must be ≥ 1",
                    ));
                }
                if !(0 < rule.short_ns && rule.short_ns < rule.over_ns) {
                    return Err(Invalid::new(
                        &key("short"),
                        format!("{}ns", rule.short_ns),
                        "must be above 0 and below `over`",
                    ));
                }
            }
            for (name, ns, most) in [
                ("over", rule.over_ns, MAX_WINDOW_NS),
                ("short", rule.short_ns, MAX_WINDOW_NS),
                ("for", rule.for_ns, MAX_HOLD_NS),
                ("keep_firing_for", rule.keep_firing_for_ns, MAX_HOLD_NS),
            ] {
                if ns > most {
                    return Err(Invalid::new(
                        &key(name),
                        format!("{ns}ns"),
                        format!(
                            "must be at most {}",
                            humantime::format_duration(Duration::from_nanos(most as u64))
                        ),
                    ));
                }
            }
            if rule.kind != RuleKind::P99Regression && rule.over_ns < SECOND {
                return Err(Invalid::new(
                    &key("over"),
                    format!("{}ns", rule.over_ns),
                    "must be at least 1s",
                ));
            }
            match at {
                Some(at) if rules.get(at).is_some_and(|r| r.name == rule.name) => rules[at] = rule,
                _ => {
                    if rules.iter().any(|r| r.name == rule.name) {
                        return Err(Invalid::new(
                            &key("name"),
                            raw.name.clone(),
                            "is given twice",
                        ));
                    }
                    rules.push(rule)
                }
            }
        }
        let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
        Ok(AlertsConfig {
            receivers: Receivers {
                alertmanager: self
                    .alertmanager
                    .iter()
                    .map(|u| u.trim_end_matches('/').to_string())
                    .collect(),
                webhooks: self.webhooks.clone(),
                webhook_secret: self.webhook_secret.clone(),
                nats_subject_prefix: prefix,
                queue: self.queue,
            },
            dashboard_url: self
                .dashboard_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_string()),
            evaluate_every_ns: i64::try_from(self.evaluate_every.ns()).unwrap_or(i64::MAX),
            resend_ns: i64::try_from(self.resend.ns()).unwrap_or(i64::MAX),
            objective: self.objective,
            incidents: IncidentConfig {
                join_within_ns: i64::try_from(inc.join_within.ns()).unwrap_or(i64::MAX),
                fleet_share: inc.fleet_share,
                group_by: (!inc.group_by.trim().is_empty())
                    .then(|| inc.group_by.trim().to_string()),
            },
            rules,
        })
    }
}

impl AlertsConfig {
    /// The longest window any burn-rate rule reads back, and the bucket its ledger keeps:
    /// a fifth of the shortest window (at least one second).
    pub fn ledger_span(&self) -> (i64, i64) {
        let burns = self.rules.iter().filter(|r| r.kind == RuleKind::SloBurn);
        let longest = burns.clone().map(|r| r.over_ns).max().unwrap_or(0);
        let shortest = burns.map(|r| r.short_ns).min().unwrap_or(0);
        // A fifth of the shortest window, and at most 4,096 buckets per consumer.
        (longest, (shortest / 5).max(longest / 4_096).max(SECOND))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AlertsConfig, String> {
        let raw: RawAlerts = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn no_configuration_alerts_with_every_default_rule() {
        let c = parse("").unwrap();
        assert_eq!(c.rules.len(), 7);
        assert_eq!(c.objective, 0.999);
        let fast = c
            .rules
            .iter()
            .find(|r| r.name == "FrameBudgetBurnFast")
            .unwrap();
        assert_eq!(
            (fast.threshold, fast.over_ns, fast.short_ns),
            (14.4, 3_600 * SECOND, 300 * SECOND)
        );
        assert_eq!(c.ledger_span(), (21_600 * SECOND, 60 * SECOND));
        assert_eq!(
            c.receivers.nats_subject_prefix.as_deref(),
            Some("ackscope.alerts")
        );
    }

    #[test]
    fn rules_change_a_default_add_one_or_turn_one_off() {
        let c = parse(
            r#"
            objective = 0.99995
            [[rules]]
            name = "FrameBudgetBurnFast"
            over = "2m"
            short = "10s"
            [[rules]]
            name = "OrderingFailureRate"
            enabled = false
            [[rules]]
            name = "ManyRedeliveries"
            kind = "redelivery_rate"
            threshold = 0.2
            severity = "critical"
            "#,
        )
        .unwrap();
        assert_eq!(c.objective, 0.99995);
        let fast = c
            .rules
            .iter()
            .find(|r| r.name == "FrameBudgetBurnFast")
            .unwrap();
        assert_eq!(
            (fast.over_ns, fast.short_ns, fast.threshold),
            (120 * SECOND, 10 * SECOND, 14.4)
        );
        assert!(c.rules.iter().all(|r| r.name != "OrderingFailureRate"));
        let many = c.rules.last().unwrap();
        assert_eq!(
            (many.name.as_str(), many.kind, many.threshold),
            ("ManyRedeliveries", RuleKind::RedeliveryRate, 0.2)
        );
        assert_eq!(
            (many.severity, many.over_ns),
            (Some(Severity::Critical), 60 * SECOND)
        );
        // A fifth of 10 s would be 2 s buckets; 4,096 at most over the 6 h window makes them
        // 5.27 s.
        assert_eq!(c.ledger_span(), (21_600 * SECOND, 21_600 * SECOND / 4_096));
    }

    #[test]
    fn bad_rules_name_the_key() {
        for (text, key) in [
            (
                "[[rules]]\nname = \"x y\"\nkind = \"health\"",
                "rules[0].name",
            ),
            ("[[rules]]\nname = \"New\"", "rules[0].kind"),
            (
                "[[rules]]\nname = \"RedeliveryRate\"\nthreshold = 5.0",
                "rules[0].threshold",
            ),
            (
                "[[rules]]\nname = \"FrameBudgetBurnSlow\"\nshort = \"7h\"",
                "rules[0].short",
            ),
            (
                "[[rules]]\nname = \"AckP99Regression\"\nkind = \"health\"",
                "rules[0].kind",
            ),
            ("objective = 1.0", "objective"),
            ("alertmanager = [\"localhost:9093\"]", "alertmanager"),
            ("nats_subject_prefix = \"a.*\"", "nats_subject_prefix"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
        let e = parse("[[rules]]\nname = \"A\"\nkind = \"bogus\"").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
