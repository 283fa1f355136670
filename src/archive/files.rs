//! Segment files: where each goes, writing one so that a crash never leaves a torn one under
//! its name, listing them, and keeping the directory within its age and size limits.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::Error;

pub const HOUR_NS: i64 = 3_600_000_000_000;

/// Suffix of a segment being written; left over by a crash, removed at start.
const TEMPORARY: &str = ".tmp";

/// The archive's tables, each a directory of the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Samples,
    Windows,
    Spikes,
    Advisories,
    ConsumerState,
    Alerts,
    Incidents,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Samples,
        Table::Windows,
        Table::Spikes,
        Table::Advisories,
        Table::ConsumerState,
        Table::Alerts,
        Table::Incidents,
    ];

    pub fn dir_name(self) -> &'static str {
        match self {
            Table::Samples => "samples",
            Table::Windows => "windows",
            Table::Spikes => "spikes",
            Table::Advisories => "advisories",
            Table::ConsumerState => "consumer_state",
            Table::Alerts => "alerts",
            Table::Incidents => "incidents",
        }
    }

    /// The column a row's instant is in: segments are named, partitioned and read by it.
    pub fn time_column(self) -> &'static str {
        match self {
            Table::Samples => "acked_ns",
            Table::Windows | Table::Spikes | Table::Incidents => "start_ns",
            Table::Advisories | Table::Alerts => "at_ns",
            Table::ConsumerState => "polled_ns",
        }
    }

    /// The type of each column of the table, `None` for a column it does not have.
    pub fn column_type(self, name: &str) -> Option<DataType> {
        match self {
            Table::Samples => super::samples::column_type(name),
            Table::Windows => super::windows::column_type(name),
            Table::Spikes => super::spikes::column_type(name),
            Table::Advisories => super::events::advisory_type(name),
            Table::ConsumerState => super::events::state_type(name),
            Table::Alerts => super::alerts::alert_type(name),
            Table::Incidents => super::alerts::incident_type(name),
        }
    }

    /// Whether `schema` is a segment of this table: its instant, and only the table's
    /// columns, of their types.
    pub fn accepts(self, schema: &Schema) -> bool {
        schema.get(self.time_column()).is_some()
            && schema
                .iter()
                .all(|(name, dtype)| self.column_type(name).is_some_and(|t| &t == dtype))
    }

    /// The table's columns when it has no rows (labels aside).
    pub fn schema(self) -> Schema {
        let names: &[&str] = match self {
            Table::Samples => super::samples::COLUMNS,
            Table::Windows => super::windows::COLUMNS,
            Table::Spikes => super::spikes::COLUMNS,
            Table::Advisories => super::events::ADVISORY_COLUMNS,
            Table::ConsumerState => super::events::STATE_COLUMNS,
            Table::Alerts => super::alerts::ALERT_COLUMNS,
            Table::Incidents => super::alerts::INCIDENT_COLUMNS,
        };
        names
            .iter()
            .filter_map(|&n| Some((PlSmallStr::from(n), self.column_type(n)?)))
            .collect()
    }
}

/// `date=YYYY-MM-DD/hour=HH` of the hour holding `t_ns` (UTC).
pub fn partition(t_ns: i64) -> PathBuf {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    PathBuf::from(format!("date={}", &text[..10])).join(format!("hour={}", &text[11..13]))
}

/// Writes `df` as the segment of `table` spanning `[first_ns, last_ns]` (its rows' ack
/// instants): zstd-compressed Parquet, to a temporary name, synced, renamed, and the directory
/// synced, so that after a crash the segment is whole or absent. Returns its size in bytes.
pub fn write_segment(
    dir: &Path,
    table: Table,
    (first_ns, last_ns): &(i64, i64),
    df: &mut DataFrame,
) -> Result<u64, Error> {
    let part = dir.join(table.dir_name()).join(partition(*first_ns));
    let io = |path: &Path, e: std::io::Error| Error::Segment {
        path: path.to_owned(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&part).map_err(|e| io(&part, e))?;
    // Two segments of one span (a restart within a flush) get distinct names.
    let mut name = format!("{first_ns}-{last_ns}");
    let mut n = 1;
    while part.join(format!("{name}.parquet")).exists() {
        n += 1;
        name = format!("{first_ns}-{last_ns}-{n}");
    }
    let path = part.join(format!("{name}.parquet"));
    let temporary = part.join(format!("{name}.parquet{TEMPORARY}"));
    let written = (|| {
        let mut file = File::create(&temporary).map_err(|e| io(&temporary, e))?;
        let bytes = ParquetWriter::new(&mut file)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(df)
            .map_err(|e| Error::Segment {
                path: temporary.clone(),
                message: e.to_string(),
            })?;
        file.flush().map_err(|e| io(&temporary, e))?;
        file.sync_all().map_err(|e| io(&temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| io(&path, e))?;
        if let Ok(d) = File::open(&part) {
            let _ = d.sync_all();
        }
        Ok(bytes)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// Takes the data directory for this process: one writer per directory, or two would remove
/// each other's temporary files and apply retention twice. Held while the returned file is
/// open (the lock goes with the process, however it ends).
pub fn lock(dir: &Path) -> Result<File, Error> {
    let path = dir.join(".lock");
    let file = File::create(&path).map_err(|source| Error::Dir {
        path: dir.to_owned(),
        source,
    })?;
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a file descriptor this function owns, open for its whole call.
        let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if taken != 0 {
            return Err(Error::InUse {
                path: dir.to_owned(),
            });
        }
    }
    Ok(file)
}

/// One segment found in the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub path: PathBuf,
    pub first_ns: i64,
    pub last_ns: i64,
    pub bytes: u64,
}

/// The segments of `table`, oldest first. Files whose names are not a segment's are left
/// alone (not listed).
pub fn segments(dir: &Path, table: Table) -> Vec<Segment> {
    let mut out: Vec<Segment> = partitioned_files(dir, table)
        .into_iter()
        .filter_map(|file| {
            let (first_ns, last_ns) = span_of(&file)?;
            let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
            Some(Segment {
                path: file,
                first_ns,
                last_ns,
                bytes,
            })
        })
        .collect();
    out.sort_by_key(|s| (s.first_ns, s.last_ns));
    out
}

/// Every file in the day and hour partitions of `table`.
fn partitioned_files(dir: &Path, table: Table) -> Vec<PathBuf> {
    read_dir(&dir.join(table.dir_name()))
        .iter()
        .flat_map(|date| read_dir(date))
        .flat_map(|hour| read_dir(&hour))
        .collect()
}

/// The entries of `dir` (none when it cannot be read).
fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default()
}

/// `<first>-<last>[-<n>].parquet` → (first, last).
fn span_of(path: &Path) -> Option<(i64, i64)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".parquet")?;
    let mut parts = name.split('-');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    Some((first, last))
}

/// The rows the segment at `path` holds, from its footer (`None` when it cannot be read).
pub fn rows(path: &Path) -> Option<usize> {
    let file = File::open(path).ok()?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).num_rows().ok()
    }))
    .ok()
    .flatten()
}

/// Reads a whole segment.
pub fn read_segment(path: &Path) -> Result<DataFrame, Error> {
    let file = File::open(path).map_err(|e| Error::Segment {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    // A corrupt file the decoder does not expect may panic it: that is one unreadable file,
    // not a crash.
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ParquetReader::new(file).finish()
    }));
    let message = match read {
        Ok(Ok(df)) => return Ok(df),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the Parquet decoder failed on it".to_string(),
    };
    Err(Error::Segment {
        path: path.to_owned(),
        message,
    })
}

/// Removes segments a crash left half-written.
pub fn remove_temporaries(dir: &Path) {
    for file in Table::ALL.iter().flat_map(|&t| partitioned_files(dir, t)) {
        if file.to_str().is_some_and(|f| f.ends_with(TEMPORARY)) {
            let _ = std::fs::remove_file(&file);
        }
    }
}

/// Deletes the segments whose last row is older than `before_ns`, then the oldest ones while
/// all of them take more than `max_bytes`; removes partitions left empty. Returns the segments
/// deleted and the bytes that remain.
pub fn enforce_limits(dir: &Path, before_ns: i64, max_bytes: u64) -> (u64, u64) {
    let mut all: Vec<Segment> = Table::ALL.iter().flat_map(|&t| segments(dir, t)).collect();
    all.sort_by_key(|s| (s.last_ns, s.first_ns));
    let mut total: u64 = all.iter().map(|s| s.bytes).sum();
    let mut deleted = 0;
    for s in &all {
        if s.last_ns >= before_ns && total <= max_bytes {
            break;
        }
        if std::fs::remove_file(&s.path).is_ok() {
            deleted += 1;
            total = total.saturating_sub(s.bytes);
            // The hour's directory, then the day's, if nothing is left in them.
            if let Some(hour) = s.path.parent() {
                let _ = std::fs::remove_dir(hour);
                if let Some(date) = hour.parent() {
                    let _ = std::fs::remove_dir(date);
                }
            }
        }
    }
    (deleted, total)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_795_910_400_000_000_000; // 2026-11-29T00:00:00Z

    fn frame(n: i64) -> DataFrame {
        let acked: Vec<i64> = (0..n).map(|i| T + i).collect();
        DataFrame::new(n as usize, vec![Column::new("acked_ns".into(), acked)]).unwrap()
    }

    #[test]
    fn partitions_are_utc_days_and_hours() {
        assert_eq!(
            partition(T + 23 * HOUR_NS + 1),
            PathBuf::from("date=2026-11-29/hour=23")
        );
        assert_eq!(
            partition(T + 24 * HOUR_NS),
            PathBuf::from("date=2026-11-30/hour=00")
        );
        assert_eq!(partition(0), PathBuf::from("date=1970-01-01/hour=00"));
    }

    #[test]
    fn segments_are_written_whole_listed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = write_segment(dir.path(), Table::Samples, &(T, T + 9), &mut frame(10)).unwrap();
        // The same span again gets another name.
        write_segment(dir.path(), Table::Samples, &(T, T + 9), &mut frame(10)).unwrap();
        let found = segments(dir.path(), Table::Samples);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!((found[0].first_ns, found[0].last_ns), (T, T + 9));
        assert_eq!(found[0].bytes, bytes);
        assert_eq!(read_segment(&found[1].path).unwrap().height(), 10);
        // Nothing temporary is left.
        let part = found[0].path.parent().unwrap();
        assert_eq!(std::fs::read_dir(part).unwrap().count(), 2);
    }

    #[test]
    fn a_torn_or_foreign_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), Table::Samples, &(T, T + 9), &mut frame(10)).unwrap();
        let path = segments(dir.path(), Table::Samples)[0].path.clone();
        let whole = std::fs::read(&path).unwrap();
        std::fs::write(&path, &whole[..whole.len() / 2]).unwrap();
        assert!(read_segment(&path).is_err());
        std::fs::write(&path, b"not parquet at all").unwrap();
        assert!(read_segment(&path).is_err());
        // A left-over temporary is removed at start; other files are left alone.
        let part = path.parent().unwrap();
        std::fs::write(part.join("1-2.parquet.tmp"), b"half").unwrap();
        std::fs::write(part.join("notes.txt"), b"mine").unwrap();
        remove_temporaries(dir.path());
        assert!(!part.join("1-2.parquet.tmp").exists());
        assert!(part.join("notes.txt").exists());
    }

    #[test]
    fn one_process_holds_a_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock(dir.path()).unwrap();
        assert!(matches!(lock(dir.path()), Err(Error::InUse { .. })));
        drop(held);
        assert!(lock(dir.path()).is_ok());
    }

    #[test]
    fn old_segments_go_first_then_the_oldest_beyond_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let hour = |h: i64| (T + h * HOUR_NS, T + h * HOUR_NS + 9);
        for h in 0..4 {
            write_segment(dir.path(), Table::Samples, &hour(h), &mut frame(10)).unwrap();
        }
        let size = segments(dir.path(), Table::Samples)[0].bytes;
        // Older than hour 1 ends: hour 0 goes.
        let (deleted, left) = enforce_limits(dir.path(), hour(1).1, u64::MAX);
        assert_eq!((deleted, left), (1, 3 * size));
        // Room for two: the oldest left goes.
        let (deleted, left) = enforce_limits(dir.path(), 0, 2 * size);
        assert_eq!((deleted, left), (1, 2 * size));
        let first = segments(dir.path(), Table::Samples)[0].first_ns;
        assert_eq!(first, hour(2).0);
        // Emptied partitions are gone.
        assert_eq!(
            std::fs::read_dir(dir.path().join("samples/date=2026-11-29"))
                .unwrap()
                .count(),
            2
        );
    }
}
