//! Cause detectors: each a pure function from a spike's samples and its baseline's samples to
//! a confidence in [0, 1] and evidence a human can check, with exemplar trace ids of the
//! slowest samples that match. Causes are ranked; `unknown` stands in when none reaches 0.5.

use rustc_hash::FxHashMap;
use serde_json::{Value, json};

use crate::aggregate::rebin::{Latency, quantile};
use crate::aggregate::ring::RingRow;
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
    pub spike_ns: (i64, i64),
    pub baseline_ns: (i64, i64),
    pub clock: &'a FrameClock,
    /// Consumer state polls in the spike: (ack pending, max ack pending).
    pub ack_pending: &'a [(u64, i64)],
    /// Names a dimension value (consumer, subject or label) for the evidence.
    pub name: &'a dyn Fn(Dimension) -> String,
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

fn latency(r: &RingRow) -> Option<u64> {
    r.ack_latency_ns
}

/// The baseline's P99 ack latency: spike samples above it are "slow".
/// The sample's value of the latency that spiked.
fn spiked(e: &Evidence, r: &RingRow) -> Option<u64> {
    match e.latency {
        Latency::Ack => r.ack_latency_ns,
        Latency::E2e => r.e2e_latency_ns,
    }
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

/// Trace ids of the slowest rows.
fn exemplars<'a>(rows: impl IntoIterator<Item = &'a RingRow>) -> Vec<TraceId> {
    let mut traced: Vec<&RingRow> = rows.into_iter().filter(|r| r.trace_id.is_some()).collect();
    traced.sort_by_key(|r| std::cmp::Reverse(latency(r).unwrap_or(0)));
    traced
        .iter()
        .take(EXEMPLARS)
        .filter_map(|r| r.trace_id)
        .collect()
}

fn clamp(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn ms(ns: f64) -> f64 {
    (ns / 1e4).round() / 100.0
}

/// `redelivery`: slow samples are redeliveries (lost acks, ack_wait expiry, NAKs).
fn redelivery(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let redelivered: Vec<&RingRow> = slow.iter().copied().filter(|r| r.deliveries > 1).collect();
    let share_of_slow = redelivered.len() as f64 / slow.len().max(1) as f64;
    let share = |rows: &[RingRow]| {
        rows.iter().filter(|r| r.deliveries > 1).count() as f64 / rows.len().max(1) as f64
    };
    let (during, base) = (share(e.spike), share(e.baseline));
    let naks = e.spike.iter().filter(|r| r.kind == AckKind::Nak).count();
    // Lost acks hold max_ack_pending slots until ack_wait, so the messages behind them wait
    // too: a few percent of redeliveries where there were none is the mechanism, even when
    // most slow samples are the ones that waited.
    Cause {
        cause: "redelivery",
        confidence: clamp((during - base) / 0.05).max(clamp((share_of_slow - base) / 0.3)),
        evidence: json!({"slow_samples": slow.len(), "redelivered_share_of_slow": share_of_slow,
            "redelivered_share": during, "redelivered_share_at_baseline": base, "naks": naks}),
        exemplar_trace_ids: exemplars(redelivered),
    }
}

/// The phase bin (of `bins`) of an ack.
fn bin(e: &Evidence, r: &RingRow, bins: u32) -> usize {
    (e.clock.phase_ns(r.acked_ns) * bins as u64 / e.clock.period_ns()) as usize
}

/// `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
/// baseline's acks do.
fn thread_preemption(e: &Evidence, slow: &[&RingRow]) -> Cause {
    const BINS: u32 = 32;
    const BAND: usize = 4; // an eighth of the frame
    let histogram = |rows: &mut dyn Iterator<Item = &RingRow>| {
        let mut h = [0u64; BINS as usize];
        for r in rows {
            h[bin(e, r, BINS)] += 1;
        }
        h
    };
    let hs = histogram(&mut slow.iter().copied());
    let hb = histogram(&mut e.baseline.iter());
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
    let from = e.clock.period_ns() as f64 * start as f64 / BINS as f64;
    let to = from + e.clock.period_ns() as f64 * BAND as f64 / BINS as f64;
    let in_band = |r: &&RingRow| {
        let b = bin(e, r, BINS);
        (0..BAND).any(|k| (start + k) % BINS as usize == b)
    };
    Cause {
        cause: "thread_preemption",
        confidence: clamp((slow_share - base_share - 0.2) / 0.4),
        evidence: json!({"band_from_ms": ms(from), "band_to_ms": ms(to % e.clock.period_ns() as f64),
            "slow_share_in_band": slow_share, "baseline_share_in_band": base_share, "slow_samples": slow.len()}),
        exemplar_trace_ids: exemplars(slow.iter().copied().filter(in_band)),
    }
}

/// `gc_pause`: per consumer, a silence in acks far longer than usual, followed by a burst of
/// acks whose latency is about the silence.
fn gc_pause(e: &Evidence, slow: &[&RingRow]) -> Cause {
    let mut by_consumer: FxHashMap<ConsumerId, Vec<&RingRow>> = FxHashMap::default();
    for r in e.spike {
        by_consumer.entry(r.consumer).or_default().push(r);
    }
    let mut base_gaps: Vec<u64> = Vec::new();
    let mut base_by: FxHashMap<ConsumerId, Vec<i64>> = FxHashMap::default();
    for r in e.baseline {
        base_by.entry(r.consumer).or_default().push(r.acked_ns);
    }
    for times in base_by.values_mut() {
        times.sort_unstable();
        base_gaps.extend(times.windows(2).map(|w| (w[1] - w[0]) as u64));
    }
    let usual_gap = quantile(&mut base_gaps, 0.99).max(e.clock.period_ns());
    let (mut stalls, mut longest) = (0usize, 0u64);
    let mut burst_rows: Vec<&RingRow> = Vec::new();
    for rows in by_consumer.values_mut() {
        rows.sort_by_key(|r| r.acked_ns);
        for w in rows.windows(2) {
            let gap = (w[1].acked_ns - w[0].acked_ns) as u64;
            if gap > 3 * usual_gap {
                stalls += 1;
                longest = longest.max(gap);
                // The burst: acks within a frame after the silence, delivered during it.
                let end = w[1].acked_ns;
                burst_rows.extend(rows.iter().copied().filter(|r| {
                    r.acked_ns >= end && r.acked_ns < end + 2 * e.clock.period_ns() as i64
                }));
            }
        }
    }
    let slow_in_bursts = slow
        .iter()
        .filter(|r| burst_rows.iter().any(|b| std::ptr::eq(*b, **r)))
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
        exemplar_trace_ids: exemplars(slow.iter().copied()),
    }
}

/// `hot_spot`: one consumer, subject or label value holds most slow samples while its share of
/// all samples is ordinary (BubbleUp-style comparison of the slow set with the whole).
fn hot_spot(e: &Evidence, threshold: u64) -> Cause {
    let dims = |r: &RingRow| {
        let mut d = vec![
            Dimension::Consumer(r.consumer),
            Dimension::Subject(r.subject),
        ];
        for (i, l) in r.labels.iter().enumerate().filter(|(_, l)| !l.is_none()) {
            d.push(Dimension::Label(i, *l));
        }
        d
    };
    // The outliers: above the baseline and among the slowest tenth of every consumer's samples.
    let mut everyone: Vec<u64> = e.context.iter().filter_map(|r| spiked(e, r)).collect();
    let p90 = quantile(&mut everyone, 0.9);
    let slow: Vec<&RingRow> = e
        .context
        .iter()
        .filter(|r| spiked(e, r).is_some_and(|l| l > threshold && l >= p90))
        .collect();
    let mut in_slow: FxHashMap<Dimension, usize> = FxHashMap::default();
    let mut in_all: FxHashMap<Dimension, usize> = FxHashMap::default();
    for r in &slow {
        for d in dims(r) {
            *in_slow.entry(d).or_default() += 1;
        }
    }
    for r in e.context {
        for d in dims(r) {
            *in_all.entry(d).or_default() += 1;
        }
    }
    // Only values the spike's own samples carry can explain it.
    let own: Vec<Dimension> = e.spike.iter().flat_map(dims).collect();
    let (ns, na) = (slow.len().max(1) as f64, e.context.len().max(1) as f64);
    let best = in_slow
        .iter()
        .filter(|(d, _)| own.contains(d))
        .map(|(d, &n)| {
            (
                *d,
                n as f64 / ns,
                in_all.get(d).copied().unwrap_or(0) as f64 / na,
            )
        })
        .max_by(|a, b| (a.1 - a.2).total_cmp(&(b.1 - b.2)));
    let Some((dim, slow_share, all_share)) = best else {
        return Cause {
            cause: "hot_spot",
            confidence: 0.0,
            evidence: json!({}),
            exemplar_trace_ids: Vec::new(),
        };
    };
    let kind = match dim {
        Dimension::Consumer(_) => "consumer",
        Dimension::Subject(_) => "subject",
        Dimension::Label(..) => "label",
    };
    let matching = slow.iter().copied().filter(|r| dims(r).contains(&dim));
    Cause {
        cause: "hot_spot",
        confidence: if slow_share >= 0.6 {
            clamp((slow_share - all_share) / 0.4)
        } else {
            0.0
        },
        evidence: json!({"dimension": kind, "value": (e.name)(dim), "slow_share": slow_share, "share_of_all": all_share}),
        exemplar_trace_ids: exemplars(matching),
    }
}

/// Every detector's verdict, most confident first; `unknown` first when none reaches 0.5.
pub fn attribute(e: &Evidence) -> Vec<Cause> {
    let threshold = slow_threshold(e);
    let slow = slow(e, threshold);
    let mut causes = vec![
        gc_pause(e, &slow),
        thread_preemption(e, &slow),
        redelivery(e, &slow),
        flow_control(e, &slow),
        load_burst(e, &slow),
        hot_spot(e, threshold),
    ];
    // Lost acks and bursts of load fill max_ack_pending too: when slow samples are
    // redeliveries, or the rate jumped, the limit being reached is a consequence, not the cause.
    causes[3].confidence *= (1.0 - causes[2].confidence) * (1.0 - causes[4].confidence);
    // Any fault of one consumer makes it stand out among the others: a hot spot is the answer
    // only when no mechanism explains why.
    let mechanism = causes[..5].iter().map(|c| c.confidence).fold(0.0, f64::max);
    causes[5].confidence *= 1.0 - mechanism;
    causes.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    if causes.first().is_none_or(|c| c.confidence < 0.5) {
        causes.insert(
            0,
            Cause {
                cause: "unknown",
                confidence: 1.0 - causes.first().map_or(0.0, |c| c.confidence),
                evidence: json!({"slow_threshold_ms": ms(threshold as f64), "slow_samples": slow.len()}),
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

    #[test]
    fn preempted_acks_point_at_thread_preemption() {
        // Consumer 2's acks are pushed to 13-14 ms of the frame, 10 ms late.
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().filter(|r| r.consumer == 2) {
            r.acked_ns += 9 * MS as i64;
            r.ack_latency_ns = Some(12 * MS);
            r.trace_id = Some(TraceId([7; 16]));
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, "thread_preemption", "{causes:#?}");
        assert!(causes[0].confidence >= 0.5);
        assert_eq!(causes[0].exemplar_trace_ids[0], TraceId([7; 16]));
        assert_eq!(causes[0].evidence["band_from_ms"], 13.0);
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

    #[test]
    fn a_consumer_slower_than_the_others_is_a_hot_spot_of_its_own_spike() {
        let mut all = healthy(spike_start(), 60);
        for r in all.iter_mut().filter(|r| r.consumer == 3) {
            r.ack_latency_ns = Some(12 * MS);
        }
        let own: Vec<RingRow> = all.iter().filter(|r| r.consumer == 3).copied().collect();
        let base: Vec<RingRow> = baseline().into_iter().filter(|r| r.consumer == 3).collect();
        let clock = FrameClock::new(16 * MS, 0, 160, PhaseOf::Ack).unwrap();
        let name = |d: Dimension| format!("{d:?}");
        let e = Evidence {
            spike: &own,
            baseline: &base,
            context: &all,
            spike_ns: (own[0].acked_ns, own[own.len() - 1].acked_ns + 1),
            baseline_ns: (base[0].acked_ns, base[base.len() - 1].acked_ns + 1),
            clock: &clock,
            ack_pending: &[],
            name: &name,
            latency: Latency::Ack,
        };
        let causes = attribute(&e);
        assert_eq!(causes[0].cause, "hot_spot", "{causes:#?}");
    }

    #[test]
    fn nothing_explains_an_unremarkable_spike() {
        let causes = top(&healthy(spike_start(), 60), &baseline(), &[]);
        assert_eq!(causes[0].cause, "unknown", "{causes:#?}");
    }
}
