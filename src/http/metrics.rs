//! `GET /metrics`: copies the numbers out of the collector, renders outside the lock.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::AppState;
use crate::collector::lock;
use crate::render::prometheus::{ConsumerMetrics, MetricsSnapshot, render_metrics};

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let snapshot = {
        let c = lock(&state.collector);
        MetricsSnapshot {
            counters: c.counters(),
            ready: state.readiness.not_ready_reason().is_none(),
            nats_connected: state.readiness.nats_connected(),
            join_pending: c.joiner().pending_len(),
            join_capacity: c.joiner().capacity(),
            ring_samples: c.aggregator().ring().len(),
            ring_capacity: c.aggregator().ring().capacity(),
            server_clock_offset_ns: c.server_clock_offset_ns(),
            nats_down_ns: c.nats_down_ns(),
            consumers: c
                .consumers()
                .map(|(id, stream, consumer)| {
                    let facts = c.facts(id).cloned().unwrap_or_default();
                    ConsumerMetrics {
                        stream: stream.to_string(),
                        consumer: consumer.to_string(),
                        totals: facts.totals,
                        ack_buckets: facts.ack_buckets,
                        state: facts.state,
                    }
                })
                .collect(),
        }
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_metrics(&snapshot),
    )
}
