//! `GET /api/v1/export`: the postmortem bundle of the query's range, as a tar.gz, made of this
//! service's own answers ([`crate::export`]). One export at a time; its samples are at most
//! the sample ring's capacity (the latest of the range), read off the runtime's threads.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::api::on_blocking_pool;
use super::params::{Params, RANGE_PARAMS};
use super::{ApiError, AppState, bundle_routes};
use crate::collector::lock;
use crate::export::{self, ExportQuery, Scope, Sources};
use crate::model::{Seen, rfc3339};

pub async fn export(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let now = Seen::now().wall_ns;
    let params = Params::parse(&query, &[RANGE_PARAMS], now)?;
    let Ok(_one_at_a_time) = state.exports.clone().try_acquire_owned() else {
        return Err(ApiError::Busy);
    };
    let (collector, archive_dir) = (state.collector.clone(), state.archive_dir.clone());
    let (stream, consumer, domain) = (
        params.stream.clone(),
        params.consumer.clone(),
        params.domain.clone(),
    );
    let (from, to, sources) = on_blocking_pool(&state, move || {
        let scope = Scope {
            stream: stream.as_deref(),
            consumer: consumer.as_deref(),
            domain: domain.as_deref(),
        };
        let (from, to, windows, flush_ns, limit) = {
            let c = lock(&collector);
            // An unknown stream or consumer is a 404, as for the report.
            params.consumers(&c)?;
            let (from, to) = params.range(&c, now);
            let windows = export::windows(&c, from, to, scope);
            let archive = &c.config().archive;
            (
                from,
                to,
                windows,
                archive.flush_interval_ns,
                c.config().aggregate.ring_capacity,
            )
        };
        let mut notes = Vec::new();
        let samples = match archive_dir {
            Some(dir) => {
                let (df, unreadable) = crate::archive::latest_samples(&dir, from, to, limit);
                if !unreadable.is_empty() {
                    notes.push(format!(
                        "{} archive segment(s) could not be read and were skipped",
                        unreadable.len()
                    ));
                }
                if df.height() >= limit {
                    notes.push(format!(
                        "samples.parquet and samples.csv hold the latest {limit} samples of the \
                         range (aggregate.ring_capacity); `ackscope query` reads all of them"
                    ));
                }
                if to > now.saturating_sub(flush_ns as i64) {
                    notes.push(format!(
                        "samples.parquet and samples.csv hold what the archive had written: the \
                         last {} s before the export may be missing",
                        flush_ns / 1_000_000_000
                    ));
                }
                export::narrowed(df, scope)
            }
            None => {
                notes.push(
                    "the archive is off: samples.parquet and samples.csv are empty".to_string(),
                );
                polars::prelude::DataFrame::empty()
            }
        };
        let sources = Sources {
            samples,
            windows,
            notes,
            settings: vec![("made by".to_string(), "GET /api/v1/export".to_string())],
        };
        Ok((from, to, sources))
    })
    .await?;
    let request = ExportQuery {
        from: rfc3339(from),
        to: rfc3339(to),
        stream: params_value(&query, "stream"),
        consumer: params_value(&query, "consumer"),
        domain: params_value(&query, "domain"),
        tick: params_value(&query, "tick"),
        latency: params_value(&query, "latency"),
        phase_bins: params_value(&query, "phase_bins"),
    };
    let app = bundle_routes(state.clone());
    let bundle = export::build(&app, &request, sources, &|_| {})
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = tokio::task::spawn_blocking(move || bundle.tar_gz())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let name = format!(
        "ackscope-postmortem-{}.tar.gz",
        rfc3339(from).replace(':', "-")
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

fn params_value(query: &HashMap<String, String>, key: &str) -> Option<String> {
    query.get(key).cloned()
}
