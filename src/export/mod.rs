//! Postmortem bundles: a range's report, spikes, heatmaps (SVG and PNG), samples and windows,
//! and a `postmortem.md` to paste from. The pictures and JSON are the service's own answers:
//! the bundle asks the HTTP routes for them, in-process, of the running service
//! (`GET /api/v1/export`) or of a collector loaded from a data directory alone
//! (`ackscope export --data-dir`).

mod markdown;
mod png;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use polars::prelude::*;
use serde::Serialize;
use tower::ServiceExt;

use crate::aggregate::window::WindowSummary;
use crate::analyze::report::BASELINE_NS;
use crate::api::{Report, WindowLine};
use crate::collector::{Collector, lock};
use crate::config::Config;
use crate::http::{AppState, Readiness, bundle_routes};
use crate::model::rfc3339;

/// Windows an offline export keeps per consumer at most (the service's own bound).
const MAX_WINDOWS: usize = 100_000;

/// Spikes drawn one by one (each beside its baseline); the rest are in `spikes.json`.
const SPIKES_DRAWN: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Request(String),
    #[error("cannot write the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write a table: {0}")]
    Table(#[from] PolarsError),
}

/// What to export: the query parameters of the service's routes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExportQuery {
    pub from: String,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_bins: Option<String>,
}

impl ExportQuery {
    /// As a URL query string.
    pub fn encoded(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }

    /// The same query over `[from_ns, to_ns)`, for `stream`/`consumer` unless `*`.
    fn over(&self, from_ns: i64, to_ns: i64, scope: Option<(&str, &str)>) -> Self {
        let mut q = self.clone();
        q.from = rfc3339(from_ns);
        q.to = rfc3339(to_ns);
        if let Some((stream, consumer)) = scope {
            let named = |s: &str| (s != "*").then(|| s.to_string());
            q.stream = named(stream);
            q.consumer = named(consumer);
        }
        q
    }
}

/// A bundle's files, by name, in the order they are written.
#[derive(Debug, Default)]
pub struct Bundle {
    pub files: Vec<(String, Vec<u8>)>,
}

impl Bundle {
    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        self.files.push((name.into(), bytes));
    }

    /// The file named `name`.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// The bundle as a tar.gz.
    pub fn tar_gz(&self) -> std::io::Result<Vec<u8>> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (name, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_cksum();
            tar.append_data(&mut header, format!("postmortem/{name}"), bytes.as_slice())?;
        }
        tar.into_inner()?.finish()
    }

    /// Writes the bundle to `out`: a tar.gz when its name ends so, else a directory (created).
    pub fn save(&self, out: &Path) -> std::io::Result<()> {
        if is_tar_gz(out) {
            let bytes = self.tar_gz()?;
            let mut file = std::fs::File::create(out)?;
            file.write_all(&bytes)?;
            return file.sync_all();
        }
        std::fs::create_dir_all(out)?;
        for (name, bytes) in &self.files {
            std::fs::write(out.join(name), bytes)?;
        }
        Ok(())
    }
}

/// Whether `path` names a tar.gz.
pub fn is_tar_gz(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

/// Asks `app` for `path?query`: the body, or the route's error in words.
async fn get(app: &Router, path: &str, query: &ExportQuery) -> Result<Vec<u8>, Error> {
    let uri = format!("{path}?{}", query.encoded());
    let request = Request::get(&uri)
        .body(Body::empty())
        .map_err(|e| Error::Request(e.to_string()))?;
    let response = app
        .clone()
        .oneshot(request)
        .await
        .map_err(|e| Error::Request(e.to_string()))?;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|e| Error::Request(e.to_string()))?
        .to_vec();
    if status != StatusCode::OK {
        return Err(Error::Request(format!(
            "{path}: {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(body)
}

/// What a bundle is made of besides the routes' answers.
pub struct Sources {
    /// The range's samples (a read of the archive's `samples` table), already filtered.
    pub samples: DataFrame,
    /// The range's closed windows with their names.
    pub windows: Vec<WindowLine>,
    /// Said in `postmortem.md` (where the data came from, what may be missing).
    pub notes: Vec<String>,
    /// The settings the bundle was made with, in words.
    pub settings: Vec<(String, String)>,
}

/// Builds the bundle for `query` from `app`'s routes and `sources`. `progress` is told each
/// step by name.
pub async fn build(
    app: &Router,
    query: &ExportQuery,
    sources: Sources,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<Bundle, Error> {
    let mut bundle = Bundle::default();
    progress("report");
    let report_bytes = get(app, "/api/v1/report", query).await?;
    let report: Report = serde_json::from_slice(&report_bytes)
        .map_err(|e| Error::Request(format!("the report does not parse: {e}")))?;
    let (from, to) = (instant(&report.range.from), instant(&report.range.to));
    // P99 in the same length of time before and after the range.
    let span = to.saturating_sub(from).max(1);
    let mut around = Vec::new();
    for (from, to) in [
        (from.saturating_sub(span), from),
        (to, to.saturating_add(span)),
    ] {
        // Sides beyond what an instant holds (1970, 2262) are left out.
        let side = match get(app, "/api/v1/report", &query.over(from, to, None)).await {
            Ok(side) if from < to => serde_json::from_slice::<Report>(&side).ok(),
            _ => None,
        };
        around.push(side);
    }
    bundle.add("report.json", report_bytes);
    bundle.add(
        "spikes.json",
        serde_json::to_vec_pretty(&report.spikes).unwrap_or_default(),
    );
    for picture in ["phase", "time"] {
        progress(picture);
        let svg = get(app, &format!("/api/v1/heatmap/{picture}.svg"), query).await?;
        let (svg, png) = blocking(move || {
            let png = png::from_svg(&svg)?;
            Ok((svg, png))
        })
        .await?;
        bundle.add(format!("{picture}.svg"), svg);
        bundle.add(format!("{picture}.png"), png);
    }
    // Each spike's phase heatmap beside its baseline's, for the spike's own scope.
    let mut drawn = Vec::new();
    for (i, spike) in report.spikes.iter().take(SPIKES_DRAWN).enumerate() {
        progress("spikes");
        let (start, end) = (instant(&spike.start), instant(&spike.end));
        let scope = Some((spike.stream.as_str(), spike.consumer.as_str()));
        let during = query.over(start, end, scope);
        let before = query.over(start.saturating_sub(BASELINE_NS), start, scope);
        let name = format!("spike-{}", i + 1);
        bundle.add(
            format!("{name}-phase.svg"),
            get(app, "/api/v1/heatmap/phase.svg", &during).await?,
        );
        bundle.add(
            format!("{name}-baseline-phase.svg"),
            get(app, "/api/v1/heatmap/phase.svg", &before).await?,
        );
        drawn.push(name);
    }
    progress("samples");
    let (samples, windows) = (sources.samples.height(), sources.windows.len());
    let mut sources = sources;
    let tables = blocking(move || {
        let mut parquet = Vec::new();
        ParquetWriter::new(&mut parquet)
            .with_compression(ParquetCompression::Zstd(None))
            .finish(&mut sources.samples)?;
        let samples_csv = csv(&mut sources.samples)?;
        let windows_csv = csv(&mut windows_frame(&sources.windows)?)?;
        Ok((
            parquet,
            samples_csv,
            windows_csv,
            sources.notes,
            sources.settings,
        ))
    })
    .await?;
    let (parquet, samples_csv, windows_csv, notes, settings) = tables;
    bundle.add("samples.parquet", parquet);
    bundle.add("samples.csv", samples_csv);
    bundle.add("windows.csv", windows_csv);
    progress("postmortem");
    let text = markdown::postmortem(&markdown::Inputs {
        query,
        report: &report,
        before: around[0].as_ref(),
        after: around[1].as_ref(),
        drawn: &drawn,
        samples,
        windows,
        notes: &notes,
        settings: &settings,
    });
    bundle.add("postmortem.md", text.into_bytes());
    Ok(bundle)
}

/// `f` on the blocking pool: encoding and drawing take the CPU for a while.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Request(e.to_string()))?
}

fn instant(rfc: &str) -> i64 {
    humantime::parse_rfc3339(rfc)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

fn csv(df: &mut DataFrame) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    CsvWriter::new(&mut out).include_header(true).finish(df)?;
    Ok(out)
}

/// Windows as the archive's `windows` table has them: names, counts, percentiles in µs.
fn windows_frame(windows: &[WindowLine]) -> PolarsResult<DataFrame> {
    let text = |f: fn(&WindowLine) -> &str| windows.iter().map(f).collect::<Vec<&str>>();
    let count = |f: fn(&WindowLine) -> u64| windows.iter().map(f).collect::<Vec<u64>>();
    let value = |f: fn(&WindowLine) -> f64| windows.iter().map(f).collect::<Vec<f64>>();
    let columns = vec![
        Column::new("start".into(), text(|w| &w.start)),
        Column::new("end".into(), text(|w| &w.end)),
        Column::new("stream".into(), text(|w| &w.stream)),
        Column::new("consumer".into(), text(|w| &w.consumer)),
        Column::new("deliveries".into(), count(|w| w.counts.deliveries)),
        Column::new("acks".into(), count(|w| w.counts.acks)),
        Column::new("naks".into(), count(|w| w.counts.naks)),
        Column::new("terms".into(), count(|w| w.counts.terms)),
        Column::new("progress".into(), count(|w| w.counts.progress)),
        Column::new("redeliveries".into(), count(|w| w.counts.redeliveries)),
        Column::new("max_deliveries".into(), count(|w| w.counts.max_deliveries)),
        Column::new("unmatched_acks".into(), count(|w| w.counts.unmatched_acks)),
        Column::new(
            "expired_deliveries".into(),
            count(|w| w.counts.expired_deliveries),
        ),
        Column::new("samples".into(), count(|w| w.ack_latency_us.count)),
        Column::new("p50_us".into(), value(|w| w.ack_latency_us.p50)),
        Column::new("p90_us".into(), value(|w| w.ack_latency_us.p90)),
        Column::new("p99_us".into(), value(|w| w.ack_latency_us.p99)),
        Column::new("p999_us".into(), value(|w| w.ack_latency_us.p999)),
        Column::new("max_us".into(), value(|w| w.ack_latency_us.max)),
        Column::new("e2e_p99_us".into(), value(|w| w.e2e_latency_us.p99)),
        Column::new("nats_gap_ms".into(), count(|w| w.nats_gap_ms)),
    ];
    DataFrame::new(windows.len(), columns)
}

/// The windows of `c` that start in `[from, to)`, of `stream`/`consumer` when given (else
/// every consumer's and the all-consumers ones), oldest first: the closed ones, and the open
/// one as it stands (its end is where it will close), as the report counts them.
pub fn windows(c: &Collector, from: i64, to: i64, scope: Scope) -> Vec<WindowLine> {
    let agg = c.aggregator();
    let wanted = |w: &&WindowSummary| w.start_ns >= from && w.start_ns < to;
    let open_start = agg.open_window_start().filter(|s| *s >= from && *s < to);
    let window = c.config().aggregate.window_ns as i64;
    let mut out: Vec<WindowLine> = Vec::new();
    if scope.is_all() {
        out.extend(
            agg.history(None)
                .filter(wanted)
                .map(|w| WindowLine::of(c, w)),
        );
        if let Some(start) = open_start {
            let open = agg.open_all();
            if !open.is_empty() {
                out.push(WindowLine::of(
                    c,
                    &open.summary(None, start, start + window),
                ));
            }
        }
    }
    for (id, s, n) in c.consumers() {
        let domain = c.names().consumer_domain(id);
        if scope.stream.is_some_and(|x| x != s)
            || scope.consumer.is_some_and(|x| x != n)
            || scope.domain.is_some_and(|x| Some(x) != domain)
        {
            continue;
        }
        out.extend(
            agg.history(Some(id))
                .filter(wanted)
                .map(|w| WindowLine::of(c, w)),
        );
        if let (Some(start), Some(open)) = (open_start, agg.open_window(id))
            && !open.is_empty()
        {
            out.push(WindowLine::of(
                c,
                &open.summary(Some(id), start, start + window),
            ));
        }
    }
    out.sort_by(|a, b| a.start.cmp(&b.start));
    out
}

/// Which consumers an export is of: every one when nothing is named.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope<'a> {
    pub stream: Option<&'a str>,
    pub consumer: Option<&'a str>,
    /// The JetStream domain; without it, the names match in every domain.
    pub domain: Option<&'a str>,
}

impl Scope<'_> {
    fn is_all(&self) -> bool {
        self.stream.is_none() && self.consumer.is_none() && self.domain.is_none()
    }
}

/// `samples` (a read of the archive) narrowed to `scope`.
pub fn narrowed(samples: DataFrame, scope: Scope) -> DataFrame {
    let mut mask: Option<BooleanChunked> = None;
    for (column, wanted) in [
        ("stream", scope.stream),
        ("consumer", scope.consumer),
        ("domain", scope.domain),
    ] {
        let Some(wanted) = wanted else { continue };
        let Ok(values) = samples.column(column).and_then(|c| c.str().cloned()) else {
            continue;
        };
        let m: BooleanChunked = values.iter().map(|v| v == Some(wanted)).collect();
        mask = Some(match mask {
            Some(prev) => &prev & &m,
            None => m,
        });
    }
    match mask {
        Some(m) => samples.filter(&m).unwrap_or(samples),
        None => samples,
    }
}

/// A collector holding what `dir` archived over `[from, to)` and the same length of time on
/// either side (or, when that holds more than `aggregate.ring_capacity` samples, over the range
/// and the spike baselines' worth before it; the latest `ring_capacity` of them): the service
/// as it was then, without NATS.
pub fn offline_collector(
    config: &Config,
    dir: &Path,
    from: i64,
    to: i64,
) -> (Arc<Mutex<Collector>>, DataFrame, Vec<String>) {
    // As much as the service holds in memory, and no more: a bundle of an hour at 10,000
    // acks/s would otherwise take the machine's memory.
    let most = config.aggregate.ring_capacity;
    let span = to.saturating_sub(from).max(1);
    let around = (from.saturating_sub(span), to.saturating_add(span));
    // What the segments around it hold, from their footers.
    let held: usize = crate::archive::files::segments(dir, crate::archive::files::Table::Samples)
        .iter()
        .filter(|s| s.first_ns < around.1 && s.last_ns >= around.0)
        .filter_map(|s| crate::archive::files::rows(&s.path))
        .sum();
    if held < most {
        return collector_of(config, dir, around, (from, to), most, true);
    }
    // Too much around it: the range itself and the spike baselines' worth before it.
    let before = (config.aggregate.window_ns as i64)
        .saturating_mul((config.spikes.baseline_windows + config.spikes.warmup_windows) as i64);
    let read = (from.saturating_sub(before), to);
    collector_of(config, dir, read, (from, to), most, true)
}

/// A collector holding what `dir` archived over `read` (the latest `most` samples of it), and,
/// with `samples_too`, the samples of `range` it holds as a frame (else an empty one).
pub fn collector_of(
    config: &Config,
    dir: &Path,
    read: (i64, i64),
    (from, to): (i64, i64),
    most: usize,
    samples_too: bool,
) -> (Arc<Mutex<Collector>>, DataFrame, Vec<String>) {
    use crate::archive::samples;
    let most = most.max(1);
    let (paths, rows) = samples::latest_segments(dir, read.0, read.1, most);
    let mut notes = Vec::new();
    let mut config = config.clone();
    let window = config.aggregate.window_ns.max(1) as i64;
    let windows = usize::try_from(read.1.saturating_sub(read.0) / window)
        .unwrap_or(usize::MAX)
        .saturating_add(2);
    if windows > MAX_WINDOWS {
        notes.push(format!(
            "the range read spans {windows} windows; the latest {MAX_WINDOWS} are kept"
        ));
    }
    config.aggregate.retained_windows = config
        .aggregate
        .retained_windows
        .max(windows.min(MAX_WINDOWS));
    // Room for one more when the segments hold fewer than `most`: a full ring says the
    // collector holds only the latest of what it read.
    config.aggregate.ring_capacity = if rows >= most { most } else { rows + 1 };
    let collector = Arc::new(Mutex::new(Collector::new(config)));
    let mut during = Vec::new();
    let mut latest = None::<i64>;
    let unreadable = {
        let mut c = lock(&collector);
        // A segment at a time: memory follows the ring, not a frame of all of it.
        samples::for_each_segment(&paths, read.0, read.1, |df| {
            c.restore(&df);
            if let Ok(acked) = df.column("acked_ns").and_then(|t| t.i64().cloned()) {
                latest = latest.max(acked.max());
            }
            if samples_too {
                during.push(crate::archive::acked_in(df, from, to));
            }
        })
    };
    if !unreadable.is_empty() {
        notes.push(format!(
            "{} archive segment(s) could not be read and were skipped: {}",
            unreadable.len(),
            unreadable
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    {
        let mut c = lock(&collector);
        let ring = c.aggregator().ring();
        if ring.len() >= c.config().aggregate.ring_capacity {
            let oldest = ring
                .oldest_acked_ns()
                .map_or_else(|| "-".to_string(), rfc3339);
            notes.push(format!(
                "the range read holds more samples than the {most} read: the heatmaps and \
                 report use the latest {most}, from {oldest}"
            ));
        }
        // Each consumer's frame, learned from its latest minute as the service did (clocks
        // are not archived): a clock learned first covers the samples before it.
        if let Some(latest) = latest {
            for _ in 0..c.consumers().count().div_ceil(8) + 1 {
                c.infer_clocks(latest);
            }
        }
    }
    // The range's samples the collector holds, for the bundle's sample tables.
    let oldest = lock(&collector).aggregator().ring().oldest_acked_ns();
    let during = samples::stack(during);
    let during = match oldest {
        Some(oldest) => crate::archive::acked_in(during, oldest, i64::MAX),
        None => during,
    };
    (collector, during, notes)
}

/// The service's routes over `collector`, for building a bundle. When the collector was cut
/// (it holds only the latest samples the archive in `dir` has for the range), heatmaps are
/// drawn from the archive.
pub fn routes(collector: Arc<Mutex<Collector>>, dir: Option<&Path>) -> Router {
    let readiness = Arc::new(Readiness::new(Arc::default()));
    let cut = {
        let c = lock(&collector);
        c.aggregator().ring().len() >= c.config().aggregate.ring_capacity
    };
    let mut state = AppState::new(collector, readiness);
    if let Some(dir) = dir.filter(|_| cut) {
        state.heatmaps_from = Some(Arc::new(dir.to_owned()));
    }
    bundle_routes(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_narrowed_to_the_scope() {
        let df = DataFrame::new(
            4,
            vec![
                Column::new("stream".into(), ["GAME", "GAME", "GAME", "CHAT"]),
                Column::new("consumer".into(), ["srv-1", "srv-1", "srv-2", "srv-1"]),
                Column::new("domain".into(), [Some("eu"), None, Some("eu"), Some("eu")]),
                Column::new("acked_ns".into(), [1i64, 2, 3, 4]),
            ],
        )
        .unwrap();
        let acked = |scope: Scope| -> Vec<i64> {
            narrowed(df.clone(), scope)
                .column("acked_ns")
                .unwrap()
                .i64()
                .unwrap()
                .no_null_iter()
                .collect()
        };
        assert_eq!(acked(Scope::default()), vec![1, 2, 3, 4]);
        let game = Scope {
            stream: Some("GAME"),
            ..Scope::default()
        };
        assert_eq!(acked(game), vec![1, 2, 3]);
        let srv1 = Scope {
            consumer: Some("srv-1"),
            ..game
        };
        assert_eq!(acked(srv1), vec![1, 2]);
        let in_eu = Scope {
            domain: Some("eu"),
            ..srv1
        };
        assert_eq!(acked(in_eu), vec![1]);
    }
}
