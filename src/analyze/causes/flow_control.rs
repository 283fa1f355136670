//! `flow_control`: the consumer sits at `max_ack_pending` while the spike lasts.

use super::*;

/// The `flow_control` detector.
pub struct FlowControl;

impl Detector for FlowControl {
    fn cause(&self) -> Cause {
        Cause::FlowControl
    }

    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding {
        flow_control(e, &read.slow)
    }
}

/// `flow_control`: the consumer sits at `max_ack_pending` while the spike lasts.
fn flow_control(e: &Evidence, slow: &[&RingRow]) -> CauseFinding {
    let limited: Vec<&(u64, i64)> = e.ack_pending.iter().filter(|(_, max)| *max > 0).collect();
    let at_limit = limited.iter().filter(|p| at_max_ack_pending(p)).count();
    let share = at_limit as f64 / limited.len().max(1) as f64;
    let peak = e.ack_pending.iter().map(|(p, _)| *p).max().unwrap_or(0);
    CauseFinding {
        cause: Cause::FlowControl,
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
        caused_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::causes::tests::*;

    #[test]
    fn acks_at_max_ack_pending_point_at_flow_control() {
        let mut spike = healthy(spike_start(), 60);
        for r in &mut spike {
            r.ack_latency_ns = Some(200 * MS);
        }
        let causes = top(&spike, &baseline(), &[(200, 200), (199, 200), (200, 200)]);
        assert_eq!(causes[0].cause, Cause::FlowControl, "{causes:#?}");
    }
}
