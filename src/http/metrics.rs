//! `GET /metrics`: copies the numbers out of the collector, renders outside the lock.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::{ApiError, AppState};
use crate::collector::lock;
use crate::render::prometheus::{
    AlertMetrics, ConsumerMetrics, Exposition, MetricsSnapshot, render_metrics,
};

/// Prometheus text, or OpenMetrics (with exemplars) when the scraper asks for it.
pub async fn metrics(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let format = Exposition::from_accept(
        headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default(),
    );
    // The collector may be held by a query: wait for it on the blocking pool, never on a
    // worker the taps need.
    // One snapshot at a time: a flood of scrapes queues here instead of contending with the
    // taps for the collector.
    let slot = state
        .metrics_slot
        .clone()
        .acquire_owned()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let collector = state.collector.clone();
    let (readiness, refused) = (state.readiness.clone(), state.queries_refused.clone());
    let shared = state.clone();
    let snapshot = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // The alert pass may hold the alerts for a while: waited for here, off the workers.
        let alerts = alert_metrics(&shared);
        let c = lock(&collector);
        let label_names = c.config().headers.label_names();
        MetricsSnapshot {
            counters: c.counters(),
            ready: readiness.not_ready_reason().is_none(),
            nats_connected: readiness.nats_connected(),
            queries_refused: refused.load(std::sync::atomic::Ordering::Relaxed),
            join_pending: c.joiner().pending_len(),
            join_capacity: c.joiner().capacity(),
            ring_samples: c.aggregator().ring().len(),
            ring_capacity: c.aggregator().ring().capacity(),
            server_clock_offset_ns: c.server_clock_offset_ns(),
            nats_down_ns: c.nats_down_ns(),
            archive_queued: c
                .archive_stats()
                .map_or(0, |a| a.queued.load(std::sync::atomic::Ordering::Relaxed)),
            archive_bytes: c.archive_stats().map_or(0, |a| {
                a.bytes_on_disk.load(std::sync::atomic::Ordering::Relaxed)
            }),
            own: {
                let now = crate::model::Seen::now().wall_ns;
                readiness.own_delays().over(now - 10_000_000_000, now)
            },
            alerts,
            otlp: c.otlp_stats().map(|o| {
                use std::sync::atomic::Ordering::Relaxed;
                [
                    o.queue_dropped.load(Relaxed),
                    o.spans.load(Relaxed),
                    o.spike_spans.load(Relaxed),
                    o.spans_dropped.load(Relaxed),
                    o.spans_without_parent.load(Relaxed),
                    o.requests.load(Relaxed),
                    o.failed_requests.load(Relaxed),
                ]
            }),
            consumers: c
                .consumers()
                .map(|(id, stream, consumer)| {
                    let facts = c.facts(id).cloned().unwrap_or_default();
                    ConsumerMetrics {
                        stream: stream.to_string(),
                        consumer: consumer.to_string(),
                        domain: c.names().consumer_domain(id).map(str::to_string),
                        totals: facts.totals,
                        ack_buckets: facts.ack_buckets,
                        state: facts.state,
                        labels: label_names
                            .iter()
                            .zip(facts.labels)
                            .map(|(name, value)| {
                                let value = c.names().symbol_name(value).unwrap_or_default();
                                (name.clone(), value.to_string())
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(header::CONTENT_TYPE, format.content_type())],
        render_metrics(&snapshot, format),
    ))
}

/// The alert book's counts and the receivers' stats.
fn alert_metrics(state: &AppState) -> AlertMetrics {
    use std::sync::atomic::Ordering::Relaxed;
    let a = lock(&state.alerts);
    let (firing, pending) = a.book.counts();
    let n = &state.notify_stats;
    AlertMetrics {
        open: a
            .book
            .open()
            .into_iter()
            .map(|alert| {
                let state = match alert.state {
                    crate::analyze::alerts::State::Firing => "firing",
                    _ => "pending",
                };
                (alert.labels, state)
            })
            .collect(),
        firing,
        pending,
        overflow: a.book.overflow + a.ledger.overflow,
        sent: n.sent.load(Relaxed),
        retries: n.retries.load(Relaxed),
        failed: n.failed.load(Relaxed),
        dropped: n.dropped.load(Relaxed),
    }
}
