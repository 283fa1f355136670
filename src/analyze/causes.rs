//! Cause detectors: each a pure function from a spike's samples and its baseline's samples to
//! a confidence in [0, 1] and evidence a human can check, with exemplar trace ids of the
//! slowest samples that match. Causes are ranked; `unknown` stands in when none reaches 0.5.

use serde_json::{Value, json};

use crate::aggregate::rebin::{Latency, quantile};
use crate::aggregate::ring::RingRow;
use crate::model::MAX_LABELS;
use crate::model::{AckKind, ConsumerId, Sym, TraceId};
use crate::tick::FrameClock;

/// Exemplar trace ids per cause.
pub const EXEMPLARS: usize = 5;

/// One attributed cause.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    pub cause: &'static str,
    pub confidence: f64,
    pub evidence: Value,
    /// The evidence in words.
    pub summary: String,
    pub exemplar_trace_ids: Vec<TraceId>,
}

/// What the detectors look at.
pub struct Evidence<'a> {
    /// Samples acked during the spike.
    pub spike: &'a [RingRow],
    /// Samples acked in the quiet time before it.
    pub baseline: &'a [RingRow],
    /// Samples of every consumer during the spike (the spike's own when it is for all of
    /// them): where a hot spot is looked for.
    pub context: &'a [RingRow],
    /// Per consumer id, its usual P99 of the latency that spiked (0 when not known): what is
    /// slow for each consumer when looking for a hot spot.
    pub usual_p99: &'a [u64],
    pub spike_ns: (i64, i64),
    pub baseline_ns: (i64, i64),
    pub clock: &'a FrameClock,
    /// Consumer state polls in the spike: (ack pending, max ack pending).
    pub ack_pending: &'a [(u64, i64)],
    /// Names a dimension value (consumer, subject or label) for the evidence.
    pub name: &'a (dyn Fn(Dimension) -> String + Sync),
    /// The latency that spiked.
    pub latency: Latency,
}

/// A dimension a hot spot can be found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Consumer(ConsumerId),
    Subject(Sym),
    Label(usize, Sym),
}

/// A sample's ack latency: what exemplars are ranked by.
fn latency(r: &RingRow) -> Option<u64> {
    r.ack_latency_ns
}

/// The sample's value of the latency that spiked.
fn spiked(e: &Evidence, r: &RingRow) -> Option<u64> {
    e.latency.of(r)
}

/// The baseline's P99 of the latency that spiked: spike samples above it are "slow".
fn slow_threshold(e: &Evidence) -> u64 {
    let mut v: Vec<u64> = e.baseline.iter().filter_map(|r| spiked(e, r)).collect();
    quantile(&mut v, 0.99).max(1)
}

fn slow<'a>(e: &Evidence<'a>, threshold: u64) -> Vec<&'a RingRow> {
    e.spike
        .iter()
        .filter(|r| spiked(e, r).is_some_and(|l| l > threshold))
        .collect()
}

/// Trace ids of the slowest rows, slowest first.
fn exemplars<'a>(rows: impl IntoIterator<Item = &'a RingRow>) -> Vec<TraceId> {
    // One pass keeping the slowest few: the rows can be a million.
    let mut top: Vec<(u64, TraceId)> = Vec::with_capacity(EXEMPLARS + 1);
    for r in rows {
        let (Some(trace), l) = (r.trace_id, latency(r).unwrap_or(0)) else {
            continue;
        };
        if top.len() == EXEMPLARS && top[EXEMPLARS - 1].0 >= l {
            continue;
        }
        let at = top.partition_point(|(t, _)| *t >= l);
        top.insert(at, (l, trace));
        top.truncate(EXEMPLARS);
    }
    top.into_iter().map(|(_, t)| t).collect()
}

/// Element `i`, growing `v` with defaults to reach it: consumer ids and symbols are small
/// dense integers, so per-value state lives in vectors indexed by them.
fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if i >= v.len() {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

fn clamp(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn ms(ns: f64) -> f64 {
    (ns / 1e4).round() / 100.0
}

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// `redelivery`: slow samples are redeliveries (lost acks, ack_wait expiry, NAKs).
fn redelivery(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let redelivered: Vec<&RingRow> = slow.iter().copied().filter(|r| r.deliveries > 1).collect();
    let share_of_slow = redelivered.len() as f64 / slow.len().max(1) as f64;
    let share = |rows: &[RingRow]| {
        rows.iter().filter(|r| r.deliveries > 1).count() as f64 / rows.len().max(1) as f64
    };
    let (mut redelivered_during, mut naks) = (0usize, 0usize);
    for r in e.spike {
        redelivered_during += usize::from(r.deliveries > 1);
        naks += usize::from(r.kind == AckKind::Nak);
    }
    let during = redelivered_during as f64 / e.spike.len().max(1) as f64;
    let base = share(e.baseline);
    // Lost acks hold max_ack_pending slots until ack_wait, so the messages behind them wait
    // too: a few percent of redeliveries where there were none is the mechanism, even when
    // most slow samples are the ones that waited.
    Cause {
        cause: "redelivery",
        confidence: clamp((during - base) / 0.05).max(clamp((share_of_slow - base) / 0.3)),
        evidence: json!({"slow_samples": slow.len(), "redelivered_share_of_slow": share_of_slow,
            "redelivered_share": during, "redelivered_share_at_baseline": base, "naks": naks}),
        summary: format!(
            "{} of slow samples were redeliveries; {} of all samples vs {} at baseline; {naks} NAKs",
            pct(share_of_slow),
            pct(during),
            pct(base)
        ),
        exemplar_trace_ids: exemplars(redelivered),
    }
}

/// Phase bins of acks, without a division per ack: the frame an instant falls in is estimated
/// in floating point relative to a frame start near the evidence, then corrected in integers.
struct PhaseBins {
    origin: i64,
    period: i64,
    frames_per_ns: f64,
    bins_per_ns: f64,
    last: usize,
}

impl PhaseBins {
    fn new(e: &Evidence, bins: u32) -> Self {
        let period = e.clock.period_ns();
        Self {
            origin: e.spike_ns.0 - e.clock.phase_ns(e.spike_ns.0) as i64,
            period: period as i64,
            frames_per_ns: 1.0 / period as f64,
            bins_per_ns: bins as f64 / period as f64,
            last: bins as usize - 1,
        }
    }

    fn of(&self, r: &RingRow) -> usize {
        let offset = r.acked_ns - self.origin;
        let mut phase = offset - (offset as f64 * self.frames_per_ns) as i64 * self.period;
        while phase < 0 {
            phase += self.period;
        }
        while phase >= self.period {
            phase -= self.period;
        }
        ((phase as f64 * self.bins_per_ns) as usize).min(self.last)
    }
}

/// Phase bins the preemption detector folds acks into, and the band width it looks for.
const BINS: u32 = 32;
const BAND: usize = 4; // an eighth of the frame

/// `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
/// baseline's acks do.
fn thread_preemption(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let bins = PhaseBins::new(e, BINS);
    fn histogram<'a>(
        bins: &PhaseBins,
        rows: impl Iterator<Item = &'a RingRow>,
    ) -> [u64; BINS as usize] {
        let mut h = [0u64; BINS as usize];
        for r in rows {
            h[bins.of(r)] += 1;
        }
        h
    }
    // Mean resultant length of the phases (0: spread round the frame, 1: all at one phase).
    let resultant = |h: &[u64; BINS as usize]| {
        let (mut x, mut y) = (0.0, 0.0);
        for (i, &n) in h.iter().enumerate() {
            let angle = std::f64::consts::TAU * (i as f64 + 0.5) / BINS as f64;
            x += n as f64 * angle.cos();
            y += n as f64 * angle.sin();
        }
        (x.hypot(y) / h.iter().sum::<u64>().max(1) as f64 * 1e3).round() / 1e3
    };
    let hs = histogram(&bins, slow.iter().copied());
    let hb = histogram(&bins, e.baseline.iter());
    let (ns, nb) = (slow.len().max(1) as f64, e.baseline.len().max(1) as f64);
    let band = |h: &[u64; BINS as usize], start: usize| {
        (0..BAND)
            .map(|k| h[(start + k) % BINS as usize])
            .sum::<u64>()
    };
    let start = (0..BINS as usize)
        .max_by_key(|&s| band(&hs, s))
        .unwrap_or(0);
    let (slow_share, base_share) = (band(&hs, start) as f64 / ns, band(&hb, start) as f64 / nb);
    let period = e.clock.period_ns() as f64;
    let from = ms(period * start as f64 / BINS as f64);
    // The band may wrap past the frame end (one ending at the frame end ends at 16 ms, not 0).
    let end = period * (start + BAND) as f64 / BINS as f64;
    let to = ms(if end > period { end - period } else { end });
    let in_band = |r: &&RingRow| {
        let b = bins.of(r);
        (0..BAND).any(|k| (start + k) % BINS as usize == b)
    };
    Cause {
        cause: "thread_preemption",
        confidence: clamp((slow_share - base_share - 0.2) / 0.4),
        evidence: json!({"band_from_ms": from, "band_to_ms": to,
            "slow_share_in_band": slow_share, "baseline_share_in_band": base_share, "slow_samples": slow.len(),
            "slow_mean_resultant_length": resultant(&hs), "baseline_mean_resultant_length": resultant(&hb)}),
        summary: format!(
            "{from}–{to} ms of the frame holds {} of slow acks vs {} of acks at baseline",
            pct(slow_share),
            pct(base_share)
        ),
        exemplar_trace_ids: exemplars(slow.iter().copied().filter(in_band)),
    }
}

/// Calls `f` with each row in ack order: the ring keeps arrival order, which almost always is.
fn in_ack_order<'a>(rows: &'a [RingRow], f: impl FnMut(&'a RingRow)) {
    if rows.is_sorted_by_key(|r| r.acked_ns) {
        rows.iter().for_each(f);
    } else {
        let mut sorted: Vec<&RingRow> = rows.iter().collect();
        sorted.sort_by_key(|r| r.acked_ns);
        sorted.into_iter().for_each(f);
    }
}

/// `gc_pause`: per consumer, a silence in acks far longer than usual, followed by a burst of
/// acks whose latency is about the silence.
fn gc_pause(e: &Evidence, slow: &[&RingRow], threshold: u64) -> Cause {
    let mut base_gaps: Vec<u64> = Vec::with_capacity(e.baseline.len());
    let mut last: Vec<Option<i64>> = Vec::new();
    in_ack_order(e.baseline, |r| {
        if let Some(t) = slot(&mut last, r.consumer as usize).replace(r.acked_ns) {
            base_gaps.push((r.acked_ns - t) as u64);
        }
    });
    let usual_gap = quantile(&mut base_gaps, 0.99).max(e.clock.period_ns());
    let (mut stalls, mut longest) = (0usize, 0u64);
    let mut burst_rows: Vec<&RingRow> = Vec::new();
    let burst_ns = 2 * e.clock.period_ns() as i64;
    // Per consumer: the last ack, and until when acks belong to the burst after a silence.
    let mut state: Vec<(Option<i64>, i64)> = Vec::new();
    in_ack_order(e.spike, |r| {
        let (last, burst_until) = slot(&mut state, r.consumer as usize);
        if let Some(t) = last.replace(r.acked_ns) {
            let gap = (r.acked_ns - t) as u64;
            if gap > 3 * usual_gap {
                stalls += 1;
                longest = longest.max(gap);
                // The burst: the acks within two frames after the silence.
                *burst_until = r.acked_ns + burst_ns;
            }
        }
        if r.acked_ns < *burst_until {
            burst_rows.push(r);
        }
    });
    let slow_in_bursts = burst_rows
        .iter()
        .filter(|r| spiked(e, r).is_some_and(|l| l > threshold))
        .count();
    let share = slow_in_bursts as f64 / slow.len().max(1) as f64;
    let mut burst_latency: Vec<u64> = burst_rows.iter().copied().filter_map(latency).collect();
    let typical_burst = quantile(&mut burst_latency, 0.9);
    // Latency inside the burst ≈ the stall.
    let matches_gap = if longest > 0 {
        clamp(typical_burst as f64 / longest as f64 * 1.5)
    } else {
        0.0
    };
    Cause {
        cause: "gc_pause",
        confidence: clamp(share * 1.4) * matches_gap,
        evidence: json!({"stalls": stalls, "longest_silence_ms": ms(longest as f64),
            "usual_gap_ms": ms(usual_gap as f64), "burst_p90_latency_ms": ms(typical_burst as f64),
            "slow_share_in_bursts": share}),
        summary: format!(
            "{stalls} silences of up to {} ms (usual gap {} ms), each followed by a burst of acks \
             with P90 latency {} ms; {} of slow acks are in those bursts",
            ms(longest as f64),
            ms(usual_gap as f64),
            ms(typical_burst as f64),
            pct(share)
        ),
        exemplar_trace_ids: exemplars(burst_rows),
    }
}

/// `flow_control`: the consumer sits at `max_ack_pending` while the spike lasts.
fn flow_control(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let limited: Vec<&(u64, i64)> = e.ack_pending.iter().filter(|(_, max)| *max > 0).collect();
    let at_limit = limited
        .iter()
        .filter(|(p, max)| *p as f64 >= 0.9 * *max as f64)
        .count();
    let share = at_limit as f64 / limited.len().max(1) as f64;
    let peak = e.ack_pending.iter().map(|(p, _)| *p).max().unwrap_or(0);
    Cause {
        cause: "flow_control",
        confidence: if limited.is_empty() {
            0.0
        } else {
            clamp(share * 1.5)
        },
        evidence: json!({"polls": e.ack_pending.len(), "polls_at_max_ack_pending": at_limit,
            "peak_ack_pending": peak, "max_ack_pending": limited.first().map(|(_, m)| *m)}),
        summary: match limited.first() {
            Some((_, max)) => format!(
                "{at_limit} of {} consumer state polls at max_ack_pending {max} (peak {peak} pending)",
                limited.len()
            ),
            None => "no consumer state with a max_ack_pending during the spike".to_string(),
        },
        exemplar_trace_ids: exemplars(slow.iter().copied()),
    }
}

/// `load_burst`: the delivery rate jumps and latency follows.
fn load_burst(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let per_s = |n: usize, (from, to): (i64, i64)| n as f64 / ((to - from).max(1) as f64 / 1e9);
    let (rate, base) = (
        per_s(e.spike.len(), e.spike_ns),
        per_s(e.baseline.len(), e.baseline_ns),
    );
    let ratio = rate / base.max(1e-9);
    Cause {
        cause: "load_burst",
        confidence: clamp((ratio - 1.5) / 1.0),
        evidence: json!({"acks_per_s": rate, "baseline_acks_per_s": base, "ratio": ratio}),
        summary: format!("{rate:.0} acks/s vs {base:.0} at baseline ({ratio:.1}×)"),
        exemplar_trace_ids: exemplars(slow.iter().copied()),
    }
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

/// Per consumer id, the P99 of `latency` over `rows` (0 for a consumer without any): a usual
/// P99 for [`Evidence::usual_p99`] where no windowed history is at hand.
pub fn p99_by_consumer(rows: &[RingRow], latency: Latency) -> Vec<u64> {
    let mut by: Vec<Vec<u64>> = Vec::new();
    for r in rows {
        if let Some(l) = latency.of(r) {
            slot(&mut by, r.consumer as usize).push(l);
        }
    }
    by.iter_mut().map(|v| quantile(v, 0.99)).collect()
}

/// `hot_spot`: one consumer, subject or label value is slow far more often than the others of
/// its dimension (BubbleUp-style: the slow set against the whole, per value).
fn hot_spot(e: &Evidence, threshold: u64) -> Cause {
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
    for r in e.context {
        counts.add(r, is_slow(r));
    }
    let slow = counts.consumers.iter().map(|c| c.0).sum::<usize>();
    // Only values the spike's own samples carry can explain it.
    let own = (!std::ptr::eq(e.spike, e.context)).then(|| {
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
        .filter(|(d, (n, _))| *n > 0 && own.as_ref().is_none_or(|own| own.get(*d).1 > 0))
        .map(|(d, (n, all))| {
            let rate = n as f64 / all as f64;
            let others = median_of_others(&rates[position(d).0], rate);
            let (lift, confidence) = score(rate, others);
            (d, n, all, rate, others, lift, confidence)
        })
        .max_by(|a, b| a.6.total_cmp(&b.6).then(a.3.total_cmp(&b.3)));
    let Some((dim, n, all, rate, others, lift, confidence)) = best else {
        return Cause {
            cause: "hot_spot",
            confidence: 0.0,
            evidence: json!({}),
            summary: "no slow samples".to_string(),
            exemplar_trace_ids: Vec::new(),
        };
    };
    let kind = match dim {
        Dimension::Consumer(_) => "consumer",
        Dimension::Subject(_) => "subject",
        Dimension::Label(..) => "label",
    };
    let (slow_share, all_share) = (
        n as f64 / slow.max(1) as f64,
        all as f64 / e.context.len().max(1) as f64,
    );
    let matching = e.context.iter().filter(|r| is_slow(r) && carries(r, dim));
    let value = (e.name)(dim);
    Cause {
        cause: "hot_spot",
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
    }
}

/// Every detector's verdict, most confident first; `unknown` first when none reaches 0.5.
pub fn attribute(e: &Evidence) -> Vec<Cause> {
    let threshold = slow_threshold(e);
    let slow = slow(e, threshold);
    // The detectors only read the evidence: half of them run on a second thread.
    let ((gc, redelivered, load), (preemption, mut flow, mut hot)) = std::thread::scope(|scope| {
        let first = scope.spawn(|| {
            (
                gc_pause(e, &slow, threshold),
                redelivery(e, &slow),
                load_burst(e, &slow),
            )
        });
        let second = (
            thread_preemption(e, &slow),
            flow_control(e, &slow),
            hot_spot(e, threshold),
        );
        let first = first
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (first, second)
    });
    // Lost acks and bursts of load fill max_ack_pending too: when slow samples are
    // redeliveries, or the rate jumped, the limit being reached is a consequence, not the cause.
    flow.confidence *= (1.0 - redelivered.confidence) * (1.0 - load.confidence);
    // Any fault of one consumer makes it stand out among the others: a hot spot is the answer
    // only when no mechanism explains why.
    let mechanism = [&gc, &preemption, &redelivered, &flow, &load]
        .iter()
        .map(|c| c.confidence)
        .fold(0.0, f64::max);
    hot.confidence *= 1.0 - mechanism;
    let mut causes = vec![gc, preemption, redelivered, flow, load, hot];
    causes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    if causes.first().is_none_or(|c| c.confidence < 0.5) {
        causes.insert(
            0,
            Cause {
                cause: "unknown",
                confidence: 1.0 - causes.first().map_or(0.0, |c| c.confidence),
                evidence: json!({"slow_threshold_ms": ms(threshold as f64), "slow_samples": slow.len()}),
                summary: format!(
                    "{} samples above the baseline P99 of {} ms; no detector reached 0.5",
                    slow.len(),
                    ms(threshold as f64)
                ),
                exemplar_trace_ids: exemplars(slow.iter().copied()),
            },
        );
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NO_LABELS, SampleSource};
    use crate::tick::PhaseOf;

    const MS: u64 = 1_000_000;
    const T0: i64 = 1_790_000_000_000_000_000;
    const FRAME: i64 = 16_000_000;

    fn row(consumer: ConsumerId, acked_ns: i64, latency_ms: u64, trace: u8) -> RingRow {
        RingRow {
            consumer,
            stream_seq: 1,
            deliveries: 1,
            acked_ns,
            delivered_ns: Some(acked_ns - (latency_ms * MS) as i64),
            ack_latency_ns: Some(latency_ms * MS),
            e2e_latency_ns: None,
            kind: AckKind::Ack,
            source: SampleSource::Observed,
            trace_id: Some(TraceId([trace; 16])),
            subject: Sym(consumer),
            labels: NO_LABELS,
        }
    }

    /// Four consumers acking 3 messages a frame at phase 4-5 ms with 3 ms latency.
    fn healthy(from: i64, frames: i64) -> Vec<RingRow> {
        (0..frames)
            .flat_map(|f| (0..4u32).flat_map(move |c| (0..3).map(move |k| (f, c, k))))
            .map(|(f, c, k)| row(c, from + f * FRAME + 4 * MS as i64 + k * 300_000, 3, 1))
            .collect()
    }

    fn top(spike: &[RingRow], baseline: &[RingRow], ack_pending: &[(u64, i64)]) -> Vec<Cause> {
        let clock = FrameClock::new(16 * MS, 0, 160, PhaseOf::Ack).unwrap();
        let name = |d: Dimension| format!("{d:?}");
        let e = Evidence {
            spike,
            baseline,
            context: spike,
            usual_p99: &p99_by_consumer(baseline, Latency::Ack),
            spike_ns: (spike[0].acked_ns, spike[spike.len() - 1].acked_ns + 1),
            baseline_ns: (
                baseline[0].acked_ns,
                baseline[baseline.len() - 1].acked_ns + 1,
            ),
            clock: &clock,
            ack_pending,
            name: &name,
            latency: Latency::Ack,
        };
        attribute(&e)
    }

    fn baseline() -> Vec<RingRow> {
        healthy(T0, 300)
    }

    fn spike_start() -> i64 {
        T0 + 300 * FRAME
    }

    /// A spike in which consumer 2's acks (traced `[7; 16]`) are held back `by_ms` into the
    /// frame (healthy acks come 4–4.6 ms in), each `latency_ms` late.
    fn consumer_2_held_back(by_ms: u64, latency_ms: u64) -> Vec<RingRow> {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().filter(|r| r.consumer == 2) {
            r.acked_ns += (by_ms * MS) as i64;
            r.ack_latency_ns = Some(latency_ms * MS);
            r.trace_id = Some(TraceId([7; 16]));
        }
        spike
    }

    #[test]
    fn preempted_acks_point_at_thread_preemption() {
        // Consumer 2's acks are pushed to 13-14 ms of the frame, 10 ms late.
        let causes = top(&consumer_2_held_back(9, 12), &baseline(), &[]);
        assert_eq!(causes[0].cause, "thread_preemption", "{causes:#?}");
        assert!(causes[0].confidence >= 0.5);
        assert_eq!(causes[0].exemplar_trace_ids[0], TraceId([7; 16]));
        assert_eq!(causes[0].evidence["band_from_ms"], 13.0);
    }

    #[test]
    fn a_band_ending_at_the_frame_end_ends_at_the_period() {
        // Consumer 2's acks held to 14–14.6 ms: the band that holds them is 14–16 ms.
        let causes = top(&consumer_2_held_back(10, 13), &baseline(), &[]);
        let c = causes
            .iter()
            .find(|c| c.cause == "thread_preemption")
            .unwrap();
        assert_eq!(c.evidence["band_from_ms"], 14.0);
        assert_eq!(c.evidence["band_to_ms"], 16.0);
        assert!(
            c.summary.starts_with("14–16 ms of the frame"),
            "{}",
            c.summary
        );
    }

    #[test]
    fn redelivered_slow_samples_point_at_redelivery() {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().step_by(5) {
            r.deliveries = 2;
            r.ack_latency_ns = Some(1_000 * MS);
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, "redelivery", "{causes:#?}");
    }

    #[test]
    fn a_stall_then_a_burst_points_at_gc_pause() {
        let mut spike = healthy(spike_start(), 60);
        // Consumer 1 stops for 5 frames (80 ms); what it received then is acked in one burst.
        let (stop, resume) = (spike_start() + 20 * FRAME, spike_start() + 25 * FRAME);
        spike.retain(|r| !(r.consumer == 1 && r.acked_ns >= stop && r.acked_ns < resume));
        for k in 0..15 {
            let mut r = row(
                1,
                resume + 4 * MS as i64 + k * 100_000,
                80 - (k as u64 * 5),
                9,
            );
            r.stream_seq = 1000 + k as u64;
            spike.push(r);
        }
        spike.sort_by_key(|r| r.acked_ns);
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, "gc_pause", "{causes:#?}");
        assert!(causes[0].evidence["longest_silence_ms"].as_f64().unwrap() >= 80.0);
    }

    #[test]
    fn acks_at_max_ack_pending_point_at_flow_control() {
        let mut spike = healthy(spike_start(), 60);
        for r in &mut spike {
            r.ack_latency_ns = Some(200 * MS);
        }
        let causes = top(&spike, &baseline(), &[(200, 200), (199, 200), (200, 200)]);
        assert_eq!(causes[0].cause, "flow_control", "{causes:#?}");
    }

    #[test]
    fn a_rate_jump_points_at_load_burst() {
        let mut spike = Vec::new();
        for copy in 0..4 {
            spike.extend(
                healthy(spike_start() + copy * 1_000, 60)
                    .into_iter()
                    .map(|mut r| {
                        r.ack_latency_ns = Some(20 * MS);
                        r
                    }),
            );
        }
        spike.sort_by_key(|r| r.acked_ns);
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, "load_burst", "{causes:#?}");
        assert!(causes[0].evidence["ratio"].as_f64().unwrap() > 3.5);
    }

    #[test]
    fn one_slow_consumer_among_healthy_ones_is_a_hot_spot() {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().filter(|r| r.consumer == 3) {
            r.ack_latency_ns = Some(9 * MS);
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, "hot_spot", "{causes:#?}");
        assert_eq!(causes[0].evidence["share_of_all"], 0.25);
    }

    /// The causes of a spike of consumer 3 alone, with `all` (every consumer during the spike)
    /// as the context and the healthy baseline before it.
    fn consumer_3_among(all: &[RingRow]) -> Vec<Cause> {
        let own: Vec<RingRow> = all.iter().filter(|r| r.consumer == 3).copied().collect();
        let all_base = baseline();
        let base: Vec<RingRow> = all_base
            .iter()
            .filter(|r| r.consumer == 3)
            .copied()
            .collect();
        let clock = FrameClock::new(16 * MS, 0, 160, PhaseOf::Ack).unwrap();
        let name = |d: Dimension| format!("{d:?}");
        attribute(&Evidence {
            spike: &own,
            baseline: &base,
            context: all,
            usual_p99: &p99_by_consumer(&all_base, Latency::Ack),
            spike_ns: (own[0].acked_ns, own[own.len() - 1].acked_ns + 1),
            baseline_ns: (base[0].acked_ns, base[base.len() - 1].acked_ns + 1),
            clock: &clock,
            ack_pending: &[],
            name: &name,
            latency: Latency::Ack,
        })
    }

    #[test]
    fn a_consumer_slower_than_the_others_is_a_hot_spot_of_its_own_spike() {
        let causes = consumer_3_among(&slow_3_beside_a_backlog(0, |_| 0));
        assert_eq!(causes[0].cause, "hot_spot", "{causes:#?}");
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
        assert_eq!(causes[0].cause, "hot_spot", "{causes:#?}");
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
        assert_eq!(causes[0].cause, "hot_spot", "{causes:#?}");
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
            .find(|c| c.cause == "hot_spot")
            .unwrap();
        assert!(hot.confidence < 0.1, "{hot:#?}");
    }

    #[test]
    fn nothing_explains_an_unremarkable_spike() {
        let causes = top(&healthy(spike_start(), 60), &baseline(), &[]);
        assert_eq!(causes[0].cause, "unknown", "{causes:#?}");
    }
}
