//! SQL over the archive: the tables of a data directory (`samples`, `windows`, `spikes`,
//! `advisories`, `consumer_state`), as polars' SQL context sees them, and the answer written as a table, CSV, JSON or Parquet.
//!
//! Each table is a lazy scan of its readable segments in the range, so a query reads only the
//! columns it names. A segment that is not the table's (foreign, or torn by a disk fault) is
//! left out and named, never fatal: its footer is checked before the scan, and if the scan
//! still fails on one, every segment is read on its own and the failing ones skipped.
//!
//! What a query sees is the table with names for people added ([`samples_view`]): `time`
//! (a UTC timestamp) beside `acked_ns`, latencies in microseconds beside nanoseconds, and
//! each label under its bare name (`server`) beside `label_server`.

use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use polars::sql::SQLContext;

use super::files::{self, Segment, Table};

/// A query's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Sql(String),
    #[error("cannot write the answer: {0}")]
    Write(String),
}

/// How the answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for a terminal (all rows).
    Table,
    Csv,
    /// One JSON array of objects.
    Json,
    Parquet,
}

/// A query's answer, and the segments left out because they could not be read.
#[derive(Debug)]
pub struct Answer {
    pub frame: DataFrame,
    pub skipped: Vec<PathBuf>,
}

/// The archive's tables in `dir`, rows in `[from_ns, to_ns)`.
pub struct Tables {
    dir: PathBuf,
    range: (i64, i64),
    /// Label names whose `label_<name>` columns the samples table has even with no segment.
    labels: Vec<String>,
    context: SQLContext,
    /// Whether every segment was read whole before it was registered.
    deep: bool,
    pub skipped: Vec<PathBuf>,
}

impl Tables {
    /// Registers every table of `dir` (each empty when the archive has none yet) for rows in
    /// `[from_ns, to_ns)`. Segments are checked by their footers only.
    pub fn open(dir: &Path, from_ns: i64, to_ns: i64) -> Tables {
        Self::with_labels(dir, from_ns, to_ns, &[])
    }

    /// [`Self::open`], the samples table having `label_<name>` for each of `labels` (the
    /// configured ones) even where no segment does.
    pub fn with_labels(dir: &Path, from_ns: i64, to_ns: i64, labels: &[String]) -> Tables {
        let mut tables = Tables {
            dir: dir.to_owned(),
            range: (from_ns, to_ns),
            labels: labels.to_vec(),
            context: SQLContext::new(),
            deep: false,
            skipped: Vec::new(),
        };
        tables.register();
        tables
    }

    fn register(&mut self) {
        let (from_ns, to_ns) = self.range;
        self.context = SQLContext::new();
        self.skipped.clear();
        for table in Table::ALL {
            let labels: &[String] = match table {
                Table::Samples => &self.labels,
                _ => &[],
            };
            let (frame, bad) = scan(&self.dir, table, (from_ns, to_ns), labels, self.deep);
            self.skipped.extend(bad);
            let view = match table {
                Table::Samples => samples_view(frame),
                _ => times_view(frame, table),
            };
            self.context.register(table.dir_name(), view);
        }
    }

    /// Runs one SQL statement. When it fails, every segment is read whole and the query run
    /// again without those that fail to read: a page torn behind a sound footer is skipped,
    /// not fatal.
    pub fn run(&mut self, sql: &str) -> Result<DataFrame, Error> {
        // A statement polars cannot plan is the statement's fault: no segment is read again.
        let mut plan = self
            .context
            .execute(sql)
            .map_err(|e| Error::Sql(e.to_string()))?;
        plan.collect_schema()
            .map_err(|e| Error::Sql(e.to_string()))?;
        let first = collect(plan).map_err(Error::Sql);
        if first.is_ok() || self.deep {
            return first;
        }
        let before = self.skipped.len();
        self.deep = true;
        self.register();
        if self.skipped.len() == before {
            // Every segment reads whole: the statement itself failed.
            return first;
        }
        self.execute(sql)
    }

    fn execute(&mut self, sql: &str) -> Result<DataFrame, Error> {
        let lazy = self
            .context
            .execute(sql)
            .map_err(|e| Error::Sql(e.to_string()))?;
        collect(lazy).map_err(Error::Sql)
    }
}

/// Runs `sql` over the archive in `dir`, rows in `[from_ns, to_ns)`.
pub fn run(dir: &Path, sql: &str, from_ns: i64, to_ns: i64) -> Result<Answer, Error> {
    run_with_labels(dir, sql, (from_ns, to_ns), &[])
}

/// [`run`], the samples table having the columns of `labels` even where no segment does.
pub fn run_with_labels(
    dir: &Path,
    sql: &str,
    (from_ns, to_ns): (i64, i64),
    labels: &[String],
) -> Result<Answer, Error> {
    let mut tables = Tables::with_labels(dir, from_ns, to_ns, labels);
    let frame = tables.run(sql)?;
    Ok(Answer {
        frame,
        skipped: tables.skipped,
    })
}

/// Collects `lazy`; a panic in polars (a corrupt file it did not expect) is an error.
fn collect(lazy: LazyFrame) -> Result<DataFrame, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lazy.collect())) {
        Ok(Ok(df)) => Ok(df),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the query failed inside polars".to_string()),
    }
}

/// The schema of the segment at `path` from its footer; `None` when it cannot be read.
fn footer_schema(path: &Path) -> Option<Schema> {
    let file = std::fs::File::open(path).ok()?;
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).schema()
    }));
    let arrow = read.ok()?.ok()?;
    Some(Schema::from_arrow_schema(&arrow))
}

/// A lazy scan of `table`'s segments overlapping `[from_ns, to_ns)` whose footers are the
/// table's (and, when `deep`, that read whole), filtered to the range, with the segments left
/// out. Columns a segment lacks (another label set) are null.
fn scan(
    dir: &Path,
    table: Table,
    (from_ns, to_ns): (i64, i64),
    labels: &[String],
    deep: bool,
) -> (LazyFrame, Vec<PathBuf>) {
    let segments: Vec<Segment> = files::segments(dir, table)
        .into_iter()
        .filter(|s| s.last_ns >= from_ns && s.first_ns < to_ns)
        .collect();
    // The table's own columns first, so that a view over them never misses one.
    let mut schema = table.schema();
    for name in labels {
        schema.with_column(format!("label_{name}").into(), DataType::String);
    }
    let mut good = Vec::new();
    let mut skipped = Vec::new();
    for s in segments {
        let sound = footer_schema(&s.path)
            .filter(|sch| table.accepts(sch))
            .filter(|_| !deep || files::read_segment(&s.path).is_ok());
        match sound {
            Some(sch) => {
                for (name, dtype) in sch.iter() {
                    if schema.get(name).is_none() {
                        schema.with_column(name.clone(), dtype.clone());
                    }
                }
                good.push(s.path);
            }
            None => {
                tracing::warn!(path = %s.path.display(), "not a readable archive segment: skipped");
                skipped.push(s.path);
            }
        }
    }
    let empty = || DataFrame::empty_with_schema(&schema).lazy();
    if good.is_empty() {
        return (empty(), skipped);
    }
    let time = table.time_column();
    let in_range = col(time).gt_eq(lit(from_ns)).and(col(time).lt(lit(to_ns)));
    match scan_paths(&good, &schema) {
        Ok(lazy) => (lazy.filter(in_range), skipped),
        Err(e) => {
            tracing::warn!(error = %e, table = table.dir_name(), "archive segments cannot be scanned");
            skipped.extend(good);
            (empty(), skipped)
        }
    }
}

/// One lazy scan of `paths`, every column of `schema` (null where a file lacks it).
fn scan_paths(paths: &[PathBuf], schema: &Schema) -> PolarsResult<LazyFrame> {
    let sources: Vec<PlRefPath> = paths
        .iter()
        .map(|p| PlRefPath::new(p.to_string_lossy().as_ref()))
        .collect();
    let args = ScanArgsParquet {
        schema: Some(Arc::new(schema.clone())),
        allow_missing_columns: true,
        glob: false,
        hive_options: HiveOptions::new_disabled(),
        ..ScanArgsParquet::default()
    };
    LazyFrame::scan_parquet_files(sources.into_iter().collect(), args)
}

/// The `samples` table as queries see it: the archived columns, and `time`, `ack_latency_us`,
/// `e2e_latency_us`, `phase_us` and each label under its bare name when no column has it.
pub fn samples_view(samples: LazyFrame) -> LazyFrame {
    let mut frame = samples;
    let names: Vec<String> = frame
        .collect_schema()
        .map(|s| s.iter_names().map(|n| n.to_string()).collect())
        .unwrap_or_default();
    let us = |ns: &str, name: &str| (col(ns).cast(DataType::Float64) / lit(1_000.0)).alias(name);
    let mut added = vec![
        col("acked_ns")
            .cast(DataType::Datetime(TimeUnit::Nanoseconds, None))
            .alias("time"),
        us("ack_latency_ns", "ack_latency_us"),
        us("e2e_latency_ns", "e2e_latency_us"),
        us("phase_ns", "phase_us"),
    ];
    for name in &names {
        if let Some(bare) = name.strip_prefix("label_")
            && !names.iter().any(|n| n == bare)
            && !["time", "ack_latency_us", "e2e_latency_us", "phase_us"].contains(&bare)
        {
            added.push(col(name.as_str()).alias(bare));
        }
    }
    frame.with_columns(added)
}

/// Timestamps beside the instants of `table`: `start` and `end` of windows and spikes, `time`
/// of advisories and consumer info polls.
fn times_view(frame: LazyFrame, table: Table) -> LazyFrame {
    let ts = |ns: &str, name: &str| {
        col(ns)
            .cast(DataType::Datetime(TimeUnit::Nanoseconds, None))
            .alias(name)
    };
    match table {
        Table::Windows | Table::Spikes | Table::Incidents => {
            frame.with_columns([ts("start_ns", "start"), ts("end_ns", "end")])
        }
        _ => frame.with_columns([ts(table.time_column(), "time")]),
    }
}

/// Writes `df` to `out` as `format`.
pub fn write(df: &mut DataFrame, format: Format, out: &mut dyn Write) -> Result<(), Error> {
    let err = |e: PolarsError| Error::Write(e.to_string());
    match format {
        Format::Table => {
            let shown = format_table(df, TABLE_ROWS);
            out.write_all(shown.as_bytes())
                .map_err(|e| Error::Write(e.to_string()))
        }
        Format::Csv => CsvWriter::new(out).finish(df).map_err(err),
        Format::Parquet => ParquetWriter::new(out)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(df)
            .map(|_| ())
            .map_err(err),
        Format::Json => {
            let rows = json_rows(df);
            serde_json::to_writer(&mut *out, &rows).map_err(|e| Error::Write(e.to_string()))?;
            out.write_all(b"\n")
                .map_err(|e| Error::Write(e.to_string()))
        }
    }
}

/// Most rows `--format table` prints: a terminal is for reading, the other formats for all.
pub const TABLE_ROWS: usize = 10_000;

/// The first `most` rows of `df`, every column, aligned, for a terminal; a last line says how
/// many more there are.
fn format_table(df: &DataFrame, most: usize) -> String {
    let names: Vec<String> = df.columns().iter().map(|c| c.name().to_string()).collect();
    let mut cells: Vec<Vec<String>> = vec![names];
    for i in 0..df.height().min(most) {
        cells.push(
            df.columns()
                .iter()
                .map(|c| match c.get(i) {
                    Ok(AnyValue::Null) | Err(_) => String::new(),
                    Ok(AnyValue::String(s)) => s.to_string(),
                    Ok(AnyValue::StringOwned(s)) => s.to_string(),
                    Ok(v) => v.to_string(),
                })
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..df.width())
        .map(|j| {
            cells
                .iter()
                .map(|r| r[j].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        text.push_str(line.join("  ").trim_end());
        text.push('\n');
    }
    if df.height() > most {
        text.push_str(&format!(
            "… {} more rows (--format csv, json or parquet writes them all)\n",
            df.height() - most
        ));
    }
    text
}

/// `df` as JSON objects, one per row: numbers as numbers, timestamps as RFC 3339, nulls null.
pub fn json_rows(df: &DataFrame) -> Vec<serde_json::Map<String, serde_json::Value>> {
    use serde_json::Value;
    (0..df.height())
        .map(|i| {
            df.columns()
                .iter()
                .map(|c| {
                    let v = match c.get(i) {
                        Ok(AnyValue::Null) | Err(_) => Value::Null,
                        Ok(AnyValue::Boolean(b)) => Value::Bool(b),
                        Ok(AnyValue::String(s)) => Value::String(s.to_string()),
                        Ok(AnyValue::StringOwned(s)) => Value::String(s.to_string()),
                        Ok(AnyValue::Datetime(ns, TimeUnit::Nanoseconds, _))
                        | Ok(AnyValue::DatetimeOwned(ns, TimeUnit::Nanoseconds, _)) => {
                            Value::String(crate::model::rfc3339(ns))
                        }
                        Ok(v) if v.is_signed_integer() => {
                            v.extract::<i64>().map_or(Value::Null, Value::from)
                        }
                        Ok(v) if v.is_unsigned_integer() => {
                            v.extract::<u64>().map_or(Value::Null, Value::from)
                        }
                        Ok(v) if v.is_float() => v
                            .extract::<f64>()
                            .and_then(serde_json::Number::from_f64)
                            .map_or(Value::Null, Value::Number),
                        Ok(v) => Value::String(v.to_string()),
                    };
                    (c.name().to_string(), v)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_910_400_000_000_000; // 2026-11-29T00:00:00Z

    /// A samples segment of `n` acks from `t`, 1 ms apart, each of `latency_ns`.
    fn segment(dir: &Path, t: i64, n: i64, latency_ns: i64) {
        let acked: Vec<i64> = (0..n).map(|i| t + i * 1_000_000).collect();
        let span = (acked[0], acked[acked.len() - 1]);
        let mut df = DataFrame::new(
            n as usize,
            vec![
                Column::new("acked_ns".into(), acked),
                Column::new("ack_latency_ns".into(), vec![latency_ns; n as usize]),
                Column::new("label_server".into(), vec!["eu-1"; n as usize]),
            ],
        )
        .unwrap();
        files::write_segment(dir, Table::Samples, &span, &mut df).unwrap();
    }

    fn one_row(df: &DataFrame) -> Vec<String> {
        df.columns()
            .iter()
            .map(|c| c.get(0).unwrap().to_string())
            .collect()
    }

    #[test]
    fn tables_answer_sql_with_their_names_for_people() {
        let dir = tempfile::tempdir().unwrap();
        segment(dir.path(), T, 10, 2_000_000);
        segment(dir.path(), T + 60_000_000_000, 5, 4_000_000);
        let answer = run(
            dir.path(),
            "SELECT COUNT(*) AS n, MAX(ack_latency_us) AS worst, MIN(time) AS first, \
             MIN(server) AS server FROM samples",
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
        assert!(answer.skipped.is_empty());
        assert_eq!(
            one_row(&answer.frame),
            ["15", "4000.0", "2026-11-29 00:00:00", "\"eu-1\""]
        );
        // The range narrows every table; the tables not written yet are empty, not missing.
        let answer = run(
            dir.path(),
            "SELECT COUNT(*) AS n FROM samples",
            T + 5_000_000,
            T + 60_000_000_000,
        )
        .unwrap();
        assert_eq!(one_row(&answer.frame), ["5"]);
        for table in ["windows", "spikes"] {
            let answer = run(
                dir.path(),
                &format!("SELECT * FROM {table}"),
                i64::MIN,
                i64::MAX,
            );
            assert_eq!(answer.unwrap().frame.height(), 0, "{table}");
        }
        // The configured labels are columns even before any segment has them.
        let empty = tempfile::tempdir().unwrap();
        let labels = ["server".to_string()];
        let answer = run_with_labels(
            empty.path(),
            "SELECT server, COUNT(*) AS n FROM samples GROUP BY server",
            (i64::MIN, i64::MAX),
            &labels,
        )
        .unwrap();
        assert_eq!(answer.frame.height(), 0);
        // A bad statement is an error in words, not a panic.
        let err = run(
            dir.path(),
            "SELECT nothing FROM samples",
            i64::MIN,
            i64::MAX,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nothing"), "{err}");
    }

    #[test]
    fn torn_and_foreign_segments_are_skipped_and_named() {
        let dir = tempfile::tempdir().unwrap();
        for k in 0..4 {
            segment(dir.path(), T + k * 1_000_000_000, 10, 1_000_000);
        }
        let paths: Vec<PathBuf> = files::segments(dir.path(), Table::Samples)
            .into_iter()
            .map(|s| s.path)
            .collect();
        // One cut in half (no footer), one whose pages are garbage behind a sound footer, one
        // another program's.
        let whole = std::fs::read(&paths[0]).unwrap();
        std::fs::write(&paths[0], &whole[..whole.len() / 2]).unwrap();
        let mut pages = std::fs::read(&paths[1]).unwrap();
        let end = pages.len() / 3;
        pages[4..end].fill(0x5a);
        std::fs::write(&paths[1], pages).unwrap();
        let mut foreign =
            DataFrame::new(1, vec![Column::new("acked_ns".into(), vec!["a string"])]).unwrap();
        files::write_segment(dir.path(), Table::Samples, &(T, T), &mut foreign).unwrap();
        let answer = run(
            dir.path(),
            "SELECT COUNT(*) AS n FROM samples",
            i64::MIN,
            i64::MAX,
        )
        .unwrap();
        assert_eq!(one_row(&answer.frame), ["20"]);
        let mut skipped = answer.skipped.clone();
        skipped.sort();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped.contains(&paths[0]) && skipped.contains(&paths[1]));
    }

    #[test]
    fn answers_are_written_in_each_format() {
        let mut df = DataFrame::new(
            2,
            vec![
                Column::new("consumer".into(), ["srv-1", "srv-22"]),
                Column::new("p99_us".into(), [1.5, 20.25]),
                Column::new("n".into(), [Some(3i64), None]),
            ],
        )
        .unwrap();
        let written = |format| {
            let mut out = Vec::new();
            write(&mut df.clone(), format, &mut out).unwrap();
            out
        };
        let table = String::from_utf8(written(Format::Table)).unwrap();
        assert_eq!(
            table,
            "consumer  p99_us  n\nsrv-1     1.5     3\nsrv-22    20.25\n"
        );
        assert_eq!(
            format_table(&df, 1),
            "consumer  p99_us  n\nsrv-1     1.5     3\n… 1 more rows (--format csv, json or parquet writes them all)\n"
        );
        let csv = String::from_utf8(written(Format::Csv)).unwrap();
        assert_eq!(csv, "consumer,p99_us,n\nsrv-1,1.5,3\nsrv-22,20.25,\n");
        let json: serde_json::Value = serde_json::from_slice(&written(Format::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!([
                {"consumer": "srv-1", "p99_us": 1.5, "n": 3},
                {"consumer": "srv-22", "p99_us": 20.25, "n": null}
            ])
        );
        let parquet = written(Format::Parquet);
        let back = ParquetReader::new(std::io::Cursor::new(parquet))
            .finish()
            .unwrap();
        assert!(back.equals_missing(&df));
        let _ = &mut df;
    }
}
