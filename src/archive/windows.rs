//! The `windows` table: one row per closed window per consumer (and `*`/`*` for all of them),
//! with the report's counts, the percentiles, and both latency histograms in HdrHistogram's V2
//! encoding, so that any range of windows merges exactly.

use polars::prelude::*;

use crate::aggregate::ClosedWindow;
use crate::aggregate::histogram::LatencyHistogram;
use crate::aggregate::window::Counts;

/// A closed window as archived, with the names of its consumer (`*` for all consumers).
#[derive(Debug, Clone)]
pub struct WindowRow {
    pub window: ClosedWindow,
    pub stream: String,
    pub consumer: String,
    pub domain: Option<String>,
}

/// The table's columns.
pub const COLUMNS: &[&str] = &[
    "start_ns",
    "end_ns",
    "stream",
    "consumer",
    "domain",
    "deliveries",
    "acks",
    "naks",
    "terms",
    "progress",
    "redeliveries",
    "max_deliveries",
    "unmatched_acks",
    "expired_deliveries",
    "count",
    "p50_us",
    "p90_us",
    "p99_us",
    "p999_us",
    "max_us",
    "mean_us",
    "e2e_count",
    "e2e_p50_us",
    "e2e_p90_us",
    "e2e_p99_us",
    "e2e_p999_us",
    "e2e_max_us",
    "e2e_mean_us",
    "nats_gap_ms",
    "exemplar_trace_ids",
    "ack_hdr",
    "e2e_hdr",
];

pub fn column_type(name: &str) -> Option<DataType> {
    Some(match name {
        "stream" | "consumer" | "domain" | "exemplar_trace_ids" => DataType::String,
        "ack_hdr" | "e2e_hdr" => DataType::Binary,
        n if n.ends_with("_us") => DataType::Float64,
        n if COLUMNS.contains(&n) => DataType::Int64,
        _ => return None,
    })
}

/// `rows` as a frame of this table.
pub fn frame(rows: &[WindowRow]) -> PolarsResult<DataFrame> {
    let int = |name: &str, f: &dyn Fn(&WindowRow) -> u64| {
        Column::new(
            name.into(),
            rows.iter()
                .map(|r| i64::try_from(f(r)).unwrap_or(i64::MAX))
                .collect::<Vec<i64>>(),
        )
    };
    let count = |name: &str, f: fn(&Counts) -> u64| int(name, &|r| f(&r.window.summary.counts));
    let float = |name: &str, f: &dyn Fn(&WindowRow) -> f64| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<f64>>())
    };
    let text = |name: &str, f: &dyn Fn(&WindowRow) -> Option<String>| {
        Column::new(
            name.into(),
            rows.iter().map(f).collect::<Vec<Option<String>>>(),
        )
    };
    let columns = vec![
        Column::new(
            "start_ns".into(),
            rows.iter()
                .map(|r| r.window.summary.start_ns)
                .collect::<Vec<i64>>(),
        ),
        Column::new(
            "end_ns".into(),
            rows.iter()
                .map(|r| r.window.summary.end_ns)
                .collect::<Vec<i64>>(),
        ),
        text("stream", &|r| Some(r.stream.clone())),
        text("consumer", &|r| Some(r.consumer.clone())),
        text("domain", &|r| r.domain.clone()),
        count("deliveries", |c| c.deliveries),
        count("acks", |c| c.acks),
        count("naks", |c| c.naks),
        count("terms", |c| c.terms),
        count("progress", |c| c.progress),
        count("redeliveries", |c| c.redeliveries),
        count("max_deliveries", |c| c.max_deliveries),
        count("unmatched_acks", |c| c.unmatched_acks),
        count("expired_deliveries", |c| c.expired_deliveries),
        int("count", &|r| r.window.summary.ack_latency_us.count),
        float("p50_us", &|r| r.window.summary.ack_latency_us.p50),
        float("p90_us", &|r| r.window.summary.ack_latency_us.p90),
        float("p99_us", &|r| r.window.summary.ack_latency_us.p99),
        float("p999_us", &|r| r.window.summary.ack_latency_us.p999),
        float("max_us", &|r| r.window.summary.ack_latency_us.max),
        float("mean_us", &|r| r.window.summary.ack_latency_us.mean),
        int("e2e_count", &|r| r.window.summary.e2e_latency_us.count),
        float("e2e_p50_us", &|r| r.window.summary.e2e_latency_us.p50),
        float("e2e_p90_us", &|r| r.window.summary.e2e_latency_us.p90),
        float("e2e_p99_us", &|r| r.window.summary.e2e_latency_us.p99),
        float("e2e_p999_us", &|r| r.window.summary.e2e_latency_us.p999),
        float("e2e_max_us", &|r| r.window.summary.e2e_latency_us.max),
        float("e2e_mean_us", &|r| r.window.summary.e2e_latency_us.mean),
        int("nats_gap_ms", &|r| r.window.summary.nats_gap_ms),
        text("exemplar_trace_ids", &|r| {
            let ids = &r.window.summary.exemplar_trace_ids;
            (!ids.is_empty()).then(|| {
                ids.iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        }),
        Column::new(
            "ack_hdr".into(),
            rows.iter()
                .map(|r| r.window.ack_hdr.as_slice())
                .collect::<Vec<&[u8]>>(),
        ),
        Column::new(
            "e2e_hdr".into(),
            rows.iter()
                .map(|r| r.window.e2e_hdr.as_slice())
                .collect::<Vec<&[u8]>>(),
        ),
    ];
    DataFrame::new(rows.len(), columns)
}

/// The ack (or `e2e`) latency histogram of every row of `df` (a read of this table) merged,
/// with the rows whose histogram could not be decoded.
pub fn merged(df: &DataFrame, e2e: bool, max_ns: u64) -> (LatencyHistogram, usize) {
    let mut hist = LatencyHistogram::new(max_ns);
    let mut bad = 0;
    let column = if e2e { "e2e_hdr" } else { "ack_hdr" };
    if let Ok(values) = df.column(column).and_then(|c| c.binary().cloned()) {
        for bytes in values.iter().flatten() {
            if !hist.merge_encoded(bytes) {
                bad += 1;
            }
        }
    }
    (hist, bad)
}
