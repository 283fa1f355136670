//! `gc_pause`: per consumer, a silence in acks far longer than usual, followed by a burst of
//! acks whose latency is about the silence.

use super::*;

/// The `gc_pause` detector.
pub struct GcPause;

impl Detector for GcPause {
    fn cause(&self) -> Cause {
        Cause::GcPause
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        gc_pause(e, read)
    }
}

/// `gc_pause`: per consumer, a silence in acks far longer than usual, followed by a burst of
/// acks whose latency is about the silence.
fn gc_pause(e: &Evidence, read: &Read) -> CauseFinding {
    let (slow, threshold) = (&read.slow, read.threshold);
    let mut base_gaps: Vec<u64> = Vec::with_capacity(read.baseline.len());
    let mut last: Vec<Option<i64>> = Vec::new();
    for a in &read.baseline.acks {
        if let Some(t) = slot(&mut last, a.consumer as usize).replace(a.acked_ns) {
            base_gaps.push((a.acked_ns - t) as u64);
        }
    }
    let period_ns = e.clocks.configured().period.ns();
    let usual_gap = quantile(&mut base_gaps, 0.99).max(period_ns);
    let (mut stalls, mut longest) = (0usize, 0u64);
    let mut burst_rows: Vec<&RingRow> = Vec::new();
    let burst_ns = 2 * period_ns as i64;
    // Per consumer: the last ack, and until when acks belong to the burst after a silence.
    let mut state: Vec<(Option<i64>, i64)> = Vec::new();
    for a in &read.spike.acks {
        let (last, burst_until) = slot(&mut state, a.consumer as usize);
        if let Some(t) = last.replace(a.acked_ns) {
            let gap = (a.acked_ns - t) as u64;
            if gap > 3 * usual_gap {
                stalls += 1;
                longest = longest.max(gap);
                // The burst: the acks within two frames after the silence.
                *burst_until = a.acked_ns + burst_ns;
            }
        }
        if a.acked_ns < *burst_until {
            burst_rows.push(read.spike.row(a));
        }
    }
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
    CauseFinding {
        cause: Cause::GcPause,
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
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;

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
        assert_eq!(causes[0].cause, Cause::GcPause, "{causes:#?}");
        assert!(causes[0].evidence["longest_silence_ms"].as_f64().unwrap() >= 80.0);
    }
}
