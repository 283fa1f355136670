//! The `advisories` and `consumer_state` tables: every consumer advisory the tap saw, and every
//! consumer info poll, so that a postmortem can set ack pending, redeliveries and messages
//! given up beside the latencies.

use polars::prelude::*;

use crate::collect::consumer_state::ConsumerState;

/// One consumer advisory as archived.
#[derive(Debug, Clone)]
pub struct AdvisoryRow {
    pub at_ns: i64,
    /// The subject's kind token, lower case: `max_deliveries`, `msg_naked`, `created`, …
    pub kind: String,
    pub stream: String,
    pub consumer: String,
    pub domain: Option<String>,
    /// The message's stream sequence and delivery count, when the payload says.
    pub stream_seq: Option<u64>,
    pub deliveries: Option<u64>,
}

/// One consumer info poll as archived.
#[derive(Debug, Clone)]
pub struct StateRow {
    pub stream: String,
    pub consumer: String,
    pub domain: Option<String>,
    pub state: ConsumerState,
}

pub const ADVISORY_COLUMNS: &[&str] = &[
    "at_ns",
    "kind",
    "stream",
    "consumer",
    "domain",
    "stream_seq",
    "deliveries",
];

pub const STATE_COLUMNS: &[&str] = &[
    "polled_ns",
    "stream",
    "consumer",
    "domain",
    "num_ack_pending",
    "max_ack_pending",
    "num_redelivered",
    "num_waiting",
    "num_pending",
    "ack_wait_ns",
    "max_deliver",
    "sample_freq",
    "push",
    "ack_none",
];

pub fn advisory_type(name: &str) -> Option<DataType> {
    Some(match name {
        "kind" | "stream" | "consumer" | "domain" => DataType::String,
        n if ADVISORY_COLUMNS.contains(&n) => DataType::Int64,
        _ => return None,
    })
}

pub fn state_type(name: &str) -> Option<DataType> {
    Some(match name {
        "stream" | "consumer" | "domain" => DataType::String,
        "push" | "ack_none" => DataType::Boolean,
        n if STATE_COLUMNS.contains(&n) => DataType::Int64,
        _ => return None,
    })
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn names<R>(rows: &[R], get: impl Fn(&R) -> (&str, &str, Option<&str>)) -> [Column; 3] {
    let (mut stream, mut consumer, mut domain) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows {
        let (s, c, d) = get(r);
        stream.push(s);
        consumer.push(c);
        domain.push(d);
    }
    [
        Column::new("stream".into(), stream),
        Column::new("consumer".into(), consumer),
        Column::new("domain".into(), domain),
    ]
}

/// `rows` as a frame of the `advisories` table.
pub fn advisory_frame(rows: &[AdvisoryRow]) -> PolarsResult<DataFrame> {
    let [stream, consumer, domain] = names(rows, |r| {
        (r.stream.as_str(), r.consumer.as_str(), r.domain.as_deref())
    });
    let columns = vec![
        Column::new(
            "at_ns".into(),
            rows.iter().map(|r| r.at_ns).collect::<Vec<_>>(),
        ),
        Column::new(
            "kind".into(),
            rows.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
        ),
        stream,
        consumer,
        domain,
        Column::new(
            "stream_seq".into(),
            rows.iter()
                .map(|r| r.stream_seq.map(i64_of))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "deliveries".into(),
            rows.iter()
                .map(|r| r.deliveries.map(i64_of))
                .collect::<Vec<_>>(),
        ),
    ];
    DataFrame::new(rows.len(), columns)
}

/// `rows` as a frame of the `consumer_state` table.
pub fn state_frame(rows: &[StateRow]) -> PolarsResult<DataFrame> {
    let [stream, consumer, domain] = names(rows, |r| {
        (r.stream.as_str(), r.consumer.as_str(), r.domain.as_deref())
    });
    let int = |name: &str, f: fn(&ConsumerState) -> i64| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(&r.state)).collect::<Vec<_>>(),
        )
    };
    let flag = |name: &str, f: fn(&ConsumerState) -> bool| {
        Column::new(
            name.into(),
            rows.iter().map(|r| f(&r.state)).collect::<Vec<_>>(),
        )
    };
    let columns = vec![
        int("polled_ns", |s| s.polled_ns),
        stream,
        consumer,
        domain,
        int("num_ack_pending", |s| i64_of(s.num_ack_pending)),
        int("max_ack_pending", |s| s.max_ack_pending),
        int("num_redelivered", |s| i64_of(s.num_redelivered)),
        int("num_waiting", |s| i64_of(s.num_waiting)),
        int("num_pending", |s| i64_of(s.num_pending)),
        int("ack_wait_ns", |s| i64_of(s.ack_wait_ns)),
        int("max_deliver", |s| s.max_deliver),
        int("sample_freq", |s| i64::from(s.sample_freq)),
        flag("push", |s| s.push),
        flag("ack_none", |s| s.ack_none),
    ];
    DataFrame::new(rows.len(), columns)
}
