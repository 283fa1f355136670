//! `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
//! baseline's acks do.

use super::*;
use crate::model::FORGOTTEN_CONSUMER;

/// The `thread_preemption` detector.
pub struct ThreadPreemption;

impl Detector for ThreadPreemption {
    fn cause(&self) -> Cause {
        Cause::ThreadPreemption
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        thread_preemption(e, read)
    }
}

/// The consumer most of `ids` name (the lowest id of a tie), counted in a table by id (ids
/// are slots of the bounded consumer table).
fn most_common(ids: impl Iterator<Item = ConsumerId>) -> Option<ConsumerId> {
    let mut counts: Vec<u32> = Vec::new();
    for id in ids.filter(|&id| id != FORGOTTEN_CONSUMER) {
        let i = id as usize;
        if i >= counts.len() {
            counts.resize(i + 1, 0);
        }
        counts[i] += 1;
    }
    let (id, n) = counts
        .iter()
        .enumerate()
        .max_by_key(|&(id, &n)| (n, std::cmp::Reverse(id)))?;
    (*n > 0).then_some(id as ConsumerId)
}

/// Phase bins the preemption detector folds acks into, and the band width it looks for.
const BINS: u32 = PHASE_BINS;
const BAND: usize = 4; // an eighth of the frame
/// The share of frames with slow acks in the band from which the band counts as a pattern of
/// every frame rather than the bursts after a few stalls.
const RECURRING: f64 = 0.3;

/// `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
/// baseline's acks do.
fn thread_preemption(e: &Evidence, read: &Read) -> CauseFinding {
    let slow = &read.slow;
    fn histogram(bins: impl Iterator<Item = usize>) -> [u64; BINS as usize] {
        let mut h = [0u64; BINS as usize];
        for b in bins {
            h[b] += 1;
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
    // The slow acks in ack order, with the frames and bins they were folded into when read.
    let slow_acks: Vec<&Ack> = read.spike.acks.iter().filter(|a| a.slow).collect();
    let hs = histogram(slow_acks.iter().map(|a| a.bin as usize));
    let hb = histogram(read.baseline.acks.iter().map(|a| a.bin as usize));
    let (ns, nb) = (
        slow_acks.len().max(1) as f64,
        read.baseline.len().max(1) as f64,
    );
    let band = |h: &[u64; BINS as usize], start: usize| {
        (0..BAND)
            .map(|k| h[(start + k) % BINS as usize])
            .sum::<u64>()
    };
    let start = (0..BINS as usize)
        .max_by_key(|&s| band(&hs, s))
        .unwrap_or(0);
    let (slow_share, base_share) = (band(&hs, start) as f64 / ns, band(&hb, start) as f64 / nb);
    // The band in milliseconds of the frame of the consumer with most slow acks (the
    // configured one when all consumers share it).
    let top = most_common(slow.iter().map(|r| r.consumer));
    let period = top
        .map_or(*e.clocks.configured(), |c| *e.clocks.at(c, e.spike_ns.0))
        .period
        .ns_f64();
    let from = ms(period * start as f64 / BINS as f64);
    // The band may wrap past the frame end (one ending at the frame end ends at 16 ms, not 0).
    let end = period * (start + BAND) as f64 / BINS as f64;
    let to = ms(if end > period { end - period } else { end });
    let in_band = |b: usize| (0..BAND).any(|k| (start + k) % BINS as usize == b);
    // Preemption repeats in every frame of the spike; a stall releases its acks in one burst,
    // which lands at one phase only in the frame or two after each stall. Recurrence: of the
    // frames in which the consumers with slow acks in the band acked at all, the share that
    // had slow acks in the band.
    let (banded, banded_frames): (Vec<&RingRow>, Vec<(ConsumerId, i64)>) = slow_acks
        .iter()
        .filter(|a| in_band(a.bin as usize))
        .map(|a| (read.spike.row(a), (a.consumer, a.frame as i64)))
        .unzip();
    let mut who: Vec<ConsumerId> = banded
        .iter()
        .map(|r| r.consumer)
        .filter(|&c| c != FORGOTTEN_CONSUMER)
        .collect();
    who.sort_unstable();
    who.dedup();
    // Distinct (consumer, frame) pairs, marked in a table over each consumer's frames of the
    // spike (no sort of a million rows): a frame's place is its distance from the spike's
    // start in the consumer's periods, so a clock that moves within the spike still counts
    // each frame once.
    let shortest = who
        .iter()
        .flat_map(|&c| e.clocks.over(c, e.spike_ns.0, e.spike_ns.1))
        .map(|s| s.frame.period.ns_f64())
        .fold(f64::MAX, f64::min)
        .max(1.0);
    let span = (((e.spike_ns.1 - e.spike_ns.0) as f64 / shortest).ceil() as i64 + 2)
        .clamp(1, (1 << 24) / who.len().max(1) as i64) as usize;
    // By consumer id: its place among `who`.
    let mut place: Vec<Option<usize>> = Vec::new();
    for (k, &c) in who.iter().enumerate() {
        *slot(&mut place, c as usize) = Some(k);
    }
    let place = |c: ConsumerId| place.get(c as usize).copied().flatten();
    let frames = |acks: &mut dyn Iterator<Item = (usize, i64)>| {
        let mut seen = vec![false; span * who.len()];
        let mut n = 0;
        for (k, rel) in acks {
            let i = k * span + rel.clamp(0, span as i64 - 1) as usize;
            n += usize::from(!seen[i]);
            seen[i] = true;
        }
        n
    };
    let frames_in_band = frames(
        &mut banded_frames
            .iter()
            .filter_map(|&(c, frame)| Some((place(c)?, frame))),
    );
    let frames_acked = frames(
        &mut read
            .spike
            .acks
            .iter()
            .filter_map(|a| Some((place(a.consumer)?, a.frame as i64))),
    );
    let recurrence = frames_in_band as f64 / frames_acked.max(1) as f64;
    // The band's share frame by frame: the mean, over the frames in which these consumers had
    // slow acks, of the share of the frame's slow acks that fall in the band (at baseline, of
    // its acks). A backlog draining after the fault crowds many slow acks all round the frame
    // into the few frames it lasts: weighed by frames, it weighs as little as it lasts.
    let per_frame = |acks: &mut dyn Iterator<Item = (usize, i64, bool)>| {
        // Per consumer (by place): its frame under way and that frame's (in band, all) acks.
        let mut under_way: Vec<Option<(i64, u32, u32)>> = vec![None; who.len()];
        let (mut sum, mut n) = (0.0, 0usize);
        for (k, frame, inside) in acks {
            match &mut under_way[k] {
                Some(f) if f.0 == frame => {
                    f.1 += u32::from(inside);
                    f.2 += 1;
                }
                f => {
                    if let Some((_, i, all)) = f.replace((frame, u32::from(inside), 1)) {
                        sum += i as f64 / all as f64;
                        n += 1;
                    }
                }
            }
        }
        for (_, i, all) in under_way.into_iter().flatten() {
            sum += i as f64 / all as f64;
            n += 1;
        }
        sum / n.max(1) as f64
    };
    let slow_frame_share = per_frame(
        &mut slow_acks
            .iter()
            .filter_map(|a| Some((place(a.consumer)?, a.frame as i64, in_band(a.bin as usize)))),
    );
    let base_frame_share =
        per_frame(
            &mut read.baseline.acks.iter().filter_map(|a| {
                Some((place(a.consumer)?, a.frame as i64, in_band(a.bin as usize)))
            }),
        );
    // Concentration in the band beyond the baseline's, by samples or by frames.
    let lift = (slow_share - base_share).max(slow_frame_share - base_frame_share);
    CauseFinding {
        cause: Cause::ThreadPreemption,
        confidence: clamp((lift - 0.2) / 0.4) * clamp(recurrence / RECURRING),
        evidence: json!({"band_from_ms": from, "band_to_ms": to,
            "slow_share_in_band": slow_share, "baseline_share_in_band": base_share,
            "slow_share_in_band_per_frame": slow_frame_share,
            "baseline_share_in_band_per_frame": base_frame_share, "slow_samples": slow.len(),
            "frames_with_slow_acks_in_band": frames_in_band, "frames_with_acks": frames_acked,
            "slow_mean_resultant_length": resultant(&hs), "baseline_mean_resultant_length": resultant(&hb)}),
        summary: format!(
            "{from}–{to} ms of the frame holds {} of slow acks vs {} of acks at baseline ({} vs {} frame by frame), in {} of the frames with acks",
            pct(slow_share),
            pct(base_share),
            pct(slow_frame_share),
            pct(base_frame_share),
            pct(recurrence)
        ),
        exemplar_trace_ids: exemplars(banded),
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;

    #[test]
    fn preempted_acks_point_at_thread_preemption() {
        // Consumer 2's acks are pushed to 13-14 ms of the frame, 10 ms late.
        let causes = top(&consumer_2_held_back(9, 12), &baseline(), &[]);
        assert_eq!(causes[0].cause, Cause::ThreadPreemption, "{causes:#?}");
        assert!(causes[0].confidence >= 0.5);
        assert_eq!(causes[0].exemplar_trace_ids[0], TraceId([7; 16]));
        assert_eq!(causes[0].evidence["band_from_ms"], 13.0);
    }

    #[test]
    fn frames_are_counted_once_when_a_clock_moves_within_the_spike() {
        // Consumer 2's clock is set anew halfway through the spike: the same frames, numbered
        // from a new epoch (as an inferred clock's move or a restart's announcement does).
        use crate::clocks::{ClockSource, Clocks, Segment};
        use crate::tick::{Frame, Period};
        let spike = consumer_2_held_back(9, 12);
        let period = Period::from_ns(FRAME as u64);
        let mut clocks = Clocks::new(Frame::new(period, 0).unwrap());
        let halfway = spike_start() + 30 * FRAME;
        clocks.set(
            2,
            Segment {
                from_ns: halfway,
                frame: Frame::new(period, halfway).unwrap(),
                source: ClockSource::Inferred,
                confidence: 1.0,
            },
        );
        let causes = top_with_clocks(&spike, &baseline(), &[], Deliveries::default(), &clocks);
        let p = causes
            .iter()
            .find(|c| c.cause == Cause::ThreadPreemption)
            .unwrap();
        assert_eq!(p.evidence["frames_with_acks"], 60, "{p:#?}");
        assert_eq!(p.evidence["frames_with_slow_acks_in_band"], 60, "{p:#?}");
        assert_eq!(p.evidence["band_from_ms"], 13.0);
    }

    #[test]
    fn a_band_ending_at_the_frame_end_ends_at_the_period() {
        // Consumer 2's acks held to 14–14.6 ms: the band that holds them is 14–16 ms.
        let causes = top(&consumer_2_held_back(10, 13), &baseline(), &[]);
        let c = causes
            .iter()
            .find(|c| c.cause == Cause::ThreadPreemption)
            .unwrap();
        assert_eq!(c.evidence["band_from_ms"], 14.0);
        assert_eq!(c.evidence["band_to_ms"], 16.0);
        assert!(
            c.summary.starts_with("14–16 ms of the frame"),
            "{}",
            c.summary
        );
    }

    /// One consumer acking at 1, 5 and 9 ms of the frame; in the spike, for 60 frames its
    /// acks are held to 9.2–9.6 ms (a third of its acks fall in that band at baseline too),
    /// then its backlog drains over 3 frames: 60 slow acks a frame all round the frame, as
    /// many slow acks as the fault's. (baseline, spike)
    fn held_then_drained() -> (Vec<RingRow>, Vec<RingRow>) {
        let at = |frame: i64, phase_us: i64| frame * FRAME + phase_us * 1_000;
        let baseline: Vec<RingRow> = (0..300)
            .flat_map(|f| [1_000, 5_000, 9_000].map(|p| row(2, T0 + at(f, p), 3, 1)))
            .collect();
        let mut spike: Vec<RingRow> = (0..60)
            .flat_map(|f| [9_200, 9_400, 9_600].map(|p| row(2, spike_start() + at(f, p), 8, 7)))
            .collect();
        for f in 60..63 {
            spike.extend((0..60).map(|k| row(2, spike_start() + at(f, k * 16_000 / 60), 20, 9)));
        }
        (baseline, spike)
    }

    fn preemption(causes: &[CauseFinding]) -> &CauseFinding {
        causes
            .iter()
            .find(|c| c.cause == Cause::ThreadPreemption)
            .unwrap()
    }

    #[test]
    fn acks_recorded_out_of_ack_order_are_weighed_in_their_own_frames() {
        // A late ack (its delivery unseen, joined when the server's metric came) is recorded
        // after later ones: every tenth of the held acks comes last.
        let (baseline, spike) = held_then_drained();
        let late = |i: usize, r: &RingRow| i.is_multiple_of(10) && r.ack_latency_ns == Some(8 * MS);
        let mut shuffled: Vec<RingRow> = Vec::with_capacity(spike.len());
        shuffled.extend(
            spike
                .iter()
                .enumerate()
                .filter(|(i, r)| !late(*i, r))
                .map(|(_, r)| *r),
        );
        shuffled.extend(
            spike
                .iter()
                .enumerate()
                .filter(|(i, r)| late(*i, r))
                .map(|(_, r)| *r),
        );
        assert!(!shuffled.is_sorted_by_key(|r| r.acked_ns));
        let sorted = top(&spike, &baseline, &[]);
        let unsorted = top(&shuffled, &baseline, &[]);
        let (a, b) = (preemption(&sorted), preemption(&unsorted));
        assert_eq!(a.evidence, b.evidence);
        assert_eq!(a.confidence, b.confidence);
    }

    #[test]
    fn a_clock_set_during_the_baseline_folds_as_the_one_before_it() {
        // Consumer 2's clock is announced anew (the same frames) in the middle of the baseline.
        use crate::clocks::{ClockSource, Clocks, Segment};
        use crate::tick::{Frame, Period};
        let (baseline, spike) = held_then_drained();
        let period = Period::from_ns(FRAME as u64);
        let mut clocks = Clocks::new(Frame::new(period, 0).unwrap());
        let configured = top_with_clocks(&spike, &baseline, &[], Deliveries::default(), &clocks);
        let halfway = T0 + 150 * FRAME;
        clocks.set(
            2,
            Segment {
                from_ns: halfway,
                frame: Frame::new(period, halfway).unwrap(),
                source: ClockSource::Announced,
                confidence: 1.0,
            },
        );
        let moved = top_with_clocks(&spike, &baseline, &[], Deliveries::default(), &clocks);
        assert_eq!(
            preemption(&configured).evidence,
            preemption(&moved).evidence
        );
    }

    #[test]
    fn a_band_held_through_the_fault_outweighs_the_backlog_draining_after_it() {
        // By samples the band holds little more than at baseline; by frames it holds the
        // fault's every frame.
        let (baseline, spike) = held_then_drained();
        let causes = top(&spike, &baseline, &[]);
        let p = preemption(&causes);
        let by_samples = p.evidence["slow_share_in_band"].as_f64().unwrap();
        assert!(by_samples < 0.6, "{p:#?}");
        assert!(
            p.evidence["slow_share_in_band_per_frame"].as_f64().unwrap() > 0.9,
            "{p:#?}"
        );
        let at_baseline = p.evidence["baseline_share_in_band_per_frame"]
            .as_f64()
            .unwrap();
        assert!((at_baseline - 1.0 / 3.0).abs() < 0.01, "{p:#?}");
        assert!(p.confidence >= 0.9, "{causes:#?}");
        assert_eq!(causes[0].cause, Cause::ThreadPreemption, "{causes:#?}");
    }

    #[test]
    fn a_few_stalls_landing_at_one_phase_are_not_preemption() {
        // Three 80 ms stalls of consumer 2 within 3 s: after each, its held acks come out
        // together, at one phase of one frame. Every other frame of it is healthy.
        let mut spike = healthy(spike_start(), 190);
        for stall in [20i64, 80, 140] {
            let release = spike_start() + (stall + 5) * FRAME + 9 * MS as i64;
            for r in spike.iter_mut().filter(|r| {
                r.consumer == 2
                    && r.acked_ns >= spike_start() + stall * FRAME
                    && r.acked_ns < spike_start() + (stall + 5) * FRAME
            }) {
                let waited = release - r.acked_ns;
                r.acked_ns = release;
                r.ack_latency_ns = Some(3 * MS + waited as u64);
                r.trace_id = Some(TraceId([9; 16]));
            }
        }
        spike.sort_by_key(|r| r.acked_ns);
        let causes = top(&spike, &baseline(), &[]);
        let preemption = causes
            .iter()
            .find(|c| c.cause == Cause::ThreadPreemption)
            .unwrap();
        assert!(
            preemption.evidence["slow_share_in_band"].as_f64().unwrap() > 0.9,
            "the released acks do share a phase: {preemption:#?}"
        );
        assert_eq!(preemption.evidence["frames_with_slow_acks_in_band"], 3);
        assert!(preemption.confidence < 0.1, "{causes:#?}");
        assert_eq!(causes[0].cause, Cause::GcPause, "{causes:#?}");
    }
}
