//! The alert pass: every `alerts.evaluate_every`, what the rules look at is copied out of the
//! collector (spikes of the last minutes, closed windows, rates, ackscope's own health), the
//! spikes are grouped into incidents, the rules are evaluated, and what fires or resolves goes
//! to the receivers. A spike is explained (its causes ranked) only when an alert about it is
//! about to be sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::aggregate::rebin::Latency;
use crate::analyze::alerts::{
    AlertsConfig, HealthProblem, IncidentInput, Inputs, RuleKind, State, findings, incident_of,
};
use crate::analyze::incidents::{self, Incident, Member};
use crate::analyze::spikes::Spike;
use crate::archive::AlertRow;
use crate::collector::lock;
use crate::http::AppState;
use crate::model::{ConsumerId, Seen};
use crate::notify::Notifier;
use crate::telemetry::Counters;

/// How far back spikes are looked for: an incident that began earlier and still goes on is
/// found by its later windows.
const LOOKBACK_NS: i64 = 120_000_000_000;

/// A found spike with what explaining it needs.
type Found = (Option<ConsumerId>, Spike, Latency);

/// Runs the pass every `alerts.evaluate_every` until the process ends.
pub async fn run(state: AppState, notifier: Notifier) {
    let every =
        Duration::from_nanos(lock(&state.collector).config().alerts.evaluate_every_ns as u64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let notifier = Arc::new(notifier);
    // Each pass is timed by its tick, as Prometheus times its rule evaluations: passes are
    // exactly `every` apart, so a condition held from one pass to the one `for` later fires
    // then, not a pass later because the second pass started a millisecond early. The wall
    // clock is read again when it has moved more than a second away (a step).
    let mut anchor: Option<(tokio::time::Instant, i64)> = None;
    loop {
        let at = tick.tick().await;
        let wall = Seen::now().wall_ns;
        let now_ns = match anchor {
            Some((i, w)) => {
                let scheduled = w.saturating_add(at.duration_since(i).as_nanos() as i64);
                if (scheduled - wall).abs() > 1_000_000_000 {
                    anchor = Some((at, wall));
                    wall
                } else {
                    scheduled
                }
            }
            None => {
                anchor = Some((at, wall));
                wall
            }
        };
        let (state, notifier) = (state.clone(), notifier.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || pass(&state, &notifier, now_ns)).await {
            tracing::error!(error = %e, "the alert pass failed; trying again");
        }
    }
}

/// A spike found, with its scope's names and group value.
struct Spotted {
    found: Found,
    stream: String,
    consumer: String,
    group: Option<String>,
}

/// Members of the incidents of the spikes `spotted`, explained when `explain` says so.
fn members(state: &AppState, spotted: &[Spotted], explain: &dyn Fn(&Found) -> bool) -> Vec<Member> {
    spotted
        .iter()
        .map(|s| {
            let (_, spike, latency) = s.found;
            let causes = if explain(&s.found) {
                crate::http::spikes::explain(&state.collector, &state.spike_cache, s.found)
                    .1
                    .causes
            } else {
                Vec::new()
            };
            Member {
                stream: s.stream.clone(),
                consumer: s.consumer.clone(),
                group: s.group.clone(),
                start_ns: spike.start_ns,
                end_ns: spike.end_ns,
                latency,
                peak_p99_ns: spike.peak_p99_ns,
                baseline_p99_ns: spike.baseline_p99_ns,
                causes,
            }
        })
        .collect()
}

/// What the rules read, copied out under the collector's lock.
struct Gathered {
    config: AlertsConfig,
    /// The spikes of the look-back, by scope and latency.
    spotted: Vec<Spotted>,
    /// Consumers with samples over the look-back.
    active: usize,
    /// Each consumer's frame budget (one frame of its clock), by `stream/consumer`.
    budgets: HashMap<String, u64>,
    /// The configured tick: the budget of a scope with no consumer known.
    tick_ns: u64,
    /// Where links in annotations point.
    dashboard_url: String,
    /// Whether ended incidents and alerts go to an archive.
    archive: bool,
    rates: Vec<crate::analyze::alerts::Rates>,
    /// Closed windows not counted in the frame-budget ledger yet.
    windows: Vec<(crate::analyze::alerts::slo::ScopeNames, i64, u64, u64)>,
    counters: Counters,
    /// The start of the open window: the pass looks at what came before it.
    open: i64,
    window_ns: i64,
    merge_gap: i64,
}

/// Copies what the rules read out of the collector; `None` before the first window.
fn gather(state: &AppState) -> Option<Gathered> {
    let c = lock(&state.collector);
    let config = c.config().alerts.clone();
    let open = c.aggregator().open_window_start()?;
    let window_ns = c.config().aggregate.window_ns as i64;
    let from = open.saturating_sub(LOOKBACK_NS);
    let found = c.find_spikes(None, from, open);
    let ids: Vec<ConsumerId> = found.iter().filter_map(|(id, _, _)| *id).collect();
    let groups = match &config.incidents.group_by {
        Some(label) if ids.len() > 1 => c.dominant_label(&ids, label, from, open),
        _ => HashMap::new(),
    };
    let spotted = found
        .into_iter()
        .map(|found| {
            let (stream, consumer, _) = c.names().scope_names(found.0);
            Spotted {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
                group: found.0.and_then(|id| groups.get(&id).cloned()),
                found,
            }
        })
        .collect();
    let active = c.active_consumers(from);
    let budgets: HashMap<String, u64> = c
        .consumers()
        .map(|(id, s, n)| {
            (
                format!("{s}/{n}"),
                c.aggregator().clocks().current(id).frame.period.ns(),
            )
        })
        .collect();
    let mut overs: Vec<i64> = config
        .rules
        .iter()
        .filter(|r| {
            matches!(
                r.kind,
                RuleKind::RedeliveryRate | RuleKind::OrderingFailureRate | RuleKind::MaxDeliveries
            )
        })
        .map(|r| r.over_ns)
        .collect();
    overs.sort_unstable();
    overs.dedup();
    let rates: Vec<_> = overs
        .iter()
        .flat_map(|over| c.rates(open - over, open))
        .collect();
    let counted = lock(&state.alerts).counted_until_ns();
    let windows = c.budget_windows(counted);
    let dashboard_url = config
        .dashboard_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", c.config().listen));
    Some(Gathered {
        config,
        spotted,
        active,
        budgets,
        tick_ns: c.config().tick.period().ns(),
        dashboard_url,
        archive: c.archive_attached(),
        rates,
        windows,
        counters: c.counters(),
        open,
        window_ns,
        merge_gap: c.config().spikes.merge_gap as i64,
    })
}

/// One evaluation at `now_ns`: gathers, groups, evaluates, sends.
pub fn pass(state: &AppState, notifier: &Notifier, now_ns: i64) {
    let alerts = &state.alerts;
    let Some(Gathered {
        config,
        spotted,
        active,
        budgets,
        tick_ns,
        dashboard_url,
        archive,
        rates,
        windows,
        counters,
        open,
        window_ns,
        merge_gap,
    }) = gather(state)
    else {
        return;
    };
    let health = health(state, &config, now_ns, counters);
    {
        lock(alerts).count_windows(&windows, now_ns);
    }
    // Incidents, first unexplained; those whose P99 alert is about to be sent are explained.
    let ongoing =
        |i: &Incident| i.end_ns.saturating_add(window_ns.saturating_mul(merge_gap)) >= open;
    let build = |members: Vec<Member>| -> Vec<IncidentInput> {
        // ackscope's own delays from the window before each incident on.
        let own = state.readiness.own_delays();
        incidents::group_checked(members, active, &config.incidents, |from, to| {
            own.over(from - window_ns, to)
        })
        .into_iter()
        .map(|incident| {
            let budget_ns = incident
                .consumers
                .iter()
                .filter_map(|c| budgets.get(c).copied())
                .min()
                .unwrap_or(tick_ns);
            IncidentInput {
                ongoing: ongoing(&incident),
                incident,
                budget_ns,
            }
        })
        .collect()
    };
    let mut inputs = Inputs {
        now_ns,
        incidents: build(members(state, &spotted, &|_| false)),
        rates,
        health,
        dashboard_url,
    };
    // Incidents that ended since the last pass go to the archive, explained.
    let ended: Vec<String> = if archive {
        let a = lock(alerts);
        inputs
            .incidents
            .iter()
            .filter(|i| !i.ongoing && !a.archived(&i.incident.id))
            .map(|i| i.incident.id.clone())
            .collect()
    } else {
        Vec::new()
    };
    let to_explain: Vec<(i64, i64)> = {
        let a = lock(alerts);
        let rules: Vec<_> = config
            .rules
            .iter()
            .filter(|r| matches!(r.kind, RuleKind::P99Regression | RuleKind::SloBurn))
            .collect();
        let mut spans: Vec<(i64, i64)> = inputs
            .incidents
            .iter()
            .filter(|i| ended.contains(&i.incident.id))
            .map(|i| (i.incident.start_ns, i.incident.end_ns))
            .collect();
        for rule in rules {
            for f in findings(
                std::slice::from_ref(rule),
                &inputs,
                &a.ledger,
                config.objective,
            ) {
                if a.book.would_send(&f.key(), rule, now_ns, config.resend_ns)
                    && let Some(i) = incident_of(&f, &inputs.incidents)
                {
                    spans.push((i.incident.start_ns, i.incident.end_ns));
                }
            }
        }
        spans
    };
    if !to_explain.is_empty() {
        let explain = |(_, s, _): &Found| {
            to_explain
                .iter()
                .any(|&(a, b)| s.start_ns >= a && s.end_ns <= b)
        };
        inputs.incidents = build(members(state, &spotted, &explain));
    }
    let (notices, ended) = {
        let mut a = lock(alerts);
        let found = findings(&config.rules, &inputs, &a.ledger, config.objective);
        let notices = a
            .book
            .evaluate(&config.rules, found, now_ns, config.resend_ns);
        let ended: Vec<Incident> = inputs
            .incidents
            .iter()
            .filter(|i| ended.contains(&i.incident.id))
            .map(|i| i.incident.clone())
            .collect();
        for i in &ended {
            a.mark_archived(&i.id);
        }
        (notices, ended)
    };
    if archive {
        // What changed state: first firing and resolved (not the resends).
        let changed: Vec<AlertRow> = notices
            .iter()
            .filter(|n| n.alert.state == State::Resolved || n.starts_at_ns == now_ns)
            .map(|n| AlertRow {
                at_ns: now_ns,
                alert: n.alert.clone(),
            })
            .collect();
        lock(&state.collector).archive_alerts(changed, ended);
    }
    for n in &notices {
        tracing::info!(
            alert = %n.alert.alertname,
            state = ?n.alert.state,
            stream = n.alert.labels.get("stream").map_or("*", String::as_str),
            consumer = n.alert.labels.get("consumer").map_or("*", String::as_str),
            cause = n.alert.labels.get("cause").map_or("", String::as_str),
            "alert"
        );
    }
    notifier.send(notices);
}

/// What is wrong with ackscope itself now: taps down, messages dropped or the archive falling
/// behind since the oldest pass within the health rule's window.
fn health(
    state: &AppState,
    config: &AlertsConfig,
    now_ns: i64,
    now: Counters,
) -> Vec<HealthProblem> {
    let over = config
        .rules
        .iter()
        .filter(|r| r.kind == RuleKind::Health)
        .map(|r| r.over_ns)
        .max()
        .unwrap_or(60_000_000_000);
    let mut problems = Vec::new();
    if let Some(reason) = state.readiness.not_ready_reason() {
        problems.push(HealthProblem {
            problem: "taps_down",
            summary: format!("not tapping NATS: {reason}"),
            value: 1.0,
        });
    }
    let then = lock(&state.alerts).counters_since(now_ns, now, over);
    let dropped = |c: &Counters| {
        c.tap_backlog_overflow + c.slow_consumer_events + c.join_overflow + c.consumer_overflow
    };
    let lost = dropped(&now) - dropped(&then).min(dropped(&now));
    if lost > 0 {
        problems.push(HealthProblem {
            problem: "messages_dropped",
            summary: format!(
                "{lost} messages dropped in the last {} (tap backlog full, slow consumer, join or consumer table full)",
                humantime::format_duration(Duration::from_nanos(over as u64))
            ),
            value: lost as f64,
        });
    }
    let behind =
        |c: &Counters| c.archive_samples_dropped + c.archive_rows_dropped + c.archive_write_errors;
    let archive = behind(&now) - behind(&then).min(behind(&now));
    if archive > 0 {
        problems.push(HealthProblem {
            problem: "archive_behind",
            summary: format!(
                "the archive dropped or failed to write {archive} samples, rows or segments in the last {}",
                humantime::format_duration(Duration::from_nanos(over as u64))
            ),
            value: archive as f64,
        });
    }
    problems
}
