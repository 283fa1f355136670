//! The `samples` table: one row per joined sample with every field the collector knew, and
//! the frame phase of its ack in its consumer's own clock.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rustc_hash::FxHashMap;

use super::files::{self, Table};
use crate::model::{ConsumerId, Sample, SampleSource, Sym, TraceId};

/// One sample as archived.
#[derive(Debug, Clone)]
pub struct ArchivedSample {
    pub sample: Sample,
    /// Nanoseconds into its consumer's frame when it was acked.
    pub phase_ns: Option<u64>,
}

/// What the ids of a batch stand for when it is handed over: ids of forgotten consumers and
/// symbols are reused, so each batch carries its own.
#[derive(Debug, Clone, Default)]
pub struct Names {
    /// Consumer id → (stream, consumer, JetStream domain).
    pub consumers: FxHashMap<ConsumerId, (String, String, Option<String>)>,
    /// Symbol → subject or label value.
    pub symbols: FxHashMap<u32, String>,
}

/// Samples handed over at once, with the names of their ids.
#[derive(Debug)]
pub struct SampleBatch {
    pub rows: Vec<ArchivedSample>,
    pub names: Names,
}

/// The distinct consumer ids and symbols `rows` use.
pub fn ids(rows: &[ArchivedSample]) -> (Vec<u32>, Vec<u32>) {
    let (mut consumers, mut symbols) = (Vec::new(), Vec::new());
    for r in rows {
        consumers.push(r.sample.consumer);
        symbols.push(r.sample.subject.0);
        symbols.extend(r.sample.labels.iter().map(|l| l.0));
    }
    for v in [&mut consumers, &mut symbols] {
        v.sort_unstable();
        v.dedup();
    }
    symbols.retain(|&s| !Sym(s).is_none());
    (consumers, symbols)
}

fn source_name(s: SampleSource) -> &'static str {
    match s {
        SampleSource::Observed => "observed",
        SampleSource::AckOnly => "ack_only",
        SampleSource::ServerMetric => "server_metric",
        SampleSource::Reordered => "reordered",
    }
}

/// A trace id's 32 lower-case hex digits, as it prints.
fn hex(id: &TraceId) -> [u8; 32] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in id.0.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    out
}

/// The table's columns as they fill, one value per row.
#[derive(Default)]
pub struct Columns<'a> {
    acked_ns: Vec<i64>,
    delivered_ns: Vec<Option<i64>>,
    stored_ns: Vec<Option<i64>>,
    stream: Vec<&'a str>,
    consumer: Vec<&'a str>,
    domain: Vec<Option<&'a str>>,
    subject: Vec<Option<&'a str>>,
    labels: Vec<Vec<Option<&'a str>>>,
    /// Trace ids as their 32 hex digits.
    trace_id: Vec<Option<[u8; 32]>>,
    ack_latency_ns: Vec<Option<i64>>,
    e2e_latency_ns: Vec<Option<i64>>,
    deliveries: Vec<i64>,
    kind: Vec<&'static str>,
    source: Vec<&'static str>,
    ack_sync: Vec<bool>,
    phase_ns: Vec<Option<i64>>,
    stream_seq: Vec<i64>,
    consumer_seq: Vec<i64>,
    pending: Vec<i64>,
}

impl<'a> Columns<'a> {
    pub fn new(labels: usize) -> Self {
        Self {
            labels: vec![Vec::new(); labels],
            ..Self::default()
        }
    }

    pub fn len(&self) -> usize {
        self.acked_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acked_ns.is_empty()
    }

    /// The first and last ack instants of the rows.
    pub fn span(&self) -> (i64, i64) {
        let min = self.acked_ns.iter().copied().min().unwrap_or(0);
        let max = self.acked_ns.iter().copied().max().unwrap_or(0);
        (min, max)
    }

    /// Adds `r`, naming its ids with `names` (a consumer it does not name is `?`).
    pub fn push(&mut self, r: &ArchivedSample, names: &'a Names) {
        let s = &r.sample;
        let i64_of = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let symbol = |sym: Sym| names.symbols.get(&sym.0).map(String::as_str);
        let (stream, consumer, domain) = names
            .consumers
            .get(&s.consumer)
            .map_or(("?", "?", None), |(s, c, d)| {
                (s.as_str(), c.as_str(), d.as_deref())
            });
        self.acked_ns.push(s.acked_ns);
        self.delivered_ns.push(s.delivered_ns);
        self.stored_ns.push(s.stored_ns);
        self.stream.push(stream);
        self.consumer.push(consumer);
        self.domain.push(domain);
        self.subject.push(symbol(s.subject));
        for (column, label) in self.labels.iter_mut().zip(s.labels) {
            column.push(symbol(label));
        }
        self.trace_id.push(s.trace_id.map(|t| hex(&t)));
        self.ack_latency_ns.push(s.ack_latency_ns.map(i64_of));
        self.e2e_latency_ns.push(s.e2e_latency_ns.map(i64_of));
        self.deliveries.push(i64::from(s.deliveries));
        self.kind.push(s.kind.as_str());
        self.source.push(source_name(s.source));
        self.ack_sync.push(s.ack_sync);
        self.phase_ns.push(r.phase_ns.map(i64_of));
        self.stream_seq.push(i64_of(s.stream_seq));
        self.consumer_seq.push(i64_of(s.consumer_seq));
        self.pending.push(i64_of(s.pending));
    }

    /// The rows as a data frame; label columns are `label_<name>` for each of `label_names`.
    pub fn frame(self, label_names: &[String]) -> PolarsResult<DataFrame> {
        let height = self.len();
        let mut columns = vec![
            Column::new("acked_ns".into(), self.acked_ns),
            Column::new("delivered_ns".into(), self.delivered_ns),
            Column::new("stored_ns".into(), self.stored_ns),
            Column::new("stream".into(), self.stream),
            Column::new("consumer".into(), self.consumer),
            Column::new("domain".into(), self.domain),
            Column::new("subject".into(), self.subject),
        ];
        for (name, values) in label_names.iter().zip(self.labels) {
            columns.push(Column::new(format!("label_{name}").into(), values));
        }
        columns.extend([
            Column::new(
                "trace_id".into(),
                self.trace_id
                    .iter()
                    .map(|t| t.as_ref().and_then(|h| std::str::from_utf8(h).ok()))
                    .collect::<Vec<Option<&str>>>(),
            ),
            Column::new("ack_latency_ns".into(), self.ack_latency_ns),
            Column::new("e2e_latency_ns".into(), self.e2e_latency_ns),
            Column::new("deliveries".into(), self.deliveries),
            Column::new("kind".into(), self.kind),
            Column::new("source".into(), self.source),
            Column::new("ack_sync".into(), self.ack_sync),
            Column::new("phase_ns".into(), self.phase_ns),
            Column::new("stream_seq".into(), self.stream_seq),
            Column::new("consumer_seq".into(), self.consumer_seq),
            Column::new("pending".into(), self.pending),
        ]);
        DataFrame::new(height, columns)
    }
}

/// The type each column of the table has (`label_<name>` columns are strings).
fn column_type(name: &str) -> Option<DataType> {
    Some(match name {
        "acked_ns" | "delivered_ns" | "stored_ns" | "ack_latency_ns" | "e2e_latency_ns"
        | "deliveries" | "phase_ns" | "stream_seq" | "consumer_seq" | "pending" => DataType::Int64,
        "stream" | "consumer" | "domain" | "subject" | "trace_id" | "kind" | "source" => {
            DataType::String
        }
        "ack_sync" => DataType::Boolean,
        label if label.starts_with("label_") => DataType::String,
        _ => return None,
    })
}

/// Whether `df` is a segment of this table: an `acked_ns`, and only the table's columns, of
/// their types.
fn is_segment(df: &DataFrame) -> bool {
    df.column("acked_ns").is_ok()
        && df
            .columns()
            .iter()
            .all(|c| column_type(c.name()).is_some_and(|t| &t == c.dtype()))
}

/// Every sample archived in `dir` acked in `[from_ns, to_ns)`, oldest first, with the segments
/// that could not be read (or are not this table's). Segments of other label sets are stacked
/// by column name, missing columns null.
pub fn read(dir: &Path, from_ns: i64, to_ns: i64) -> (DataFrame, Vec<PathBuf>) {
    let mut frames = Vec::new();
    let mut unreadable = Vec::new();
    for segment in files::segments(dir, Table::Samples) {
        if segment.last_ns < from_ns || segment.first_ns >= to_ns {
            continue;
        }
        match files::read_segment(&segment.path) {
            Ok(df) if is_segment(&df) => frames.push(df),
            Ok(_) => {
                tracing::warn!(path = %segment.path.display(), "not an archive segment: skipped");
                unreadable.push(segment.path);
            }
            Err(e) => {
                tracing::warn!(path = %segment.path.display(), error = %e, "unreadable archive segment skipped");
                unreadable.push(segment.path);
            }
        }
    }
    let all = stack(frames);
    let in_range = all
        .column("acked_ns")
        .and_then(|c| c.i64().cloned())
        .map(|acked| {
            acked
                .iter()
                .map(|t| t.is_some_and(|t| t >= from_ns && t < to_ns))
                .collect::<BooleanChunked>()
        });
    let all = match in_range {
        Ok(mask) => all.filter(&mask).unwrap_or(all),
        Err(_) => all,
    };
    let all = all
        .sort(["acked_ns"], SortMultipleOptions::default())
        .unwrap_or(all);
    (all, unreadable)
}

/// Segments stacked by column name: a column a segment lacks is null in its rows. Every
/// column has its one type ([`is_segment`]), so stacking does not fail.
fn stack(frames: Vec<DataFrame>) -> DataFrame {
    let mut names: Vec<(PlSmallStr, DataType)> = Vec::new();
    for df in &frames {
        for c in df.columns() {
            if !names.iter().any(|(n, _)| n == c.name()) {
                names.push((c.name().clone(), c.dtype().clone()));
            }
        }
    }
    let mut out = DataFrame::empty();
    for df in frames {
        let height = df.height();
        let columns: Vec<Column> = names
            .iter()
            .map(|(name, dtype)| {
                df.column(name)
                    .cloned()
                    .unwrap_or_else(|_| Column::full_null(name.clone(), height, dtype))
            })
            .collect();
        let Ok(df) = DataFrame::new(height, columns) else {
            continue;
        };
        if out.width() == 0 {
            out = df;
        } else if let Err(e) = out.vstack_mut(&df) {
            tracing::warn!(error = %e, "archive segments do not stack");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_written_as_they_print() {
        let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(std::str::from_utf8(&hex(&id)).unwrap(), id.to_string());
    }
}
