//! The ground truth of a simulation: every fault injected, with its cause name (as in the
//! contract), its targets and its exact wall-clock window, every GC pause as it happened, and
//! the fleet's own measurements (frame jitter, messages, acks).

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Timeline;
use super::scenario::{FaultKind, Scenario};
use crate::aggregate::histogram::LatencyHistogram;
use crate::analyze::causes::Cause;
use crate::model::rfc3339;

/// A GC pause as it happened, or a stall of the simulator itself (a frame that started late).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseRecord {
    pub server: String,
    pub start_ns: i64,
    pub end_ns: i64,
}

/// One second of one server's acks as the server itself saw them: the P99 of its e2e latency
/// (message stored → ack sent, by this machine's clock). The latency the consumer really had,
/// against which a spike that no fault explains can be told real or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientWindow {
    pub server: String,
    /// Unix nanoseconds, a whole second.
    pub start_ns: i64,
    pub e2e_p99_us: f64,
    pub acks: u64,
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
    /// The cause it should be attributed to.
    pub cause: Cause,
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
    /// Each server's own e2e latency per second (the first [`MAX_CLIENT_WINDOWS`]).
    #[serde(default)]
    pub client_windows: Vec<ClientWindow>,
    /// Each server's frame clock: where its frames really start.
    #[serde(default)]
    pub clocks: Vec<ServerFrames>,
    pub fleet: FleetReport,
}

/// Where a server's frames start: `epoch_ns + k * period_ns`, from `restart_ns` on
/// `restart_epoch_ns + k * period_ns`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerFrames {
    pub server: String,
    pub period_ns: f64,
    pub epoch_ns: i64,
    pub restart_ns: Option<i64>,
    pub restart_epoch_ns: Option<i64>,
}

impl ServerFrames {
    /// Nanoseconds into this server's own frame at `t_ns`.
    pub fn phase_ns(&self, t_ns: i64) -> f64 {
        let epoch = match (self.restart_ns, self.restart_epoch_ns) {
            (Some(at), Some(e)) if t_ns >= at => e,
            _ => self.epoch_ns,
        };
        ((t_ns - epoch) as f64).rem_euclid(self.period_ns)
    }
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
    pub client_windows: Vec<ClientWindow>,
}

/// Acks of one server in one second whose latency is kept (the rest are not in its P99).
const MAX_ACKS_PER_SECOND: usize = 100_000;

/// Client windows kept: 8 servers for 7 hours.
pub const MAX_CLIENT_WINDOWS: usize = 200_000;

/// How late a frame starts before it counts as a stall of the simulator.
pub const STALL_NS: u64 = 4_000_000;

/// One server's acks of the current second, folded into a [`ClientWindow`] when it ends.
#[derive(Debug)]
pub struct ClientLatency {
    server: String,
    second: i64,
    e2e_ns: Vec<u64>,
}

impl ClientLatency {
    pub fn new(server: String) -> Self {
        Self {
            server,
            second: 0,
            e2e_ns: Vec::new(),
        }
    }

    /// Records an ack sent at `now_ns` of a message stored at `stored_ns` (Unix nanoseconds);
    /// returns the previous second's window when `now_ns` begins a new one.
    pub fn record(&mut self, stored_ns: i64, now_ns: i64) -> Option<ClientWindow> {
        let second = now_ns.div_euclid(1_000_000_000);
        let done = (second != self.second).then(|| self.take()).flatten();
        self.second = second;
        if self.e2e_ns.len() < MAX_ACKS_PER_SECOND {
            self.e2e_ns
                .push(now_ns.saturating_sub(stored_ns).max(0) as u64);
        }
        done
    }

    /// The window of the second so far, if it had any acks.
    pub fn take(&mut self) -> Option<ClientWindow> {
        if self.e2e_ns.is_empty() {
            return None;
        }
        let acks = self.e2e_ns.len() as u64;
        let p99 = crate::aggregate::rebin::quantile(&mut self.e2e_ns, 0.99);
        self.e2e_ns.clear();
        Some(ClientWindow {
            server: self.server.clone(),
            start_ns: self.second * 1_000_000_000,
            e2e_p99_us: p99 as f64 / 1_000.0,
            acks,
        })
    }
}

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
            client_windows: Vec::new(),
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
                    cause: f.kind.cause(),
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
            client_windows: stats.client_windows.clone(),
            clocks: s
                .clocks
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let wall = |k: u64| timeline.t0_wall_ns + c.start_of(k) as i64;
                    let restart = c.restart_frame().map(wall);
                    ServerFrames {
                        server: Scenario::server_name(i as u32),
                        period_ns: c.period_ns,
                        epoch_ns: wall(0),
                        restart_ns: restart,
                        restart_epoch_ns: restart,
                    }
                })
                .collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_latency_closes_a_window_per_second() {
        let mut c = ClientLatency::new("srv-1".into());
        let s = 1_000_000_000i64;
        // 100 acks in second 7: latencies 1..=100 ms.
        for i in 1..=100 {
            assert_eq!(c.record(7 * s - i * 1_000_000, 7 * s + 5), None);
        }
        let w = c.record(8 * s - 2_000_000, 8 * s + 1).unwrap();
        assert_eq!(w.server, "srv-1");
        assert_eq!(w.start_ns, 7 * s);
        assert_eq!(w.acks, 100);
        assert!((w.e2e_p99_us - 99_000.005).abs() < 0.01, "{}", w.e2e_p99_us);
        // A stored time after the ack (clocks apart) counts as 0, not as a huge latency.
        c.record(8 * s + 10_000_000, 8 * s + 2);
        let w = c.take().unwrap();
        assert_eq!((w.start_ns, w.acks), (8 * s, 2));
        assert!((w.e2e_p99_us - 2_000.001).abs() < 0.01, "{}", w.e2e_p99_us);
        assert_eq!(c.take(), None);
    }
}
