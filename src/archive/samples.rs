//! The `samples` table: one row per joined sample with every field the collector knew, and
//! the frame phase of its ack in its consumer's own clock.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rustc_hash::FxHashMap;

use super::files::{self, Table};
use crate::model::{
    AckKind, ConsumerId, MAX_LABELS, NO_LABELS, Sample, SampleSource, Sym, TraceId,
};

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

/// One archived sample read back: its fields, and the names its ids had.
#[derive(Debug, Clone)]
pub struct Restored<'a> {
    /// The sample, with no consumer id, subject or labels yet: they are named below.
    pub sample: Sample,
    pub stream: &'a str,
    pub consumer: &'a str,
    pub domain: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// The values of the labels asked for, in their order.
    pub labels: [Option<&'a str>; MAX_LABELS],
}

/// The rows of `df` (a read of this table) as samples, the labels named `label_names` in
/// their slots; a row without its instant, names or a known kind is skipped (counted in the
/// second value).
pub fn restored<'a>(df: &'a DataFrame, label_names: &[String]) -> (Vec<Restored<'a>>, usize) {
    let height = df.height();
    let ints = |name: &str| -> Vec<Option<i64>> {
        match df.column(name).ok().and_then(|c| c.i64().ok()) {
            Some(ca) => ca.iter().collect(),
            None => vec![None; height],
        }
    };
    let texts = |name: &str| -> Vec<Option<&'a str>> {
        match df.column(name).ok().and_then(|c| c.str().ok()) {
            Some(ca) => ca.iter().collect(),
            None => vec![None; height],
        }
    };
    let (acked, delivered, stored) = (ints("acked_ns"), ints("delivered_ns"), ints("stored_ns"));
    let (ack_latency, e2e_latency) = (ints("ack_latency_ns"), ints("e2e_latency_ns"));
    let (deliveries, stream_seq, consumer_seq, pending) = (
        ints("deliveries"),
        ints("stream_seq"),
        ints("consumer_seq"),
        ints("pending"),
    );
    let (stream, consumer, domain, subject) = (
        texts("stream"),
        texts("consumer"),
        texts("domain"),
        texts("subject"),
    );
    let (trace_id, kind, source) = (texts("trace_id"), texts("kind"), texts("source"));
    let labels: Vec<Vec<Option<&str>>> = label_names
        .iter()
        .take(MAX_LABELS)
        .map(|n| texts(&format!("label_{n}")))
        .collect();
    let ack_sync: Vec<Option<bool>> = match df.column("ack_sync").ok().and_then(|c| c.bool().ok()) {
        Some(ca) => ca.iter().collect(),
        None => vec![None; height],
    };
    let unsigned = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    let mut out = Vec::with_capacity(height);
    for i in 0..height {
        let kind = kind[i].and_then(|k| AckKind::ALL.into_iter().find(|a| a.as_str() == k));
        let (Some(acked_ns), Some(stream), Some(consumer), Some(kind)) =
            (acked[i], stream[i], consumer[i], kind)
        else {
            continue;
        };
        let source = source[i]
            .and_then(|s| SOURCES.into_iter().find(|x| source_name(*x) == s))
            .unwrap_or(SampleSource::Observed);
        let mut slots = [None; MAX_LABELS];
        for (slot, column) in slots.iter_mut().zip(&labels) {
            *slot = column[i];
        }
        out.push(Restored {
            sample: Sample {
                consumer: 0,
                stream_seq: unsigned(stream_seq[i]).unwrap_or(0),
                consumer_seq: unsigned(consumer_seq[i]).unwrap_or(0),
                deliveries: deliveries[i]
                    .and_then(|d| u32::try_from(d).ok())
                    .unwrap_or(1),
                pending: unsigned(pending[i]).unwrap_or(0),
                stored_ns: stored[i],
                delivered_ns: delivered[i],
                acked_ns,
                kind,
                ack_latency_ns: unsigned(ack_latency[i]),
                e2e_latency_ns: unsigned(e2e_latency[i]),
                trace_id: trace_id[i].and_then(|t| t.parse().ok()),
                parent_span: None,
                subject: Sym::NONE,
                labels: NO_LABELS,
                source,
                ack_sync: ack_sync[i].unwrap_or(false),
            },
            stream,
            consumer,
            domain: domain[i],
            subject: subject[i],
            labels: slots,
        });
    }
    let skipped = height - out.len();
    (out, skipped)
}

const SOURCES: [SampleSource; 4] = [
    SampleSource::Observed,
    SampleSource::AckOnly,
    SampleSource::ServerMetric,
    SampleSource::Reordered,
];

/// The table's columns, labels aside (`label_<name>` after `subject`).
pub const COLUMNS: &[&str] = &[
    "acked_ns",
    "delivered_ns",
    "stored_ns",
    "stream",
    "consumer",
    "domain",
    "subject",
    "trace_id",
    "ack_latency_ns",
    "e2e_latency_ns",
    "deliveries",
    "kind",
    "source",
    "ack_sync",
    "phase_ns",
    "stream_seq",
    "consumer_seq",
    "pending",
];

/// The type each column of the table has (`label_<name>` columns are strings).
pub fn column_type(name: &str) -> Option<DataType> {
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

/// Whether `df` is a segment of this table.
fn is_segment(df: &DataFrame) -> bool {
    Table::Samples.accepts(df.schema())
}

/// Every sample archived in `dir` acked in `[from_ns, to_ns)`, oldest first, with the segments
/// that could not be read (or are not this table's). Segments of other label sets are stacked
/// by column name, missing columns null.
pub fn read(dir: &Path, from_ns: i64, to_ns: i64) -> (DataFrame, Vec<PathBuf>) {
    read_latest(dir, from_ns, to_ns, usize::MAX)
}

/// The latest `limit` samples archived in `dir` acked in `[from_ns, to_ns)`, oldest first, as
/// [`read`]: segments are read newest first until they hold `limit` rows, so that memory
/// follows `limit`, not the range.
pub fn read_latest(
    dir: &Path,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> (DataFrame, Vec<PathBuf>) {
    let mut frames = Vec::new();
    let mut unreadable = Vec::new();
    let mut segments: Vec<_> = files::segments(dir, Table::Samples)
        .into_iter()
        .filter(|s| s.last_ns >= from_ns && s.first_ns < to_ns)
        .collect();
    segments.sort_by_key(|s| std::cmp::Reverse(s.last_ns));
    let mut rows = 0usize;
    for segment in segments {
        // Segments hold consecutive flushes, so the newest ones hold the latest rows.
        if rows >= limit {
            break;
        }
        if let Some(df) = read_one(&segment.path, &mut unreadable) {
            rows = rows.saturating_add(df.height());
            frames.push(df);
        }
    }
    // Segments were read newest first; most hold one flush in order. Every copy of what may
    // be a million rows is avoided when it would change nothing.
    frames.reverse();
    let all = acked_in(stack(frames), from_ns, to_ns);
    let all = if sorted_by_ack(&all) {
        all
    } else {
        all.sort(["acked_ns"], SortMultipleOptions::default())
            .unwrap_or(all)
    };
    let all = if all.height() > limit {
        all.tail(Some(limit))
    } else {
        all
    };
    (all, unreadable)
}

/// The segments holding the latest `limit` samples acked in `[from_ns, to_ns)`, oldest first,
/// and how many rows they hold (from their footers; a segment the range's edge cuts counts the
/// share of its span inside, so that one mostly after `to` does not stand for the range's
/// rows); a segment whose footer cannot be read is taken and skipped when it is read.
pub fn latest_segments(
    dir: &Path,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> (Vec<PathBuf>, usize) {
    let mut segments: Vec<_> = files::segments(dir, Table::Samples)
        .into_iter()
        .filter(|s| s.last_ns >= from_ns && s.first_ns < to_ns)
        .collect();
    segments.sort_by_key(|s| std::cmp::Reverse(s.last_ns));
    let (mut chosen, mut rows) = (Vec::new(), 0usize);
    for s in segments {
        if rows >= limit {
            break;
        }
        let held = files::rows(&s.path).unwrap_or(0);
        let span = (s.last_ns as i128 - s.first_ns as i128 + 1).max(1);
        let inside =
            (s.last_ns.min(to_ns.saturating_sub(1)) as i128 - s.first_ns.max(from_ns) as i128 + 1)
                .clamp(0, span);
        rows = rows.saturating_add((held as i128 * inside / span) as usize);
        chosen.push(s.path);
    }
    chosen.reverse();
    (chosen, rows)
}

/// Calls `each` with the rows acked in `[from_ns, to_ns)` of each of `paths` in turn (a
/// segment at a time in memory); returns the segments that could not be read or are not this
/// table's.
pub fn for_each_segment(
    paths: &[PathBuf],
    from_ns: i64,
    to_ns: i64,
    mut each: impl FnMut(DataFrame),
) -> Vec<PathBuf> {
    let mut unreadable = Vec::new();
    for path in paths {
        if let Some(df) = read_one(path, &mut unreadable) {
            let df = acked_in(df, from_ns, to_ns);
            let df = if sorted_by_ack(&df) {
                df
            } else {
                df.sort(["acked_ns"], SortMultipleOptions::default())
                    .unwrap_or(df)
            };
            each(df);
        }
    }
    unreadable
}

/// The segment at `path` when it is one of this table's; else `None`, warned of and added to
/// `unreadable`.
fn read_one(path: &Path, unreadable: &mut Vec<PathBuf>) -> Option<DataFrame> {
    match files::read_segment(path) {
        Ok(df) if is_segment(&df) => return Some(df),
        Ok(_) => tracing::warn!(path = %path.display(), "not an archive segment: skipped"),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable archive segment skipped")
        }
    }
    unreadable.push(path.to_owned());
    None
}

/// The rows of `df` (of this table) acked in `[from_ns, to_ns)`; `df` as it is when it has no
/// `acked_ns` column.
pub fn acked_in(df: DataFrame, from_ns: i64, to_ns: i64) -> DataFrame {
    let Ok(acked) = df.column("acked_ns").and_then(|c| c.i64().cloned()) else {
        return df;
    };
    let all_in = acked.null_count() == 0
        && acked.min().is_some_and(|t| t >= from_ns)
        && acked.max().is_some_and(|t| t < to_ns);
    if all_in {
        return df;
    }
    let mask: BooleanChunked = acked
        .iter()
        .map(|t| t.is_some_and(|t| t >= from_ns && t < to_ns))
        .collect();
    df.filter(&mask).unwrap_or(df)
}

/// Whether the rows of `df` are in ack order.
fn sorted_by_ack(df: &DataFrame) -> bool {
    let Ok(acked) = df.column("acked_ns").and_then(|c| c.i64().cloned()) else {
        return true;
    };
    let mut last = i64::MIN;
    acked.iter().all(|t| {
        let t = t.unwrap_or(i64::MIN);
        let in_order = t >= last;
        last = t;
        in_order
    })
}

/// Segments stacked by column name: a column a segment lacks is null in its rows. Every
/// column has its one type ([`is_segment`]), so stacking does not fail.
pub fn stack(frames: Vec<DataFrame>) -> DataFrame {
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
    fn rows_read_back_are_the_samples_written() {
        let mut names = Names::default();
        names
            .consumers
            .insert(3, ("GAME".into(), "srv-1".into(), Some("hub".into())));
        names.symbols.insert(7, "game.srv-1".into());
        names.symbols.insert(9, "eu-1".into());
        let mut labels = NO_LABELS;
        labels[1] = Sym(9);
        let written = [
            Sample {
                consumer: 3,
                stream_seq: 41,
                consumer_seq: 40,
                deliveries: 2,
                pending: 5,
                stored_ns: Some(1_000),
                delivered_ns: Some(2_000),
                acked_ns: 9_000,
                kind: AckKind::Nak,
                ack_latency_ns: Some(7_000),
                e2e_latency_ns: Some(8_000),
                trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap()),
                parent_span: None,
                subject: Sym(7),
                labels,
                source: SampleSource::Reordered,
                ack_sync: true,
            },
            Sample {
                consumer: 3,
                stream_seq: 42,
                consumer_seq: 41,
                deliveries: 1,
                pending: 0,
                stored_ns: None,
                delivered_ns: None,
                acked_ns: 10_000,
                kind: AckKind::Progress,
                ack_latency_ns: None,
                e2e_latency_ns: None,
                trace_id: None,
                parent_span: None,
                subject: Sym::NONE,
                labels: NO_LABELS,
                source: SampleSource::AckOnly,
                ack_sync: false,
            },
        ];
        let label_names = vec!["server".to_string(), "region".to_string()];
        let mut columns = Columns::new(label_names.len());
        for s in &written {
            columns.push(
                &ArchivedSample {
                    sample: s.clone(),
                    phase_ns: Some(3),
                },
                &names,
            );
        }
        let df = columns.frame(&label_names).unwrap();
        // Read back with the labels in another order: each lands in its slot by name.
        let (rows, skipped) = restored(&df, &["region".to_string(), "server".to_string()]);
        assert_eq!((rows.len(), skipped), (2, 0));
        for (row, s) in rows.iter().zip(&written) {
            assert_eq!(
                (row.stream, row.consumer, row.domain),
                ("GAME", "srv-1", Some("hub"))
            );
            let mut expected = s.clone();
            expected.consumer = 0;
            expected.subject = Sym::NONE;
            expected.labels = NO_LABELS;
            assert_eq!(row.sample, expected);
        }
        assert_eq!(rows[0].subject, Some("game.srv-1"));
        assert_eq!(rows[0].labels, [Some("eu-1"), None, None, None]);
        assert_eq!(rows[1].subject, None);
        // A row with a kind this version does not know is skipped and counted.
        let mut df = df;
        df.with_column(Column::new("kind".into(), ["ack", "later"]))
            .unwrap();
        let (rows, skipped) = restored(&df, &label_names);
        assert_eq!((rows.len(), skipped), (1, 1));
    }

    /// The `acked_ns` column of `df`.
    fn acked_of(df: &DataFrame) -> Vec<i64> {
        df.column("acked_ns")
            .unwrap()
            .i64()
            .unwrap()
            .no_null_iter()
            .collect()
    }

    /// A segment of ten acks in `dir`, 1 ns apart from `first`.
    fn ten_acks(dir: &Path, first: i64) {
        let acked: Vec<i64> = (0..10).map(|i| first + i).collect();
        let span = (acked[0], acked[9]);
        let mut df = DataFrame::new(10, vec![Column::new("acked_ns".into(), acked)]).unwrap();
        files::write_segment(dir, Table::Samples, &span, &mut df).unwrap();
    }

    #[test]
    fn the_latest_rows_come_from_the_newest_segments_alone() {
        const T: i64 = 1_795_910_400_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        // Five segments of ten acks each, a second apart; the last one stamped in the future.
        for k in 0..5i64 {
            ten_acks(dir.path(), T + k * 1_000_000_000);
        }
        let now = T + 4_000_000_000;
        let (df, unreadable) = read_latest(dir.path(), T, now, 15);
        assert!(unreadable.is_empty());
        let acked = acked_of(&df);
        // The fifteen latest before `now`, oldest first: half the third second and the fourth.
        let expected: Vec<i64> = (0..10)
            .map(|i| T + 2_000_000_000 + i)
            .skip(5)
            .chain((0..10).map(|i| T + 3_000_000_000 + i))
            .collect();
        assert_eq!(acked, expected);
        // The oldest segments were not read: one torn there changes nothing.
        let oldest = files::segments(dir.path(), Table::Samples)
            .into_iter()
            .min_by_key(|s| s.first_ns)
            .unwrap();
        std::fs::write(&oldest.path, b"torn").unwrap();
        let (again, unreadable) = read_latest(dir.path(), T, now, 15);
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(again.height(), 15);
        // Without a limit every readable row of the range is read, the torn segment named.
        let (all, unreadable) = read(dir.path(), T, now);
        assert_eq!((all.height(), unreadable), (30, vec![oldest.path]));
    }

    #[test]
    fn a_segment_mostly_after_the_range_does_not_stand_for_its_rows() {
        const T: i64 = 1_795_910_400_000_000_000;
        let dir = tempfile::tempdir().unwrap();
        // Three segments of ten acks, 1 ns apart: [T, T+9], [T+10, T+19], [T+20, T+29].
        for k in 0..3i64 {
            ten_acks(dir.path(), T + k * 10);
        }
        // Up to T+21: the newest segment holds 1 row of the range, so 15 rows need all three.
        let (paths, rows) = latest_segments(dir.path(), T, T + 21, 15);
        assert_eq!((paths.len(), rows), (3, 21));
        let mut read = 0;
        let bad = for_each_segment(&paths, T, T + 21, |df| read += df.height());
        assert!(bad.is_empty());
        assert_eq!(read, 21);
        // A range the newest two cover needs only them.
        let (paths, _) = latest_segments(dir.path(), T + 10, T + 30, 15);
        assert_eq!(paths.len(), 2);
    }

    #[test]
    fn a_window_held_in_part_is_left_out() {
        let acked: Vec<i64> = vec![1_500, 1_900, 2_000, 2_700, 3_100];
        let df = DataFrame::new(5, vec![Column::new("acked_ns".into(), acked)]).unwrap();
        let kept = crate::archive::from_next_window(df, 1_000);
        assert_eq!(acked_of(&kept), vec![2_000, 2_700, 3_100]);
    }

    #[test]
    fn trace_ids_are_written_as_they_print() {
        let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(std::str::from_utf8(&hex(&id)).unwrap(), id.to_string());
    }
}
