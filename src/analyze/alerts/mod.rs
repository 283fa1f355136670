//! Alerts: rules over incidents, the frame-budget SLO, rates and ackscope's own health, each
//! alert one per (rule, scope), pending → firing → resolved.
//!
//! Pure and synchronous: [`findings`] turns what the caller gathered ([`Inputs`]) into the
//! conditions that hold now; [`AlertBook::evaluate`] moves each alert along its lifecycle and
//! says what to send. Sending, clocks and locks are the caller's.
//!
//! An alert's identity (its fingerprint) is its rule and scope, never the instance that sends
//! it, so several instances can send the same alert and Alertmanager keeps one. Its labels are
//! set when it starts to fire and kept until it resolves (Alertmanager tells alerts apart by
//! their labels); annotations follow the latest evaluation.

pub mod config;
pub mod slo;

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

pub use config::{AlertsConfig, RawAlerts, Rule, RuleKind, Severity};

use super::causes::Cause;
use super::incidents::{Incident, ScopeKind};
use crate::model::rfc3339;
use crate::telemetry::Counters;
use slo::BudgetLedger;

/// What the alert pass keeps between passes, and what the API reads.
#[derive(Debug)]
pub struct AlertsState {
    pub book: AlertBook,
    pub ledger: BudgetLedger,
    /// The end of the last window counted in the ledger.
    counted_until_ns: i64,
    /// Counters at earlier passes, oldest first, for what changed over a rule's window.
    counters: VecDeque<(i64, Counters)>,
    /// Ids of the incidents handed to the archive, the latest [`AlertsState::ARCHIVED`].
    archived: VecDeque<String>,
}

impl AlertsState {
    pub fn new(config: &AlertsConfig) -> Self {
        let (longest, bucket) = config.ledger_span();
        Self {
            book: AlertBook::default(),
            ledger: BudgetLedger::new(bucket, longest, 10_000),
            counted_until_ns: i64::MIN,
            counters: VecDeque::new(),
            archived: VecDeque::new(),
        }
    }

    /// Ended incidents remembered as archived: far more than end within the look-back of
    /// one pass.
    pub const ARCHIVED: usize = 10_000;

    /// Whether the incident `id` went to the archive.
    pub fn archived(&self, id: &str) -> bool {
        self.archived.iter().any(|a| a == id)
    }

    /// Remembers that the incident `id` went to the archive.
    pub fn mark_archived(&mut self, id: &str) {
        if self.archived.len() >= Self::ARCHIVED {
            self.archived.pop_front();
        }
        self.archived.push_back(id.to_string());
    }

    /// The end of the last window counted in the frame-budget ledger.
    pub fn counted_until_ns(&self) -> i64 {
        self.counted_until_ns
    }

    /// Counts closed windows ((stream, consumer), end, good, total) in the frame-budget
    /// ledger, and lets go of what no rule reads back from `now_ns`.
    pub fn count_windows(&mut self, windows: &[(slo::ScopeNames, i64, u64, u64)], now_ns: i64) {
        for (scope, end, good, total) in windows {
            self.ledger.add(scope, *end, *good, *total);
            self.counted_until_ns = self.counted_until_ns.max(*end);
        }
        self.ledger.prune(now_ns);
    }

    /// Keeps `now` (ackscope's counters at `now_ns`) and returns the oldest kept within
    /// `over_ns`: what changed since is what the health rule looks at.
    pub fn counters_since(&mut self, now_ns: i64, now: Counters, over_ns: i64) -> Counters {
        self.counters.push_back((now_ns, now));
        // Bounded: the health rule's window is shortened to 10,000 passes (14 h at 5 s).
        while self.counters.len() > 10_000
            || self
                .counters
                .front()
                .is_some_and(|(t, _)| *t < now_ns.saturating_sub(over_ns))
        {
            self.counters.pop_front();
        }
        self.counters.front().map_or(now, |(_, c)| *c)
    }
}

/// An alert's place in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    Firing,
    Resolved,
}

/// One condition that holds now: a rule's verdict on one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub rule: String,
    /// `*` for all.
    pub stream: String,
    pub consumer: String,
    /// Labels beyond the contract's that are part of the alert's identity (a group's
    /// `server`, a health problem).
    pub extra: BTreeMap<String, String>,
    pub severity: Severity,
    pub cause: Cause,
    /// The rule's measure (a P99 in µs, a rate, a burn rate, a count).
    pub value: f64,
    pub annotations: BTreeMap<String, String>,
}

impl Finding {
    /// The alert's identity: rule and scope.
    pub fn key(&self) -> String {
        let extra: String = self
            .extra
            .iter()
            .map(|(k, v)| format!(",{k}={v}"))
            .collect();
        format!(
            "{}{{stream={},consumer={}{extra}}}",
            self.rule, self.stream, self.consumer
        )
    }
}

/// An alert as `GET /api/v1/alerts` lists it and receivers get it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Alert {
    /// 16 hex digits of its identity (rule and scope): the same from any instance.
    pub fingerprint: String,
    pub alertname: String,
    pub state: State,
    /// When it entered its state.
    pub since: String,
    /// When its condition first held (pending from then).
    pub active_at: String,
    pub fired_at: Option<String>,
    pub resolved_at: Option<String>,
    /// The rule's measure at the last evaluation that held.
    pub value: f64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// An alert to send now: to fire (again) or to resolve.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub alert: Alert,
    pub starts_at_ns: i64,
    /// For a firing alert, when receivers may consider it gone if nothing is heard again
    /// (four resends on); for a resolved one, when it resolved.
    pub ends_at_ns: i64,
}

#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    rule: String,
    active_at_ns: i64,
    fired_at_ns: Option<i64>,
    last_true_ns: i64,
    last_sent_ns: i64,
}

/// Every alert pending or firing, and the latest resolved ones.
#[derive(Debug, Default)]
pub struct AlertBook {
    open: BTreeMap<String, Tracked>,
    recent: VecDeque<Alert>,
    /// Conditions not tracked because [`AlertBook::CAPACITY`] alerts were open.
    pub overflow: u64,
}

/// FNV-1a, 64 bits: a fingerprint that does not depend on the process.
fn fingerprint(key: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl AlertBook {
    /// Open alerts at most; more conditions are counted in `overflow`.
    pub const CAPACITY: usize = 1_000;
    /// Resolved alerts kept for the API.
    pub const RECENT: usize = 200;

    /// Whether a finding of `key` under `rule` would be sent if it held at `now_ns`: the
    /// caller then gives it its full annotations (explaining a spike costs).
    pub fn would_send(&self, key: &str, rule: &Rule, now_ns: i64, resend_ns: i64) -> bool {
        match self.open.get(key) {
            None => rule.for_ns == 0,
            Some(t) => match t.fired_at_ns {
                None => now_ns - t.active_at_ns >= rule.for_ns,
                Some(_) => now_ns - t.last_sent_ns >= resend_ns,
            },
        }
    }

    /// Moves every alert along with the `findings` that hold at `now_ns` (those of rules not
    /// in `rules` are ignored) and returns what to send: alerts that start to fire, firing
    /// ones due to be sent again (`resend_ns`), and those that resolve.
    pub fn evaluate(
        &mut self,
        rules: &[Rule],
        findings: Vec<Finding>,
        now_ns: i64,
        resend_ns: i64,
    ) -> Vec<Notice> {
        let mut notices = Vec::new();
        let mut held = std::collections::BTreeSet::new();
        for f in findings {
            let Some(rule) = rules.iter().find(|r| r.name == f.rule) else {
                continue;
            };
            let key = f.key();
            if !self.open.contains_key(&key) && self.open.len() >= Self::CAPACITY {
                self.overflow += 1;
                continue;
            }
            held.insert(key.clone());
            let t = self.open.entry(key.clone()).or_insert_with(|| Tracked {
                alert: Alert {
                    fingerprint: fingerprint(&key),
                    alertname: f.rule.clone(),
                    state: State::Pending,
                    since: rfc3339(now_ns),
                    active_at: rfc3339(now_ns),
                    fired_at: None,
                    resolved_at: None,
                    value: f.value,
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                },
                rule: f.rule.clone(),
                active_at_ns: now_ns,
                fired_at_ns: None,
                last_true_ns: now_ns,
                last_sent_ns: i64::MIN,
            });
            t.last_true_ns = now_ns;
            t.alert.value = f.value;
            if !f.annotations.is_empty() {
                t.alert.annotations = f.annotations.clone();
            }
            match t.fired_at_ns {
                None => {
                    // Labels follow the condition while pending, then stay.
                    t.alert.labels = labels(&f);
                    if now_ns - t.active_at_ns >= rule.for_ns {
                        t.fired_at_ns = Some(now_ns);
                        t.alert.state = State::Firing;
                        t.alert.since = rfc3339(now_ns);
                        t.alert.fired_at = Some(rfc3339(now_ns));
                        t.last_sent_ns = now_ns;
                        notices.push(firing(t, now_ns, resend_ns));
                    }
                }
                Some(_) if now_ns - t.last_sent_ns >= resend_ns => {
                    t.last_sent_ns = now_ns;
                    notices.push(firing(t, now_ns, resend_ns));
                }
                Some(_) => {}
            }
        }
        let keep_for = |name: &str| {
            rules
                .iter()
                .find(|r| r.name == name)
                .map_or(0, |r| r.keep_firing_for_ns)
        };
        let gone: Vec<String> = self
            .open
            .iter()
            .filter(|(key, t)| {
                !held.contains(*key)
                    && (t.fired_at_ns.is_none() || now_ns - t.last_true_ns >= keep_for(&t.rule))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            let mut t = self.open.remove(&key).expect("listed above");
            let Some(fired) = t.fired_at_ns else {
                continue; // pending and gone: never sent, nothing to resolve
            };
            t.alert.state = State::Resolved;
            t.alert.since = rfc3339(now_ns);
            t.alert.resolved_at = Some(rfc3339(now_ns));
            notices.push(Notice {
                alert: t.alert.clone(),
                starts_at_ns: fired,
                ends_at_ns: now_ns,
            });
            if self.recent.len() >= Self::RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(t.alert);
        }
        // Firing alerts kept firing while their condition is gone are sent again too, or
        // receivers would let them lapse (their `endsAt`) before they resolve here.
        for (key, t) in self.open.iter_mut() {
            if !held.contains(key)
                && t.fired_at_ns.is_some()
                && now_ns - t.last_sent_ns >= resend_ns
            {
                t.last_sent_ns = now_ns;
                notices.push(firing(t, now_ns, resend_ns));
            }
        }
        notices
    }

    /// How many alerts are firing and how many pending.
    pub fn counts(&self) -> (usize, usize) {
        let firing = self
            .open
            .values()
            .filter(|t| t.fired_at_ns.is_some())
            .count();
        (firing, self.open.len() - firing)
    }

    /// Pending and firing alerts, firing first, then by name.
    pub fn open(&self) -> Vec<Alert> {
        let mut open: Vec<Alert> = self.open.values().map(|t| t.alert.clone()).collect();
        open.sort_by_key(|a| (a.state != State::Firing, a.alertname.clone()));
        open
    }

    /// Resolved alerts, newest first.
    pub fn resolved(&self) -> impl Iterator<Item = &Alert> {
        self.recent.iter().rev()
    }
}

fn labels(f: &Finding) -> BTreeMap<String, String> {
    let mut labels = f.extra.clone();
    labels.insert("alertname".into(), f.rule.clone());
    labels.insert("severity".into(), f.severity.as_str().into());
    labels.insert("stream".into(), f.stream.clone());
    labels.insert("consumer".into(), f.consumer.clone());
    labels.insert("cause".into(), f.cause.as_str().into());
    labels
}

fn firing(t: &Tracked, now_ns: i64, resend_ns: i64) -> Notice {
    Notice {
        alert: t.alert.clone(),
        starts_at_ns: t.fired_at_ns.unwrap_or(now_ns),
        ends_at_ns: now_ns.saturating_add(resend_ns.saturating_mul(4)),
    }
}

/// One incident as the P99 rule sees it.
#[derive(Debug, Clone)]
pub struct IncidentInput {
    pub incident: Incident,
    /// Still going: its last spike has not ended yet.
    pub ongoing: bool,
    /// The frame budget of its scope (one frame of its consumers' clocks, the shortest).
    pub budget_ns: u64,
}

/// One consumer's (or all consumers') events over a rate rule's window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub stream: String,
    pub consumer: String,
    pub over_ns: i64,
    pub deliveries: u64,
    pub redeliveries: u64,
    pub max_deliveries: u64,
    pub ordering_checked: u64,
    pub ordering_failed: u64,
}

/// Something wrong with ackscope itself: a short name (the `problem` label) and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthProblem {
    pub problem: &'static str,
    pub summary: String,
    pub value: f64,
}

/// What [`findings`] looks at, gathered by the caller.
#[derive(Debug, Default)]
pub struct Inputs {
    pub now_ns: i64,
    pub incidents: Vec<IncidentInput>,
    /// Per rate rule window: the scopes' rates (by `over_ns`).
    pub rates: Vec<Rates>,
    pub health: Vec<HealthProblem>,
    /// The dashboard's base URL, for links.
    pub dashboard_url: String,
}

fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A link to the dashboard's `path` for one scope (`*`: left out).
fn link(base: &str, path: &str, stream: &str, consumer: &str, more: &[(&str, String)]) -> String {
    let mut q: Vec<String> = Vec::new();
    if stream != "*" {
        q.push(format!("stream={}", query_value(stream)));
    }
    if consumer != "*" {
        q.push(format!("consumer={}", query_value(consumer)));
    }
    q.extend(more.iter().map(|(k, v)| format!("{k}={}", query_value(v))));
    let sep = if q.is_empty() { "" } else { "?" };
    format!("{base}{path}{sep}{}", q.join("&"))
}

fn ms(ns: f64) -> String {
    format!("{:.1} ms", ns / 1e6)
}

/// The conditions that hold now under `rules`.
pub fn findings(
    rules: &[Rule],
    inputs: &Inputs,
    ledger: &BudgetLedger,
    objective: f64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in rules {
        let first = out.len();
        match rule.kind {
            RuleKind::P99Regression => {
                for i in inputs.incidents.iter().filter(|i| i.ongoing) {
                    if let Some(f) = p99_finding(rule, i, &inputs.dashboard_url) {
                        out.push(f);
                    }
                }
            }
            RuleKind::SloBurn => {
                for scope in ledger.scopes() {
                    let long = ledger.burn(scope, inputs.now_ns, rule.over_ns, objective);
                    let short = ledger.burn(scope, inputs.now_ns, rule.short_ns, objective);
                    let (Some(long), Some(short)) = (long, short) else {
                        continue;
                    };
                    if long.total < rule.min_events
                        || long.rate < rule.threshold
                        || short.rate < rule.threshold
                    {
                        continue;
                    }
                    let (stream, consumer) = scope;
                    let cause = latest_cause(&inputs.incidents, stream, consumer);
                    // Acks measured late by ackscope, or held by the server: not the game's.
                    if matches!(cause, Cause::CollectorLag | Cause::NatsRtt) {
                        continue;
                    }
                    let mut annotations = BTreeMap::new();
                    annotations.insert(
                        "summary".into(),
                        format!(
                            "frame-budget error budget of {stream}/{consumer} burning {:.1}x over {} and {:.1}x over {} (objective {}%, {:.4}% of acks within one frame over {})",
                            long.rate,
                            humantime::format_duration(std::time::Duration::from_nanos(rule.over_ns as u64)),
                            short.rate,
                            humantime::format_duration(std::time::Duration::from_nanos(rule.short_ns as u64)),
                            objective * 100.0,
                            long.good_share * 100.0,
                            humantime::format_duration(std::time::Duration::from_nanos(rule.over_ns as u64)),
                        ),
                    );
                    annotations.insert("trace_ids".into(), String::new());
                    annotations.insert(
                        "dashboard_url".into(),
                        link(&inputs.dashboard_url, "/", stream, consumer, &[]),
                    );
                    out.push(Finding {
                        rule: rule.name.clone(),
                        stream: stream.clone(),
                        consumer: consumer.clone(),
                        extra: BTreeMap::new(),
                        severity: rule.severity.unwrap_or(Severity::Critical),
                        cause,
                        value: long.rate,
                        annotations,
                    });
                }
            }
            RuleKind::RedeliveryRate | RuleKind::OrderingFailureRate | RuleKind::MaxDeliveries => {
                for r in inputs.rates.iter().filter(|r| r.over_ns == rule.over_ns) {
                    if let Some(f) = rate_finding(rule, r, &inputs.dashboard_url) {
                        out.push(f);
                    }
                }
            }
            RuleKind::Health => {
                for p in &inputs.health {
                    let mut annotations = BTreeMap::new();
                    annotations.insert("summary".into(), format!("ackscope: {}", p.summary));
                    annotations.insert("trace_ids".into(), String::new());
                    annotations.insert(
                        "dashboard_url".into(),
                        link(&inputs.dashboard_url, "/", "*", "*", &[]),
                    );
                    out.push(Finding {
                        rule: rule.name.clone(),
                        stream: "*".into(),
                        consumer: "*".into(),
                        extra: BTreeMap::from([("problem".into(), p.problem.into())]),
                        severity: rule.severity.unwrap_or(Severity::Warning),
                        cause: Cause::CollectorLag,
                        value: p.value,
                        annotations,
                    });
                }
            }
        }
        // One alert per event for burns and rates: several consumers with all consumers
        // together are the all-consumers alert alone (a fleet-wide event pages once); one
        // consumer is its own alert alone (all consumers burn only because of it).
        if matches!(
            rule.kind,
            RuleKind::SloBurn
                | RuleKind::RedeliveryRate
                | RuleKind::OrderingFailureRate
                | RuleKind::MaxDeliveries
        ) {
            let all = |f: &Finding| f.stream == "*" && f.consumer == "*";
            let consumers = out[first..].iter().filter(|f| !all(f)).count();
            if out[first..].iter().any(all) && consumers > 0 {
                let keep_all = consumers >= 2;
                let mut i = first;
                while i < out.len() {
                    if all(&out[i]) == keep_all {
                        i += 1;
                    } else {
                        out.remove(i);
                    }
                }
            }
        }
    }
    out
}

/// The latest incident touching a scope (any for all consumers).
fn latest_touching<'a>(
    incidents: &'a [IncidentInput],
    stream: &str,
    consumer: &str,
) -> Option<&'a IncidentInput> {
    let name = format!("{stream}/{consumer}");
    incidents
        .iter()
        .rev()
        .find(|i| consumer == "*" && stream == "*" || i.incident.consumers.contains(&name))
}

/// The top cause of the latest incident touching a scope, else `unknown`.
fn latest_cause(incidents: &[IncidentInput], stream: &str, consumer: &str) -> Cause {
    latest_touching(incidents, stream, consumer).map_or(Cause::Unknown, |i| i.incident.top_cause)
}

/// The incident a finding's cause comes from: a P99 regression's own, or for a burn rate the
/// latest incident touching its scope.
pub fn incident_of<'a>(f: &Finding, incidents: &'a [IncidentInput]) -> Option<&'a IncidentInput> {
    match f.annotations.get("incident") {
        Some(id) => incidents.iter().find(|i| i.incident.id == *id),
        None => latest_touching(incidents, &f.stream, &f.consumer),
    }
}

fn p99_finding(rule: &Rule, i: &IncidentInput, base: &str) -> Option<Finding> {
    let inc = &i.incident;
    // ackscope's own lag or the NATS round trip explains it: not a game-server regression.
    if matches!(inc.top_cause, Cause::CollectorLag | Cause::NatsRtt) {
        return None;
    }
    let severity = rule.severity.unwrap_or(if inc.peak_p99_ns > i.budget_ns {
        Severity::Critical
    } else {
        Severity::Warning
    });
    let (stream, consumer) = (&inc.scope.stream, &inc.scope.consumer);
    let mut extra = BTreeMap::new();
    if let Some((label, value)) = &inc.scope.label {
        extra.insert(label.clone(), value.clone());
    }
    let where_ = match inc.kind {
        ScopeKind::Consumer => format!("{stream}/{consumer}"),
        ScopeKind::Group | ScopeKind::Stream | ScopeKind::Fleet => format!(
            "{} consumer{} ({})",
            inc.consumers.len(),
            if inc.consumers.len() == 1 { "" } else { "s" },
            match (&inc.scope.label, inc.kind) {
                (Some((l, v)), _) => format!("{l}={v}"),
                (None, ScopeKind::Stream) if stream == "*" => "several streams".to_string(),
                (None, ScopeKind::Stream) => format!("stream {stream}"),
                _ => "fleet-wide".to_string(),
            }
        ),
    };
    let top = inc.causes.first().filter(|c| c.cause == inc.top_cause);
    let mut summary = format!(
        "ack P99 {} on {where_} against a baseline of {} (frame budget {}) since {}",
        ms(inc.peak_p99_ns as f64),
        ms(inc.baseline_p99_us * 1e3),
        ms(i.budget_ns as f64),
        inc.start,
    );
    match top {
        Some(c) => summary.push_str(&format!(
            "; most likely {} ({:.2}): {}",
            c.cause, c.confidence, c.summary
        )),
        None => summary.push_str("; no cause found with confidence"),
    }
    let causes: Vec<String> = inc
        .causes
        .iter()
        .filter(|c| c.confidence >= 0.1)
        .take(3)
        .map(|c| {
            format!(
                "{} ({:.2}, {} member{}): {}",
                c.cause,
                c.confidence,
                c.members,
                if c.members == 1 { "" } else { "s" },
                c.summary
            )
        })
        .collect();
    let trace_ids: Vec<String> = inc
        .causes
        .iter()
        .take(3)
        .flat_map(|c| c.exemplar_trace_ids.iter().map(|t| t.to_string()))
        .fold(Vec::new(), |mut v, t| {
            if !v.contains(&t) && v.len() < 5 {
                v.push(t);
            }
            v
        });
    let range = [
        ("from", rfc3339(inc.start_ns - 60_000_000_000)),
        ("to", rfc3339(inc.end_ns + 30_000_000_000)),
    ];
    let mut annotations = BTreeMap::new();
    annotations.insert("summary".into(), summary);
    annotations.insert("causes".into(), causes.join("\n"));
    annotations.insert("trace_ids".into(), trace_ids.join(" "));
    annotations.insert("incident".into(), inc.id.clone());
    annotations.insert(
        "dashboard_url".into(),
        link(base, "/", stream, consumer, &[("incident", inc.id.clone())]),
    );
    annotations.insert(
        "heatmap_url".into(),
        link(base, "/api/v1/heatmap/phase.svg", stream, consumer, &range),
    );
    Some(Finding {
        rule: rule.name.clone(),
        stream: stream.clone(),
        consumer: consumer.clone(),
        extra,
        severity,
        cause: inc.top_cause,
        value: inc.peak_p99_us,
        annotations,
    })
}

fn rate_finding(rule: &Rule, r: &Rates, base: &str) -> Option<Finding> {
    let (value, events, what, cause) = match rule.kind {
        RuleKind::RedeliveryRate => (
            r.redeliveries as f64 / r.deliveries.max(1) as f64,
            r.deliveries,
            format!(
                "{} of {} deliveries were redeliveries",
                r.redeliveries, r.deliveries
            ),
            Cause::Redelivery,
        ),
        RuleKind::OrderingFailureRate => (
            r.ordering_failed as f64 / r.ordering_checked.max(1) as f64,
            r.ordering_checked,
            format!(
                "{} of {} acks came after a later message of their subject",
                r.ordering_failed, r.ordering_checked
            ),
            Cause::Unknown,
        ),
        RuleKind::MaxDeliveries => (
            r.max_deliveries as f64,
            u64::MAX,
            format!(
                "{} message{} reached max_deliver and were given up",
                r.max_deliveries,
                if r.max_deliveries == 1 { "" } else { "s" }
            ),
            Cause::Redelivery,
        ),
        _ => return None,
    };
    if events < rule.min_events || value <= rule.threshold {
        return None;
    }
    let over = humantime::format_duration(std::time::Duration::from_nanos(rule.over_ns as u64));
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "summary".into(),
        format!("{}/{}: {what} over the last {over}", r.stream, r.consumer),
    );
    annotations.insert("trace_ids".into(), String::new());
    annotations.insert(
        "dashboard_url".into(),
        link(base, "/", &r.stream, &r.consumer, &[]),
    );
    Some(Finding {
        rule: rule.name.clone(),
        stream: r.stream.clone(),
        consumer: r.consumer.clone(),
        extra: BTreeMap::new(),
        severity: rule.severity.unwrap_or(Severity::Warning),
        cause,
        value,
        annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn rule(for_s: i64, keep_s: i64) -> Rule {
        Rule {
            name: "R".into(),
            kind: RuleKind::RedeliveryRate,
            for_ns: for_s * S,
            keep_firing_for_ns: keep_s * S,
            severity: None,
            threshold: 0.05,
            over_ns: 60 * S,
            short_ns: 0,
            min_events: 10,
        }
    }

    fn finding(cause: Cause) -> Finding {
        Finding {
            rule: "R".into(),
            stream: "GAME".into(),
            consumer: "srv-1".into(),
            extra: BTreeMap::new(),
            severity: Severity::Warning,
            cause,
            value: 0.2,
            annotations: BTreeMap::from([("summary".into(), format!("{cause}"))]),
        }
    }

    #[test]
    fn pending_then_firing_resent_then_resolved_after_keep_firing_for() {
        let rules = [rule(10, 20)];
        let mut book = AlertBook::default();
        let resend = 60 * S;
        // Holds at 0 and 5: pending, nothing sent.
        assert!(
            book.evaluate(&rules, vec![finding(Cause::Redelivery)], 0, resend)
                .is_empty()
        );
        assert!(
            book.evaluate(&rules, vec![finding(Cause::Redelivery)], 5 * S, resend)
                .is_empty()
        );
        assert_eq!(book.open()[0].state, State::Pending);
        // At 10, for has passed: firing, sent once.
        let sent = book.evaluate(&rules, vec![finding(Cause::Redelivery)], 10 * S, resend);
        assert_eq!(sent.len(), 1);
        let a = &sent[0].alert;
        assert_eq!(
            (
                a.state,
                a.labels["cause"].as_str(),
                a.labels["severity"].as_str()
            ),
            (State::Firing, "redelivery", "warning")
        );
        assert_eq!(sent[0].ends_at_ns, 10 * S + 4 * resend);
        // The cause changes while firing: labels stay (Alertmanager's identity), annotations follow.
        assert!(
            book.evaluate(&rules, vec![finding(Cause::HotSpot)], 20 * S, resend)
                .is_empty()
        );
        assert_eq!(book.open()[0].labels["cause"], "redelivery");
        assert_eq!(book.open()[0].annotations["summary"], "hot_spot");
        // Resent once a minute while firing.
        assert_eq!(
            book.evaluate(&rules, vec![finding(Cause::HotSpot)], 70 * S, resend)
                .len(),
            1
        );
        // Gone at 75 but kept firing for 20 s (no flapping); back at 80; gone from 85.
        assert!(book.evaluate(&rules, vec![], 75 * S, resend).is_empty());
        assert!(
            book.evaluate(&rules, vec![finding(Cause::HotSpot)], 80 * S, resend)
                .is_empty()
        );
        assert!(book.evaluate(&rules, vec![], 95 * S, resend).is_empty());
        let resolved = book.evaluate(&rules, vec![], 100 * S, resend);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].alert.state, State::Resolved);
        assert_eq!(
            (resolved[0].starts_at_ns, resolved[0].ends_at_ns),
            (10 * S, 100 * S)
        );
        assert!(book.open().is_empty());
        assert_eq!(book.resolved().count(), 1);
        // The same fingerprint from any book: rule and scope only.
        assert_eq!(
            resolved[0].alert.fingerprint,
            fingerprint("R{stream=GAME,consumer=srv-1}")
        );
    }

    #[test]
    fn a_condition_shorter_than_for_never_fires() {
        let rules = [rule(10, 20)];
        let mut book = AlertBook::default();
        for t in [0, 5] {
            book.evaluate(&rules, vec![finding(Cause::Redelivery)], t * S, 60 * S);
        }
        assert!(book.evaluate(&rules, vec![], 9 * S, 60 * S).is_empty());
        assert!(book.open().is_empty());
        assert_eq!(book.resolved().count(), 0);
        // A rule with no `for` fires at once; one not configured is ignored.
        let now = [rule(0, 0)];
        assert_eq!(
            book.evaluate(&now, vec![finding(Cause::Redelivery)], 0, 60 * S)
                .len(),
            1
        );
        let mut other = finding(Cause::Redelivery);
        other.rule = "Other".into();
        let sent = book.evaluate(&now, vec![other], S, 60 * S);
        // R is no longer held and keeps firing for 0 s: it resolves; Other is never tracked.
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (sent[0].alert.alertname.as_str(), sent[0].alert.state),
            ("R", State::Resolved)
        );
        assert!(book.open().is_empty());
    }

    #[test]
    fn a_kept_alert_is_resent_so_that_receivers_do_not_let_it_lapse() {
        // Kept firing for 5 minutes after its condition goes, resent every minute meanwhile.
        let rules = [rule(0, 300)];
        let mut book = AlertBook::default();
        let resend = 60 * S;
        assert_eq!(
            book.evaluate(&rules, vec![finding(Cause::Redelivery)], 0, resend)
                .len(),
            1
        );
        let mut sent = Vec::new();
        for t in (5..=290).step_by(5) {
            sent.extend(book.evaluate(&rules, vec![], t * S, resend));
        }
        let at: Vec<i64> = sent.iter().map(|n| n.ends_at_ns - 4 * resend).collect();
        assert_eq!(at, [60 * S, 120 * S, 180 * S, 240 * S]);
        assert!(sent.iter().all(|n| n.alert.state == State::Firing));
        let resolved = book.evaluate(&rules, vec![], 300 * S, resend);
        assert_eq!(resolved[0].alert.state, State::Resolved);
        assert_eq!(book.counts(), (0, 0));
    }

    #[test]
    fn several_consumers_over_a_rate_page_once_for_all_and_one_pages_alone() {
        let rates = |consumer: &str| Rates {
            stream: if consumer == "*" { "*" } else { "GAME" }.into(),
            consumer: consumer.into(),
            over_ns: 60 * S,
            deliveries: 1_000,
            redeliveries: 200,
            ..Rates::default()
        };
        let scopes = |consumers: &[&str]| -> Vec<String> {
            let inputs = Inputs {
                rates: consumers.iter().map(|c| rates(c)).collect(),
                ..Inputs::default()
            };
            findings(
                &[rule(0, 0)],
                &inputs,
                &BudgetLedger::new(S, 60 * S, 10),
                0.999,
            )
            .into_iter()
            .map(|f| f.consumer)
            .collect()
        };
        assert_eq!(scopes(&["srv-1", "srv-2", "*"]), ["*"]);
        assert_eq!(scopes(&["srv-1", "*"]), ["srv-1"]);
        assert_eq!(scopes(&["srv-1", "srv-2"]), ["srv-1", "srv-2"]);
        assert_eq!(scopes(&["*"]), ["*"]);
    }

    #[test]
    fn rate_rules_need_their_threshold_and_enough_events() {
        let r = Rates {
            stream: "GAME".into(),
            consumer: "srv-2".into(),
            over_ns: 60 * S,
            deliveries: 1_000,
            redeliveries: 200,
            ..Rates::default()
        };
        let f = rate_finding(&rule(0, 0), &r, "http://h").unwrap();
        assert_eq!((f.value, f.cause), (0.2, Cause::Redelivery));
        assert_eq!(
            f.annotations["dashboard_url"],
            "http://h/?stream=GAME&consumer=srv-2"
        );
        assert!(f.annotations["summary"].contains("200 of 1000 deliveries"));
        let few = Rates {
            deliveries: 5,
            redeliveries: 5,
            ..r.clone()
        };
        assert!(rate_finding(&rule(0, 0), &few, "").is_none());
        let low = Rates {
            redeliveries: 50,
            ..r
        };
        assert!(rate_finding(&rule(0, 0), &low, "").is_none());
    }
}
