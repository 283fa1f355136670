//! Incidents: spikes that begin within a few seconds of each other, on one consumer or many,
//! are one event. A machine-wide hiccup is one incident touching every consumer, not one spike
//! row per consumer; its scope says how far it reached (one consumer, a group sharing a label
//! value such as one `server`, one stream, or the fleet) and its causes are its members'
//! causes rolled up.
//!
//! Pure: spikes in (found and, where asked for, explained by the caller), incidents out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::causes::{Cause, CauseFinding, EXEMPLARS};
use crate::aggregate::rebin::Latency;
use crate::model::{TraceId, rfc3339};
use crate::telemetry::OwnDelaysOver;

/// How spikes group into incidents (`[incidents]`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentConfig {
    /// A spike beginning this long after an incident's first one, or sooner, joins it.
    pub join_within_ns: i64,
    /// An incident touching at least this share of the consumers active (and two or more) is
    /// fleet-wide.
    pub fleet_share: f64,
    /// The label whose shared value makes a group of consumers (`server`); `None`: none.
    pub group_by: Option<String>,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        Self {
            join_within_ns: 5_000_000_000,
            fleet_share: 0.5,
            group_by: Some("server".into()),
        }
    }
}

/// One spike as an incident's member: where, when, how high, and (once explained) why.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// `*` for the all-consumers scope.
    pub stream: String,
    pub consumer: String,
    /// The value of [`IncidentConfig::group_by`] most of its samples carried, if any.
    pub group: Option<String>,
    pub start_ns: i64,
    pub end_ns: i64,
    pub latency: Latency,
    pub peak_p99_ns: u64,
    pub baseline_p99_ns: u64,
    /// Ranked causes; empty when not explained.
    pub causes: Vec<CauseFinding>,
}

impl Member {
    fn is_all(&self) -> bool {
        self.consumer == "*"
    }
}

/// How far an incident reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    Consumer,
    /// Several consumers sharing a label value.
    Group,
    /// Several consumers, too few for the fleet and sharing no group label: of one stream, or
    /// of several (`*`).
    Stream,
    Fleet,
}

/// An incident's scope by names: `*` where it spans more than one.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Scope {
    pub stream: String,
    pub consumer: String,
    /// The label and value a group shares, as `[label, value]`.
    #[schemars(with = "Option<Vec<String>>")]
    pub label: Option<(String, String)>,
}

/// A cause across an incident's members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RolledCause {
    pub cause: Cause,
    /// The highest confidence any member gave it.
    pub confidence: f64,
    /// Members that gave it 0.5 or more as a root (not as another cause's consequence).
    pub members: usize,
    /// The evidence in words, of the member most confident in it.
    pub summary: String,
    pub evidence: Value,
    pub exemplar_trace_ids: Vec<TraceId>,
}

/// One member as an incident lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MemberSummary {
    pub stream: String,
    pub consumer: String,
    pub start: String,
    pub end: String,
    pub latency: Latency,
    pub p99_us: f64,
    pub baseline_p99_us: f64,
    /// Its first cause, when explained.
    pub top_cause: Option<Cause>,
}

/// Spikes grouped into one event, as `GET /api/v1/incidents` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Incident {
    /// Stable while the incident lasts: its scope and first start.
    pub id: String,
    pub start: String,
    pub end: String,
    pub kind: ScopeKind,
    pub scope: Scope,
    /// The consumers it touched, `stream/consumer`.
    pub consumers: Vec<String>,
    pub peak_p99_us: f64,
    /// The baseline of the member that peaked.
    pub baseline_p99_us: f64,
    /// The first of `causes` with confidence ≥ 0.5, else `unknown`.
    pub top_cause: Cause,
    pub causes: Vec<RolledCause>,
    pub members: Vec<MemberSummary>,
    #[serde(skip)]
    pub start_ns: i64,
    #[serde(skip)]
    pub end_ns: i64,
    #[serde(skip)]
    pub peak_p99_ns: u64,
}

/// Groups `members` (any order) into incidents, oldest first. `active` is how many consumers
/// had samples over the time looked at: the base of the fleet share.
pub fn group(mut members: Vec<Member>, active: usize, cfg: &IncidentConfig) -> Vec<Incident> {
    members.sort_by(|a, b| {
        (a.start_ns, &a.stream, &a.consumer).cmp(&(b.start_ns, &b.stream, &b.consumer))
    });
    let mut clusters: Vec<Vec<Member>> = Vec::new();
    for m in members {
        match clusters.last_mut() {
            Some(c) if m.start_ns <= c[0].start_ns.saturating_add(cfg.join_within_ns) => c.push(m),
            _ => clusters.push(vec![m]),
        }
    }
    clusters
        .into_iter()
        .map(|c| incident(c, active, cfg))
        .collect()
}

/// A consumer hit less than a quarter as hard as the worst (its P99 rise against theirs) is
/// listed in an incident but does not widen its scope: a small coincident excursion beside a
/// real fault is not a fleet-wide event.
const PRINCIPAL_SHARE: f64 = 0.25;

/// Fewest consumers a fleet-wide incident touches (hit hard enough to count).
const FLEET_MIN: usize = 3;

/// The distinct consumers among `members`, by name.
fn distinct<'a>(members: impl Iterator<Item = &'a Member>) -> Vec<&'a Member> {
    let mut out: Vec<&Member> = members.filter(|m| !m.is_all()).collect();
    out.sort_by(|a, b| (&a.stream, &a.consumer).cmp(&(&b.stream, &b.consumer)));
    out.dedup_by(|a, b| a.stream == b.stream && a.consumer == b.consumer);
    out
}

fn incident(members: Vec<Member>, active: usize, cfg: &IncidentConfig) -> Incident {
    let touched = distinct(members.iter());
    let rise = |m: &Member| m.peak_p99_ns.saturating_sub(m.baseline_p99_ns) as f64;
    let worst = members
        .iter()
        .filter(|m| !m.is_all())
        .map(rise)
        .fold(0.0, f64::max);
    let principal = distinct(
        members
            .iter()
            .filter(|m| rise(m) >= PRINCIPAL_SHARE * worst),
    );
    let any = |s: &str| s.to_string();
    let fleet = Scope {
        stream: any("*"),
        consumer: any("*"),
        label: None,
    };
    let (kind, scope) = match principal.as_slice() {
        [] => (ScopeKind::Fleet, fleet),
        [one] => (
            ScopeKind::Consumer,
            Scope {
                stream: one.stream.clone(),
                consumer: one.consumer.clone(),
                label: None,
            },
        ),
        many if many.len() >= FLEET_MIN
            && many.len() as f64 >= cfg.fleet_share * active.max(1) as f64 =>
        {
            (ScopeKind::Fleet, fleet)
        }
        many => {
            let same_stream = many.iter().all(|m| m.stream == many[0].stream);
            let stream = if same_stream {
                many[0].stream.clone()
            } else {
                any("*")
            };
            let shared = many[0]
                .group
                .as_ref()
                .filter(|g| many.iter().all(|m| m.group.as_ref() == Some(*g)));
            match (shared, &cfg.group_by) {
                (Some(value), Some(label)) => (
                    ScopeKind::Group,
                    Scope {
                        stream,
                        consumer: any("*"),
                        label: Some((label.clone(), value.clone())),
                    },
                ),
                // Several consumers, one stream or several (`*`), too few for the fleet.
                _ => (
                    ScopeKind::Stream,
                    Scope {
                        stream,
                        consumer: any("*"),
                        label: None,
                    },
                ),
            }
        }
    };
    let consumers = touched
        .iter()
        .map(|m| format!("{}/{}", m.stream, m.consumer))
        .collect();
    let start_ns = members.iter().map(|m| m.start_ns).min().unwrap_or(0);
    let end_ns = members.iter().map(|m| m.end_ns).max().unwrap_or(0);
    // The peak among the consumers touched; the all-consumers spike stands in when alone.
    let peak = members
        .iter()
        .filter(|m| !m.is_all() || touched.is_empty())
        .max_by_key(|m| m.peak_p99_ns)
        .expect("an incident has a member");
    let causes = roll_up(&members);
    let top_cause = causes
        .first()
        .filter(|c| c.confidence >= 0.5)
        .map_or(Cause::Unknown, |c| c.cause);
    let label = scope
        .label
        .as_ref()
        .map_or(String::new(), |(l, v)| format!(":{l}={v}"));
    Incident {
        id: format!(
            "{}/{}{label}@{}",
            scope.stream,
            scope.consumer,
            rfc3339(start_ns)
        ),
        start: rfc3339(start_ns),
        end: rfc3339(end_ns),
        kind,
        scope,
        consumers,
        peak_p99_us: peak.peak_p99_ns as f64 / 1e3,
        baseline_p99_us: peak.baseline_p99_ns as f64 / 1e3,
        top_cause,
        causes,
        members: members
            .iter()
            .map(|m| MemberSummary {
                stream: m.stream.clone(),
                consumer: m.consumer.clone(),
                start: rfc3339(m.start_ns),
                end: rfc3339(m.end_ns),
                latency: m.latency,
                p99_us: m.peak_p99_ns as f64 / 1e3,
                baseline_p99_us: m.baseline_p99_ns as f64 / 1e3,
                top_cause: m.causes.first().map(|c| c.cause),
            })
            .collect(),
        start_ns,
        end_ns,
        peak_p99_ns: peak.peak_p99_ns,
    }
}

/// Every cause the members found, ranked by how many members are confident in it as a root
/// (not as another cause's consequence), then by the highest confidence; causes found only as
/// consequences come after every root. The all-consumers member counts only when no consumer was explained.
fn roll_up(members: &[Member]) -> Vec<RolledCause> {
    let explained_one = members.iter().any(|m| !m.is_all() && !m.causes.is_empty());
    let mut by_cause: BTreeMap<&'static str, RolledCause> = BTreeMap::new();
    // Causes some member found as a root, not only as another's consequence.
    let mut roots = std::collections::BTreeSet::new();
    for m in members.iter().filter(|m| !(m.is_all() && explained_one)) {
        for f in &m.causes {
            let entry = by_cause
                .entry(f.cause.as_str())
                .or_insert_with(|| RolledCause {
                    cause: f.cause,
                    confidence: 0.0,
                    members: 0,
                    summary: String::new(),
                    evidence: Value::Null,
                    exemplar_trace_ids: Vec::new(),
                });
            // A consequence (flow control from lost acks, say) counts for its root, not itself.
            if f.confidence >= 0.5 && f.caused_by.is_none() {
                entry.members += 1;
            }
            if f.caused_by.is_none() {
                roots.insert(f.cause.as_str());
            }
            if f.confidence > entry.confidence || entry.summary.is_empty() {
                entry.confidence = entry.confidence.max(f.confidence);
                entry.summary = f.summary.clone();
                entry.evidence = f.evidence.clone();
            }
            for t in &f.exemplar_trace_ids {
                if entry.exemplar_trace_ids.len() < EXEMPLARS
                    && !entry.exemplar_trace_ids.contains(t)
                {
                    entry.exemplar_trace_ids.push(*t);
                }
            }
        }
    }
    let mut causes: Vec<RolledCause> = by_cause.into_values().collect();
    causes.sort_by(|a, b| {
        let unknown = |c: &RolledCause| c.cause == Cause::Unknown;
        let consequence = |c: &RolledCause| !roots.contains(c.cause.as_str());
        (unknown(a), consequence(a), std::cmp::Reverse(a.members))
            .cmp(&(unknown(b), consequence(b), std::cmp::Reverse(b.members)))
            .then(b.confidence.total_cmp(&a.confidence))
    });
    causes
}

/// [`group`], each fleet-wide incident then checked against ackscope's own delays over it
/// (`own(start_ns, end_ns)`, see [`blame_own_delays`]).
pub fn group_checked(
    members: Vec<Member>,
    active: usize,
    cfg: &IncidentConfig,
    own: impl Fn(i64, i64) -> OwnDelaysOver,
) -> Vec<Incident> {
    let mut found = group(members, active, cfg);
    for i in found.iter_mut().filter(|i| i.kind == ScopeKind::Fleet) {
        blame_own_delays(i, own(i.start_ns, i.end_ns));
    }
    found
}

/// Puts ackscope's own delays first among a fleet-wide incident's causes when they explain
/// its latency: the tap loop ran late by half the rise of P99 or more (`collector_lag`), or
/// the round trip to the NATS server rose by that much (`nats_rtt`). Every consumer slowing
/// together by what ackscope or the server held them is not a game-server regression.
pub fn blame_own_delays(incident: &mut Incident, own: OwnDelaysOver) {
    if incident.kind != ScopeKind::Fleet {
        return;
    }
    let rise = incident
        .peak_p99_ns
        .saturating_sub((incident.baseline_p99_us * 1e3) as u64)
        .max(1);
    let rtt_rise = own.max_rtt_ns.saturating_sub(own.usual_rtt_ns);
    // A steady lag was in the baseline too: only what it rose by can explain the rise.
    let lag_rise = own.max_tap_lag_ns.saturating_sub(own.usual_tap_lag_ns);
    let (cause, delay, summary) = if lag_rise.saturating_mul(2) >= rise {
        (
            Cause::CollectorLag,
            lag_rise,
            format!(
                "ackscope's tap loop ran up to {:.1} ms late during the incident ({:.1} ms the minute before), against a P99 rise of {:.1} ms: the latency is ackscope's own",
                own.max_tap_lag_ns as f64 / 1e6,
                own.usual_tap_lag_ns as f64 / 1e6,
                rise as f64 / 1e6
            ),
        )
    } else if rtt_rise.saturating_mul(2) >= rise {
        (
            Cause::NatsRtt,
            rtt_rise,
            format!(
                "the round trip to the NATS server rose from {:.1} ms to {:.1} ms during the incident, against a P99 rise of {:.1} ms: the server or the network held the messages",
                own.usual_rtt_ns as f64 / 1e6,
                own.max_rtt_ns as f64 / 1e6,
                rise as f64 / 1e6
            ),
        )
    } else {
        return;
    };
    incident.causes.insert(
        0,
        RolledCause {
            cause,
            confidence: (delay as f64 / rise as f64).min(1.0),
            members: incident.members.len(),
            summary,
            evidence: serde_json::json!({
                "tap_lag_max_us": own.max_tap_lag_ns as f64 / 1e3,
                "tap_lag_usual_us": own.usual_tap_lag_ns as f64 / 1e3,
                "nats_rtt_max_us": own.max_rtt_ns as f64 / 1e3,
                "nats_rtt_usual_us": own.usual_rtt_ns as f64 / 1e3,
                "p99_rise_us": rise as f64 / 1e3,
            }),
            exemplar_trace_ids: Vec::new(),
        },
    );
    incident.top_cause = cause;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const S: i64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    fn member(consumer: &str, server: &str, start_s: i64, cause: Option<(Cause, f64)>) -> Member {
        Member {
            stream: "GAME".into(),
            consumer: consumer.into(),
            group: Some(server.into()),
            start_ns: start_s * S,
            end_ns: (start_s + 4) * S,
            latency: Latency::Ack,
            peak_p99_ns: 40 * MS + start_s as u64,
            baseline_p99_ns: 8 * MS,
            causes: cause
                .map(|(cause, confidence)| CauseFinding {
                    cause,
                    confidence,
                    evidence: json!({"member": consumer}),
                    summary: format!("{cause} on {consumer}"),
                    exemplar_trace_ids: Vec::new(),
                    caused_by: None,
                })
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn a_machine_wide_hiccup_is_one_fleet_incident() {
        // Eight consumers and the all-consumers scope spike within two seconds.
        let mut members: Vec<Member> = (1..=8)
            .map(|i| {
                member(
                    &format!("srv-{i}"),
                    &format!("srv-{i}"),
                    100 + i % 3,
                    Some((Cause::GcPause, 0.9)),
                )
            })
            .collect();
        members.push(member("*", "", 100, Some((Cause::Unknown, 0.0))));
        let incidents = group(members, 8, &IncidentConfig::default());
        assert_eq!(incidents.len(), 1, "{incidents:?}");
        let i = &incidents[0];
        assert_eq!(i.kind, ScopeKind::Fleet);
        assert_eq!(
            (i.scope.stream.as_str(), i.scope.consumer.as_str()),
            ("*", "*")
        );
        assert_eq!(i.consumers.len(), 8);
        assert_eq!(i.members.len(), 9);
        assert_eq!(i.top_cause, Cause::GcPause);
        assert_eq!(i.causes[0].members, 8);
        // The all-consumers member's `unknown` does not count once consumers are explained.
        assert!(i.causes.iter().all(|c| c.cause != Cause::Unknown));
        assert_eq!(i.start_ns, 100 * S);
        assert_eq!(i.end_ns, 106 * S);
        assert_eq!(i.peak_p99_ns, 40 * MS + 102);
    }

    #[test]
    fn one_consumer_a_group_a_stream_and_spikes_far_apart() {
        let cfg = IncidentConfig::default();
        // One consumer with the all-consumers scope: that consumer's incident.
        let one = group(
            vec![
                member("srv-3", "srv-3", 10, Some((Cause::GcPause, 0.8))),
                member("*", "", 11, None),
            ],
            8,
            &cfg,
        );
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].kind, ScopeKind::Consumer);
        assert_eq!(one[0].scope.consumer, "srv-3");
        assert!(one[0].id.starts_with("GAME/srv-3@"), "{}", one[0].id);
        // Two consumers of one server (of eight consumers): a group.
        let g = group(
            vec![
                member("a", "srv-2", 10, None),
                member("b", "srv-2", 12, None),
            ],
            8,
            &cfg,
        );
        assert_eq!(g[0].kind, ScopeKind::Group);
        assert_eq!(g[0].scope.label, Some(("server".into(), "srv-2".into())));
        assert_eq!(g[0].top_cause, Cause::Unknown, "nothing explained");
        // Two servers' consumers of one stream: the stream.
        let s = group(
            vec![
                member("a", "srv-1", 10, None),
                member("b", "srv-2", 12, None),
            ],
            8,
            &cfg,
        );
        assert_eq!(s[0].kind, ScopeKind::Stream);
        assert_eq!(s[0].scope.stream, "GAME");
        // A small excursion beside a real fault (a rise of 3 ms against 60 ms) is listed but
        // keeps the scope; two of four consumers are not the fleet.
        let mut small = member("b", "srv-4", 11, None);
        small.peak_p99_ns = 11 * MS;
        let mut big = member("a", "srv-2", 10, Some((Cause::GcPause, 1.0)));
        big.peak_p99_ns = 68 * MS;
        let minor = group(vec![big.clone(), small], 4, &cfg);
        assert_eq!(minor.len(), 1);
        assert_eq!(
            (minor[0].kind, minor[0].scope.consumer.as_str()),
            (ScopeKind::Consumer, "a")
        );
        assert_eq!(minor[0].consumers, ["GAME/a", "GAME/b"]);
        let two = group(vec![big, member("c", "srv-3", 11, None)], 4, &cfg);
        assert_eq!(two[0].kind, ScopeKind::Stream);
        // Two consumers of two streams, of fifty: several streams, not the fleet.
        let mut other = member("d", "srv-9", 11, None);
        other.stream = "CHAT".into();
        let mixed = group(vec![member("a", "srv-2", 10, None), other], 50, &cfg);
        assert_eq!(mixed[0].kind, ScopeKind::Stream);
        assert_eq!(
            (
                mixed[0].scope.stream.as_str(),
                mixed[0].scope.consumer.as_str()
            ),
            ("*", "*")
        );
        // Spikes further apart than join_within are two incidents.
        let apart = group(
            vec![
                member("a", "srv-1", 10, None),
                member("a", "srv-1", 16, None),
            ],
            8,
            &cfg,
        );
        assert_eq!(apart.len(), 2);
    }

    #[test]
    fn ackscope_or_the_server_is_blamed_when_its_own_delay_explains_a_fleet_incident() {
        let fleet = || {
            let members = (1..=4)
                .map(|i| {
                    member(
                        &format!("srv-{i}"),
                        &format!("srv-{i}"),
                        10,
                        Some((Cause::GcPause, 0.8)),
                    )
                })
                .collect();
            group(members, 4, &IncidentConfig::default()).remove(0)
        };
        // P99 rose from 8 ms to 40 ms: a tap loop 20 ms late explains it.
        let mut i = fleet();
        blame_own_delays(
            &mut i,
            OwnDelaysOver {
                max_tap_lag_ns: 20 * MS,
                max_rtt_ns: MS,
                usual_rtt_ns: MS,
                ..OwnDelaysOver::default()
            },
        );
        assert_eq!(i.top_cause, Cause::CollectorLag);
        assert_eq!(i.causes[1].cause, Cause::GcPause);
        // Not when the loop ran that late the minute before too: a steady lag is in the
        // baseline.
        let mut i = fleet();
        blame_own_delays(
            &mut i,
            OwnDelaysOver {
                max_tap_lag_ns: 20 * MS,
                usual_tap_lag_ns: 15 * MS,
                ..OwnDelaysOver::default()
            },
        );
        assert_eq!(i.top_cause, Cause::GcPause);
        // The round trip rising by 30 ms does.
        let mut i = fleet();
        blame_own_delays(
            &mut i,
            OwnDelaysOver {
                max_tap_lag_ns: MS,
                max_rtt_ns: 31 * MS,
                usual_rtt_ns: MS,
                ..OwnDelaysOver::default()
            },
        );
        assert_eq!(i.top_cause, Cause::NatsRtt);
        // A few milliseconds do not; nor does anything for one consumer's incident.
        let mut i = fleet();
        blame_own_delays(
            &mut i,
            OwnDelaysOver {
                max_tap_lag_ns: 3 * MS,
                max_rtt_ns: 3 * MS,
                usual_rtt_ns: MS,
                ..OwnDelaysOver::default()
            },
        );
        assert_eq!(i.top_cause, Cause::GcPause);
        let mut one = group(
            vec![member("a", "srv-1", 10, None)],
            4,
            &IncidentConfig::default(),
        )
        .remove(0);
        blame_own_delays(
            &mut one,
            OwnDelaysOver {
                max_tap_lag_ns: 100 * MS,
                ..OwnDelaysOver::default()
            },
        );
        assert_eq!(one.top_cause, Cause::Unknown);
    }

    #[test]
    fn causes_rank_by_members_confident_then_by_confidence() {
        let members = vec![
            member("a", "srv-1", 10, Some((Cause::HotSpot, 0.95))),
            member("b", "srv-2", 10, Some((Cause::LoadBurst, 0.6))),
            member("c", "srv-3", 11, Some((Cause::LoadBurst, 0.7))),
        ];
        let i = &group(members, 3, &IncidentConfig::default())[0];
        assert_eq!(i.kind, ScopeKind::Fleet);
        assert_eq!(i.top_cause, Cause::LoadBurst);
        assert_eq!((i.causes[0].members, i.causes[0].confidence), (2, 0.7));
        assert_eq!(i.causes[0].summary, "load_burst on c");
        assert_eq!(i.causes[1].cause, Cause::HotSpot);
    }

    #[test]
    fn a_consequence_ranks_after_its_root() {
        // Lost acks filled max_ack_pending: one member says flow control, a consequence of the
        // redelivery it also found; another found flow control alone more confidently than
        // redelivery. The root comes first.
        let mut ack = member("a", "srv-2", 10, Some((Cause::Redelivery, 0.6)));
        let mut consequence = ack.causes[0].clone();
        consequence.cause = Cause::FlowControl;
        consequence.confidence = 0.9;
        consequence.caused_by = Some(Cause::Redelivery);
        ack.causes.push(consequence);
        let mut e2e = member("a", "srv-2", 10, Some((Cause::FlowControl, 0.95)));
        e2e.latency = Latency::E2e;
        e2e.causes[0].caused_by = Some(Cause::Redelivery);
        e2e.causes.push(CauseFinding {
            cause: Cause::Redelivery,
            confidence: 0.55,
            ..e2e.causes[0].clone()
        });
        e2e.causes[1].caused_by = None;
        let i = &group(vec![ack, e2e], 8, &IncidentConfig::default())[0];
        assert_eq!(i.top_cause, Cause::Redelivery);
        assert_eq!(
            (i.causes[0].members, i.causes[1].cause, i.causes[1].members),
            (2, Cause::FlowControl, 0)
        );
    }
}
