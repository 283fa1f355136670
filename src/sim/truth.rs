//! The ground truth of a simulation: every fault injected, with its cause name (as in the
//! contract), its targets and its exact wall-clock window, every GC pause as it happened, and
//! the fleet's own measurements (frame jitter, messages, acks).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Timeline;
use super::scenario::{FaultKind, Scenario};
use crate::aggregate::histogram::LatencyHistogram;
use crate::model::rfc3339;

/// A GC pause as it happened, or a stall of the simulator itself (a frame that started late).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseRecord {
    pub server: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// A (stream, consumer) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumerRef {
    pub stream: String,
    pub consumer: String,
}

/// One injected fault occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InjectedFault {
    /// The scenario's fault kind (`frame_end_batching`, `packet_loss`, …).
    pub kind: String,
    /// The contract's cause name it should be attributed to.
    pub cause: String,
    pub servers: Vec<String>,
    pub consumers: Vec<ConsumerRef>,
    pub start: String,
    pub end: String,
    pub start_ns: i64,
    pub end_ns: i64,
    pub params: serde_json::Value,
}

/// Frame timing the fleet measured: how late each frame began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetReport {
    pub frames: u64,
    pub published: u64,
    pub acks_sent: u64,
    pub acks_dropped: u64,
    pub frame_jitter_p50_us: f64,
    pub frame_jitter_p99_us: f64,
    pub frame_jitter_max_us: f64,
}

/// The truth file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    pub scenario: String,
    pub seed: u64,
    pub servers: u32,
    pub stream: String,
    pub tick_us: f64,
    pub started: String,
    pub ended: String,
    pub faults: Vec<InjectedFault>,
    pub gc_pauses: Vec<PauseRecord>,
    /// Frames that started at least [`STALL_NS`] late though no fault paused them: the
    /// simulator's own process was held up (timers, CPU), and acks due then went out late.
    /// Latency rises there are real, but no fault was injected for them.
    #[serde(default)]
    pub stalls: Vec<PauseRecord>,
    pub fleet: FleetReport,
}

/// What the fleet counted while it ran.
#[derive(Debug)]
pub struct FleetStats {
    pub lateness: LatencyHistogram,
    pub frames: u64,
    pub published: u64,
    pub acks_sent: u64,
    pub acks_dropped: u64,
    pub pauses: Vec<PauseRecord>,
    pub stalls: Vec<PauseRecord>,
}

/// How late a frame starts before it counts as a stall of the simulator.
pub const STALL_NS: u64 = 4_000_000;

impl Default for FleetStats {
    fn default() -> Self {
        Self {
            lateness: LatencyHistogram::new(60_000_000_000),
            frames: 0,
            published: 0,
            acks_sent: 0,
            acks_dropped: 0,
            pauses: Vec::new(),
            stalls: Vec::new(),
        }
    }
}

fn params(kind: &FaultKind) -> serde_json::Value {
    let us = |ns: u64| ns as f64 / 1_000.0;
    match *kind {
        FaultKind::GcPause {
            pause_ns,
            every_ns,
            phase_ns,
        } => {
            json!({"pause_us": us(pause_ns), "every_us": us(every_ns), "phase_us": phase_ns.map(us)})
        }
        FaultKind::ThreadPreemption { block_ns } => json!({"block_us": us(block_ns)}),
        FaultKind::FrameEndBatching => json!({}),
        FaultKind::PacketLoss { fraction } => json!({"fraction": fraction}),
        FaultKind::FlowControl { cost_ns } | FaultKind::SlowServer { cost_ns } => {
            json!({"extra_cost_us": us(cost_ns)})
        }
        FaultKind::LoadBurst { factor } => json!({"factor": factor}),
    }
}

impl Truth {
    /// The truth of a run of `s` on `timeline` that ended at `ended_ns` (Unix nanoseconds).
    pub fn new(s: &Scenario, timeline: &Timeline, ended_ns: i64, stats: &FleetStats) -> Self {
        let run_ns = (ended_ns - timeline.t0_wall_ns).max(0) as u64;
        let cycles = if s.repeat {
            run_ns.div_ceil(s.duration_ns).max(1)
        } else {
            1
        };
        let mut faults = Vec::new();
        for cycle in 0..cycles {
            let base = timeline.t0_wall_ns + (cycle * s.duration_ns) as i64;
            for f in &s.faults {
                let start_ns = base + f.start_ns as i64;
                if start_ns >= ended_ns {
                    continue;
                }
                let end_ns = (base + f.end_ns as i64).min(ended_ns);
                let servers: Vec<String> = f
                    .servers
                    .iter()
                    .map(|&i| Scenario::server_name(i))
                    .collect();
                faults.push(InjectedFault {
                    kind: f.kind.name().into(),
                    cause: f.kind.cause().into(),
                    consumers: servers
                        .iter()
                        .map(|name| ConsumerRef {
                            stream: s.stream.clone(),
                            consumer: name.clone(),
                        })
                        .collect(),
                    servers,
                    start: rfc3339(start_ns),
                    end: rfc3339(end_ns),
                    start_ns,
                    end_ns,
                    params: params(&f.kind),
                });
            }
        }
        faults.sort_by_key(|f| f.start_ns);
        let q = stats.lateness.quantiles();
        Truth {
            scenario: s.name.clone(),
            seed: s.seed,
            servers: s.servers,
            stream: s.stream.clone(),
            tick_us: s.tick_ns as f64 / 1_000.0,
            started: rfc3339(timeline.t0_wall_ns),
            ended: rfc3339(ended_ns),
            faults,
            gc_pauses: stats.pauses.clone(),
            stalls: stats.stalls.clone(),
            fleet: FleetReport {
                frames: stats.frames,
                published: stats.published,
                acks_sent: stats.acks_sent,
                acks_dropped: stats.acks_dropped,
                frame_jitter_p50_us: q.p50,
                frame_jitter_p99_us: q.p99,
                frame_jitter_max_us: q.max,
            },
        }
    }
}
