//! Ended spikes into the archive and OTLP export: every few seconds the spikes that have ended
//! since are explained (as the API explains them, sharing its cache) and handed to the
//! archive's `spikes` table and, as a span each, to OTLP export; at a clean stop, those up to
//! the last closed window too.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::aggregate::rebin::Latency;
use crate::archive::SpikeRow;
use crate::collector::lock;
use crate::config::Config;
use crate::http::AppState;

/// How often ended spikes are looked for.
const EVERY: Duration = Duration::from_secs(5);

/// A spike's scope and latency by names: (stream, consumer, e2e).
type Scope = (String, String, bool);

/// The spikes handed over, by scope and start and by scope and end: a spike found again is one
/// of these when either matches (its first windows left the history, or a later window joined
/// it after it was handed over).
#[derive(Debug, Default)]
pub struct HandedOver {
    starts: BTreeSet<(Scope, i64)>,
    ends: BTreeSet<(Scope, i64)>,
}

impl HandedOver {
    /// The spikes the archive in `dir` holds from the retained windows' span on (another
    /// process wrote them before a restart), so that the history restored does not archive
    /// them again.
    pub fn load(dir: &Path, config: &Config) -> HandedOver {
        let agg = &config.aggregate;
        let span = i64::try_from(
            agg.window_ns
                .saturating_mul(agg.retained_windows as u64 * 2),
        )
        .unwrap_or(i64::MAX);
        let since = crate::model::Seen::now().wall_ns.saturating_sub(span);
        let mut handed = HandedOver::default();
        let sql = "SELECT stream, consumer, latency, start_ns, end_ns FROM spikes";
        let Ok(answer) = crate::archive::query::run(dir, sql, since, i64::MAX) else {
            return handed;
        };
        let df = answer.frame;
        let text = |name: &str| -> Vec<String> {
            df.column(name)
                .ok()
                .and_then(|c| c.str().ok().cloned())
                .map(|c| c.iter().map(|v| v.unwrap_or("").to_string()).collect())
                .unwrap_or_default()
        };
        let int = |name: &str| -> Vec<i64> {
            df.column(name)
                .ok()
                .and_then(|c| c.i64().ok().cloned())
                .map(|c| c.iter().map(|v| v.unwrap_or(0)).collect())
                .unwrap_or_default()
        };
        let (stream, consumer, latency) = (text("stream"), text("consumer"), text("latency"));
        let (start, end) = (int("start_ns"), int("end_ns"));
        for i in 0..stream.len().min(start.len()).min(end.len()) {
            let scope = (stream[i].clone(), consumer[i].clone(), latency[i] == "e2e");
            handed.insert(&scope, start[i], end[i]);
        }
        handed
    }

    fn contains(&self, scope: &Scope, start: i64, end: i64) -> bool {
        self.starts.contains(&(scope.clone(), start)) || self.ends.contains(&(scope.clone(), end))
    }

    fn insert(&mut self, scope: &Scope, start: i64, end: i64) {
        self.starts.insert((scope.clone(), start));
        self.ends.insert((scope.clone(), end));
    }

    /// Forgets spikes that ended before `t_ns`: the history no longer holds them.
    fn forget_before(&mut self, t_ns: i64) {
        self.ends.retain(|(_, end)| *end >= t_ns);
        self.starts.retain(|(_, start)| *start >= t_ns);
    }
}

/// Every [`EVERY`], hands over the spikes that have ended; stops once the collector has let go
/// of the archive and OTLP export. A pass that fails is logged and the next one goes on.
pub async fn hand_over_ended(state: AppState, handed: Arc<Mutex<HandedOver>>) {
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let (state, handed) = (state.clone(), handed.clone());
        match tokio::task::spawn_blocking(move || pass(&state, &handed, false)).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::error!(error = %e, "handing over ended spikes failed; trying again");
            }
        }
    }
}

/// Explains and hands over the spikes not handed over yet that have ended: once more closed
/// windows follow them than `spikes.merge_gap` would join to them, or, with `all_closed`, by
/// the last closed window. Only those are explained. `false` once neither the archive nor OTLP
/// export wants them.
pub fn pass(state: &AppState, handed: &Mutex<HandedOver>, all_closed: bool) -> bool {
    // One pass at a time (the periodic one and the one at the stop), taken before any other
    // lock: a spike is found, explained and handed over by one pass.
    static ONE: Mutex<()> = Mutex::new(());
    let _one = lock(&ONE);
    let (found, oldest) = {
        let c = lock(&state.collector);
        if !c.wants_ended_spikes() {
            return false;
        }
        let window = c.config().aggregate.window_ns as i64;
        let merge_gap = c.config().spikes.merge_gap as i64;
        let (Some(open), Some(oldest)) = (
            c.aggregator().open_window_start(),
            c.aggregator().oldest_window_start(),
        ) else {
            return true;
        };
        let ended_before = if all_closed {
            open
        } else {
            open.saturating_sub(window.saturating_mul(merge_gap + 1))
        };
        let handed = lock(handed);
        let found: Vec<_> = c
            .find_spikes(None, oldest, ended_before)
            .into_iter()
            .filter(|(_, spike, _)| spike.end_ns <= ended_before)
            .filter_map(|(id, spike, latency)| {
                let (stream, consumer, _) = c.names().scope_names(id);
                let scope = (stream.into(), consumer.into(), latency == Latency::E2e);
                (!handed.contains(&scope, spike.start_ns, spike.end_ns))
                    .then_some((scope, (id, spike, latency)))
            })
            .collect();
        (found, oldest)
    };
    let mut rows = Vec::new();
    for (scope, found) in found {
        let ((start_ns, end_ns, _, _), spike) =
            crate::http::spikes::explain(&state.collector, &state.spike_cache, found);
        lock(handed).insert(&scope, start_ns, end_ns);
        rows.push(SpikeRow {
            start_ns,
            end_ns,
            spike,
        });
    }
    lock(handed).forget_before(oldest);
    if !rows.is_empty() {
        lock(&state.collector).hand_over_spikes(rows);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_found_again_with_another_start_or_end_is_the_same_spike() {
        let mut a = HandedOver::default();
        let srv = ("GAME".to_string(), "srv-1".to_string(), false);
        a.insert(&srv, 10, 20);
        // Its first windows left the history; a window joined it after it was handed over.
        assert!(a.contains(&srv, 12, 20));
        assert!(a.contains(&srv, 10, 25));
        // Another spike, another scope, the other latency.
        assert!(!a.contains(&srv, 30, 40));
        assert!(!a.contains(&("GAME".into(), "srv-2".into(), false), 10, 20));
        assert!(!a.contains(&("GAME".into(), "srv-1".into(), true), 10, 20));
        a.forget_before(21);
        assert!(!a.contains(&srv, 10, 20));
    }
}
