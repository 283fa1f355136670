//! What the faults of a scenario do to one server at one instant: pure functions of the
//! scenario, the server and the offset into the timeline (and, for a GC pause at a random
//! phase, a random source).

use rand::RngExt;

use super::scenario::{FaultKind, Scenario};

/// The combined effect of every fault active on a server at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effects {
    /// Publish-rate multiplier (`load_burst`).
    pub load_factor: f64,
    /// Extra processing cost per message (`slow_server`, `flow_control`).
    pub extra_cost_ns: u64,
    /// Probability an ack is lost (`packet_loss`).
    pub ack_loss: f64,
    /// Acks cannot be sent before this far into the frame (`thread_preemption`).
    pub block_ns: Option<u64>,
    /// Acks are held until the frame ends (`frame_end_batching`).
    pub batch_to_frame_end: bool,
}

/// How far before the frame end batched acks are due. The runtime's timers fire up to 1 ms
/// late, and the ack takes time to reach ackscope, so this keeps batched acks inside the
/// frame they belong to (they land in its last ~2.5 ms).
pub const FRAME_END_MARGIN_NS: u64 = 2_500_000;

impl Effects {
    pub fn at(s: &Scenario, server: u32, offset_ns: u64) -> Self {
        let mut e = Effects {
            load_factor: 1.0,
            extra_cost_ns: 0,
            ack_loss: 0.0,
            block_ns: None,
            batch_to_frame_end: false,
        };
        for f in s.faults.iter().filter(|f| f.active(offset_ns, server)) {
            match f.kind {
                FaultKind::LoadBurst { factor } => e.load_factor *= factor,
                FaultKind::SlowServer { cost_ns } | FaultKind::FlowControl { cost_ns } => {
                    e.extra_cost_ns += cost_ns
                }
                FaultKind::PacketLoss { fraction } => {
                    e.ack_loss = 1.0 - (1.0 - e.ack_loss) * (1.0 - fraction)
                }
                FaultKind::ThreadPreemption { block_ns } => {
                    e.block_ns = Some(e.block_ns.unwrap_or(0).max(block_ns))
                }
                FaultKind::FrameEndBatching => e.batch_to_frame_end = true,
                FaultKind::GcPause { .. } => {}
            }
        }
        e
    }

    /// When, in nanoseconds from the frame start, the ack of a message processed at
    /// `processed_ns` goes out.
    pub fn ack_offset(&self, processed_ns: u64, tick_ns: u64) -> u64 {
        let mut at = processed_ns;
        if let Some(block) = self.block_ns {
            at = at.max(block);
        }
        if self.batch_to_frame_end {
            at = at.max(tick_ns.saturating_sub(FRAME_END_MARGIN_NS));
        }
        at
    }
}

/// A GC pause: where in the frame it begins and how long the loop stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub phase_ns: u64,
    pub length_ns: u64,
}

/// The GC pause due in the frame starting at `offset_ns`, if any: pauses are due at the
/// fault's start and every `every` after it, inside its window.
pub fn pause_in_frame(
    s: &Scenario,
    server: u32,
    offset_ns: u64,
    rng: &mut impl rand::Rng,
) -> Option<Pause> {
    let frame_end = offset_ns + s.tick_ns;
    s.faults
        .iter()
        .filter(|f| f.servers.contains(&server))
        .find_map(|f| {
            let FaultKind::GcPause {
                pause_ns,
                every_ns,
                phase_ns,
            } = f.kind
            else {
                return None;
            };
            // The first due time at or after the frame start.
            let due = if offset_ns <= f.start_ns {
                f.start_ns
            } else {
                f.start_ns + (offset_ns - f.start_ns).div_ceil(every_ns) * every_ns
            };
            (due < frame_end && due < f.end_ns).then(|| Pause {
                phase_ns: phase_ns.unwrap_or_else(|| rng.random_range(0..s.tick_ns)),
                length_ns: pause_ns,
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::RawScenario;
    use rand::SeedableRng;

    fn scenario(faults: &str) -> Scenario {
        RawScenario::from_toml(&format!(
            "name = \"t\"\nduration = \"20s\"\n[fleet]\nservers = 3\n{faults}"
        ))
        .unwrap()
        .validate()
        .unwrap()
    }

    const S: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;

    #[test]
    fn effects_apply_only_to_targets_inside_the_window() {
        let s = scenario(
            "[[faults]]\nkind = \"slow_server\"\nstart = \"2s\"\nduration = \"3s\"\nservers = [2]\ncost = \"2ms\"\n\
             [[faults]]\nkind = \"load_burst\"\nstart = \"4s\"\nduration = \"1s\"\nfactor = 3.0\n",
        );
        assert_eq!(Effects::at(&s, 1, 3 * S).extra_cost_ns, 2 * MS);
        assert_eq!(Effects::at(&s, 0, 3 * S).extra_cost_ns, 0);
        assert_eq!(
            Effects::at(&s, 1, 5 * S).extra_cost_ns,
            0,
            "the window is [start, end)"
        );
        assert_eq!(Effects::at(&s, 0, 4 * S).load_factor, 3.0);
        assert_eq!(Effects::at(&s, 2, 3 * S).load_factor, 1.0);
    }

    #[test]
    fn ack_timing_faults_move_acks_in_the_frame() {
        let healthy = Effects::at(&scenario(""), 0, 0);
        assert_eq!(healthy.ack_offset(4 * MS, 16 * MS), 4 * MS);
        let s = scenario(
            "[[faults]]\nkind = \"thread_preemption\"\nstart = \"0s\"\nduration = \"1s\"\nservers = [1]\nblock = \"10ms\"\n\
             [[faults]]\nkind = \"frame_end_batching\"\nstart = \"0s\"\nduration = \"1s\"\nservers = [2]\n",
        );
        let pre = Effects::at(&s, 0, 0);
        assert_eq!(pre.ack_offset(4 * MS, 16 * MS), 10 * MS);
        assert_eq!(pre.ack_offset(12 * MS, 16 * MS), 12 * MS);
        let batch = Effects::at(&s, 1, 0);
        assert_eq!(
            batch.ack_offset(4 * MS, 16 * MS),
            16 * MS - FRAME_END_MARGIN_NS
        );
    }

    #[test]
    fn gc_pauses_fall_due_every_period_inside_the_window() {
        let s = scenario(
            "[[faults]]\nkind = \"gc_pause\"\nstart = \"2s\"\nduration = \"3s\"\nservers = [1]\npause = \"50ms\"\nevery = \"1s\"\nphase = \"5ms\"\n",
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let frames_with_pause: Vec<u64> = (0..(20 * S / (16 * MS)))
            .map(|k| k * 16 * MS)
            .filter(|&offset| pause_in_frame(&s, 0, offset, &mut rng).is_some())
            .collect();
        // Due at 2 s, 3 s and 4 s; 5 s is the window's end.
        assert_eq!(frames_with_pause.len(), 3, "{frames_with_pause:?}");
        for (due, frame) in [2 * S, 3 * S, 4 * S].iter().zip(&frames_with_pause) {
            assert!(*frame <= *due && *due < frame + 16 * MS);
        }
        let p = pause_in_frame(&s, 0, frames_with_pause[0], &mut rng).unwrap();
        assert_eq!(
            p,
            Pause {
                phase_ns: 5 * MS,
                length_ns: 50 * MS
            }
        );
        assert!(pause_in_frame(&s, 1, frames_with_pause[0], &mut rng).is_none());
    }
}
