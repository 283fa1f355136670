//! Scenario files: the fleet, its JetStream set-up, the processing model and a timeline of
//! faults, as TOML. [`RawScenario`] is the file; [`RawScenario::validate`] gives the
//! [`Scenario`] the simulator runs, or an error naming the key and the bad value.

use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Deserialize;

use crate::analyze::causes::Cause;
use crate::tick::Period;
use crate::units::{duration_ns, parse_duration};

/// A scenario error, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read scenario {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("scenario {path}: {message}")]
    Parse { path: String, message: String },
    #[error("scenario key `{key}`: invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

fn invalid(key: impl Into<String>, value: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        key: key.into(),
        value: value.into(),
        reason: reason.into(),
    }
}

/// The scenario file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: String,
    /// Seed of every random choice (processing costs, trace ids, lost acks).
    #[serde(default)]
    pub seed: u64,
    /// How long the timeline runs, e.g. `"5m"`.
    pub duration: String,
    /// Start the timeline again when it ends (the demo does).
    #[serde(default)]
    pub repeat: bool,
    pub fleet: RawFleet,
    #[serde(default)]
    pub jetstream: RawJetStream,
    #[serde(default)]
    pub processing: RawProcessing,
    #[serde(default)]
    pub faults: Vec<RawFault>,
}

/// `[fleet]`: the game servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFleet {
    pub servers: u32,
    #[serde(default = "default_tick")]
    pub tick: String,
    /// Messages published per server per frame.
    #[serde(default = "default_events")]
    pub events_per_frame: u32,
    /// Subject of a server's messages; `{server}` becomes `srv-N`.
    #[serde(default = "default_subject")]
    pub subject: String,
    #[serde(default = "default_size")]
    pub message_size: usize,
    /// `aligned` (default): every server's frames start on wall-clock multiples of the tick;
    /// `own`: each server starts its frames at its own offset, as a real game loop does.
    #[serde(default = "default_frames")]
    pub frames: String,
    /// Servers (numbered from 1) whose frame clock runs `drift_ppm` fast.
    #[serde(default)]
    pub drifting: Vec<u32>,
    #[serde(default)]
    pub drift_ppm: f64,
    /// Servers that restart their frame loop at a new offset.
    #[serde(default)]
    pub restarts: Vec<RawRestart>,
    /// Each server announces its frame clock on `ackscope.frame.<stream>.<consumer>`.
    #[serde(default)]
    pub announce: bool,
}

/// `[[fleet.restarts]]`: server `server` restarts its frame loop at `at`, at a new offset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestart {
    pub server: u32,
    pub at: String,
}

fn default_frames() -> String {
    "aligned".into()
}

fn default_tick() -> String {
    "16ms".into()
}
fn default_events() -> u32 {
    4
}
fn default_subject() -> String {
    "game.{server}.state".into()
}
fn default_size() -> usize {
    128
}

/// `[jetstream]`: the stream and one durable consumer per server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawJetStream {
    pub stream: String,
    /// `pull` (default) or `push`.
    pub consumer: String,
    pub ack_wait: String,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    /// Percent of acks the server samples into ack metrics (0 = off).
    pub sample_freq: u8,
}

impl Default for RawJetStream {
    fn default() -> Self {
        Self {
            stream: "GAME".into(),
            consumer: "pull".into(),
            ack_wait: "2s".into(),
            max_ack_pending: 1000,
            max_deliver: 5,
            sample_freq: 0,
        }
    }
}

/// `[processing]`: each frame runs the logic phase, then processes messages and acks them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProcessing {
    pub logic: String,
    /// Processing cost per message: log-normal with this median and 99th percentile.
    pub cost_median: String,
    pub cost_p99: String,
}

impl Default for RawProcessing {
    fn default() -> Self {
        Self {
            logic: "3ms".into(),
            cost_median: "150us".into(),
            cost_p99: "600us".into(),
        }
    }
}

/// One `[[faults]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    /// `gc_pause`, `thread_preemption`, `frame_end_batching`, `packet_loss`, `flow_control`,
    /// `load_burst` or `slow_server`.
    pub kind: String,
    pub start: String,
    pub duration: String,
    /// Target servers (1-based); empty means every server.
    #[serde(default)]
    pub servers: Vec<u32>,
    /// gc_pause: how long the loop stops (default 40ms), how often (default 2s), and at which
    /// phase of the frame (default: random).
    pub pause: Option<String>,
    pub every: Option<String>,
    pub phase: Option<String>,
    /// thread_preemption: the first part of every frame in which acks cannot be sent.
    pub block: Option<String>,
    /// packet_loss: the fraction of acks dropped.
    pub fraction: Option<f64>,
    /// load_burst: publish-rate multiplier.
    pub factor: Option<f64>,
    /// flow_control and slow_server: extra processing cost per message.
    pub cost: Option<String>,
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    GcPause {
        pause_ns: u64,
        every_ns: u64,
        phase_ns: Option<u64>,
    },
    ThreadPreemption {
        block_ns: u64,
    },
    FrameEndBatching,
    PacketLoss {
        fraction: f64,
    },
    FlowControl {
        cost_ns: u64,
    },
    LoadBurst {
        factor: f64,
    },
    SlowServer {
        cost_ns: u64,
    },
}

impl FaultKind {
    /// The fault's name in scenario files.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::GcPause { .. } => "gc_pause",
            FaultKind::ThreadPreemption { .. } => "thread_preemption",
            FaultKind::FrameEndBatching => "frame_end_batching",
            FaultKind::PacketLoss { .. } => "packet_loss",
            FaultKind::FlowControl { .. } => "flow_control",
            FaultKind::LoadBurst { .. } => "load_burst",
            FaultKind::SlowServer { .. } => "slow_server",
        }
    }

    /// The cause the fault should be attributed to.
    pub fn cause(&self) -> Cause {
        match self {
            FaultKind::GcPause { .. } => Cause::GcPause,
            FaultKind::ThreadPreemption { .. } | FaultKind::FrameEndBatching => {
                Cause::ThreadPreemption
            }
            FaultKind::PacketLoss { .. } => Cause::Redelivery,
            FaultKind::FlowControl { .. } => Cause::FlowControl,
            FaultKind::LoadBurst { .. } => Cause::LoadBurst,
            FaultKind::SlowServer { .. } => Cause::HotSpot,
        }
    }
}

/// A validated fault: offsets from the timeline's start.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    pub start_ns: u64,
    pub end_ns: u64,
    /// 0-based server indexes.
    pub servers: Vec<u32>,
}

impl Fault {
    pub fn active(&self, offset_ns: u64, server: u32) -> bool {
        offset_ns >= self.start_ns && offset_ns < self.end_ns && self.servers.contains(&server)
    }
}

/// A validated scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    pub duration_ns: u64,
    pub repeat: bool,
    pub servers: u32,
    /// The nominal tick, exact.
    pub period: Period,
    /// The nominal tick, rounded to the nanosecond.
    pub tick_ns: u64,
    /// Each server's frame clock.
    pub clocks: Vec<ServerClock>,
    /// Servers announce their frame clocks.
    pub announce: bool,
    /// Servers start their frames at their own offsets (`frames = "own"`).
    pub own_frames: bool,
    pub events_per_frame: u32,
    pub subject: String,
    pub message_size: usize,
    pub stream: String,
    pub push: bool,
    pub ack_wait_ns: u64,
    pub max_ack_pending: i64,
    pub max_deliver: i64,
    pub sample_freq: u8,
    pub logic_ns: u64,
    pub cost_median_ns: u64,
    pub cost_p99_ns: u64,
    pub faults: Vec<Fault>,
}

/// One server's frame clock, from the timeline's start: frame `k` starts `offset + k * period`
/// in, with a new offset from `restart` on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerClock {
    pub period_ns: f64,
    pub offset_ns: f64,
    /// (from, new offset), ns from the timeline's start.
    pub restart: Option<(u64, f64)>,
}

impl ServerClock {
    fn offset_for(&self, base_ns: f64) -> f64 {
        match self.restart {
            Some((at, offset)) if base_ns >= at as f64 => offset,
            _ => self.offset_ns,
        }
    }

    /// Where frame `k` starts, ns from the timeline's start.
    pub fn start_of(&self, k: u64) -> u64 {
        let base = k as f64 * self.period_ns;
        (base + self.offset_for(base)).round() as u64
    }

    /// The frame under way at `elapsed_ns`: the last to start by then (0 before the first).
    pub fn frame_at(&self, elapsed_ns: u64) -> u64 {
        let after = |first: u64, offset: f64| {
            let since = elapsed_ns as f64 - (first as f64 * self.period_ns + offset);
            first + (since / self.period_ns).floor().max(0.0) as u64
        };
        let mut k = match (self.restart_frame(), self.restart) {
            (Some(k), Some((_, offset))) if elapsed_ns >= self.start_of(k) => after(k, offset),
            (Some(k), _) => after(0, self.offset_ns).min(k.saturating_sub(1)),
            _ => after(0, self.offset_ns),
        };
        // Frame starts are rounded to the nanosecond: settle on them exactly.
        while self.start_of(k + 1) <= elapsed_ns {
            k += 1;
        }
        while k > 0 && self.start_of(k) > elapsed_ns {
            k -= 1;
        }
        k
    }

    /// The frame from which the restart's offset applies.
    pub fn restart_frame(&self) -> Option<u64> {
        self.restart
            .map(|(at, _)| (at as f64 / self.period_ns).ceil() as u64)
    }
}

impl Scenario {
    /// The name of server `index` (0-based): `srv-1`, `srv-2`, …
    pub fn server_name(index: u32) -> String {
        format!("srv-{}", index + 1)
    }

    /// The subject server `index` publishes on.
    pub fn subject_of(&self, index: u32) -> String {
        self.subject.replace("{server}", &Self::server_name(index))
    }
}

/// Each server's frame clock: aligned, or at an offset drawn from the seed; some drifting,
/// some restarting at a new offset.
fn server_clocks(
    f: &RawFleet,
    period: Period,
    seed: u64,
    duration_ns: u64,
) -> Result<Vec<ServerClock>, Error> {
    let own = match f.frames.as_str() {
        "aligned" => false,
        "own" => true,
        other => {
            return Err(invalid(
                "fleet.frames",
                other,
                "expected `aligned` or `own`",
            ));
        }
    };
    if !(0.0..=1_000.0).contains(&f.drift_ppm.abs()) {
        return Err(invalid(
            "fleet.drift_ppm",
            f.drift_ppm.to_string(),
            "at most 1000",
        ));
    }
    let number = |key: &str, s: u32| {
        if s == 0 || s > f.servers {
            Err(invalid(
                key,
                s.to_string(),
                format!("servers are numbered 1 to {}", f.servers),
            ))
        } else {
            Ok(s - 1)
        }
    };
    let period_ns = period.ns_f64();
    let mut rng = StdRng::seed_from_u64(seed ^ 0xF4A3E);
    let mut clocks: Vec<ServerClock> = (0..f.servers)
        .map(|_| ServerClock {
            period_ns,
            offset_ns: if own {
                rng.random_range(0.0..period_ns)
            } else {
                0.0
            },
            restart: None,
        })
        .collect();
    for &s in &f.drifting {
        clocks[number("fleet.drifting", s)? as usize].period_ns =
            period_ns * (1.0 + f.drift_ppm * 1e-6);
    }
    for (i, r) in f.restarts.iter().enumerate() {
        if f.restarts[..i].iter().any(|o| o.server == r.server) {
            return Err(invalid(
                format!("fleet.restarts[{i}].server"),
                r.server.to_string(),
                "one restart a server",
            ));
        }
        let key = format!("fleet.restarts[{i}].at");
        let at = dur(&key, &r.at)?;
        if at == 0 || at >= duration_ns {
            return Err(invalid(&key, &r.at, "must fall within the scenario"));
        }
        let c = &mut clocks[number(&format!("fleet.restarts[{i}].server"), r.server)? as usize];
        // At least a quarter frame away from the old offset: a restart that shows.
        let shift = rng.random_range(0.25..0.75) * period_ns;
        c.restart = Some((at, (c.offset_ns + shift) % period_ns));
    }
    Ok(clocks)
}

fn dur(key: &str, value: &str) -> Result<u64, Error> {
    parse_duration(value)
        .map(duration_ns)
        .map_err(|reason| invalid(key, value, reason))
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl RawScenario {
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| Error::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub fn validate(self) -> Result<Scenario, Error> {
        let duration_ns = dur("duration", &self.duration)?;
        if duration_ns < 1_000_000_000 {
            return Err(invalid("duration", &self.duration, "must be at least 1s"));
        }
        let f = &self.fleet;
        if !(1..=64).contains(&f.servers) {
            return Err(invalid(
                "fleet.servers",
                f.servers.to_string(),
                "must be between 1 and 64",
            ));
        }
        let period =
            Period::parse(&f.tick).map_err(|reason| invalid("fleet.tick", &f.tick, reason))?;
        let tick_ns = period.ns();
        if !(1_000_000..=1_000_000_000).contains(&tick_ns) {
            return Err(invalid("fleet.tick", &f.tick, "must be between 1ms and 1s"));
        }
        if !(1..=1000).contains(&f.events_per_frame) {
            return Err(invalid(
                "fleet.events_per_frame",
                f.events_per_frame.to_string(),
                "must be between 1 and 1000",
            ));
        }
        if !f.subject.contains("{server}") || f.subject.contains(['*', '>', ' ']) {
            return Err(invalid(
                "fleet.subject",
                &f.subject,
                "must be a literal subject containing {server}",
            ));
        }
        if f.message_size > 1_000_000 {
            return Err(invalid(
                "fleet.message_size",
                f.message_size.to_string(),
                "at most 1000000",
            ));
        }
        let js = &self.jetstream;
        if !is_name(&js.stream) {
            return Err(invalid("jetstream.stream", &js.stream, "not a stream name"));
        }
        let push = match js.consumer.as_str() {
            "pull" => false,
            "push" => true,
            other => {
                return Err(invalid(
                    "jetstream.consumer",
                    other,
                    "expected `pull` or `push`",
                ));
            }
        };
        let ack_wait_ns = dur("jetstream.ack_wait", &js.ack_wait)?;
        if ack_wait_ns < 100_000_000 {
            return Err(invalid(
                "jetstream.ack_wait",
                &js.ack_wait,
                "must be at least 100ms",
            ));
        }
        if js.max_ack_pending == 0 || js.max_ack_pending < -1 {
            return Err(invalid(
                "jetstream.max_ack_pending",
                js.max_ack_pending.to_string(),
                "must be positive or -1",
            ));
        }
        if js.max_deliver == 0 || js.max_deliver < -1 {
            return Err(invalid(
                "jetstream.max_deliver",
                js.max_deliver.to_string(),
                "must be positive or -1",
            ));
        }
        if js.sample_freq > 100 {
            return Err(invalid(
                "jetstream.sample_freq",
                js.sample_freq.to_string(),
                "a percentage",
            ));
        }
        let p = &self.processing;
        let logic_ns = dur("processing.logic", &p.logic)?;
        if logic_ns >= tick_ns {
            return Err(invalid(
                "processing.logic",
                &p.logic,
                "must be shorter than the tick",
            ));
        }
        let cost_median_ns = dur("processing.cost_median", &p.cost_median)?.max(1);
        let cost_p99_ns = dur("processing.cost_p99", &p.cost_p99)?;
        if cost_p99_ns < cost_median_ns {
            return Err(invalid(
                "processing.cost_p99",
                &p.cost_p99,
                "must be at least cost_median",
            ));
        }
        let clocks = server_clocks(f, period, self.seed, duration_ns)?;
        let mut faults = Vec::new();
        for (i, raw) in self.faults.iter().enumerate() {
            faults.push(validate_fault(i, raw, f.servers, duration_ns, tick_ns)?);
        }
        Ok(Scenario {
            name: self.name,
            seed: self.seed,
            duration_ns,
            repeat: self.repeat,
            servers: f.servers,
            period,
            tick_ns,
            own_frames: f.frames == "own",
            clocks,
            announce: f.announce,
            events_per_frame: f.events_per_frame,
            subject: f.subject.clone(),
            message_size: f.message_size,
            stream: js.stream.clone(),
            push,
            ack_wait_ns,
            max_ack_pending: js.max_ack_pending,
            max_deliver: js.max_deliver,
            sample_freq: js.sample_freq,
            logic_ns,
            cost_median_ns,
            cost_p99_ns,
            faults,
        })
    }
}

fn validate_fault(
    i: usize,
    raw: &RawFault,
    servers: u32,
    duration_ns: u64,
    tick_ns: u64,
) -> Result<Fault, Error> {
    let key = |k: &str| format!("faults[{i}].{k}");
    let start_ns = dur(&key("start"), &raw.start)?;
    let length_ns = dur(&key("duration"), &raw.duration)?;
    if length_ns == 0 || start_ns + length_ns > duration_ns {
        return Err(invalid(
            key("duration"),
            &raw.duration,
            "the fault must end within the scenario",
        ));
    }
    let mut targets = Vec::new();
    for &s in &raw.servers {
        if s == 0 || s > servers {
            return Err(invalid(
                key("servers"),
                s.to_string(),
                format!("servers are numbered 1 to {servers}"),
            ));
        }
        targets.push(s - 1);
    }
    if targets.is_empty() {
        targets = (0..servers).collect();
    }
    let optional = |name: &str, value: &Option<String>, default: &str| -> Result<u64, Error> {
        dur(&key(name), value.as_deref().unwrap_or(default))
    };
    let kind = match raw.kind.as_str() {
        "gc_pause" => {
            let pause_ns = optional("pause", &raw.pause, "40ms")?;
            let every_ns = optional("every", &raw.every, "2s")?;
            if every_ns <= pause_ns {
                return Err(invalid(
                    key("every"),
                    raw.every.clone().unwrap_or_default(),
                    "must be longer than the pause",
                ));
            }
            let phase_ns = raw
                .phase
                .as_deref()
                .map(|p| dur(&key("phase"), p))
                .transpose()?;
            if phase_ns.is_some_and(|p| p >= tick_ns) {
                return Err(invalid(
                    key("phase"),
                    raw.phase.clone().unwrap_or_default(),
                    "must be inside the frame",
                ));
            }
            FaultKind::GcPause {
                pause_ns,
                every_ns,
                phase_ns,
            }
        }
        "thread_preemption" => {
            let block_ns = optional("block", &raw.block, "8ms")?;
            if block_ns == 0 || block_ns >= tick_ns {
                return Err(invalid(
                    key("block"),
                    raw.block.clone().unwrap_or_default(),
                    "must be inside the frame",
                ));
            }
            FaultKind::ThreadPreemption { block_ns }
        }
        "frame_end_batching" => FaultKind::FrameEndBatching,
        "packet_loss" => {
            let fraction = raw.fraction.unwrap_or(0.2);
            if !(0.0..=1.0).contains(&fraction) || fraction == 0.0 {
                return Err(invalid(
                    key("fraction"),
                    fraction.to_string(),
                    "must be in (0, 1]",
                ));
            }
            FaultKind::PacketLoss { fraction }
        }
        "flow_control" => FaultKind::FlowControl {
            cost_ns: optional("cost", &raw.cost, "5ms")?,
        },
        "load_burst" => {
            let factor = raw.factor.unwrap_or(4.0);
            if !(1.0..=100.0).contains(&factor) {
                return Err(invalid(
                    key("factor"),
                    factor.to_string(),
                    "must be between 1 and 100",
                ));
            }
            FaultKind::LoadBurst { factor }
        }
        "slow_server" => FaultKind::SlowServer {
            cost_ns: optional("cost", &raw.cost, "2ms")?,
        },
        other => {
            return Err(invalid(
                key("kind"),
                other,
                "expected gc_pause, thread_preemption, frame_end_batching, packet_loss, flow_control, load_burst or slow_server",
            ));
        }
    };
    Ok(Fault {
        kind,
        start_ns,
        end_ns: start_ns + length_ns,
        servers: targets,
    })
}

/// The demo's built-in scenario: healthy, then each fault in turn, repeating.
pub const DEMO: &str = include_str!("../../scenarios/demo.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_on_its_own_frames_restarts_at_a_new_offset() {
        for (old, new) in [(2.0e6, 10.0e6), (10.0e6, 2.0e6)] {
            let c = ServerClock {
                period_ns: 16.0e6,
                offset_ns: old,
                restart: Some((100_000_000, new)),
            };
            let k = c.restart_frame().unwrap();
            assert_eq!(k, 7);
            assert_eq!(c.start_of(k), (7.0 * 16.0e6 + new) as u64);
            // Frames start in order, and each instant belongs to the last frame started.
            for f in 0..20 {
                assert!(
                    c.start_of(f + 1) > c.start_of(f),
                    "{old} -> {new}: frame {f}"
                );
                assert_eq!(c.frame_at(c.start_of(f)), f);
                assert_eq!(c.frame_at(c.start_of(f + 1) - 1), f);
            }
        }
    }

    const MINIMAL: &str = "name = \"t\"\nduration = \"10s\"\n[fleet]\nservers = 2\n";

    fn err(extra: &str) -> String {
        RawScenario::from_toml(&format!("{MINIMAL}{extra}"))
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let s = RawScenario::from_toml(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(
            (s.servers, s.tick_ns, s.events_per_frame),
            (2, 16_000_000, 4)
        );
        assert_eq!(s.subject_of(1), "game.srv-2.state");
        assert_eq!(s.stream, "GAME");
        assert!(!s.push);
    }

    #[test]
    fn the_shipped_scenarios_are_valid() {
        let demo = RawScenario::from_toml(DEMO).unwrap().validate().unwrap();
        assert!(demo.repeat);
        let kinds: Vec<_> = demo.faults.iter().map(|f| f.kind.name()).collect();
        for kind in [
            "gc_pause",
            "thread_preemption",
            "frame_end_batching",
            "packet_loss",
            "flow_control",
            "load_burst",
            "slow_server",
        ] {
            assert!(kinds.contains(&kind), "the demo injects {kind}");
        }
        for file in ["smoke.toml", "demo.toml"] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("scenarios")
                .join(file);
            RawScenario::from_file(&path).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn faults_are_validated_and_named() {
        let fault = |body: &str| format!("[[faults]]\nstart = \"1s\"\nduration = \"2s\"\n{body}\n");
        let s = RawScenario::from_toml(&format!(
            "{MINIMAL}{}",
            fault("kind = \"gc_pause\"\nservers = [2]\npause = \"50ms\"")
        ))
        .unwrap()
        .validate()
        .unwrap();
        assert_eq!(s.faults[0].servers, vec![1]);
        assert_eq!(
            (s.faults[0].start_ns, s.faults[0].end_ns),
            (1_000_000_000, 3_000_000_000)
        );
        assert!(matches!(
            s.faults[0].kind,
            FaultKind::GcPause {
                pause_ns: 50_000_000,
                ..
            }
        ));
        assert!(s.faults[0].active(2_000_000_000, 1));
        assert!(!s.faults[0].active(2_000_000_000, 0));
        assert_eq!(s.faults[0].kind.cause(), Cause::GcPause);

        assert!(err(&fault("kind = \"meteor\"")).contains("faults[0].kind"));
        assert!(err(&fault("kind = \"gc_pause\"\nservers = [3]")).contains("faults[0].servers"));
        assert!(
            err(&fault("kind = \"packet_loss\"\nfraction = 1.5")).contains("faults[0].fraction")
        );
        assert!(
            err(&fault("kind = \"thread_preemption\"\nblock = \"20ms\""))
                .contains("faults[0].block")
        );
        assert!(
            err("[[faults]]\nkind = \"load_burst\"\nstart = \"9s\"\nduration = \"2s\"\n")
                .contains("faults[0].duration")
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        assert!(err("[jetstream]\nconsumer = \"both\"\n").contains("jetstream.consumer"));
        assert!(err("[processing]\nlogic = \"20ms\"\n").contains("processing.logic"));
        assert!(
            err("[processing]\ncost_median = \"1ms\"\ncost_p99 = \"1us\"\n")
                .contains("processing.cost_p99")
        );
        let e = RawScenario::from_toml("name = \"t\"\nduration = \"10s\"\n[fleet]\nservers = 0\n")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("fleet.servers"));
        assert!(
            RawScenario::from_toml(
                "name = \"t\"\nduration = \"10s\"\n[fleet]\nservers = 1\nspeed = 3\n"
            )
            .is_err()
        );
    }
}
