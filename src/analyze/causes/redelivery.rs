//! `redelivery`: slow samples are redeliveries (lost acks, `ack_wait` expiry, NAKs).

use super::*;

/// The `redelivery` detector.
pub struct Redelivery;

impl Detector for Redelivery {
    fn cause(&self) -> Cause {
        Cause::Redelivery
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        redelivery(e, read)
    }
}

/// `redelivery`: slow samples are redeliveries (lost acks, ack_wait expiry, NAKs).
fn redelivery(e: &Evidence, read: &Read) -> CauseFinding {
    let slow = &read.slow;
    let redelivered: Vec<&RingRow> = slow.iter().copied().filter(|r| r.deliveries > 1).collect();
    let share_of_slow = redelivered.len() as f64 / slow.len().max(1) as f64;
    let share = |t: &Timeline| t.redelivered as f64 / t.len().max(1) as f64;
    let naks = read.spike.naks;
    // Of the samples, or of the deliveries the windows counted, whichever shows more: a
    // redelivered message acked on its first delivery (a backlog that outlived ack_wait)
    // is a sample with one delivery, and a redelivery among the deliveries.
    let of = |(redelivered, all): (u64, u64)| redelivered as f64 / all.max(1) as f64;
    let during = share(&read.spike).max(of(e.deliveries.during));
    let base = share(&read.baseline).max(of(e.deliveries.baseline));
    // The signature: redeliveries where there were (almost) none. What it explains: the slow
    // samples that were redeliveries, and, while the consumer sat at max_ack_pending, the
    // messages that waited behind the unacked ones holding its slots until ack_wait. Half of
    // the slow samples explained is full confidence; 6% is not.
    let signature = clamp((during - base) / 0.05);
    let explained = share_of_slow.max(share_at_max_ack_pending(e));
    CauseFinding {
        cause: Cause::Redelivery,
        confidence: signature * clamp(explained / 0.5),
        evidence: json!({"slow_samples": slow.len(), "redelivered_share_of_slow": share_of_slow,
            "redelivered_share": during, "redelivered_share_at_baseline": base, "naks": naks,
            "explained_share_of_slow": explained}),
        summary: format!(
            "{} of slow samples were redeliveries; {} of all samples vs {} at baseline; {naks} NAKs",
            pct(share_of_slow),
            pct(during),
            pct(base)
        ),
        exemplar_trace_ids: exemplars(redelivered),
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;

    #[test]
    fn redelivered_slow_samples_point_at_redelivery() {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().step_by(5) {
            r.deliveries = 2;
            r.ack_latency_ns = Some(1_000 * MS);
        }
        let causes = top(&spike, &baseline(), &[]);
        assert_eq!(causes[0].cause, Cause::Redelivery, "{causes:#?}");
    }

    #[test]
    fn redeliveries_the_windows_counted_count_when_the_first_delivery_was_acked() {
        // A backlog outlived ack_wait: the server redelivered half the messages, but each was
        // acked on its first delivery, so no sample says so. The windows counted them.
        let mut spike = healthy(spike_start(), 60);
        for r in &mut spike {
            r.ack_latency_ns = Some(2_500 * MS);
        }
        let (all, redelivered) = (spike.len() as u64, spike.len() as u64 / 2);
        let quiet = Deliveries {
            during: (0, all),
            baseline: (0, 4 * all),
        };
        let none = top_with(&spike, &baseline(), &[], quiet);
        let found = |c: &[CauseFinding]| {
            c.iter()
                .find(|f| f.cause == Cause::Redelivery)
                .unwrap()
                .confidence
        };
        assert_eq!(found(&none), 0.0);
        let storm = Deliveries {
            during: (redelivered, all + redelivered),
            ..quiet
        };
        let causes = top_with(&spike, &baseline(), &[(1000, 1000)], storm);
        assert!(found(&causes) >= 0.9, "{causes:#?}");
    }
}
