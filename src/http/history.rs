//! Ranges older than memory, answered from the archive: when a request's range ends before
//! what memory holds and the archive has samples in it, the route runs on a collector loaded
//! from the archive instead of the live one, with the same code, so the JSON and the pictures
//! are the same; `warnings` (and a heatmap's subtitle) say so.
//!
//! The collector loaded is kept for the next request of the same range (the report after its
//! heatmaps) while the archive has nothing new in it; one at a time, and never more samples than
//! the live ring holds (`aggregate.ring_capacity`): the heatmaps of a range that holds more are
//! drawn from every archived sample ([`crate::archive::grid`]).

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
    /// The data directory, when the range holds more samples than the collector loaded:
    /// heatmaps are then drawn from every sample of the archive ([`crate::archive::grid`]).
    pub scan: Option<std::path::PathBuf>,
}

/// The collector loaded for the last range older than memory.
#[derive(Default)]
pub struct HistoryCache(Mutex<Option<Loaded>>);

struct Loaded {
    range: (i64, i64),
    /// The newest instant and the number of the segments it read: others make it stale.
    newest: (i64, usize),
    source: Arc<Source>,
}

impl Source {
    fn live(state: &AppState) -> Source {
        Source {
            collector: state.collector.clone(),
            spike_cache: state.spike_cache.clone(),
            warnings: Vec::new(),
            scan: None,
        }
    }
}

/// Where `[from, to)` is answered from: the live collector, unless the range ends before what
/// memory holds ([`Collector::held_since_ns`], and the windows' history) and the archive has
/// samples in it. A range that only starts before stays in memory (its warnings say what is no
/// longer held). Call on the blocking pool: loading takes a while, one load at a time.
pub fn source(state: &AppState, (from, to): (i64, i64)) -> Arc<Source> {
    let Some(dir) = state.archive_dir.as_deref() else {
        return Arc::new(Source::live(state));
    };
    let (held_since, config) = {
        let c = lock(&state.collector);
        let windows = c.aggregator().oldest_window_start().unwrap_or(i64::MIN);
        (c.held_since_ns().max(windows), c.config().clone())
    };
    if to > held_since {
        return Arc::new(Source::live(state));
    }
    let segments: Vec<_> = files::segments(dir, Table::Samples)
        .into_iter()
        .filter(|s| s.first_ns < to && s.last_ns >= from)
        .collect();
    if segments.is_empty() {
        return Arc::new(Source::live(state));
    }
    // What the range reads, so that a segment written since (the same span again after a
    // restart) loads it anew.
    let newest = segments.iter().map(|s| s.last_ns).max().unwrap_or(i64::MIN);
    let count = segments.len();
    // Held while loading: a second request of the range waits for this load, not another.
    let mut cache = lock(&state.history.0);
    if let Some(loaded) = cache.as_ref()
        && loaded.range == (from, to)
        && loaded.newest == (newest, count)
    {
        return loaded.source.clone();
    }
    let source = Arc::new(load(&config, dir, (from, to), newest));
    *cache = Some(Loaded {
        range: (from, to),
        newest: (newest, count),
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
        crate::export::collector_of(config, dir, read, (from, to), agg.ring_capacity, false);
    let cut = lock(&collector).aggregator().ring().len() >= agg.ring_capacity;
    let mut warnings = vec![
        "answered from the archive: the range ends before the samples held in memory".to_string(),
    ];
    if newest < to {
        warnings.push(format!(
            "the archive holds samples up to {} (it is written every archive.flush_interval): \
             later ones are not in this answer",
            rfc3339(newest)
        ));
    }
    warnings.extend(notes);
    if cut {
        warnings.push(
            "the heatmaps are drawn from every archived sample of the range; the report and \
             spikes from the latest ones"
                .to_string(),
        );
    }
    Source {
        collector,
        spike_cache: Arc::default(),
        warnings,
        scan: cut.then(|| dir.to_owned()),
    }
}
