//! Heatmap grids straight from the `samples` table, for ranges too large to load into a
//! collector: each segment is read for the few columns a grid needs, filtered, and binned,
//! two threads at a time; memory follows one segment per thread, not the range.
//!
//! A phase grid bins each sample by the phase archived with it (`phase_ns`, in its consumer's
//! own clock when it was written) as a share of the shown frame, or, for a request's own
//! tick, by its instant in that frame.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::files::{self, Segment, Table};
use crate::aggregate::phase_grid::{LatencyAxis, PhaseGrid};
use crate::tick::{Frame, PhaseOf};

/// Which samples: acked in `[from_ns, to_ns)`, of a stream (a consumer, a domain) or all.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub from_ns: i64,
    pub to_ns: i64,
    pub stream: Option<String>,
    pub consumer: Option<String>,
    pub domain: Option<String>,
    /// The e2e latency instead of the ack latency.
    pub e2e: bool,
}

/// The columns of a grid.
#[derive(Debug, Clone, Copy)]
pub enum Columns {
    /// `bins` bins of `frame`: of each sample's archived phase, or with `own_tick` of its
    /// instant (`phase_of`) in `frame`.
    Phase {
        frame: Frame,
        bins: u32,
        own_tick: bool,
        phase_of: PhaseOf,
    },
    /// `columns` equal slices of the scan's range.
    Time { columns: u32 },
}

/// One segment's samples that pass the scan: (acked or delivered instant for phasing, acked,
/// latency, archived phase).
struct Rows {
    at: Vec<Option<i64>>,
    acked: Vec<i64>,
    latency: Vec<u64>,
    phase: Vec<Option<i64>>,
}

/// The rows of the segment at `path` that pass `scan` and have the latency asked for.
fn rows(path: &Path, scan: &Scan, phase_of: PhaseOf) -> Result<Rows, String> {
    let latency = if scan.e2e {
        "e2e_latency_ns"
    } else {
        "ack_latency_ns"
    };
    let at = match phase_of {
        PhaseOf::Ack => "acked_ns",
        PhaseOf::Delivery => "delivered_ns",
    };
    let mut columns = vec!["acked_ns", latency, "phase_ns"];
    if at != "acked_ns" {
        columns.push(at);
    }
    for (name, want) in [
        ("stream", &scan.stream),
        ("consumer", &scan.consumer),
        ("domain", &scan.domain),
    ] {
        if want.is_some() {
            columns.push(name);
        }
    }
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let df = ParquetReader::new(file)
            .with_columns(Some(columns.iter().map(|c| c.to_string()).collect()))
            .finish()
            .map_err(|e| e.to_string())?;
        pick(&df, scan, latency, at)
    }));
    read.unwrap_or_else(|_| Err("the Parquet decoder failed on it".into()))
}

fn pick(df: &DataFrame, scan: &Scan, latency: &str, at: &str) -> Result<Rows, String> {
    let ints = |name: &str| -> Result<Int64Chunked, String> {
        df.column(name)
            .and_then(|c| c.i64().cloned())
            .map_err(|e| e.to_string())
    };
    let acked = ints("acked_ns")?;
    let mut mask: BooleanChunked = acked
        .iter()
        .map(|t| t.is_some_and(|t| t >= scan.from_ns && t < scan.to_ns))
        .collect();
    let lat = ints(latency)?;
    mask = &mask & &lat.is_not_null();
    for (name, want) in [
        ("stream", &scan.stream),
        ("consumer", &scan.consumer),
        ("domain", &scan.domain),
    ] {
        if let Some(want) = want {
            let values = df
                .column(name)
                .and_then(|c| c.str().cloned())
                .map_err(|e| e.to_string())?;
            let equal: BooleanChunked = values.iter().map(|v| Some(v == Some(want))).collect();
            mask = &mask & &equal;
        }
    }
    let keep = |c: &Int64Chunked| c.filter(&mask).map_err(|e| e.to_string());
    let (acked, lat, phase, at) = (
        keep(&acked)?,
        keep(&lat)?,
        keep(&ints("phase_ns")?)?,
        keep(&ints(at)?)?,
    );
    Ok(Rows {
        at: at.iter().collect(),
        acked: acked.iter().map(|t| t.unwrap_or(0)).collect(),
        latency: lat.iter().map(|v| v.unwrap_or(0).max(0) as u64).collect(),
        phase: phase.iter().collect(),
    })
}

/// The segments of the samples table overlapping the scan's range.
fn segments(dir: &Path, scan: &Scan) -> Vec<Segment> {
    files::segments(dir, Table::Samples)
        .into_iter()
        .filter(|s| s.last_ns >= scan.from_ns && s.first_ns < scan.to_ns)
        .collect()
}

/// Folds every segment's rows into a `T` per thread (two), merged; with the segments that
/// could not be read.
fn fold<T: Send>(
    dir: &Path,
    scan: &Scan,
    phase_of: PhaseOf,
    init: impl Fn() -> T + Sync,
    each: impl Fn(&mut T, &Rows) + Sync,
    merge: impl Fn(T, T) -> T,
) -> (T, Vec<PathBuf>) {
    let segments = segments(dir, scan);
    let halves: Vec<(T, Vec<PathBuf>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|k| {
                let (segments, init, each) = (&segments, &init, &each);
                s.spawn(move || {
                    let mut acc = init();
                    let mut bad = Vec::new();
                    for seg in segments.iter().skip(k).step_by(2) {
                        match rows(&seg.path, scan, phase_of) {
                            Ok(rows) => each(&mut acc, &rows),
                            Err(e) => {
                                tracing::warn!(path = %seg.path.display(), error = %e, "unreadable archive segment skipped");
                                bad.push(seg.path.clone());
                            }
                        }
                    }
                    (acc, bad)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut out: Option<T> = None;
    let mut skipped = Vec::new();
    for (acc, bad) in halves {
        skipped.extend(bad);
        out = Some(match out {
            Some(prev) => merge(prev, acc),
            None => acc,
        });
    }
    (out.unwrap_or_else(init), skipped)
}

/// The fastest and slowest latency of the samples the scan selects, with the segments that
/// could not be read.
pub fn latency_span(dir: &Path, scan: &Scan) -> (Option<(u64, u64)>, Vec<PathBuf>) {
    fold(
        dir,
        scan,
        PhaseOf::Ack,
        || None,
        |span: &mut Option<(u64, u64)>, rows| {
            for &ns in &rows.latency {
                *span = Some(span.map_or((ns, ns), |(lo, hi)| (lo.min(ns), hi.max(ns))));
            }
        },
        |a, b| match (a, b) {
            (Some((a0, a1)), Some((b0, b1))) => Some((a0.min(b0), a1.max(b1))),
            (a, b) => a.or(b),
        },
    )
}

/// The grid of the samples the scan selects, `columns` × `axis`, with the segments that could
/// not be read.
pub fn grid(
    dir: &Path,
    scan: &Scan,
    columns: Columns,
    axis: &LatencyAxis,
) -> (PhaseGrid, Vec<PathBuf>) {
    let (bins, phase_of) = match columns {
        Columns::Phase { bins, phase_of, .. } => (bins, phase_of),
        Columns::Time { columns } => (columns, PhaseOf::Ack),
    };
    let span = (scan.to_ns as i128 - scan.from_ns as i128).max(1);
    let from = scan.from_ns;
    fold(
        dir,
        scan,
        phase_of,
        || PhaseGrid::new(bins, axis.clone()),
        |grid: &mut PhaseGrid, rows| {
            for i in 0..rows.latency.len() {
                let bin = match columns {
                    Columns::Phase {
                        frame,
                        bins,
                        own_tick: true,
                        ..
                    } => match rows.at[i] {
                        Some(t) => frame.bin(t, bins),
                        None => continue,
                    },
                    // The archived phase, as the same share of the shown frame.
                    Columns::Phase { frame, bins, .. } => match rows.phase[i] {
                        Some(p) => Frame {
                            epoch_ns: 0,
                            ..frame
                        }
                        .bin(p, bins),
                        None => continue,
                    },
                    Columns::Time { columns } => {
                        let offset = (rows.acked[i] as i128 - from as i128).max(0);
                        (offset * columns as i128 / span) as u32
                    }
                };
                grid.record(bin, rows.latency[i]);
            }
        },
        |mut a, b| {
            a.merge(&b);
            a
        },
    )
}
