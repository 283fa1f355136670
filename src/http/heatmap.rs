//! `/api/v1/heatmap/phase.svg` and `/api/v1/heatmap/time.svg`: the sample ring re-binned for
//! the request, then drawn by [`crate::render::heatmap`].

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::on_blocking_pool;
use super::params::{MAX_BINS, PICTURE_PARAMS, Params, RANGE_PARAMS, range_warnings};
use super::{ApiError, AppState};
use crate::aggregate::phase_grid::{LatencyAxis, PhaseGrid};
use crate::aggregate::rebin;
use crate::collector::lock;
use crate::model::Seen;
use crate::model::rfc3339;
use crate::render::heatmap::{
    ColorScale, HeatmapStyle, XAxis, fit_latency_axis, fit_latency_floor, format_latency,
    render_heatmap,
};
use crate::tick::PhaseOf;

/// Most cells a heatmap may have (columns × latency rows): about 200 bytes of SVG each.
const MAX_CELLS: u64 = 250_000;

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Phase,
    Time,
}

pub async fn phase(
    state: State<AppState>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    heatmap(state, query, Kind::Phase).await
}

pub async fn time(
    state: State<AppState>,
    query: Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    heatmap(state, query, Kind::Time).await
}

async fn heatmap(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let now = Seen::now().wall_ns;
    let params = Params::parse(&query, &[RANGE_PARAMS, PICTURE_PARAMS], now)?;
    let shared = state.clone();
    let svg = on_blocking_pool(&state, move || {
        let (from, to) = params.range(&lock(&shared.collector), now);
        let source = super::history::source(&shared, (from, to));
        // One pass over the ring under the lock (or, for a range larger than the history
        // collector, two over the archive's segments, still holding that collector); drawing
        // comes after, with the lock released.
        let c = lock(&source.collector);
        let ids = params.consumers(&c)?;
        let filter = params.filter(ids.as_deref(), from, to);
        let agg = &c.config().aggregate;
        let view = params.phase_view(&c, ids.as_deref(), 160);
        let clock = view.shown;
        // Too many samples to load: drawn from the archive's segments themselves.
        let archive = source.scan.as_ref().or(shared.heatmaps_from.as_deref());
        let scan = archive.map(|dir| {
            let scan = crate::archive::grid::Scan {
                from_ns: from,
                to_ns: to,
                stream: params.stream.clone(),
                consumer: params.consumer.clone(),
                domain: params.domain.clone(),
                e2e: filter.latency == rebin::Latency::E2e,
            };
            (dir, scan)
        });
        let mut unreadable = Vec::new();
        // The latency axis fits the data (and the frame budget), as Grafana's heatmap does;
        // `max_latency` pins its top.
        let (mut fastest, mut slowest) = (None::<u64>, None::<u64>);
        if let Some((dir, scan)) = &scan {
            let (span, bad) = crate::archive::grid::latency_span(dir, scan);
            unreadable.extend(bad);
            (fastest, slowest) = (span.map(|s| s.0), span.map(|s| s.1));
        } else {
            for ns in c
                .aggregator()
                .ring()
                .iter()
                .filter_map(|r| filter.latency(&r))
            {
                fastest = Some(fastest.map_or(ns, |f| f.min(ns)));
                slowest = Some(slowest.map_or(ns, |s| s.max(ns)));
            }
        }
        let max = params
            .max_latency_ns
            .unwrap_or_else(|| fit_latency_axis(slowest, clock.period_ns(), agg.max_latency_ns));
        let min = fit_latency_floor(fastest, max, agg.grid_min_latency_ns.max(1));
        let axis = LatencyAxis::new(min, max, agg.latency_rows);
        // The picture's size follows its cells: bound them, and so the answer's bytes.
        let columns = match kind {
            Kind::Phase => params.phase_bins.unwrap_or(160),
            Kind::Time => params.phase_bins.unwrap_or(120),
        };
        if u64::from(columns) * u64::from(agg.latency_rows) > MAX_CELLS {
            return Err(ApiError::bad(
                "phase_bins",
                format!(
                    "{columns} columns × {} latency rows is more than {MAX_CELLS} cells",
                    agg.latency_rows
                ),
            ));
        }
        let drawn = |how: crate::archive::grid::Columns, ring: &dyn Fn() -> PhaseGrid| match &scan {
            Some((dir, scan)) => crate::archive::grid::grid(dir, scan, how, &axis),
            None => (ring(), Vec::new()),
        };
        let (grid, x, title) = match kind {
            Kind::Phase => {
                let how = crate::archive::grid::Columns::Phase {
                    frame: *clock.frame(),
                    bins: view.phases.bins,
                    own_tick: params.tick.is_some() || clock.phase_of() == PhaseOf::Delivery,
                    phase_of: clock.phase_of(),
                };
                let (grid, bad) = drawn(how, &|| {
                    rebin::phase_grid(c.aggregator().ring(), &filter, &view.phases, axis.clone())
                });
                unreadable.extend(bad);
                (
                    grid,
                    XAxis::Phase {
                        period_ns: clock.period_ns(),
                    },
                    format!(
                        "{} latency by frame phase — tick {}, bin {}, {}",
                        filter.latency.as_str(),
                        format_latency(clock.period_ns() as f64),
                        format_latency(clock.period_ns() as f64 / clock.phase_bins() as f64),
                        view.in_words(),
                    ),
                )
            }
            Kind::Time => {
                let columns = params.phase_bins.unwrap_or(120).min(MAX_BINS);
                let how = crate::archive::grid::Columns::Time { columns };
                let (grid, bad) = drawn(how, &|| {
                    rebin::time_grid(c.aggregator().ring(), &filter, columns, axis.clone())
                });
                unreadable.extend(bad);
                (
                    grid,
                    XAxis::Time {
                        from_ns: from,
                        to_ns: to,
                    },
                    format!(
                        "{} latency over time — {} per column",
                        filter.latency.as_str(),
                        format_latency((to - from) as f64 / columns as f64)
                    ),
                )
            }
        };
        let who = match (&params.stream, &params.consumer) {
            (Some(s), Some(c)) => format!("{s}/{c}"),
            (Some(s), None) => format!("{s}/*"),
            _ => "all consumers".to_string(),
        };
        let mut subtitle = format!(
            "{who} · {} · {} samples",
            span_in_words(from, to),
            grid.total()
        );
        if source.scan.is_none() && archive.is_some() {
            subtitle.push_str(" · drawn from every archived sample of the range");
        }
        if !unreadable.is_empty() {
            unreadable.sort();
            unreadable.dedup();
            subtitle.push_str(&format!(
                " · {} unreadable archive segment(s) skipped",
                unreadable.len()
            ));
        }
        for w in source
            .warnings
            .iter()
            .cloned()
            .chain(range_warnings(&c, from, to))
        {
            subtitle.push_str(" · ");
            subtitle.push_str(&w);
        }
        drop(c);
        let style = HeatmapStyle {
            width: params.width.unwrap_or(960),
            height: params.height.unwrap_or(540),
            scale: params.scale.unwrap_or(ColorScale::Log),
            x,
            title,
            subtitle,
            latency: filter.latency.as_str().to_string(),
            budget_ns: Some(clock.period_ns()),
        };
        render_heatmap(&grid, &style).map_err(|e| ApiError::Internal(e.to_string()))
    })
    .await?;
    Ok(([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// A range as a reader wants it under a picture: `2026-11-29 14:13:20–14:18:20 UTC`, the
/// second date only when it differs.
fn span_in_words(from: i64, to: i64) -> String {
    let (a, b) = (rfc3339(from), rfc3339(to));
    let (day_a, time_a) = (a.get(..10).unwrap_or(&a), a.get(11..19).unwrap_or(""));
    let (day_b, time_b) = (b.get(..10).unwrap_or(&b), b.get(11..19).unwrap_or(""));
    if day_a == day_b {
        format!("{day_a} {time_a}–{time_b} UTC")
    } else {
        format!("{day_a} {time_a} – {day_b} {time_b} UTC")
    }
}
