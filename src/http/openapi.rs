//! `GET /api/v1/openapi.json`: the HTTP API as an OpenAPI 3.0 document, its answers' schemas
//! generated from the same types the handlers return (`crate::api`), so that the document and
//! the service cannot drift apart.

use axum::Json;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use super::params::{PICTURE_PARAMS, RANGE_PARAMS};
use crate::analyze::alerts::Alert;
use crate::analyze::incidents::Incident;
use crate::api::{ConsumerSummary, ErrorBody, Report, Spike};
use crate::names::MAX_NAME_BYTES;

/// One query parameter: its schema and what it means.
fn parameter(name: &str) -> Value {
    let (schema, description) = match name {
        "stream" | "consumer" | "domain" => (
            json!({"type": "string", "pattern": "^[^.*>\\s/\\\\]+$", "maxLength": MAX_NAME_BYTES}),
            "a stream (and consumer) name, and the JetStream domain (default: every domain); `consumer` and `domain` need `stream`",
        ),
        "from" | "to" => (
            json!({"type": "string"}),
            "RFC 3339, `now` or `-<duration>` before now (default: the oldest retained sample to now)",
        ),
        "latency" => (
            json!({"type": "string", "enum": ["ack", "e2e"]}),
            "the latency",
        ),
        "tick" => (
            json!({"type": "string"}),
            "a frame period such as `16ms` that overrides the configured one",
        ),
        "phase_bins" => (
            json!({"type": "integer", "minimum": 1, "maximum": 2000}),
            "phase bins or time columns",
        ),
        "width" | "height" => (
            json!({"type": "integer", "minimum": 1}),
            "picture size in pixels (capped)",
        ),
        "scale" => (
            json!({"type": "string", "enum": ["log", "linear"]}),
            "colour scale",
        ),
        "max_latency" => (
            json!({"type": "string"}),
            "top of the latency axis, 100us–1h",
        ),
        _ => (json!({"type": "string"}), ""),
    };
    json!({"name": name, "in": "query", "required": false, "schema": schema, "description": description})
}

/// The answers every data route may give besides its own.
fn errors(responses: &mut serde_json::Map<String, Value>, not_found: bool) {
    let error = |text: &str| json!({"description": text, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}});
    responses.insert("400".into(), error("a bad parameter, named in `parameter`"));
    if not_found {
        responses.insert("404".into(), error("an unknown stream or consumer"));
    }
    responses.insert(
        "401".into(),
        error("a bearer token is needed (http.read_token)"),
    );
    responses.insert("421".into(), error("a Host ackscope does not answer to"));
    responses.insert("429".into(), error("every query slot stayed taken; retry"));
}

fn operation(summary: &str, params: &[&str], ok: Value, not_found: bool) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert("200".into(), ok);
    errors(&mut responses, not_found);
    json!({
        "get": {
            "summary": summary,
            "parameters": params.iter().map(|p| parameter(p)).collect::<Vec<_>>(),
            "responses": responses,
        }
    })
}

fn json_answer<T: JsonSchema>(generator: &mut schemars::SchemaGenerator, text: &str) -> Value {
    let schema = generator.subschema_for::<T>();
    json!({"description": text, "content": {"application/json": {"schema": schema}}})
}

fn text_answer(media: &str, text: &str) -> Value {
    json!({"description": text, "content": {media: {"schema": {"type": "string"}}}})
}

/// The document.
pub fn document() -> Value {
    let mut generator = SchemaSettings::openapi3()
        .with(|s| s.contract = schemars::generate::Contract::Serialize)
        .into_generator();
    let range: Vec<&str> = RANGE_PARAMS.to_vec();
    let picture: Vec<&str> = RANGE_PARAMS.iter().chain(PICTURE_PARAMS).copied().collect();
    let mut paths = serde_json::Map::new();
    paths.insert(
        "/api/v1/consumers".into(),
        operation(
            "Every (stream, consumer) seen",
            &[],
            json_answer::<Vec<ConsumerSummary>>(&mut generator, "the consumers"),
            false,
        ),
    );
    paths.insert(
        "/api/v1/report".into(),
        operation(
            "Counts, percentiles, phases, spikes and ordering over a range",
            &range,
            json_answer::<Report>(&mut generator, "the report"),
            true,
        ),
    );
    paths.insert(
        "/api/v1/spikes".into(),
        operation(
            "The report's spikes alone",
            &range,
            json_answer::<Vec<Spike>>(&mut generator, "the spikes"),
            true,
        ),
    );
    paths.insert(
        "/api/v1/incidents".into(),
        operation(
            "Spikes that began together, grouped into incidents (one consumer, a group, a \
             stream or the fleet), with their causes rolled up",
            &range,
            json_answer::<Vec<Incident>>(&mut generator, "the incidents, oldest first"),
            true,
        ),
    );
    paths.insert(
        "/api/v1/alerts".into(),
        operation(
            "Pending and firing alerts, then the latest resolved ones",
            &[],
            json_answer::<Vec<Alert>>(&mut generator, "the alerts"),
            false,
        ),
    );
    for (kind, what) in [("phase", "frame phase"), ("time", "time")] {
        paths.insert(
            format!("/api/v1/heatmap/{kind}.svg"),
            operation(
                &format!("{what} × latency heatmap"),
                &picture,
                text_answer("image/svg+xml", "the heatmap"),
                true,
            ),
        );
    }
    paths.insert(
        "/api/v1/export".into(),
        operation(
            "The postmortem bundle of a range (postmortem.md, report.json, spikes.json, \
             heatmaps as SVG and PNG, samples.parquet, samples.csv, windows.csv)",
            &range,
            text_answer("application/gzip", "the bundle, a tar.gz"),
            true,
        ),
    );
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Liveness", "responses": {"200": {"description": "running", "content": {"application/json": {"schema": {"type": "object"}}}}}}}),
    );
    paths.insert(
        "/metrics".into(),
        json!({"get": {"summary": "Prometheus text exposition", "responses": {"200": text_answer("text/plain", "the metrics")}}}),
    );
    let _ = generator.subschema_for::<ErrorBody>();
    let schemas = generator.take_definitions(true);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "ackscope",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Delivery → ack latency of NATS JetStream consumers: reports, spikes and their causes, heatmaps.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(document())
}
