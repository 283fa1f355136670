//! The `alerts` and `incidents` tables: every alert that fired or resolved, and every incident
//! once it has ended, with its scope, its members and its causes rolled up; so that a
//! postmortem can ask what paged, when, and why, after a restart too.

use polars::prelude::*;

use crate::analyze::alerts::Alert;
use crate::analyze::incidents::Incident;

/// An alert as it fired or resolved.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub at_ns: i64,
    pub alert: Alert,
}

pub const ALERT_COLUMNS: &[&str] = &[
    "at_ns",
    "alertname",
    "state",
    "fingerprint",
    "severity",
    "stream",
    "consumer",
    "cause",
    "value",
    "summary",
    "trace_ids",
    "incident",
    "labels",
    "annotations",
];

pub const INCIDENT_COLUMNS: &[&str] = &[
    "start_ns",
    "end_ns",
    "id",
    "kind",
    "stream",
    "consumer",
    "label",
    "consumers",
    "peak_p99_us",
    "baseline_p99_us",
    "top_cause",
    "confidence",
    "exemplar_trace_ids",
    "causes",
    "members",
];

pub fn alert_type(name: &str) -> Option<DataType> {
    Some(match name {
        "at_ns" => DataType::Int64,
        "value" => DataType::Float64,
        n if ALERT_COLUMNS.contains(&n) => DataType::String,
        _ => return None,
    })
}

pub fn incident_type(name: &str) -> Option<DataType> {
    Some(match name {
        "start_ns" | "end_ns" => DataType::Int64,
        "peak_p99_us" | "baseline_p99_us" | "confidence" => DataType::Float64,
        n if INCIDENT_COLUMNS.contains(&n) => DataType::String,
        _ => return None,
    })
}

fn text<R>(rows: &[R], name: &str, f: impl Fn(&R) -> Option<String>) -> Column {
    Column::new(
        name.into(),
        rows.iter().map(f).collect::<Vec<Option<String>>>(),
    )
}

fn float<R>(rows: &[R], name: &str, f: impl Fn(&R) -> f64) -> Column {
    Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>())
}

fn int<R>(rows: &[R], name: &str, f: impl Fn(&R) -> i64) -> Column {
    Column::new(name.into(), rows.iter().map(f).collect::<Vec<i64>>())
}

/// `rows` as a frame of the `alerts` table: the contract's labels as columns, every label and
/// annotation as JSON text.
pub fn alert_frame(rows: &[AlertRow]) -> PolarsResult<DataFrame> {
    let label = |name: &'static str| move |r: &AlertRow| r.alert.labels.get(name).cloned();
    let note = |name: &'static str| {
        move |r: &AlertRow| {
            r.alert
                .annotations
                .get(name)
                .filter(|v| !v.is_empty())
                .cloned()
        }
    };
    let columns = vec![
        int(rows, "at_ns", |r| r.at_ns),
        text(rows, "alertname", |r| Some(r.alert.alertname.clone())),
        text(rows, "state", |r| {
            serde_json::to_value(r.alert.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        }),
        text(rows, "fingerprint", |r| Some(r.alert.fingerprint.clone())),
        text(rows, "severity", label("severity")),
        text(rows, "stream", label("stream")),
        text(rows, "consumer", label("consumer")),
        text(rows, "cause", label("cause")),
        float(rows, "value", |r| r.alert.value),
        text(rows, "summary", note("summary")),
        text(rows, "trace_ids", note("trace_ids")),
        text(rows, "incident", note("incident")),
        text(rows, "labels", |r| {
            serde_json::to_string(&r.alert.labels).ok()
        }),
        text(rows, "annotations", |r| {
            serde_json::to_string(&r.alert.annotations).ok()
        }),
    ];
    DataFrame::new(rows.len(), columns)
}

/// An incident's top cause among its rolled-up causes, when one is confident.
fn top(i: &Incident) -> Option<&crate::analyze::incidents::RolledCause> {
    i.causes.first().filter(|c| c.cause == i.top_cause)
}

/// `rows` as a frame of the `incidents` table: `consumers` and `exemplar_trace_ids`
/// space-separated, `label` as `label=value`, causes and members as the API's JSON.
pub fn incident_frame(rows: &[Incident]) -> PolarsResult<DataFrame> {
    let columns = vec![
        int(rows, "start_ns", |i| i.start_ns),
        int(rows, "end_ns", |i| i.end_ns),
        text(rows, "id", |i| Some(i.id.clone())),
        text(rows, "kind", |i| {
            serde_json::to_value(i.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
        }),
        text(rows, "stream", |i| Some(i.scope.stream.clone())),
        text(rows, "consumer", |i| Some(i.scope.consumer.clone())),
        text(rows, "label", |i| {
            i.scope.label.as_ref().map(|(l, v)| format!("{l}={v}"))
        }),
        text(rows, "consumers", |i| Some(i.consumers.join(" "))),
        float(rows, "peak_p99_us", |i| i.peak_p99_us),
        float(rows, "baseline_p99_us", |i| i.baseline_p99_us),
        text(rows, "top_cause", |i| Some(i.top_cause.to_string())),
        float(rows, "confidence", |i| top(i).map_or(0.0, |c| c.confidence)),
        text(rows, "exemplar_trace_ids", |i| {
            top(i)
                .filter(|c| !c.exemplar_trace_ids.is_empty())
                .map(|c| {
                    let ids: Vec<String> =
                        c.exemplar_trace_ids.iter().map(|t| t.to_string()).collect();
                    ids.join(" ")
                })
        }),
        text(rows, "causes", |i| serde_json::to_string(&i.causes).ok()),
        text(rows, "members", |i| serde_json::to_string(&i.members).ok()),
    ];
    DataFrame::new(rows.len(), columns)
}
