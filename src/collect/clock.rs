//! Timestamps from other clocks, checked against ackscope's own.
//!
//! ackscope's wall clock governs its windows. A time another party writes into a message (a
//! server ack metric's `timestamp`) is used only when it is plausible: not more than a few
//! milliseconds after ackscope saw the message, and not more than a bound before it. Anything else is an outlier: counted, and
//! replaced by the time ackscope saw the message, so that one message stamped 2200 cannot hold
//! every window open and one stamped 1970 cannot put a sample at the start of time. The offsets
//! seen are kept (a bounded number) and their median is the measured offset of the other clock
//! (transit included: a few hundred microseconds behind when the clocks agree).
//!
//! [`Gaps`] are the other side of time: the stretches when ackscope could not see NATS at all.

use std::collections::VecDeque;

/// How far ahead of ackscope's clock a stamp may be and still be used: two well-synchronised
/// clocks differ by a few milliseconds at most; more would move windows on ahead.
pub const MAX_AHEAD_NS: i64 = 20_000_000;

/// Offsets kept for the median.
pub const OFFSETS_KEPT: usize = 256;

/// One other clock, checked against ackscope's.
#[derive(Debug, Clone)]
pub struct ForeignClock {
    max_behind_ns: i64,
    offsets: VecDeque<i64>,
    outliers: u64,
}

impl ForeignClock {
    /// A clock whose stamps may lag the moment ackscope sees them by up to `max_behind_ns`,
    /// or lead it by up to [`MAX_AHEAD_NS`].
    pub fn new(max_behind_ns: u64) -> Self {
        Self {
            max_behind_ns: i64::try_from(max_behind_ns).unwrap_or(i64::MAX),
            offsets: VecDeque::with_capacity(OFFSETS_KEPT),
            outliers: 0,
        }
    }

    /// The time to use for an event the other clock stamped `foreign_ns` and ackscope saw at
    /// `own_ns`: the stamp when plausible, otherwise `own_ns` (counted as an outlier).
    pub fn check(&mut self, foreign_ns: i64, own_ns: i64) -> i64 {
        let offset = foreign_ns.saturating_sub(own_ns);
        if self.offsets.len() == OFFSETS_KEPT {
            self.offsets.pop_front();
        }
        self.offsets.push_back(offset);
        if offset > MAX_AHEAD_NS || offset < -self.max_behind_ns {
            self.outliers += 1;
            own_ns
        } else {
            foreign_ns
        }
    }

    /// Stamps refused since start.
    pub fn outliers(&self) -> u64 {
        self.outliers
    }

    /// The median offset (other clock minus ackscope's) of the last [`OFFSETS_KEPT`] stamps,
    /// outliers included; `None` before the first.
    pub fn offset_ns(&self) -> Option<i64> {
        if self.offsets.is_empty() {
            return None;
        }
        let mut sorted: Vec<i64> = self.offsets.iter().copied().collect();
        sorted.sort_unstable();
        Some(sorted[sorted.len() / 2])
    }
}

/// Outages remembered.
pub const GAPS_KEPT: usize = 64;

/// The times NATS was down, as ackscope saw them: what was lost then is not counted as the
/// consumers' loss.
#[derive(Debug, Clone, Default)]
pub struct Gaps {
    /// (start, end or `None` while it lasts), Unix ns, oldest first; at most [`GAPS_KEPT`].
    gaps: VecDeque<(i64, Option<i64>)>,
    opened: u64,
    closed_ns: u64,
}

impl Gaps {
    /// Opens a gap at `t_ns`; false if one is open already.
    pub fn open(&mut self, t_ns: i64) -> bool {
        if self.is_open() {
            return false;
        }
        if self.gaps.len() == GAPS_KEPT {
            self.gaps.pop_front();
        }
        self.gaps.push_back((t_ns, None));
        self.opened += 1;
        true
    }

    /// Closes the open gap at `t_ns`; false if none is open.
    pub fn close(&mut self, t_ns: i64) -> bool {
        match self.gaps.back_mut() {
            Some((start, end @ None)) => {
                *end = Some(t_ns.max(*start));
                self.closed_ns += t_ns.saturating_sub(*start).max(0) as u64;
                true
            }
            _ => false,
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(self.gaps.back(), Some((_, None)))
    }

    /// Whether `[from, to]` overlaps a gap.
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.gaps
            .iter()
            .any(|&(start, end)| start <= to && from <= end.unwrap_or(i64::MAX))
    }

    /// Whether a gap is open or ended at most `within_ns` before `t_ns`.
    pub fn ended_within(&self, t_ns: i64, within_ns: i64) -> bool {
        self.gaps
            .iter()
            .any(|&(_, end)| end.is_none_or(|e| t_ns.saturating_sub(e) <= within_ns))
    }

    /// Gaps opened since start.
    pub fn opened(&self) -> u64 {
        self.opened
    }

    /// Time in gaps that have ended, ns.
    pub fn closed_ns(&self) -> u64 {
        self.closed_ns
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, Option<i64>)> + '_ {
        self.gaps.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    #[test]
    fn plausible_stamps_are_kept_and_the_rest_replaced() {
        let mut c = ForeignClock::new(S as u64);
        let now = 1_790_000_000 * S;
        assert_eq!(c.check(now - 300_000, now), now - 300_000);
        assert_eq!(c.check(now, now), now);
        // A little ahead is a clock a few milliseconds off: kept.
        assert_eq!(c.check(now + MAX_AHEAD_NS, now), now + MAX_AHEAD_NS);
        // Further ahead, far behind, 2200, 1970, the ends of the range.
        for stamp in [
            now + MAX_AHEAD_NS + 1,
            now - 2 * S,
            7_258_118_400 * S,
            0,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(c.check(stamp, now), now, "{stamp}");
        }
        assert_eq!(c.outliers(), 6);
    }

    #[test]
    fn the_offset_is_the_median_of_recent_stamps() {
        let mut c = ForeignClock::new(S as u64);
        assert_eq!(c.offset_ns(), None);
        let now = 1_790_000_000 * S;
        for i in 0..1_000 {
            // A server 40 ms behind, with one wild stamp in ten.
            let stamp = if i % 10 == 0 { 0 } else { now - 40_000_000 };
            c.check(stamp, now);
        }
        assert_eq!(c.offset_ns(), Some(-40_000_000));
        assert_eq!(c.offsets.len(), OFFSETS_KEPT);
    }

    #[test]
    fn gaps_open_once_close_once_and_stay_bounded() {
        let mut g = Gaps::default();
        assert!(!g.close(5));
        assert!(g.open(10) && !g.open(11));
        assert!(g.is_open() && g.overlaps(0, 10) && g.overlaps(1_000, 2_000));
        assert!(g.ended_within(1_000, 0), "an open gap has not ended");
        assert!(g.close(40) && !g.close(41));
        assert_eq!((g.opened(), g.closed_ns()), (1, 30));
        assert!(
            g.overlaps(40, 50) && g.overlaps(0, 10) && !g.overlaps(41, 50) && !g.overlaps(0, 9)
        );
        assert!(g.ended_within(45, 5) && !g.ended_within(46, 5));
        for i in 0..100 {
            g.open(100 + 10 * i);
            g.close(105 + 10 * i);
        }
        assert_eq!(g.iter().count(), GAPS_KEPT);
        assert_eq!((g.opened(), g.closed_ns()), (101, 30 + 500));
    }
}
