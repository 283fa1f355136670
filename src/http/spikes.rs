//! Spikes as the API serves them: found under the collector lock, each explained on a copy of
//! its inputs with the lock let go, on a low-priority thread, and cached once finished.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::aggregate::rebin::Latency;

use crate::api::Spike;
use crate::collector::{Collector, lock};
use crate::model::ConsumerId;

/// Spikes already explained, so that a dashboard reading the spikes every few seconds does not
/// explain a finished one again: keyed by start, end, scope and latency (e2e or not); past
/// [`SpikeCache::CAPACITY`] the earliest go first.
#[derive(Debug, Default)]
pub struct SpikeCache(Mutex<BTreeMap<SpikeKey, Spike>>);

/// A spike's start and end (ns), its scope (`None`: all consumers) and whether it is of the
/// e2e latency.
pub type SpikeKey = (i64, i64, Option<ConsumerId>, bool);

impl SpikeCache {
    pub const CAPACITY: usize = 1_024;

    fn get_or_insert(&self, key: SpikeKey, explain: impl FnOnce() -> Spike) -> Spike {
        let cached = self.entries().get(&key).cloned();
        cached.unwrap_or_else(|| {
            let value = explain();
            let mut entries = self.entries();
            entries.insert(key, value.clone());
            while entries.len() > Self::CAPACITY {
                entries.pop_first();
            }
            value
        })
    }

    /// Spikes explained and kept.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, BTreeMap<SpikeKey, Spike>> {
        lock(&self.0)
    }
}

/// The spikes overlapping `[from, to)` of each consumer in `ids` (all when `None`, plus the
/// all-consumers scope), newest last, each with its ranked causes.
///
/// The collector is held only to find the spikes and, one spike at a time, to copy out what
/// explaining it needs; the analysis runs without it, so the consumer-state poller and other
/// readers are not held up, and at most one spike's samples are copied at once. The analysis
/// runs at the lowest priority ([`crate::background`]).
pub fn spikes(
    collector: &Mutex<Collector>,
    cache: &SpikeCache,
    ids: Option<&[ConsumerId]>,
    from: i64,
    to: i64,
) -> Vec<Spike> {
    explained(collector, cache, ids, from, to)
        .into_iter()
        .map(|(_, spike)| spike)
        .collect()
}

/// [`spikes`], each with its key.
pub fn explained(
    collector: &Mutex<Collector>,
    cache: &SpikeCache,
    ids: Option<&[ConsumerId]>,
    from: i64,
    to: i64,
) -> Vec<(SpikeKey, Spike)> {
    let found = lock(collector).find_spikes(ids, from, to);
    found
        .into_iter()
        .map(|found| explain(collector, cache, found))
        .collect()
}

/// One spike [`Collector::find_spikes`] found, explained (or taken from `cache`), with its key.
pub fn explain(
    collector: &Mutex<Collector>,
    cache: &SpikeCache,
    (scope, spike, latency): (Option<ConsumerId>, crate::analyze::spikes::Spike, Latency),
) -> (SpikeKey, Spike) {
    let key = (spike.start_ns, spike.end_ns, scope, latency == Latency::E2e);
    let explained = cache.get_or_insert(key, || {
        let inputs = lock(collector).spike_inputs(scope, spike, latency);
        crate::background::run(|| inputs.explain())
    });
    (key, explained)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spike of `windows` windows.
    fn spike(windows: usize) -> Spike {
        Spike {
            start: String::new(),
            end: String::new(),
            stream: "*".into(),
            consumer: "*".into(),
            latency: Latency::Ack,
            p99_us: 0.0,
            baseline_p99_us: 0.0,
            windows,
            causes: Vec::new(),
        }
    }

    #[test]
    fn the_cache_explains_a_spike_once_and_keeps_the_latest() {
        let cache = SpikeCache::default();
        let mut explained = 0;
        for _ in 0..3 {
            let v = cache.get_or_insert((10, 20, Some(1), false), || {
                explained += 1;
                spike(explained)
            });
            assert_eq!(v.windows, 1);
        }
        assert_eq!(explained, 1);
        // The same start with a later end (the spike grew) is another spike.
        cache.get_or_insert((10, 30, Some(1), false), || spike(0));
        assert_eq!(cache.len(), 2);
        for start in 0..SpikeCache::CAPACITY as i64 + 5 {
            cache.get_or_insert((100 + start, 200, None, true), || spike(0));
        }
        assert_eq!(cache.len(), SpikeCache::CAPACITY);
        let mut again = false;
        cache.get_or_insert((10, 20, Some(1), false), || {
            again = true;
            spike(0)
        });
        assert!(again, "the earliest spikes were dropped first");
    }
}
