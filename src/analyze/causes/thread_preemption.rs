//! `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
//! baseline's acks do.

use super::*;
use crate::model::FORGOTTEN_CONSUMER;
use crate::tick::{Folder, Frame};

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

/// Each ack's frame and phase bin, in its consumer's own frame clock.
struct PhaseBins<'a> {
    clocks: &'a Clocks,
    bins: u32,
    spike: (i64, i64),
    /// By consumer id: a fast fold of the one clock it had over the spike, with the spike
    /// start's frame; `None` when its clock changed within the spike.
    fast: Vec<Option<(Folder, i64)>>,
    /// The configured clock's, for consumers with no clock of their own.
    configured: Option<(Folder, i64)>,
}

impl<'a> PhaseBins<'a> {
    fn new(e: &Evidence<'a>, bins: u32) -> Self {
        let spike = e.spike_ns;
        let fold = |frame: &Frame| {
            let folder = frame.folder(spike.0)?;
            Some((folder, folder.frame_and_bin(spike.0, bins)?.0))
        };
        let fast = (0..e.clocks.consumers() as ConsumerId)
            .map(|c| match e.clocks.over(c, spike.0, spike.1).as_slice() {
                [one] => fold(&one.frame),
                _ => None,
            })
            .collect();
        Self {
            clocks: e.clocks,
            bins,
            spike,
            fast,
            configured: fold(e.clocks.configured()),
        }
    }

    /// The fast fold for `consumer`'s instant `t_ns`, if one holds there.
    fn folder(&self, consumer: ConsumerId, t_ns: i64) -> Option<&(Folder, i64)> {
        if consumer as usize >= self.fast.len() {
            return self.configured.as_ref();
        }
        let in_spike = t_ns >= self.spike.0 && t_ns < self.spike.1;
        self.fast[consumer as usize].as_ref().filter(|_| in_spike)
    }

    /// The frame `t_ns` of `consumer` falls in, counted from the spike's start (1 for the
    /// frame under way then), and its bin. A frame is known by its place in time: frame
    /// numbers count from a clock's epoch, which a restart or an inferred clock's move changes.
    fn at(&self, consumer: ConsumerId, t_ns: i64) -> (i64, usize) {
        if let Some((folder, first)) = self.folder(consumer, t_ns)
            && let Some((frame, bin)) = folder.frame_and_bin(t_ns, self.bins)
        {
            return (frame - first + 1, bin as usize);
        }
        let frame = self.clocks.at(consumer, t_ns);
        let (phase, bin) = frame.phase_and_bin(t_ns, self.bins);
        let start = t_ns - phase as i64;
        // Counted from the start of the frame under way at the spike's start, as the fast fold
        // counts: a clock moved by less than half a frame keeps each frame's number.
        let at_start = self.clocks.at(consumer, self.spike.0);
        let first = self.spike.0 - at_start.phase_ns(self.spike.0) as i64;
        let rel = ((start - first) as f64 / frame.period.ns_f64()).round() as i64 + 1;
        (rel, bin as usize)
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
const BINS: u32 = 32;
const BAND: usize = 4; // an eighth of the frame
/// The share of frames with slow acks in the band from which the band counts as a pattern of
/// every frame rather than the bursts after a few stalls.
const RECURRING: f64 = 0.3;

/// `thread_preemption`: slow acks concentrate in one band of the frame, far more than the
/// baseline's acks do.
fn thread_preemption(e: &Evidence, read: &Read) -> CauseFinding {
    let slow = &read.slow;
    let bins = PhaseBins::new(e, BINS);
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
    // Each slow ack's frame and bin, folded once.
    let folded: Vec<(i64, usize)> = slow
        .iter()
        .map(|r| bins.at(r.consumer, r.acked_ns))
        .collect();
    let hs = histogram(folded.iter().map(|&(_, b)| b));
    let hb = histogram(
        read.baseline
            .acks
            .iter()
            .map(|a| bins.at(a.consumer, a.acked_ns).1),
    );
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
    let (banded, banded_frames): (Vec<&RingRow>, Vec<(ConsumerId, i64)>) = slow
        .iter()
        .zip(&folded)
        .filter(|(_, (_, b))| in_band(*b))
        .map(|(r, &(frame, _))| (*r, (r.consumer, frame)))
        .unzip();
    let mut who: Vec<ConsumerId> = banded.iter().map(|r| r.consumer).collect();
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
    let frames_acked = frames(&mut read.spike.acks.iter().filter_map(|a| {
        let k = place(a.consumer)?;
        Some((k, bins.at(a.consumer, a.acked_ns).0))
    }));
    let recurrence = frames_in_band as f64 / frames_acked.max(1) as f64;
    CauseFinding {
        cause: Cause::ThreadPreemption,
        confidence: clamp((slow_share - base_share - 0.2) / 0.4) * clamp(recurrence / RECURRING),
        evidence: json!({"band_from_ms": from, "band_to_ms": to,
            "slow_share_in_band": slow_share, "baseline_share_in_band": base_share, "slow_samples": slow.len(),
            "frames_with_slow_acks_in_band": frames_in_band, "frames_with_acks": frames_acked,
            "slow_mean_resultant_length": resultant(&hs), "baseline_mean_resultant_length": resultant(&hb)}),
        summary: format!(
            "{from}–{to} ms of the frame holds {} of slow acks vs {} of acks at baseline, in {} of the frames with acks",
            pct(slow_share),
            pct(base_share),
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
