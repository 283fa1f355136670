//! Aggregation: folds samples and counted events into time windows per consumer and for all
//! consumers together, keeps a bounded history of closed windows and a ring of raw samples.
//!
//! [`Aggregator`] is synchronous and does no I/O: the caller hands it samples and the current
//! time, and takes closed [`WindowSummary`]s from it. Windows are aligned to the wall clock
//! (`floor(t / window)`); an event older than the open window is counted as late and recorded
//! into the open one. Samples are recorded once, per consumer; the all-consumers window is
//! their merge, built when a window closes (or when asked for).

pub mod buckets;
pub mod config;
pub mod histogram;
pub mod phase_grid;
pub mod rebin;
pub mod ring;
pub mod window;

use std::collections::VecDeque;

use self::config::AggregateConfig;
use crate::clocks::{Clocks, Segment};
use crate::model::{ConsumerId, Sample};
use crate::names::id_mask;
use crate::tick::{FrameClock, PhaseOf};
use phase_grid::LatencyAxis;
use ring::SampleRing;
use window::{WindowStats, WindowSummary};

/// Most closed summaries waiting for the caller; more are dropped and counted.
const READY_CAPACITY: usize = 100_000;
/// Closed windows kept for the archive between two hand-overs (a tenth of a second apart).
const ARCHIVE_CAPACITY: usize = 10_000;

/// A counted event that is not a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Delivery { redelivery: bool },
    Progress,
    UnmatchedAck,
    ExpiredDelivery,
    MaxDeliveries,
}

/// Windows, history and the sample ring.
#[derive(Debug)]
pub struct Aggregator {
    config: AggregateConfig,
    /// The configured clock: its bins and phase instant, and the frame of consumers with no
    /// clock of their own.
    clock: FrameClock,
    /// Each consumer's frame clock over time.
    clocks: Clocks,
    axis: LatencyAxis,
    window_start: Option<i64>,
    consumers: Vec<Option<Box<WindowStats>>>,
    /// Scratch space for merging the all-consumers window.
    all: Box<WindowStats>,
    history: Vec<VecDeque<WindowSummary>>,
    all_history: VecDeque<WindowSummary>,
    /// Windows closed since the caller last took them; `None` unless asked for
    /// ([`Self::keep_closed`]: `collect` prints them, the service does not take them).
    ready: Option<VecDeque<WindowSummary>>,
    ring: SampleRing,
    /// Events older than the open window.
    pub late_events: u64,
    /// Closed summaries dropped because the caller did not take them.
    pub ready_dropped: u64,
    /// NATS outage: since when the open one lasts, and how much of the open window earlier
    /// ones took.
    gap_since: Option<i64>,
    gap_ns: u64,
    /// Windows closed since the archive last took them, with their histograms; `None` while
    /// no archive takes them.
    for_archive: Option<VecDeque<ClosedWindow>>,
    /// Closed windows the archive did not take in time (past [`ARCHIVE_CAPACITY`]).
    pub archive_windows_dropped: u64,
}

/// A closed window with its latency histograms encoded ([`histogram::LatencyHistogram::encoded`]), so
/// that any range of windows merges exactly.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub summary: WindowSummary,
    pub ack_hdr: Vec<u8>,
    pub e2e_hdr: Vec<u8>,
}

impl ClosedWindow {
    fn of(summary: &WindowSummary, stats: &WindowStats) -> Self {
        let mut summary = summary.clone();
        summary.phase_counts = Vec::new();
        Self {
            summary,
            ack_hdr: stats.ack.encoded(),
            e2e_hdr: stats.e2e.encoded(),
        }
    }
}

impl Aggregator {
    pub fn new(config: AggregateConfig, clock: FrameClock) -> Self {
        let axis = LatencyAxis::new(
            config.grid_min_latency_ns,
            config.max_latency_ns,
            config.latency_rows,
        );
        let all = Box::new(WindowStats::new(
            config.max_latency_ns,
            clock.phase_bins(),
            axis.clone(),
        ));
        Self {
            ring: SampleRing::new(config.ring_capacity),
            config,
            clocks: Clocks::new(*clock.frame()),
            clock,
            axis,
            window_start: None,
            consumers: Vec::new(),
            all,
            history: Vec::new(),
            all_history: VecDeque::new(),
            ready: None,
            late_events: 0,
            ready_dropped: 0,
            gap_since: None,
            gap_ns: 0,
            for_archive: None,
            archive_windows_dropped: 0,
        }
    }

    /// Keeps every window closed from now on, with its histograms, for [`Self::take_for_archive`].
    pub fn keep_for_archive(&mut self) {
        self.for_archive.get_or_insert_with(VecDeque::new);
    }

    /// Stops keeping closed windows for the archive and lets go of those not taken.
    pub fn stop_keeping_for_archive(&mut self) {
        self.for_archive = None;
    }

    /// The windows closed since the last call, with their histograms (none unless
    /// [`Self::keep_for_archive`]).
    pub fn take_for_archive(&mut self) -> Vec<ClosedWindow> {
        self.for_archive
            .as_mut()
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Start of the open window, Unix nanoseconds.
    pub fn open_window_start(&self) -> Option<i64> {
        self.window_start
    }

    pub fn clock(&self) -> &FrameClock {
        &self.clock
    }

    /// Each consumer's frame clock over time.
    pub fn clocks(&self) -> &Clocks {
        &self.clocks
    }

    /// Lets go of consumers' clocks that ended before `t_ns` (the oldest row kept).
    pub fn prune_clocks_before(&mut self, t_ns: i64) {
        self.clocks.prune_before(t_ns);
    }

    /// Sets a consumer's clock from `segment.from_ns` on: the windows record phases with it
    /// from now, the ring's views from then. Returns whether anything changed.
    pub fn set_clock(&mut self, consumer: ConsumerId, segment: Segment) -> bool {
        self.clocks.set(consumer, segment)
    }

    pub fn ring(&self) -> &SampleRing {
        &self.ring
    }

    /// The open window of `consumer`, if it has one.
    pub fn open_window(&self, consumer: ConsumerId) -> Option<&WindowStats> {
        self.consumers.get(consumer as usize)?.as_deref()
    }

    /// The open all-consumers window: the merge of every consumer's open window.
    pub fn open_all(&self) -> WindowStats {
        let mut all = (*self.all).clone();
        all.reset();
        for stats in self.consumers.iter().flatten() {
            all.merge(stats);
        }
        all
    }

    /// Start of the oldest closed window kept (of any consumer: the all-consumers history holds
    /// every window that had samples).
    pub fn oldest_window_start(&self) -> Option<i64> {
        self.all_history.front().map(|w| w.start_ns)
    }

    /// Closed windows of `consumer` (or of all consumers), oldest first.
    pub fn history(&self, consumer: Option<ConsumerId>) -> impl Iterator<Item = &WindowSummary> {
        let h = match consumer {
            Some(c) => self.history.get(c as usize),
            None => Some(&self.all_history),
        };
        h.into_iter().flatten()
    }

    /// Keeps every window closed from now on for [`Self::take_closed`].
    pub fn keep_closed(&mut self) {
        self.ready.get_or_insert_with(VecDeque::new);
    }

    /// Takes the windows closed since the last call (none unless [`Self::keep_closed`]).
    pub fn take_closed(&mut self) -> impl Iterator<Item = WindowSummary> + '_ {
        self.ready.iter_mut().flat_map(|q| q.drain(..))
    }

    fn stats(&mut self, consumer: ConsumerId) -> &mut WindowStats {
        let i = consumer as usize;
        if self.consumers.len() <= i {
            self.consumers.resize_with(i + 1, || None);
        }
        let (max, bins, axis) = (
            self.config.max_latency_ns,
            self.clock.phase_bins(),
            &self.axis,
        );
        self.consumers[i].get_or_insert_with(|| Box::new(WindowStats::new(max, bins, axis.clone())))
    }

    /// Moves the open window forward to the one holding `t_ns`, closing the current one.
    pub fn advance(&mut self, t_ns: i64) {
        let window = self.config.window_ns as i64;
        let start_of_t = t_ns.div_euclid(window) * window;
        match self.window_start {
            None => self.window_start = Some(start_of_t),
            Some(start) if t_ns < start => self.late_events += 1,
            Some(start) if start_of_t > start => {
                self.close(start, start + window);
                // Windows passed over while NATS is down are written all the same, each with
                // its gap (at most as many as are retained).
                if self.gap_since.is_some() {
                    let mut next = start + window;
                    for _ in 0..self.config.retained_windows {
                        if next >= start_of_t {
                            break;
                        }
                        self.close(next, next + window);
                        next += window;
                    }
                }
                self.window_start = Some(start_of_t);
            }
            Some(_) => {}
        }
    }

    /// Opens (`down`) or closes a NATS outage at `t_ns`: the windows it covers say how much of
    /// them it took, and a window with no samples at all because of it still closes.
    pub fn set_gap(&mut self, down: bool, t_ns: i64) {
        self.advance(t_ns);
        match (down, self.gap_since) {
            (true, None) => self.gap_since = Some(t_ns),
            (false, Some(since)) => {
                let from = since.max(self.window_start.unwrap_or(since));
                self.gap_ns += t_ns.saturating_sub(from).max(0) as u64;
                self.gap_since = None;
            }
            _ => {}
        }
    }

    fn close(&mut self, start: i64, end: i64) {
        let retained = self.config.retained_windows;
        let open_gap = self.gap_since.map_or(0, |since| {
            end.saturating_sub(since.max(start)).max(0) as u64
        });
        let gap_ms = (std::mem::take(&mut self.gap_ns) + open_gap) / 1_000_000;
        self.all.reset();
        // The all-consumers window's is the sum of each consumer's, each in its own frame.
        let mut within_budget = 0;
        for (id, slot) in self.consumers.iter_mut().enumerate() {
            let Some(stats) = slot.as_deref_mut() else {
                continue;
            };
            if stats.is_empty() {
                continue;
            }
            self.all.merge(stats);
            let mut summary = stats.summary(Some(id as ConsumerId), start, end);
            summary.nats_gap_ms = gap_ms;
            let budget = self.clocks.at(id as ConsumerId, start).period.ns();
            summary.within_budget = stats.ack.count_at_or_below(budget);
            within_budget += summary.within_budget;
            keep(
                &mut self.for_archive,
                &mut self.archive_windows_dropped,
                || ClosedWindow::of(&summary, stats),
            );
            stats.reset();
            if self.history.len() <= id {
                self.history.resize_with(id + 1, VecDeque::new);
            }
            push_bounded(&mut self.history[id], retained, summary.clone());
            push_ready(&mut self.ready, &mut self.ready_dropped, summary);
        }
        if !self.all.is_empty() || gap_ms > 0 {
            let mut summary = self.all.summary(None, start, end);
            summary.nats_gap_ms = gap_ms;
            summary.within_budget = within_budget;
            let all = &self.all;
            keep(
                &mut self.for_archive,
                &mut self.archive_windows_dropped,
                || ClosedWindow::of(&summary, all),
            );
            self.all.reset();
            push_bounded(&mut self.all_history, retained, summary.clone());
            push_ready(&mut self.ready, &mut self.ready_dropped, summary);
        }
    }

    /// Lets go of forgotten consumers and symbols before their ids go to new names: their open
    /// windows and history are dropped (an idle consumer has none worth keeping) and the ring's
    /// rows that name them are rewritten ([`SampleRing::forget`]). Returns the rows rewritten.
    pub fn forget(&mut self, consumers: &[ConsumerId], symbols: &[u32]) -> usize {
        for &c in consumers {
            if let Some(slot) = self.consumers.get_mut(c as usize) {
                *slot = None;
            }
            if let Some(h) = self.history.get_mut(c as usize) {
                *h = VecDeque::new();
            }
        }
        self.clocks.forget(consumers);
        let (consumer_gone, symbol_gone) = (id_mask(consumers), id_mask(symbols));
        self.ring.forget(
            |c| consumer_gone.get(c as usize).copied().unwrap_or(false),
            |s| symbol_gone.get(s.0 as usize).copied().unwrap_or(false),
        )
    }

    /// Records one completed delivery.
    pub fn record(&mut self, s: &Sample) {
        self.advance(s.acked_ns);
        let phase_t = match self.clock.phase_of() {
            PhaseOf::Ack => Some(s.acked_ns),
            PhaseOf::Delivery => s.delivered_ns,
        };
        let bin = phase_t.map(|t| {
            self.clocks
                .at(s.consumer, t)
                .bin(t, self.clock.phase_bins())
        });
        self.stats(s.consumer).record(s, bin);
        self.ring.push(s);
    }

    /// Counts an event of `consumer` at wall-clock `t_ns`.
    pub fn count(&mut self, consumer: ConsumerId, event: Event, t_ns: i64) {
        self.advance(t_ns);
        self.stats(consumer).counts.apply(event);
    }
}

fn push_bounded(q: &mut VecDeque<WindowSummary>, cap: usize, mut s: WindowSummary) {
    s.phase_counts = Vec::new();
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(s);
}

/// Pushes `window()` on `q` when there is one, dropping and counting it once `q` is full.
fn keep(
    q: &mut Option<VecDeque<ClosedWindow>>,
    dropped: &mut u64,
    window: impl FnOnce() -> ClosedWindow,
) {
    let Some(q) = q else {
        return;
    };
    if q.len() >= ARCHIVE_CAPACITY {
        *dropped += 1;
    } else {
        q.push_back(window());
    }
}

fn push_ready(q: &mut Option<VecDeque<WindowSummary>>, dropped: &mut u64, s: WindowSummary) {
    let Some(q) = q else {
        return;
    };
    if q.len() >= READY_CAPACITY {
        *dropped += 1;
    } else {
        q.push_back(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AckKind, NO_LABELS, SampleSource, Sym};
    use crate::tick::RawTick;

    fn sample(consumer: ConsumerId, acked_ns: i64, ack_ms: u64) -> Sample {
        Sample {
            consumer,
            stream_seq: 1,
            consumer_seq: 1,
            deliveries: 1,
            pending: 0,
            stored_ns: Some(acked_ns - 50_000_000),
            delivered_ns: Some(acked_ns - (ack_ms * 1_000_000) as i64),
            acked_ns,
            kind: AckKind::Ack,
            ack_latency_ns: Some(ack_ms * 1_000_000),
            e2e_latency_ns: Some(50_000_000),
            trace_id: None,
            parent_span: None,
            subject: Sym::NONE,
            labels: NO_LABELS,
            source: SampleSource::Observed,
            ack_sync: false,
        }
    }

    fn aggregator() -> Aggregator {
        let mut a = Aggregator::new(
            AggregateConfig::default(),
            RawTick::default().validate().unwrap(),
        );
        a.keep_closed();
        a
    }

    #[test]
    fn windows_close_on_the_wall_clock_boundary() {
        let mut a = aggregator();
        let t0 = 1_790_000_000_000_000_000i64; // a whole second
        // Consumer 0: ten acks of 2 ms and one of 40 ms, at phase 4 ms of the frame.
        for i in 0..10 {
            a.record(&sample(0, t0 + 4_000_000 + i * 16_000_000, 2));
        }
        a.record(&sample(0, t0 + 4_000_000 + 10 * 16_000_000, 40));
        a.record(&sample(1, t0 + 500_000_000, 5));
        a.count(0, Event::Delivery { redelivery: true }, t0 + 1);
        assert_eq!(a.take_closed().count(), 0);

        a.advance(t0 + 1_000_000_000);
        let closed: Vec<_> = a.take_closed().collect();
        assert_eq!(closed.len(), 3);
        let c0 = &closed[0];
        assert_eq!(c0.consumer, Some(0));
        assert_eq!((c0.start_ns, c0.end_ns), (t0, t0 + 1_000_000_000));
        assert_eq!(c0.counts.acks, 11);
        assert_eq!(c0.counts.deliveries, 1);
        assert_eq!(c0.counts.redeliveries, 1);
        assert!(
            (c0.ack_latency_us.p50 - 2_000.0).abs() < 2.0,
            "{:?}",
            c0.ack_latency_us
        );
        assert!((c0.ack_latency_us.max - 40_000.0).abs() < 40.0);
        // Phase 4 ms of a 16 ms frame with 160 bins is bin 40.
        assert_eq!(c0.phase_counts[40], 11);
        assert_eq!(c0.phase_counts.iter().sum::<u32>(), 11);
        let all = &closed[2];
        assert_eq!(all.consumer, None);
        assert_eq!(all.counts.acks, 12);
        assert_eq!(a.history(Some(0)).count(), 1);
        assert!(a.history(Some(0)).next().unwrap().phase_counts.is_empty());
        assert_eq!(a.ring().len(), 12);
    }

    #[test]
    fn late_events_are_counted_and_kept() {
        let mut a = aggregator();
        let t0 = 1_790_000_000_000_000_000i64;
        a.advance(t0 + 2_000_000_000);
        a.record(&sample(0, t0, 1));
        assert_eq!(a.late_events, 1);
        assert_eq!(a.open_window(0).unwrap().counts.acks, 1);
    }

    #[test]
    fn closed_windows_are_kept_only_for_whoever_takes_them() {
        let mut a = Aggregator::new(
            AggregateConfig::default(),
            RawTick::default().validate().unwrap(),
        );
        let t0 = 1_790_000_000_000_000_000i64;
        for w in 0..5 {
            a.record(&sample(0, t0 + w * 1_000_000_000, 1 + w as u64));
        }
        a.advance(t0 + 5_000_000_000);
        // Nobody asked (the service): nothing is held and nothing counts as dropped.
        assert_eq!(a.take_closed().count(), 0);
        assert_eq!(a.ready_dropped, 0);
        assert!(a.take_for_archive().is_empty());
        // The archive asked: each window closed from then on, with its histogram.
        a.keep_for_archive();
        a.record(&sample(0, t0 + 5_500_000_000, 7));
        a.advance(t0 + 6_000_000_000);
        let kept = a.take_for_archive();
        assert_eq!(kept.len(), 2, "consumer 0 and all consumers");
        let mut h = histogram::LatencyHistogram::new(AggregateConfig::default().max_latency_ns);
        assert!(h.merge_encoded(&kept[0].ack_hdr));
        // Quantiles exactly; the mean to the histogram's precision (the sum is not encoded).
        let (got, closed) = (h.quantiles(), kept[0].summary.ack_latency_us);
        assert_eq!(
            (got.count, got.p50, got.p99, got.max),
            (closed.count, closed.p50, closed.p99, closed.max)
        );
        assert!((got.mean - closed.mean).abs() <= closed.mean * 1e-3);
        assert!(a.take_for_archive().is_empty());
        a.stop_keeping_for_archive();
        a.record(&sample(0, t0 + 6_500_000_000, 7));
        a.advance(t0 + 7_000_000_000);
        assert!(a.take_for_archive().is_empty());
    }

    #[test]
    fn history_is_bounded() {
        let config = AggregateConfig {
            retained_windows: 3,
            ..AggregateConfig::default()
        };
        let mut a = Aggregator::new(config, RawTick::default().validate().unwrap());
        a.keep_closed();
        let t0 = 1_790_000_000_000_000_000i64;
        for w in 0..10 {
            a.record(&sample(0, t0 + w * 1_000_000_000, 1));
        }
        a.advance(t0 + 10_000_000_000);
        assert_eq!(a.history(Some(0)).count(), 3);
        assert_eq!(a.history(None).count(), 3);
        assert_eq!(a.take_closed().count(), 20);
    }

    #[test]
    fn windows_a_nats_outage_covers_say_so_and_close_without_samples() {
        let mut a = aggregator();
        let (t0, s, ms) = (1_790_000_000_000_000_000i64, 1_000_000_000i64, 1_000_000i64);
        a.record(&sample(0, t0 + 100 * ms, 1));
        // Down from 0.5 s to 3.25 s: no samples meanwhile, the tap loop ticks on.
        a.set_gap(true, t0 + 500 * ms);
        for tick in 6..33 {
            a.advance(t0 + tick * 100 * ms);
        }
        a.set_gap(false, t0 + 3_250 * ms);
        a.record(&sample(0, t0 + 3_500 * ms, 1));
        a.advance(t0 + 4 * s);
        let closed: Vec<WindowSummary> = a.take_closed().collect();
        let all: Vec<(i64, u64, u64)> = closed
            .iter()
            .filter(|w| w.consumer.is_none())
            .map(|w| ((w.start_ns - t0) / s, w.nats_gap_ms, w.counts.acks))
            .collect();
        assert_eq!(
            all,
            [(0, 500, 1), (1, 1_000, 0), (2, 1_000, 0), (3, 250, 1)]
        );
        let mine: Vec<u64> = closed
            .iter()
            .filter(|w| w.consumer == Some(0))
            .map(|w| w.nats_gap_ms)
            .collect();
        assert_eq!(
            mine,
            [500, 250],
            "a consumer's windows with samples carry it too"
        );

        // No look at all during an outage (a stalled loop, a window shorter than the tick):
        // the windows passed over are written too.
        let mut a = aggregator();
        a.record(&sample(0, t0 + 100 * ms, 1));
        a.set_gap(true, t0 + 500 * ms);
        a.advance(t0 + 3_250 * ms);
        a.set_gap(false, t0 + 3_250 * ms);
        a.advance(t0 + 4 * s);
        let all: Vec<(i64, u64)> = a
            .take_closed()
            .filter(|w| w.consumer.is_none())
            .map(|w| ((w.start_ns - t0) / s, w.nats_gap_ms))
            .collect();
        assert_eq!(all, [(0, 500), (1, 1_000), (2, 1_000), (3, 250)]);
    }
}
