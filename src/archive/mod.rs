//! History on disk: every joined sample written to Parquet segments in the data directory,
//! off the hot path.
//!
//! The collector keeps a batch of the samples it records and hands it over every tick
//! ([`ArchiveTap::hand_over`]) with the names its ids stand for; a full queue drops the batch
//! and counts it (the taps never wait for the disk). A writer thread gathers what it is handed
//! and writes one segment per table and hour every `flush_interval`: written to a temporary
//! name, synced, renamed, the directory synced ([`files`]). Closing the archive hands over what
//! is left and writes it before returning, so a clean stop loses nothing. Segments older than
//! the retention, and the oldest ones beyond the size limit, are deleted as it goes.
//!
//! The layout is Hive-style partitions by hour, which polars, DuckDB or Spark read as they are:
//! `samples/date=2026-11-29/hour=15/<first acked ns>-<last acked ns>.parquet`.

pub mod alerts;
pub mod config;
pub mod events;
pub mod files;
pub mod grid;
pub mod query;
pub mod samples;
pub mod spikes;
pub mod windows;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

pub use alerts::AlertRow;
pub use config::{ArchiveConfig, RawArchive};
pub use events::{AdvisoryRow, StateRow};
use files::Table;
pub use samples::{ArchivedSample, Columns, Names, Restored, SampleBatch, acked_in, restored};
pub use spikes::SpikeRow;
pub use windows::WindowRow;

/// What the writer is handed: samples with the names of their ids, closed windows, ended
/// spikes, advisories or consumer info polls. Samples count against `archive.queue_samples`;
/// the others against [`QUEUE_ROWS`] of their own, so that a flood of samples does not crowd
/// them out.
#[derive(Debug)]
enum Batch {
    Samples(SampleBatch),
    Windows(Vec<WindowRow>),
    Spikes(Vec<SpikeRow>),
    Advisories(Vec<AdvisoryRow>),
    States(Vec<StateRow>),
    Alerts(Vec<AlertRow>),
    Incidents(Vec<crate::analyze::incidents::Incident>),
}

/// Rows other than samples handed over and not written yet, at most.
pub const QUEUE_ROWS: u64 = 100_000;

impl Batch {
    /// The counter of what waits that this batch counts in.
    fn queued<'a>(&self, stats: &'a ArchiveStats) -> &'a AtomicU64 {
        match self {
            Batch::Samples(_) => &stats.queued,
            _ => &stats.queued_rows,
        }
    }

    fn len(&self) -> usize {
        match self {
            Batch::Samples(b) => b.rows.len(),
            Batch::Windows(w) => w.len(),
            Batch::Spikes(s) => s.len(),
            Batch::Advisories(a) => a.len(),
            Batch::States(s) => s.len(),
            Batch::Alerts(a) => a.len(),
            Batch::Incidents(i) => i.len(),
        }
    }
}

/// An archive error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "archive directory {path}: {source} (choose another with --data-dir or archive.dir, or set archive.enabled = false)"
    )]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("archive directory {path} is in use by another ackscope (its .lock is held)")]
    InUse { path: PathBuf },
    #[error("archive segment {path}: {message}")]
    Segment { path: PathBuf, message: String },
}

/// What the writer has done, shared with whoever reports it.
#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub samples_written: AtomicU64,
    pub segments_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub write_errors: AtomicU64,
    /// Samples of segments that could not be written.
    pub samples_lost: AtomicU64,
    pub segments_deleted: AtomicU64,
    /// Bytes of segments in the data directory after the last write or deletion.
    pub bytes_on_disk: AtomicU64,
    /// Samples handed over and not written yet: at most `archive.queue_samples`.
    pub queued: AtomicU64,
    /// Rows other than samples handed over and not written yet: at most [`QUEUE_ROWS`].
    pub queued_rows: AtomicU64,
}

impl ArchiveStats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// The collector's side: the batch being gathered, and the queue to the writer.
#[derive(Debug)]
pub struct ArchiveTap {
    batch: Vec<ArchivedSample>,
    to_writer: mpsc::Sender<Batch>,
    stats: Arc<ArchiveStats>,
    queue_samples: u64,
    /// Samples dropped because the queue was full.
    pub dropped: u64,
    /// Rows other than samples dropped because their queue was full.
    pub dropped_rows: u64,
}

impl ArchiveTap {
    /// Gathers one sample for the next hand-over (dropped and counted when the batch alone
    /// would fill the queue).
    pub fn push(&mut self, s: ArchivedSample) {
        if self.batch.len() as u64 >= self.queue_samples {
            self.dropped += 1;
            return;
        }
        self.batch.push(s);
    }

    /// What the writer has done.
    pub fn stats(&self) -> Arc<ArchiveStats> {
        self.stats.clone()
    }

    /// The ids the gathered batch uses (consumer ids, then symbols), for [`Self::hand_over`].
    pub fn ids(&self) -> (Vec<u32>, Vec<u32>) {
        samples::ids(&self.batch)
    }

    /// Hands the gathered samples to the writer with `names` for their ids; drops and counts
    /// them when the queue holds `queue_samples` already.
    pub fn hand_over(&mut self, names: &Names) {
        if self.batch.is_empty() {
            return;
        }
        let n = self.batch.len() as u64;
        let queued = self.stats.queued.load(Ordering::Relaxed);
        if queued + n > self.queue_samples {
            self.dropped += n;
            self.batch.clear();
            return;
        }
        let rows = std::mem::replace(&mut self.batch, Vec::with_capacity(1024));
        if !self.send(Batch::Samples(SampleBatch {
            rows,
            names: names.clone(),
        })) {
            self.dropped += n;
        }
    }

    /// Hands closed windows to the writer; drops and counts them when the queue is full.
    pub fn hand_over_windows(&mut self, rows: Vec<WindowRow>) {
        self.hand_over_rows(Batch::Windows(rows));
    }

    /// Hands ended spikes to the writer; drops and counts them when the queue is full.
    pub fn hand_over_spikes(&mut self, rows: Vec<SpikeRow>) {
        self.hand_over_rows(Batch::Spikes(rows));
    }

    /// Hands alerts that fired or resolved, and ended incidents, to the writer; drops and
    /// counts them when the queue is full.
    pub fn hand_over_alerts(
        &mut self,
        alerts: Vec<AlertRow>,
        incidents: Vec<crate::analyze::incidents::Incident>,
    ) {
        self.hand_over_rows(Batch::Alerts(alerts));
        self.hand_over_rows(Batch::Incidents(incidents));
    }

    /// Hands advisories and consumer info polls to the writer; drops and counts them when the
    /// queue is full.
    pub fn hand_over_events(&mut self, advisories: Vec<AdvisoryRow>, states: Vec<StateRow>) {
        self.hand_over_rows(Batch::Advisories(advisories));
        self.hand_over_rows(Batch::States(states));
    }

    fn hand_over_rows(&mut self, batch: Batch) {
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        if self.stats.queued_rows.load(Ordering::Relaxed) + n > QUEUE_ROWS || !self.send(batch) {
            self.dropped_rows += n;
        }
    }

    /// Sends `batch` to the writer, counted as queued; `false` when the writer is gone (it
    /// failed to start its directory): nothing can be kept.
    fn send(&mut self, batch: Batch) -> bool {
        let n = batch.len() as u64;
        let stats = self.stats.clone();
        let queued = batch.queued(&stats);
        queued.fetch_add(n, Ordering::Relaxed);
        if self.to_writer.send(batch).is_err() {
            queued.fetch_sub(n, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// The writer thread, and its stats. Dropping every [`ArchiveTap`] and calling
/// [`Archive::close`] writes what is left.
pub struct Archive {
    thread: std::thread::JoinHandle<()>,
    pub stats: Arc<ArchiveStats>,
    pub dir: PathBuf,
}

/// Label names in configuration order: the samples table's `label_<name>` columns.
pub type LabelNames = Vec<String>;

impl Archive {
    /// Creates the data directory if needed and starts the writer; returns it with the tap
    /// the collector hands samples to.
    pub fn start(
        config: &ArchiveConfig,
        labels: LabelNames,
    ) -> Result<(Archive, ArchiveTap), Error> {
        let dir = config.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|source| Error::Dir {
            path: dir.clone(),
            source,
        })?;
        let lock = files::lock(&dir)?;
        files::remove_temporaries(&dir);
        let stats = Arc::new(ArchiveStats::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            dir: dir.clone(),
            config: config.clone(),
            labels,
            stats: stats.clone(),
            pending: Vec::new(),
            pending_samples: 0,
            pending_windows: Vec::new(),
            pending_spikes: Vec::new(),
            pending_advisories: Vec::new(),
            pending_states: Vec::new(),
            pending_alerts: Vec::new(),
            pending_incidents: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("ackscope-archive".into())
            .spawn(move || {
                writer.run(rx);
                // Held until everything is written.
                drop(lock);
            })
            .map_err(|source| Error::Dir {
                path: dir.clone(),
                source,
            })?;
        let tap = ArchiveTap {
            batch: Vec::with_capacity(1024),
            to_writer: tx,
            stats: stats.clone(),
            queue_samples: config.queue_samples as u64,
            dropped: 0,
            dropped_rows: 0,
        };
        Ok((Archive { thread, stats, dir }, tap))
    }

    /// Waits for the writer to write everything handed over. Call after the tap is dropped.
    pub fn close(self) {
        if self.thread.join().is_err() {
            tracing::error!("the archive writer panicked");
        }
    }
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    config: ArchiveConfig,
    labels: LabelNames,
    stats: Arc<ArchiveStats>,
    /// Batches received since the last write, and their samples.
    pending: Vec<SampleBatch>,
    pending_samples: u64,
    pending_windows: Vec<WindowRow>,
    pending_spikes: Vec<SpikeRow>,
    pending_advisories: Vec<AdvisoryRow>,
    pending_states: Vec<StateRow>,
    pending_alerts: Vec<AlertRow>,
    pending_incidents: Vec<crate::analyze::incidents::Incident>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Batch>) {
        let flush = Duration::from_nanos(self.config.flush_interval_ns);
        // Half the queue waiting is written at once: with what the collector hands over
        // meanwhile, no more than the queue's limit is ever held.
        let early = self.config.queue_samples as u64 / 2;
        let mut flushed_at = Instant::now();
        self.keep_within_limits();
        loop {
            let wait = flush.saturating_sub(flushed_at.elapsed());
            match rx.recv_timeout(wait) {
                Ok(Batch::Samples(batch)) => {
                    self.pending_samples += batch.rows.len() as u64;
                    self.pending.push(batch);
                }
                Ok(Batch::Windows(rows)) => self.pending_windows.extend(rows),
                Ok(Batch::Spikes(rows)) => self.pending_spikes.extend(rows),
                Ok(Batch::Advisories(rows)) => self.pending_advisories.extend(rows),
                Ok(Batch::States(rows)) => self.pending_states.extend(rows),
                Ok(Batch::Alerts(rows)) => self.pending_alerts.extend(rows),
                Ok(Batch::Incidents(rows)) => self.pending_incidents.extend(rows),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if flushed_at.elapsed() >= flush || self.pending_samples >= early {
                // The next flush is due one interval after this one began.
                flushed_at = Instant::now();
                self.write();
                self.keep_within_limits();
            }
        }
        // Closed: everything handed over has been received.
        self.write();
        self.keep_within_limits();
    }

    /// Writes what is pending, one segment per table and hour.
    fn write(&mut self) {
        self.write_samples();
        let windows = std::mem::take(&mut self.pending_windows);
        self.write_rows(
            Table::Windows,
            windows,
            |r| r.window.summary.start_ns,
            windows::frame,
        );
        let spikes = std::mem::take(&mut self.pending_spikes);
        self.write_rows(Table::Spikes, spikes, |r| r.start_ns, spikes::frame);
        let advisories = std::mem::take(&mut self.pending_advisories);
        self.write_rows(
            Table::Advisories,
            advisories,
            |r| r.at_ns,
            events::advisory_frame,
        );
        let states = std::mem::take(&mut self.pending_states);
        self.write_rows(
            Table::ConsumerState,
            states,
            |r| r.state.polled_ns,
            events::state_frame,
        );
        let alerts = std::mem::take(&mut self.pending_alerts);
        self.write_rows(Table::Alerts, alerts, |r| r.at_ns, alerts::alert_frame);
        let incidents = std::mem::take(&mut self.pending_incidents);
        self.write_rows(
            Table::Incidents,
            incidents,
            |i| i.start_ns,
            alerts::incident_frame,
        );
    }

    /// Writes `rows` of `table`, one segment per hour their instants (`at`) span; a segment
    /// that cannot be written is counted and logged.
    fn write_rows<R>(
        &self,
        table: Table,
        rows: Vec<R>,
        at: impl Fn(&R) -> i64,
        frame: impl Fn(&[R]) -> polars::prelude::PolarsResult<polars::prelude::DataFrame>,
    ) {
        let n = rows.len() as u64;
        let mut hours: BTreeMap<i64, Vec<R>> = BTreeMap::new();
        for r in rows {
            hours
                .entry(at(&r).div_euclid(files::HOUR_NS))
                .or_default()
                .push(r);
        }
        for rows in hours.into_values() {
            let span = (
                rows.iter().map(&at).min().unwrap_or(0),
                rows.iter().map(&at).max().unwrap_or(0),
            );
            if let Err(e) = self.write_frame(table, &span, frame(&rows)) {
                tracing::error!(error = %e, table = table.dir_name(), rows = rows.len(), "archive write failed; rows lost");
            }
        }
        self.stats.queued_rows.fetch_sub(n, Ordering::Relaxed);
    }

    /// Writes `frame` as a segment of `table` spanning `span`, counting the segment and its
    /// bytes, or the failure.
    fn write_frame(
        &self,
        table: Table,
        span: &(i64, i64),
        frame: polars::prelude::PolarsResult<polars::prelude::DataFrame>,
    ) -> Result<(), Error> {
        let result = frame
            .map_err(|e| Error::Segment {
                path: self.dir.join(table.dir_name()),
                message: e.to_string(),
            })
            .and_then(|mut df| files::write_segment(&self.dir, table, span, &mut df));
        match result {
            Ok(bytes) => {
                ArchiveStats::add(&self.stats.segments_written, 1);
                ArchiveStats::add(&self.stats.bytes_written, bytes);
                Ok(())
            }
            Err(e) => {
                ArchiveStats::add(&self.stats.write_errors, 1);
                Err(e)
            }
        }
    }

    /// Writes the pending samples, one segment per hour they span.
    fn write_samples(&mut self) {
        let batches = std::mem::take(&mut self.pending);
        let samples = std::mem::take(&mut self.pending_samples);
        let mut hours: BTreeMap<i64, Columns> = BTreeMap::new();
        for b in &batches {
            for r in &b.rows {
                hours
                    .entry(r.sample.acked_ns.div_euclid(files::HOUR_NS))
                    .or_insert_with(|| Columns::new(self.labels.len()))
                    .push(r, &b.names);
            }
        }
        for columns in hours.into_values() {
            let (n, span) = (columns.len() as u64, columns.span());
            match self.write_frame(Table::Samples, &span, columns.frame(&self.labels)) {
                Ok(()) => ArchiveStats::add(&self.stats.samples_written, n),
                Err(e) => {
                    ArchiveStats::add(&self.stats.samples_lost, n);
                    tracing::error!(error = %e, samples = n, "archive write failed; samples lost");
                }
            }
        }
        // Written (or lost): no longer held.
        self.stats.queued.fetch_sub(samples, Ordering::Relaxed);
    }

    /// Deletes segments past the retention, then the oldest while over the size limit.
    fn keep_within_limits(&self) {
        let now = crate::model::Seen::now().wall_ns;
        let (deleted, bytes) = files::enforce_limits(
            &self.dir,
            now.saturating_sub(i64::try_from(self.config.retention_ns).unwrap_or(i64::MAX)),
            self.config.max_bytes,
        );
        ArchiveStats::add(&self.stats.segments_deleted, deleted);
        self.stats.bytes_on_disk.store(bytes, Ordering::Relaxed);
    }
}

/// Every sample archived in `dir` acked in `[from_ns, to_ns)`, oldest first, with the paths
/// of segments that could not be read (skipped).
pub fn read_samples(
    dir: &Path,
    from_ns: i64,
    to_ns: i64,
) -> (polars::prelude::DataFrame, Vec<PathBuf>) {
    samples::read(dir, from_ns, to_ns)
}

/// The latest `limit` samples archived in `dir` acked in `[from_ns, to_ns)`, oldest first,
/// with the paths of segments that could not be read (skipped); memory follows `limit`, not
/// the range.
pub fn latest_samples(
    dir: &Path,
    from_ns: i64,
    to_ns: i64,
    limit: usize,
) -> (polars::prelude::DataFrame, Vec<PathBuf>) {
    samples::read_latest(dir, from_ns, to_ns, limit)
}

/// `samples` (a read of the `samples` table, oldest first) from the first window boundary
/// after its first row on: the rows of a window it holds only part of are left out.
pub fn from_next_window(
    samples: polars::prelude::DataFrame,
    window_ns: u64,
) -> polars::prelude::DataFrame {
    use polars::prelude::ChunkAgg;
    let window = i64::try_from(window_ns.max(1)).unwrap_or(i64::MAX);
    let first = samples
        .column("acked_ns")
        .ok()
        .and_then(|c| c.i64().ok().and_then(|a| a.min()));
    let Some(first) = first else {
        return samples;
    };
    let next = first
        .div_euclid(window)
        .saturating_mul(window)
        .saturating_add(window);
    acked_in(samples, next, i64::MAX)
}
