//! The `spikes` table: one row per explained spike, once it has ended, with its top cause and
//! every cause as the API's JSON.

use polars::prelude::*;

use crate::analyze::causes::CauseFinding;
use crate::analyze::report::SpikeReport;

/// An ended spike as archived.
#[derive(Debug, Clone)]
pub struct SpikeRow {
    pub start_ns: i64,
    pub end_ns: i64,
    pub spike: SpikeReport,
}

/// The table's columns.
pub const COLUMNS: &[&str] = &[
    "start_ns",
    "end_ns",
    "stream",
    "consumer",
    "latency",
    "p99_us",
    "baseline_p99_us",
    "windows",
    "top_cause",
    "confidence",
    "exemplar_trace_ids",
    "causes",
];

pub fn column_type(name: &str) -> Option<DataType> {
    Some(match name {
        "start_ns" | "end_ns" | "windows" => DataType::Int64,
        "p99_us" | "baseline_p99_us" | "confidence" => DataType::Float64,
        n if COLUMNS.contains(&n) => DataType::String,
        _ => return None,
    })
}

/// The first of a spike's ranked causes.
fn top(r: &SpikeRow) -> Option<&CauseFinding> {
    r.spike.causes.first()
}

/// `rows` as a frame of this table. `top_cause` is the first of the ranked causes (`unknown`
/// when none was found), `exemplar_trace_ids` its exemplars, space-separated.
pub fn frame(rows: &[SpikeRow]) -> PolarsResult<DataFrame> {
    let text = |name: &str, f: &dyn Fn(&SpikeRow) -> Option<String>| {
        Column::new(
            name.into(),
            rows.iter().map(f).collect::<Vec<Option<String>>>(),
        )
    };
    let float = |name: &str, f: &dyn Fn(&SpikeRow) -> f64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>())
    };
    let int = |name: &str, f: &dyn Fn(&SpikeRow) -> i64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<i64>>())
    };
    let columns = vec![
        int("start_ns", &|r| r.start_ns),
        int("end_ns", &|r| r.end_ns),
        text("stream", &|r| Some(r.spike.stream.clone())),
        text("consumer", &|r| Some(r.spike.consumer.clone())),
        text("latency", &|r| Some(r.spike.latency.as_str().to_string())),
        float("p99_us", &|r| r.spike.p99_us),
        float("baseline_p99_us", &|r| r.spike.baseline_p99_us),
        int("windows", &|r| {
            i64::try_from(r.spike.windows).unwrap_or(i64::MAX)
        }),
        text("top_cause", &|r| {
            Some(top(r).map_or("unknown".to_string(), |c| c.cause.to_string()))
        }),
        float("confidence", &|r| top(r).map_or(0.0, |c| c.confidence)),
        text("exemplar_trace_ids", &|r| {
            top(r)
                .filter(|c| !c.exemplar_trace_ids.is_empty())
                .map(|c| {
                    c.exemplar_trace_ids
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
        }),
        text("causes", &|r| serde_json::to_string(&r.spike.causes).ok()),
    ];
    DataFrame::new(rows.len(), columns)
}
