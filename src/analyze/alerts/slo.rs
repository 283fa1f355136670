//! The frame-budget SLI over time: per scope, how many acks came within one frame (good) out
//! of all, in buckets, so that burn rates over any window up to the longest rule's can be read
//! back. Bounded: buckets older than the longest window go, and at most `max_scopes` scopes
//! are kept (what does not fit is counted).

use std::collections::{HashMap, VecDeque};

/// A scope by names: (stream, consumer), `*` for all consumers.
pub type ScopeNames = (String, String);

/// Good and total acks per bucket, per scope.
#[derive(Debug)]
pub struct BudgetLedger {
    bucket_ns: i64,
    keep_ns: i64,
    max_scopes: usize,
    scopes: HashMap<ScopeNames, VecDeque<Bucket>>,
    /// Windows not counted because `max_scopes` scopes were kept already.
    pub overflow: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    start_ns: i64,
    good: u64,
    total: u64,
}

/// A burn rate over one window: how fast the error budget goes, 1 meaning exactly as fast as
/// the objective allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burn {
    pub rate: f64,
    /// Acks over the window.
    pub total: u64,
    /// Share of acks within the frame budget.
    pub good_share: f64,
}

impl BudgetLedger {
    /// Buckets of `bucket_ns`, kept for `keep_ns`.
    pub fn new(bucket_ns: i64, keep_ns: i64, max_scopes: usize) -> Self {
        Self {
            bucket_ns: bucket_ns.max(1),
            keep_ns,
            max_scopes,
            scopes: HashMap::new(),
            overflow: 0,
        }
    }

    /// Counts a closed window of `scope` that ended at `end_ns`.
    pub fn add(&mut self, scope: &ScopeNames, end_ns: i64, good: u64, total: u64) {
        if total == 0 {
            return;
        }
        if !self.scopes.contains_key(scope) && self.scopes.len() >= self.max_scopes {
            self.overflow += 1;
            return;
        }
        let start_ns = (end_ns - 1).div_euclid(self.bucket_ns) * self.bucket_ns;
        let buckets = self.scopes.entry(scope.clone()).or_default();
        match buckets.back_mut() {
            Some(b) if b.start_ns == start_ns => {
                b.good += good.min(total);
                b.total += total;
            }
            // A window older than the newest bucket (a restart's history) joins no bucket.
            Some(b) if b.start_ns > start_ns => {}
            _ => buckets.push_back(Bucket {
                start_ns,
                good: good.min(total),
                total,
            }),
        }
    }

    /// Forgets buckets that no window reaches back to from `now_ns`, and scopes left empty.
    pub fn prune(&mut self, now_ns: i64) {
        let oldest = now_ns.saturating_sub(self.keep_ns.saturating_add(self.bucket_ns));
        self.scopes.retain(|_, buckets| {
            while buckets.front().is_some_and(|b| b.start_ns < oldest) {
                buckets.pop_front();
            }
            !buckets.is_empty()
        });
    }

    /// The burn rate of `scope` over the `over_ns` before `now_ns` against `objective` (the
    /// share of acks that must be within budget); `None` without any ack. Whole buckets count:
    /// the window is rounded to them.
    pub fn burn(
        &self,
        scope: &ScopeNames,
        now_ns: i64,
        over_ns: i64,
        objective: f64,
    ) -> Option<Burn> {
        let from = now_ns.saturating_sub(over_ns);
        let (good, total) = self
            .scopes
            .get(scope)?
            .iter()
            .rev()
            .take_while(|b| b.start_ns + self.bucket_ns > from)
            .fold((0, 0), |(g, t), b| (g + b.good, t + b.total));
        (total > 0).then(|| {
            let good_share = good as f64 / total as f64;
            Burn {
                rate: (1.0 - good_share) / (1.0 - objective).max(f64::EPSILON),
                total,
                good_share,
            }
        })
    }

    /// Every scope with buckets.
    pub fn scopes(&self) -> impl Iterator<Item = &ScopeNames> {
        self.scopes.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn all() -> ScopeNames {
        ("*".into(), "*".into())
    }

    #[test]
    fn burn_rates_read_the_window_asked_for() {
        let mut l = BudgetLedger::new(10 * S, 3_600 * S, 10);
        // An hour of one-second windows, 1,000 acks each: all good, then the last five minutes
        // with 2% over budget.
        for t in 1..=3_600 {
            let good = if t > 3_300 { 980 } else { 1_000 };
            l.add(&all(), t * S, good, 1_000);
        }
        let now = 3_600 * S;
        let short = l.burn(&all(), now, 300 * S, 0.999).unwrap();
        assert_eq!(short.total, 300_000);
        assert!((short.rate - 20.0).abs() < 1e-6, "{short:?}");
        let long = l.burn(&all(), now, 3_600 * S, 0.999).unwrap();
        assert_eq!(long.total, 3_600_000);
        assert!(
            (long.rate - 20.0 * 300.0 / 3_600.0).abs() < 1e-6,
            "{long:?}"
        );
        assert!(
            l.burn(&("GAME".into(), "x".into()), now, 300 * S, 0.999)
                .is_none()
        );
    }

    #[test]
    fn the_ledger_is_bounded_in_time_and_scopes() {
        let mut l = BudgetLedger::new(S, 60 * S, 2);
        for t in 1..=600 {
            l.add(&all(), t * S, 1, 1);
        }
        l.prune(600 * S);
        assert!(l.scopes[&all()].len() <= 62);
        l.add(&("a".into(), "b".into()), S, 1, 1);
        l.add(&("c".into(), "d".into()), S, 1, 1);
        assert_eq!(l.overflow, 1);
        assert_eq!(l.scopes().count(), 2);
        // Scopes with nothing left go.
        l.prune(10_000 * S);
        assert_eq!(l.scopes().count(), 0);
    }
}
