//! Ranges older than memory, answered from the archive: when a request's `from` is before the
//! oldest sample the ring holds and the archive has samples from before it, the route runs on a
//! collector loaded from the archive instead of the live one, with the same code, so the JSON
//! and the pictures are the same; `warnings` (and a heatmap's subtitle) say so.
//!
//! The collector loaded is kept for the next request of the same range (a dashboard refreshing,
//! the report after its heatmaps) while the archive has nothing newer for it; one at a time,
//! and never more samples than the live ring holds (`aggregate.ring_capacity`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use super::AppState;
use super::spikes::SpikeCache;
use crate::archive::files::{self, Table};
use crate::collector::{Collector, lock};
use crate::model::rfc3339;

/// What a request's range is answered from.
pub struct Source {
    pub collector: Arc<Mutex<Collector>>,
    pub spike_cache: Arc<SpikeCache>,
    /// Where the answer came from, when not from memory.
    pub warnings: Vec<String>,
}

/// The collector loaded for the last range older than memory.
#[derive(Default)]
pub struct HistoryCache(Mutex<Option<Loaded>>);

struct Loaded {
    range: (i64, i64),
    /// The newest archived instant when it was loaded: newer segments make it stale.
    newest: i64,
    source: Arc<Source>,
}

impl Source {
    fn live(state: &AppState) -> Source {
        Source {
            collector: state.collector.clone(),
            spike_cache: state.spike_cache.clone(),
            warnings: Vec::new(),
        }
    }
}

/// Where `[from, to)` is answered from: the live collector, unless `from` is before the oldest
/// sample it holds and the archive has samples from before that. Call on the blocking pool.
pub fn source(state: &AppState, (from, to): (i64, i64)) -> Arc<Source> {
    let Some(dir) = state.archive_dir.as_deref() else {
        return Arc::new(Source::live(state));
    };
    let (before_memory, config) = {
        let c = lock(&state.collector);
        (c.held_since_ns(), c.config().clone())
    };
    if from >= before_memory {
        return Arc::new(Source::live(state));
    }
    let segments = files::segments(dir, Table::Samples);
    let older = segments
        .iter()
        .any(|s| s.first_ns < before_memory.min(to) && s.last_ns >= from);
    if !older {
        return Arc::new(Source::live(state));
    }
    let newest = segments.iter().map(|s| s.last_ns).max().unwrap_or(i64::MIN);
    let cache = &state.history;
    if let Some(loaded) = lock(&cache.0).as_ref()
        && loaded.range == (from, to)
        && loaded.newest == newest
    {
        return loaded.source.clone();
    }
    let source = Arc::new(load(&config, dir, (from, to), newest));
    *lock(&cache.0) = Some(Loaded {
        range: (from, to),
        newest,
        source: source.clone(),
    });
    source
}

/// A collector of what the archive in `dir` holds for `[from, to)`, and the spike baselines'
/// worth of windows before it.
fn load(config: &crate::config::Config, dir: &Path, (from, to): (i64, i64), newest: i64) -> Source {
    let agg = &config.aggregate;
    let before = (agg.window_ns as i64).saturating_mul(
        config.spikes.baseline_windows as i64 + config.spikes.warmup_windows as i64,
    );
    let read = (from.saturating_sub(before), to);
    let (collector, _, notes) =
        crate::export::collector_of(config, dir, read, (from, to), agg.ring_capacity);
    let mut warnings = vec![
        "answered from the archive: the range starts before the oldest sample held in memory"
            .to_string(),
    ];
    if newest < to {
        warnings.push(format!(
            "the archive holds samples up to {} (it is written every archive.flush_interval): \
             later ones are not in this answer",
            rfc3339(newest)
        ));
    }
    warnings.extend(notes);
    Source {
        collector,
        spike_cache: Arc::default(),
        warnings,
    }
}
