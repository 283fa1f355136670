//! `/api/v1/incidents` (spikes grouped into incidents, for any range) and `/api/v1/alerts`
//! (open alerts and recently resolved ones, as the alert pass left them).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};

use super::api::{Ranged, over_range};
use super::{ApiError, AppState};
use crate::analyze::alerts::Alert;
use crate::analyze::incidents::{self, Incident, Member};
use crate::collector::lock;
use crate::model::ConsumerId;

/// `GET /api/v1/incidents`: the spikes overlapping the range, explained and grouped into
/// incidents, oldest first. With `stream` (and `consumer`), the incidents touching them.
pub async fn incidents(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Incident>>, ApiError> {
    over_range(&state, &query, |shared, Ranged { source, range, ids }| {
        let (from, to) = range;
        // Every consumer's spikes: an incident is what happened across them.
        let explained =
            super::spikes::explained(&source.collector, &source.spike_cache, None, from, to);
        let (config, groups, active, names) = {
            let c = lock(&source.collector);
            let config = c.config().alerts.incidents.clone();
            let scoped: Vec<ConsumerId> = explained
                .iter()
                .filter_map(|((_, _, id, _), _)| *id)
                .collect();
            let groups = match &config.group_by {
                Some(label) => c.dominant_label(&scoped, label, from, to),
                None => HashMap::new(),
            };
            let names: Vec<String> = ids
                .iter()
                .flatten()
                .map(|&id| {
                    let (s, n) = c.names().consumer_names(id);
                    format!("{s}/{n}")
                })
                .collect();
            (config, groups, c.active_consumers(from), names)
        };
        let members = explained
            .into_iter()
            .map(|((start_ns, end_ns, id, _), s)| Member {
                group: id.and_then(|id| groups.get(&id).cloned()),
                stream: s.stream,
                consumer: s.consumer,
                start_ns,
                end_ns,
                latency: s.latency,
                peak_p99_ns: (s.p99_us * 1e3) as u64,
                baseline_p99_ns: (s.baseline_p99_us * 1e3) as u64,
                causes: s.causes,
            })
            .collect();
        // ackscope's own delays from the window before each incident on.
        let window_ns = lock(&source.collector).config().aggregate.window_ns as i64;
        let own = shared.readiness.own_delays();
        let mut found = incidents::group_checked(members, active, &config, |from, to| {
            own.over(from - window_ns, to)
        });
        if ids.is_some() {
            found.retain(|i| i.consumers.iter().any(|c| names.contains(c)));
        }
        Ok(Json(found))
    })
    .await
}

/// `GET /api/v1/alerts`: pending and firing alerts (firing first), then the latest resolved
/// ones, newest first.
pub async fn alerts(State(state): State<AppState>) -> Result<Json<Vec<Alert>>, ApiError> {
    // The alert pass may hold the alerts for a while: waited for off the workers.
    let listed = tokio::task::spawn_blocking(move || {
        let a = lock(&state.alerts);
        let mut out = a.book.open();
        out.extend(a.book.resolved().cloned());
        out
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(listed))
}
