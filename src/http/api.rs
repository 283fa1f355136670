//! JSON routes: `/api/v1/consumers` and `/api/v1/report`.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};

use super::params::{Params, RANGE_PARAMS, range_warnings};
use super::{ApiError, AppState, history};
use crate::aggregate::rebin::{self, Latency, quantile};
use crate::aggregate::window::Counts;
use crate::analyze;
use crate::api::{ClockInfo, ConsumerClock, ConsumerSummary, Range, Report, ReportTick, Spike};
use crate::clocks::ClockSource;
use crate::collector::Collector;
use crate::collector::lock;
use crate::model::{ConsumerId, Seen, rfc3339};
use crate::render::heatmap::format_latency;

/// The span `/api/v1/consumers` takes its rates and percentiles over.
const RECENT_NS: i64 = 60_000_000_000;

/// Runs `f` on the collector on the blocking pool (it may walk the whole sample ring).
pub async fn with_collector<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Collector) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let collector = state.collector.clone();
    on_blocking_pool(state, move || f(&lock(&collector))).await
}

/// Runs `f` on the blocking pool once one of the query slots is free: however many requests
/// come, at most that many walk the sample ring or draw at once, and the taps keep the
/// collector most of the time. The slot is held until `f` is done, even if the client left.
pub async fn on_blocking_pool<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let wait = state.access.query_wait;
    let slot = match tokio::time::timeout(wait, state.queries.clone().acquire_owned()).await {
        Ok(Ok(slot)) => slot,
        _ => {
            state
                .queries_refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ApiError::Busy);
        }
    };
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        f()
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
}

/// `GET /api/v1/consumers`: every (stream, consumer) seen.
pub async fn consumers(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<ConsumerSummary>>, ApiError> {
    let now = Seen::now().wall_ns;
    Params::parse(&query, &[], now)?;
    with_collector(&state, move |c| Ok(Json(consumer_list(c, now)))).await
}

fn consumer_list(c: &Collector, now: i64) -> Vec<ConsumerSummary> {
    let mut recent: Vec<Vec<u64>> = vec![Vec::new(); c.names().consumer_slots()];
    let filter = rebin::Filter::new(None, now - RECENT_NS, now + 1, Latency::Ack);
    for row in c.aggregator().ring().iter() {
        if let Some(ns) = filter.latency(&row)
            && let Some(r) = recent.get_mut(row.consumer as usize)
        {
            r.push(ns);
        }
    }
    c.consumers()
        .map(|(id, stream, consumer)| {
            let facts = c.facts(id).cloned().unwrap_or_default();
            let latencies = &mut recent[id as usize];
            let t = facts.totals;
            let state = facts.state.as_ref();
            ConsumerSummary {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
                domain: c.names().consumer_domain(id).map(str::to_string),
                acks: t.acks,
                p50_us: quantile(latencies, 0.50) as f64 / 1_000.0,
                p99_us: quantile(latencies, 0.99) as f64 / 1_000.0,
                redeliveries: t.redeliveries,
                last_seen: rfc3339(facts.last_seen_ns),
                recent_window_s: RECENT_NS / 1_000_000_000,
                recent_acks_per_s: latencies.len() as f64 / (RECENT_NS as f64 / 1e9),
                deliveries: t.deliveries,
                naks: t.naks,
                terms: t.terms,
                progress: t.progress,
                unmatched_acks: t.unmatched_acks,
                expired_deliveries: t.expired_deliveries,
                max_deliveries: t.max_deliveries,
                ack_pending: state.map(|s| s.num_ack_pending),
                max_ack_pending: state.map(|s| s.max_ack_pending),
                num_pending: state.map(|s| s.num_pending),
                ack_wait_us: state.map(|s| s.ack_wait_ns as f64 / 1_000.0),
                advisories: facts.advisories,
                clock: ClockInfo::of(&c.aggregator().clocks().current(id)),
            }
        })
        .collect()
}

/// What a route over a range works on: the collector holding the range (memory, or what the
/// archive loaded), the range, and the consumers asked for (`None`: all).
pub struct Ranged {
    pub source: std::sync::Arc<history::Source>,
    pub range: (i64, i64),
    pub ids: Option<Vec<ConsumerId>>,
}

/// Parses the range parameters and runs `answer` on the blocking pool over the range.
pub async fn over_range<T: Send + 'static>(
    state: &AppState,
    query: &HashMap<String, String>,
    answer: impl FnOnce(&AppState, Ranged) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let now = Seen::now().wall_ns;
    let params = Params::parse(query, &[RANGE_PARAMS], now)?;
    let shared = state.clone();
    on_blocking_pool(state, move || {
        let range = params.range(&lock(&shared.collector), now);
        let source = history::source(&shared, range);
        let ids = params.consumers(&lock(&source.collector))?;
        answer(&shared, Ranged { source, range, ids })
    })
    .await
}

/// `GET /api/v1/spikes`: the report's `spikes` alone.
pub async fn spikes(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Vec<Spike>>, ApiError> {
    over_range(&state, &query, |_, r| {
        let (from, to) = r.range;
        let spikes = super::spikes::spikes(
            &r.source.collector,
            &r.source.spike_cache,
            r.ids.as_deref(),
            from,
            to,
        );
        Ok(Json(spikes))
    })
    .await
}

/// `GET /api/v1/report`.
pub async fn report(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Report>, ApiError> {
    let now = Seen::now().wall_ns;
    let params = Params::parse(&query, &[RANGE_PARAMS], now)?;
    let shared = state.clone();
    on_blocking_pool(&state, move || {
        let range = params.range(&lock(&shared.collector), now);
        let source = history::source(&shared, range);
        let (mut report, ids) = {
            let c = lock(&source.collector);
            let ids = params.consumers(&c)?;
            (build_report(&c, &params, ids.as_deref(), range), ids)
        };
        report
            .warnings
            .splice(0..0, source.warnings.iter().cloned());
        // Spikes last, with the collector let go: explaining them takes it only to copy.
        let (from, to) = range;
        report.spikes = super::spikes::spikes(
            &source.collector,
            &source.spike_cache,
            ids.as_deref(),
            from,
            to,
        );
        Ok(Json(report))
    })
    .await
}

/// Event counts of the windows that start in `[from, to)`, for `ids` (or all consumers).
fn window_counts(c: &Collector, ids: Option<&[ConsumerId]>, from: i64, to: i64) -> Counts {
    let agg = c.aggregator();
    let all: Vec<ConsumerId> = c.consumers().map(|(id, _, _)| id).collect();
    let ids = ids.unwrap_or(&all);
    let mut total = Counts::default();
    for &id in ids {
        for w in agg
            .history(Some(id))
            .filter(|w| w.start_ns >= from && w.start_ns < to)
        {
            total.add(&w.counts);
        }
        if let (Some(start), Some(open)) = (agg.open_window_start(), agg.open_window(id))
            && start >= from
            && start < to
        {
            total.add(&open.counts);
        }
    }
    total
}

/// The clocks each consumer of `ids` (or every consumer) had over `[from, to)`, oldest first.
fn consumer_clocks(
    c: &Collector,
    ids: Option<&[ConsumerId]>,
    (from, to): (i64, i64),
) -> Vec<ConsumerClock> {
    let clocks = c.aggregator().clocks();
    c.consumers()
        .filter(|(id, _, _)| ids.is_none_or(|ids| ids.contains(id)))
        .flat_map(|(id, stream, consumer)| {
            clocks
                .over(id, from, to)
                .into_iter()
                .map(move |s| ConsumerClock {
                    stream: stream.to_string(),
                    consumer: consumer.to_string(),
                    domain: c.names().consumer_domain(id).map(str::to_string),
                    clock: ClockInfo::of(&s),
                })
        })
        .collect()
}

/// The report but its spikes (none there yet).
fn build_report(
    c: &Collector,
    params: &Params,
    ids: Option<&[ConsumerId]>,
    (from, to): (i64, i64),
) -> Report {
    let window_ns = c.config().aggregate.window_ns as i64;
    // Windows are counted when they start in the range; widen to the window holding `from`.
    let counts = window_counts(c, ids, from.div_euclid(window_ns) * window_ns, to);
    let filter = params.filter(ids, from, to);
    let ring = c.aggregator().ring();
    let stats = rebin::range_stats(ring, &filter, c.config().aggregate.max_latency_ns);
    let view = params.phase_view(c, ids, 32);
    let clock = view.shown;
    let phases = rebin::phase_table(ring, &filter, &view.phases, clock.frame());
    // One pass over the range's rows feeds both the ordering audit and tick detection.
    let mut times: Vec<i64> = Vec::new();
    let ordering = analyze::ordering::audit(
        ring.iter()
            .filter(|r| filter.matches(r))
            .inspect(|r| times.push(r.acked_ns)),
    );
    let detected = crate::clocks::detect::detect_period(&times, clock.period_ns());
    let mut warnings = range_warnings(c, from, to);
    let clocks = consumer_clocks(c, ids, (from, to));
    // All consumers folded together say something of the one clock that phased them, not of
    // consumers each on its own.
    let one_clock = view.source.is_some()
        || clocks
            .iter()
            .all(|k| k.clock.source == ClockSource::Configured);
    if let Some(d) = detected
        .filter(|d| one_clock && crate::clocks::detect::differs(d.period_ns, clock.period_ns()))
    {
        warnings.push(format!(
            "the acks follow a {} frame, not the {} tick: the phase heatmap is smeared (try tick={})",
            format_latency(d.period_ns as f64),
            format_latency(clock.period_ns() as f64),
            format_latency(d.period_ns as f64),
        ));
    }
    Report {
        range: Range {
            from: rfc3339(from),
            to: rfc3339(to),
        },
        tick: ReportTick {
            period_us: clock.period_ns() as f64 / 1_000.0,
            epoch: rfc3339(clock.epoch_ns()),
            phase_bins: clock.phase_bins(),
            phase_of: clock.phase_of(),
            detected_period_us: detected.map(|d| d.period_ns as f64 / 1_000.0),
            source: view
                .source
                .map_or("per_consumer", ClockSource::as_str)
                .to_string(),
            clocks,
        },
        latency: filter.latency,
        counts,
        latency_us: stats.latency.quantiles(),
        phases,
        spikes: Vec::new(),
        ordering,
        warnings,
    }
}
