//! `hot_spot`: one consumer, subject or label value is slow far more often than the others of
//! its dimension.

use super::*;

/// The `hot_spot` detector.
pub struct HotSpot;

impl Detector for HotSpot {
    fn cause(&self) -> Cause {
        Cause::HotSpot
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        hot_spot(e, read.threshold)
    }
}

/// One dimension value as a hot spot: its slow and all samples, its slow rate against the median
/// other value's, their ratio, and the confidence that makes of it.
struct Candidate {
    dim: Dimension,
    slow: usize,
    all: usize,
    rate: f64,
    others: f64,
    lift: f64,
    confidence: f64,
}

/// Samples per value of each dimension, (slow, all), indexed by consumer id or symbol: the
/// values are small dense integers, so vectors count them faster than a map.
#[derive(Default)]
struct Tallies {
    consumers: Vec<(usize, usize)>,
    subjects: Vec<(usize, usize)>,
    labels: [Vec<(usize, usize)>; MAX_LABELS],
}

impl Tallies {
    fn add(&mut self, r: &RingRow, slow: bool) {
        fn bump(v: &mut Vec<(usize, usize)>, id: u32, slow: bool) {
            let c = slot(v, id as usize);
            c.0 += usize::from(slow);
            c.1 += 1;
        }
        bump(&mut self.consumers, r.consumer, slow);
        if !r.subject.is_none() {
            bump(&mut self.subjects, r.subject.0, slow);
        }
        for (i, l) in r.labels.iter().enumerate().filter(|(_, l)| !l.is_none()) {
            bump(&mut self.labels[i], l.0, slow);
        }
    }

    /// Every value seen, with its (slow, all) counts.
    fn values(&self) -> impl Iterator<Item = (Dimension, (usize, usize))> + '_ {
        let seen = |v: &[(usize, usize)]| {
            v.iter()
                .enumerate()
                .filter(|(_, c)| c.1 > 0)
                .map(|(i, c)| (i as u32, *c))
                .collect::<Vec<_>>()
        };
        let consumers = seen(&self.consumers)
            .into_iter()
            .map(|(i, c)| (Dimension::Consumer(i), c));
        let subjects = seen(&self.subjects)
            .into_iter()
            .map(|(i, c)| (Dimension::Subject(Sym(i)), c));
        let labels = self.labels.iter().enumerate().flat_map(move |(k, v)| {
            seen(v)
                .into_iter()
                .map(move |(i, c)| (Dimension::Label(k, Sym(i)), c))
        });
        consumers.chain(subjects).chain(labels)
    }

    fn get(&self, d: Dimension) -> (usize, usize) {
        let (k, i) = position(d);
        self.dimension(k).get(i).copied().unwrap_or((0, 0))
    }

    /// The tallies of dimension `k` (in [`position`]'s order).
    fn dimension(&self, k: usize) -> &[(usize, usize)] {
        match k {
            0 => &self.consumers,
            1 => &self.subjects,
            _ => &self.labels[k - 2],
        }
    }

    /// Per dimension (in [`position`]'s order), the slow rates (slow / all) of its values,
    /// sorted.
    fn sorted_rates(&self) -> Vec<Vec<f64>> {
        (0..2 + MAX_LABELS)
            .map(|k| {
                let mut r: Vec<f64> = self
                    .dimension(k)
                    .iter()
                    .filter(|c| c.1 > 0)
                    .map(|c| c.0 as f64 / c.1 as f64)
                    .collect();
                r.sort_unstable_by(f64::total_cmp);
                r
            })
            .collect()
    }
}

/// Where a dimension value's tally is: its dimension (consumers, subjects, then each label)
/// and its index there.
fn position(d: Dimension) -> (usize, usize) {
    match d {
        Dimension::Consumer(id) => (0, id as usize),
        Dimension::Subject(sym) => (1, sym.0 as usize),
        Dimension::Label(k, sym) => (2 + k, sym.0 as usize),
    }
}

/// The median of `sorted` without one element equal to `own` (0 when nothing is left).
fn median_of_others(sorted: &[f64], own: f64) -> f64 {
    let n = sorted.len();
    if n < 2 {
        return 0.0;
    }
    let at = sorted.partition_point(|&x| x < own);
    let mid = (n - 1) / 2;
    if mid < at {
        sorted[mid]
    } else {
        sorted[mid + 1]
    }
}

/// Whether a sample carries a dimension value.
fn carries(r: &RingRow, d: Dimension) -> bool {
    match d {
        Dimension::Consumer(id) => r.consumer == id,
        Dimension::Subject(sym) => r.subject == sym,
        Dimension::Label(k, sym) => r.labels[k] == sym,
    }
}

/// `hot_spot`: one consumer, subject or label value is slow far more often than the others of
/// its dimension (BubbleUp-style: the slow set against the whole, per value).
fn hot_spot(e: &Evidence, threshold: u64) -> CauseFinding {
    // The outliers: above their own consumer's baseline P99 (the spike's baseline P99 for a
    // consumer without one), so that a consumer slower than usual stands out even while the
    // others are somewhat slow too, and one that always runs slower does not.
    let is_slow = |r: &RingRow| {
        let t = match e.usual_p99.get(r.consumer as usize) {
            Some(&t) if t > 0 => t,
            _ => threshold,
        };
        spiked(e, r).is_some_and(|l| l > t)
    };
    let mut counts = Tallies::default();
    for r in e.context() {
        counts.add(r, is_slow(r));
    }
    let slow = counts.consumers.iter().map(|c| c.0).sum::<usize>();
    // Only values the spike's own samples carry can explain it.
    let own = e.context.is_some().then(|| {
        let mut own = Tallies::default();
        e.spike.iter().for_each(|r| own.add(r, false));
        own
    });
    // Each value's slow rate (the share of its own samples that are slow) against the median
    // rate of the other values of its dimension: another consumer slow for its own reasons,
    // even with many times the samples (a backlog draining), is one value among the others,
    // not the yardstick. Rates under 1% count as 1%, so that a handful of slow samples against
    // none elsewhere is not a hot spot.
    let score = |rate: f64, others: f64| {
        let lift = rate / others.max(0.01);
        (lift, clamp((lift - 1.5) / 2.5) * clamp(rate / 0.2))
    };
    let rates = counts.sorted_rates();
    let best = counts
        .values()
        // A value stands out only among others: a consumer's one subject is no hot spot.
        .filter(|(d, (n, _))| {
            *n > 0
                && rates[position(*d).0].len() >= 2
                && own.as_ref().is_none_or(|own| own.get(*d).1 > 0)
        })
        .map(|(dim, (slow, all))| {
            let rate = slow as f64 / all as f64;
            let others = median_of_others(&rates[position(dim).0], rate);
            let (lift, confidence) = score(rate, others);
            Candidate {
                dim,
                slow,
                all,
                rate,
                others,
                lift,
                confidence,
            }
        })
        .max_by(|a, b| {
            a.confidence
                .total_cmp(&b.confidence)
                .then(a.rate.total_cmp(&b.rate))
        });
    let Some(Candidate {
        dim,
        slow: n,
        all,
        rate,
        others,
        lift,
        confidence,
    }) = best
    else {
        return CauseFinding {
            cause: Cause::HotSpot,
            confidence: 0.0,
            evidence: json!({"slow_samples": slow}),
            summary: if slow == 0 {
                "no slow samples".to_string()
            } else {
                "no consumer, subject or label value stands out among others of its kind"
                    .to_string()
            },
            exemplar_trace_ids: Vec::new(),
            caused_by: None,
        };
    };
    let kind = match dim {
        Dimension::Consumer(_) => "consumer",
        Dimension::Subject(_) => "subject",
        Dimension::Label(..) => "label",
    };
    let (slow_share, all_share) = (
        n as f64 / slow.max(1) as f64,
        all as f64 / e.context().len().max(1) as f64,
    );
    let matching = e.context().iter().filter(|r| is_slow(r) && carries(r, dim));
    let value = (e.name)(dim);
    CauseFinding {
        cause: Cause::HotSpot,
        confidence,
        evidence: json!({"dimension": kind, "value": value, "slow_rate": rate,
            "others_slow_rate": others, "lift": lift, "slow_share": slow_share,
            "share_of_all": all_share}),
        summary: format!(
            "{kind} {value}: {} of its samples slow vs {} for the median other {kind} (it holds {} of slow samples, {} of all)",
            pct(rate),
            pct(others),
            pct(slow_share),
            pct(all_share)
        ),
        exemplar_trace_ids: exemplars(matching),
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;
    use crate::tick::{Frame, Period};

    #[test]
    fn one_slow_consumer_among_healthy_ones_is_a_hot_spot() {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().filter(|r| r.consumer == 3) {
            r.ack_latency_ns = Some(9 * MS);
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, Cause::HotSpot, "{causes:#?}");
        assert_eq!(causes[0].evidence["share_of_all"], 0.25);
    }

    /// The causes of a spike of consumer 3 alone, with `all` (every consumer during the spike)
    /// as the context and the healthy baseline before it.
    fn consumer_3_among(all: &[RingRow]) -> Vec<CauseFinding> {
        let own: Vec<RingRow> = all.iter().filter(|r| r.consumer == 3).copied().collect();
        let all_base = baseline();
        let base: Vec<RingRow> = all_base
            .iter()
            .filter(|r| r.consumer == 3)
            .copied()
            .collect();
        let clocks = Clocks::new(Frame::new(Period::from_ns(16 * MS), 0).unwrap());
        let name = |d: Dimension| format!("{d:?}");
        attribute(&Evidence {
            spike: &own,
            baseline: &base,
            context: Some(all),
            usual_p99: &p99_by_consumer(&all_base, Latency::Ack),
            spike_ns: (own[0].acked_ns, own[own.len() - 1].acked_ns + 1),
            baseline_quiet_ns: base[base.len() - 1].acked_ns + 1 - base[0].acked_ns,
            baseline_p99: 0,
            deliveries: Deliveries::default(),
            clocks: &clocks,
            ack_pending: &[],
            name: &name,
            latency: Latency::Ack,
        })
    }

    #[test]
    fn a_consumer_slower_than_the_others_is_a_hot_spot_of_its_own_spike() {
        let causes = consumer_3_among(&slow_3_beside_a_backlog(0, |_| 0));
        assert_eq!(causes[0].cause, Cause::HotSpot, "{causes:#?}");
    }

    /// Every consumer during a spike: consumer 3 slow (12 ms) while consumer 0 drains a
    /// backlog of `copies` more acks for each of its own (none: no backlog), the k-th
    /// `latency_ms(k)` late.
    fn slow_3_beside_a_backlog(copies: i64, latency_ms: fn(i64) -> u64) -> Vec<RingRow> {
        let mut all = healthy(spike_start(), 60);
        for r in all.iter_mut().filter(|r| r.consumer == 3) {
            r.ack_latency_ns = Some(12 * MS);
        }
        let backlog: Vec<RingRow> = all
            .iter()
            .filter(|r| r.consumer == 0)
            .flat_map(|r| {
                (0..copies).map(move |k| row(0, r.acked_ns + k * 1_000, latency_ms(k), 2))
            })
            .collect();
        all.extend(backlog);
        all
    }

    #[test]
    fn another_consumer_slow_for_its_own_reasons_does_not_hide_a_hot_spot() {
        // Ten times the acks, a third of them slower still: consumer 0 holds most of the slow
        // samples.
        let all = slow_3_beside_a_backlog(10, |k| [40, 2, 2][k as usize % 3]);
        let causes = consumer_3_among(&all);
        assert_eq!(causes[0].cause, Cause::HotSpot, "{causes:#?}");
        let lift = causes[0].evidence["lift"].as_f64().unwrap();
        assert!(
            lift > 2.5 && causes[0].evidence["slow_share"].as_f64().unwrap() < 0.5,
            "{causes:#?}"
        );
    }

    #[test]
    fn the_median_of_the_others_leaves_one_out() {
        assert_eq!(median_of_others(&[], 0.5), 0.0);
        assert_eq!(median_of_others(&[0.5], 0.5), 0.0);
        assert_eq!(median_of_others(&[0.0, 0.5], 0.5), 0.0);
        assert_eq!(median_of_others(&[0.0, 0.5], 0.0), 0.5);
        // [0, 0.1, 0.2, 0.9]: without 0.9 the median of three is 0.1; without 0 it is 0.2.
        let v = [0.0, 0.1, 0.2, 0.9];
        assert_eq!(median_of_others(&v, 0.9), 0.1);
        assert_eq!(median_of_others(&v, 0.0), 0.2);
        assert_eq!(median_of_others(&[0.3, 0.3, 0.3], 0.3), 0.3);
    }

    #[test]
    fn a_flood_of_slow_samples_elsewhere_does_not_hide_a_hot_spot() {
        // Twenty times the acks, every one slow: consumer 0 holds 95% of the slow samples,
        // consumer 3 under 5%.
        let all = slow_3_beside_a_backlog(20, |_| 40);
        let causes = consumer_3_among(&all);
        assert_eq!(causes[0].cause, Cause::HotSpot, "{causes:#?}");
        let ev = &causes[0].evidence;
        assert_eq!(ev["slow_rate"], 1.0, "{ev}");
        assert_eq!(ev["others_slow_rate"], 0.0, "{ev}");
        assert!(ev["slow_share"].as_f64().unwrap() < 0.05, "{ev}");
        // Everyone slow at once is no hot spot.
        let mut all = healthy(spike_start(), 60);
        all.iter_mut()
            .for_each(|r| r.ack_latency_ns = Some(12 * MS));
        let hot = consumer_3_among(&all)
            .into_iter()
            .find(|c| c.cause == Cause::HotSpot)
            .unwrap();
        assert!(hot.confidence < 0.1, "{hot:#?}");
    }
}
