//! `load_burst`: the delivery rate jumps and latency follows.

use super::*;

/// The `load_burst` detector.
pub struct LoadBurst;

impl Detector for LoadBurst {
    fn cause(&self) -> Cause {
        Cause::LoadBurst
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        load_burst(e, &read.slow)
    }
}

/// `load_burst`: the delivery rate jumps and latency follows. The rate is of samples, one
/// per message acked (a message delivered twice is one sample), so a redelivery storm is not
/// more load.
fn load_burst(e: &Evidence, slow: &[&RingRow]) -> CauseFinding {
    let per_s = |n: usize, ns: i64| n as f64 / (ns.max(1) as f64 / 1e9);
    let (rate, base) = (
        per_s(e.spike.len(), e.spike_ns.1 - e.spike_ns.0),
        per_s(e.baseline.len(), e.baseline_quiet_ns),
    );
    let ratio = rate / base.max(1e-9);
    CauseFinding {
        cause: Cause::LoadBurst,
        confidence: clamp((ratio - 1.5) / 1.0),
        evidence: json!({"acks_per_s": rate, "baseline_acks_per_s": base, "ratio": ratio}),
        summary: format!("{rate:.0} acks/s vs {base:.0} at baseline ({ratio:.1}×)"),
        exemplar_trace_ids: exemplars(slow.iter().copied()),
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;

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
        assert_eq!(causes[0].cause, Cause::LoadBurst, "{causes:#?}");
        assert!(causes[0].evidence["ratio"].as_f64().unwrap() > 3.5);
    }

    #[test]
    fn a_redelivery_storm_after_a_burst_is_the_bursts_consequence() {
        // Four times the messages; the backlog outlived ack_wait: every other message of the
        // spike is a redelivery, and the slowest.
        let mut spike = Vec::new();
        for copy in 0..4 {
            spike.extend(healthy(spike_start() + copy * 1_000, 60));
        }
        spike.sort_by_key(|r| r.acked_ns);
        for (i, r) in spike.iter_mut().enumerate() {
            r.ack_latency_ns = Some(40 * MS);
            if i % 2 == 0 {
                r.deliveries = 2;
                r.ack_latency_ns = Some(2_500 * MS);
            }
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, Cause::LoadBurst, "{causes:#?}");
        assert_eq!(causes[1].cause, Cause::Redelivery, "{causes:#?}");
        assert_eq!(causes[1].caused_by, Some(Cause::LoadBurst));
        assert!(causes[1].summary.starts_with("caused by load_burst"));
    }
}
