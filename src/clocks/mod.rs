//! Each consumer's own frame clock: a game server's frames start when its loop starts, not on
//! wall-clock multiples of the tick, so every consumer's phase is taken against its own clock.
//!
//! A clock is **announced** by the game server ([`announce`]: JSON on
//! `ackscope.frame.<stream>.<consumer>`), **inferred** from the consumer's own acks
//! ([`infer`], with the period found by epoch folding in [`detect`]), or the **configured**
//! `[tick]` when neither is known. [`Clocks`] keeps, per
//! consumer, the clocks used over time (a restart brings a new offset), so a view over an
//! earlier range phases its samples with the clock they had then. Bounded: at most
//! [`MAX_SEGMENTS`] clocks a consumer, older ones merged away and counted.
//! This module maps (consumer, instant) to a frame; it does not read samples.

pub mod announce;
pub mod config;
pub mod detect;
pub mod infer;

use crate::model::ConsumerId;
use crate::tick::{Frame, FrameClock, PhaseOf};

/// Clocks kept per consumer; the oldest go first.
pub const MAX_SEGMENTS: usize = 64;

/// Where a consumer's frame clock comes from.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ClockSource {
    /// The configured `[tick]` (or a request's `tick`): nothing better is known.
    Configured,
    /// Estimated from the consumer's own acks.
    Inferred,
    /// Published by the game server.
    Announced,
}

impl ClockSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSource::Configured => "configured",
            ClockSource::Inferred => "inferred",
            ClockSource::Announced => "announced",
        }
    }
}

/// One clock of a consumer, in effect from `from_ns` until the next one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub from_ns: i64,
    pub frame: Frame,
    pub source: ClockSource,
    /// 0..1: 1 for an announced clock, the inference's confidence for an inferred one.
    pub confidence: f64,
}

/// Every consumer's clocks over time.
#[derive(Debug, Clone)]
pub struct Clocks {
    configured: Frame,
    /// By consumer id, oldest first; empty: the configured clock.
    per: Vec<Vec<Segment>>,
    /// Clocks merged away because a consumer had [`MAX_SEGMENTS`].
    pub segments_dropped: u64,
}

impl Clocks {
    pub fn new(configured: Frame) -> Self {
        Self {
            configured,
            per: Vec::new(),
            segments_dropped: 0,
        }
    }

    pub fn configured(&self) -> &Frame {
        &self.configured
    }

    /// The clock of `consumer` at `t_ns`. A consumer's first known clock also covers its
    /// samples from before it was known (an inferred clock is found from them; an announcement
    /// comes at a server's start).
    pub fn at(&self, consumer: ConsumerId, t_ns: i64) -> &Frame {
        match self.per.get(consumer as usize).map(Vec::as_slice) {
            None | Some([]) => &self.configured,
            Some([only]) => &only.frame,
            Some(segments) => {
                let i = segments.partition_point(|s| s.from_ns <= t_ns);
                &segments[i.saturating_sub(1)].frame
            }
        }
    }

    /// The clock of `consumer` at `t_ns`, with its source and confidence.
    pub fn segment_at(&self, consumer: ConsumerId, t_ns: i64) -> Segment {
        match self.per.get(consumer as usize).map(Vec::as_slice) {
            None | Some([]) => self.configured_segment(),
            Some(segments) => {
                let i = segments.partition_point(|s| s.from_ns <= t_ns);
                segments[i.saturating_sub(1)]
            }
        }
    }

    /// The clock `consumer` uses now, with its source and confidence.
    pub fn current(&self, consumer: ConsumerId) -> Segment {
        self.per
            .get(consumer as usize)
            .and_then(|s| s.last())
            .copied()
            .unwrap_or(self.configured_segment())
    }

    fn configured_segment(&self) -> Segment {
        Segment {
            from_ns: i64::MIN,
            frame: self.configured,
            source: ClockSource::Configured,
            confidence: 0.0,
        }
    }

    /// The clocks `consumer`'s samples in `[from_ns, to_ns)` were phased with, oldest first.
    pub fn over(&self, consumer: ConsumerId, from_ns: i64, to_ns: i64) -> Vec<Segment> {
        let segments = self.segments(consumer);
        if segments.is_empty() {
            return vec![self.configured_segment()];
        }
        segments
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                let end = segments.get(i + 1).map_or(i64::MAX, |n| n.from_ns);
                let start = if *i == 0 { i64::MIN } else { s.from_ns };
                start < to_ns && end > from_ns
            })
            .map(|(_, s)| *s)
            .collect()
    }

    /// One more than the highest consumer id with a clock of its own.
    pub fn consumers(&self) -> usize {
        self.per.len()
    }

    /// The clocks of `consumer`, oldest first (none: the configured one).
    pub fn segments(&self, consumer: ConsumerId) -> &[Segment] {
        self.per.get(consumer as usize).map_or(&[], Vec::as_slice)
    }

    /// `consumer` uses `frame` from `from_ns` on; a later clock already set from then is
    /// replaced. Returns whether anything changed.
    pub fn set(&mut self, consumer: ConsumerId, segment: Segment) -> bool {
        let i = consumer as usize;
        if self.per.len() <= i {
            self.per.resize_with(i + 1, Vec::new);
        }
        let segments = &mut self.per[i];
        if let Some(last) = segments.last_mut()
            && last.frame.same_grid(&segment.frame)
            && last.source == segment.source
        {
            last.confidence = segment.confidence;
            return false;
        }
        let keep = segments.partition_point(|s| s.from_ns < segment.from_ns);
        segments.truncate(keep);
        if segments.len() == MAX_SEGMENTS {
            segments.remove(0);
            self.segments_dropped += 1;
        }
        segments.push(segment);
        true
    }

    /// Lets go of the clocks of forgotten consumers before their ids are reused.
    pub fn forget(&mut self, consumers: &[ConsumerId]) {
        for &c in consumers {
            if let Some(s) = self.per.get_mut(c as usize) {
                *s = Vec::new();
            }
        }
    }

    /// Drops the clocks that ended before `t_ns` (nothing kept is that old), keeping the one
    /// in effect then.
    pub fn prune_before(&mut self, t_ns: i64) {
        for segments in &mut self.per {
            let ended = segments
                .partition_point(|s| s.from_ns <= t_ns)
                .saturating_sub(1);
            segments.drain(..ended);
        }
    }
}

/// How a view phases rows: one clock for every consumer (a request's `tick`), or each
/// consumer's own.
#[derive(Debug, Clone, Copy)]
pub struct PhaseClocks<'a> {
    pub bins: u32,
    pub phase_of: PhaseOf,
    /// Set: this frame for everyone.
    pub one: Option<Frame>,
    pub clocks: &'a Clocks,
}

impl<'a> PhaseClocks<'a> {
    /// Each consumer's own clock, binned as `clock` says.
    pub fn own(clocks: &'a Clocks, clock: &FrameClock) -> Self {
        Self {
            bins: clock.phase_bins(),
            phase_of: clock.phase_of(),
            one: None,
            clocks,
        }
    }

    /// `clock` for every consumer.
    pub fn one(clocks: &'a Clocks, clock: &FrameClock) -> Self {
        Self {
            one: Some(*clock.frame()),
            ..Self::own(clocks, clock)
        }
    }

    /// The frame `consumer`'s instant `t_ns` is phased with.
    pub fn frame(&self, consumer: ConsumerId, t_ns: i64) -> &Frame {
        match &self.one {
            Some(f) => f,
            None => self.clocks.at(consumer, t_ns),
        }
    }

    /// The phase bin of `consumer`'s instant `t_ns`: the same share of its own frame.
    pub fn bin(&self, consumer: ConsumerId, t_ns: i64) -> u32 {
        self.frame(consumer, t_ns).bin(t_ns, self.bins)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Period;

    fn frame(epoch_ns: i64) -> Frame {
        Frame::new(Period::from_ns(16_000_000), epoch_ns).unwrap()
    }

    fn segment(from_ns: i64, epoch_ns: i64, source: ClockSource) -> Segment {
        Segment {
            from_ns,
            frame: frame(epoch_ns),
            source,
            confidence: 1.0,
        }
    }

    #[test]
    fn each_range_keeps_the_clock_it_had() {
        let mut c = Clocks::new(frame(0));
        assert_eq!(c.at(3, 100), &frame(0));
        assert_eq!(c.current(3).source, ClockSource::Configured);
        assert!(c.set(3, segment(1_000, 5, ClockSource::Inferred)));
        // The first clock also covers what came before it.
        assert_eq!(c.at(3, 0), &frame(5));
        assert!(c.set(3, segment(2_000, 7, ClockSource::Announced)));
        assert_eq!(c.at(3, 1_999), &frame(5));
        assert_eq!(c.at(3, 2_000), &frame(7));
        assert_eq!(c.current(3).source, ClockSource::Announced);
        // The same clock again changes nothing; an earlier start replaces what came after.
        assert!(!c.set(3, segment(3_000, 7, ClockSource::Announced)));
        assert!(c.set(3, segment(1_500, 9, ClockSource::Announced)));
        assert_eq!(c.segments(3).len(), 2);
        assert_eq!(c.at(3, 2_500), &frame(9));
        // Others keep the configured one.
        assert_eq!(c.at(2, 2_500), &frame(0));
        c.prune_before(1_600);
        assert_eq!(c.segments(3).len(), 1);
        c.forget(&[3]);
        assert_eq!(c.at(3, 2_500), &frame(0));
    }

    #[test]
    fn a_consumer_keeps_a_bounded_number_of_clocks() {
        let mut c = Clocks::new(frame(0));
        for k in 0..(MAX_SEGMENTS as i64 + 10) {
            c.set(0, segment(k * 1_000, k, ClockSource::Inferred));
        }
        assert_eq!(c.segments(0).len(), MAX_SEGMENTS);
        assert_eq!(c.segments_dropped, 10);
        assert_eq!(c.current(0).frame, frame(MAX_SEGMENTS as i64 + 9));
    }
}
