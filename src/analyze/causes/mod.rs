//! Cause detectors: each a pure function from a spike's samples and its baseline's samples to
//! a confidence in [0, 1] and evidence a human can check, with exemplar trace ids of the
//! slowest samples that match. Causes are ranked; `unknown` stands in when none reaches 0.5.
//!
//! One file per detector, each a value of [`Detector`] in [`DETECTORS`]. [`attribute`] runs
//! them all, then the damping steps, in which one cause explains another away, then ranks.
//! A new detector: a file here, a [`Cause`] variant, an entry in [`DETECTORS`].

mod flow_control;
mod gc_pause;
mod hot_spot;
mod load_burst;
mod redelivery;
mod thread_preemption;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::aggregate::rebin::{Latency, quantile};
use crate::aggregate::ring::RingRow;
use crate::clocks::Clocks;
use crate::model::MAX_LABELS;
use crate::model::{AckKind, ConsumerId, Sym, TraceId};
use crate::tick::{Folder, Frame};

/// Exemplar trace ids per cause.
pub const EXEMPLARS: usize = 5;

/// The causes a spike is attributed to: the contract's cause names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    GcPause,
    ThreadPreemption,
    Redelivery,
    FlowControl,
    LoadBurst,
    HotSpot,
    /// ackscope itself ran late (its tap loop was not scheduled, or read what the socket held
    /// late), dropped messages or lost its taps: the latency shown is partly its own. Found
    /// for incidents, from ackscope's own lag, and named by its health alerts.
    CollectorLag,
    /// The round trip to the NATS server rose with the latency: the server or the network
    /// held the messages, not the game servers. Found for incidents.
    NatsRtt,
    /// No detector reached 0.5.
    Unknown,
}

impl Cause {
    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::GcPause => "gc_pause",
            Cause::ThreadPreemption => "thread_preemption",
            Cause::Redelivery => "redelivery",
            Cause::FlowControl => "flow_control",
            Cause::LoadBurst => "load_burst",
            Cause::HotSpot => "hot_spot",
            Cause::CollectorLag => "collector_lag",
            Cause::NatsRtt => "nats_rtt",
            Cause::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One detector's verdict on a spike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CauseFinding {
    pub cause: Cause,
    pub confidence: f64,
    pub evidence: Value,
    /// The evidence in words.
    pub summary: String,
    pub exemplar_trace_ids: Vec<TraceId>,
    /// The cause found that is known to produce this one's signature (a load burst's backlog
    /// outliving `ack_wait` → redeliveries): this one is its consequence and ranks after it.
    /// `None` for a root cause.
    #[serde(default)]
    pub caused_by: Option<Cause>,
}

/// What the detectors look at.
pub struct Evidence<'a> {
    /// Samples acked during the spike.
    pub spike: &'a [RingRow],
    /// Samples acked in the quiet time before it.
    pub baseline: &'a [RingRow],
    /// Samples of every consumer during the spike, when the spike is one consumer's; `None`
    /// when it is for all of them (then the spike's own samples are the context). Where a hot
    /// spot is looked for.
    pub context: Option<&'a [RingRow]>,
    /// Per consumer id, its usual P99 of the latency that spiked (0 when not known): what is
    /// slow for each consumer when looking for a hot spot.
    pub usual_p99: &'a [u64],
    pub spike_ns: (i64, i64),
    /// The quiet time the baseline samples cover.
    pub baseline_quiet_ns: i64,
    /// The spike's baseline P99 (the median P99 of the quiet windows before it), of the
    /// latency that spiked: what "slow" means to every detector, the one number quoted; 0
    /// when the spike has none (an SLO breach before any quiet window), then the baseline
    /// samples' own P99.
    pub baseline_p99: u64,
    /// Each consumer's frame clocks: phases are read in each consumer's own frame.
    pub clocks: &'a Clocks,
    /// Consumer state polls in the spike: (ack pending, max ack pending).
    pub ack_pending: &'a [(u64, i64)],
    /// Deliveries seen during the spike and in the baseline's quiet time, as the windows
    /// counted them: (redeliveries, all). A redelivered message whose first delivery is the
    /// one acked leaves no sample with `deliveries > 1`; its redelivery is counted here.
    pub deliveries: Deliveries,
    /// Names a dimension value (consumer, subject or label) for the evidence.
    pub name: &'a (dyn Fn(Dimension) -> String + Sync),
    /// The latency that spiked.
    pub latency: Latency,
}

/// Deliveries counted during a spike and in its baseline: (redeliveries, all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deliveries {
    pub during: (u64, u64),
    pub baseline: (u64, u64),
}

impl Evidence<'_> {
    /// Every consumer's samples during the spike.
    fn context(&self) -> &[RingRow] {
        self.context.unwrap_or(self.spike)
    }
}

/// The spike and its baseline as every detector reads them, each read once from its rows.
pub struct Read<'a> {
    /// The baseline's P99 of the latency that spiked: the spike's samples above it are slow.
    pub threshold: u64,
    /// The spike's slow samples.
    pub slow: Vec<&'a RingRow>,
    pub spike: Timeline<'a>,
    pub baseline: Timeline<'a>,
}

/// Phase bins a [`Timeline`] folds its acks into.
pub const PHASE_BINS: u32 = 32;

/// Each ack's frame and phase bin, in its consumer's own frame clock.
struct PhaseBins<'a> {
    clocks: &'a Clocks,
    bins: u32,
    spike: (i64, i64),
    /// From the baseline's first ack to the spike's start.
    baseline: (i64, i64),
    /// By consumer id: fast folds of the one clock it had over the spike and of the one it had
    /// over the baseline, with the spike start's frame; `None` where its clock changed.
    fast: Vec<[Option<(Folder, i64)>; 2]>,
    /// The configured clock's, for consumers with no clock of their own.
    configured: Option<(Folder, i64)>,
}

impl<'a> PhaseBins<'a> {
    fn new(e: &Evidence<'a>, bins: u32) -> Self {
        let spike = e.spike_ns;
        // The rows are almost always in ack order: a row before the first takes the slow way.
        let baseline = (
            e.baseline
                .first()
                .map_or(spike.0, |r| r.acked_ns.min(spike.0)),
            spike.0,
        );
        let fold = |frame: &Frame| {
            let folder = frame.folder(spike.0)?;
            Some((folder, folder.frame_and_bin(spike.0, bins)?.0))
        };
        let one =
            |c: ConsumerId, (from, to): (i64, i64)| match e.clocks.over(c, from, to).as_slice() {
                [one] => fold(&one.frame),
                _ => None,
            };
        let fast = (0..e.clocks.consumers() as ConsumerId)
            .map(|c| [one(c, spike), one(c, baseline)])
            .collect();
        Self {
            clocks: e.clocks,
            bins,
            spike,
            baseline,
            fast,
            configured: fold(e.clocks.configured()),
        }
    }

    /// The fast fold for `consumer`'s instant `t_ns`, if one holds there.
    fn folder(&self, consumer: ConsumerId, t_ns: i64) -> Option<&(Folder, i64)> {
        let Some(fast) = self.fast.get(consumer as usize) else {
            return self.configured.as_ref();
        };
        let within = |(from, to): (i64, i64)| t_ns >= from && t_ns < to;
        if within(self.spike) {
            fast[0].as_ref()
        } else if within(self.baseline) {
            fast[1].as_ref()
        } else {
            None
        }
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

/// Samples in ack order, each as its ack instant, consumer, frame and phase bin: 24 bytes
/// where a row takes 112, so that a detector's pass over a million of them reads a fifth of
/// the memory (a pass over the rows themselves is bound by memory, not by what it computes:
/// the fold into frames is done while reading them, where it costs least).
pub struct Timeline<'a> {
    rows: &'a [RingRow],
    pub acks: Vec<Ack>,
    /// Samples delivered more than once.
    pub redelivered: usize,
    pub naks: usize,
}

/// One sample on a [`Timeline`].
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub acked_ns: i64,
    pub consumer: ConsumerId,
    /// Where its row is.
    index: u32,
    /// Its frame in its consumer's own clock, counted from the spike's start (1 for the frame
    /// under way then; earlier frames 0 and below), and its phase bin of [`PHASE_BINS`].
    pub frame: i32,
    pub bin: u8,
    /// Among the spike's slow samples.
    pub slow: bool,
}

impl<'a> Timeline<'a> {
    /// Reads `rows` (at most `u32::MAX` of them); `slow` says which are slow (and may keep
    /// them).
    fn read(
        rows: &'a [RingRow],
        bins: &PhaseBins,
        mut slow: impl FnMut(&'a RingRow) -> bool,
    ) -> Self {
        let rows = &rows[..rows.len().min(u32::MAX as usize)];
        let mut acks = Vec::with_capacity(rows.len());
        let (mut redelivered, mut naks, mut sorted, mut last) = (0, 0, true, i64::MIN);
        for (index, r) in rows.iter().enumerate() {
            redelivered += usize::from(r.deliveries > 1);
            naks += usize::from(r.kind == AckKind::Nak);
            sorted &= r.acked_ns >= last;
            last = r.acked_ns;
            let (frame, bin) = bins.at(r.consumer, r.acked_ns);
            acks.push(Ack {
                acked_ns: r.acked_ns,
                consumer: r.consumer,
                index: index as u32,
                frame: frame.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                bin: bin as u8,
                slow: slow(r),
            });
        }
        // The ring keeps arrival order, which almost always is ack order.
        if !sorted {
            acks.sort_by_key(|a| a.acked_ns);
        }
        Self {
            rows,
            acks,
            redelivered,
            naks,
        }
    }

    /// The row of `ack`.
    pub fn row(&self, ack: &Ack) -> &'a RingRow {
        &self.rows[ack.index as usize]
    }

    pub fn len(&self) -> usize {
        self.acks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.acks.is_empty()
    }
}

/// A cause detector.
pub trait Detector: Sync {
    /// The cause it finds.
    fn cause(&self) -> Cause;
    /// Its verdict on a spike.
    fn detect(&self, e: &Evidence, read: &Read) -> CauseFinding;
}

/// Every detector, in the order causes of equal confidence are ranked.
pub const DETECTORS: &[&dyn Detector] = &[
    &gc_pause::GcPause,
    &thread_preemption::ThreadPreemption,
    &redelivery::Redelivery,
    &flow_control::FlowControl,
    &load_burst::LoadBurst,
    &hot_spot::HotSpot,
];

/// [`DETECTORS`]' indices, the costliest first (measured by `cargo bench --bench analysis`):
/// the order the two threads of [`attribute`] take them in.
const BY_COST: [usize; 6] = [5, 1, 0, 2, 4, 3];

/// A dimension a hot spot can be found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Consumer(ConsumerId),
    Subject(Sym),
    Label(usize, Sym),
}

/// A sample's ack latency: what exemplars are ranked by.
fn latency(r: &RingRow) -> Option<u64> {
    r.ack_latency_ns
}

/// The sample's value of the latency that spiked.
fn spiked(e: &Evidence, r: &RingRow) -> Option<u64> {
    e.latency.of(r)
}

/// The spike's baseline P99 of the latency that spiked: spike samples above it are "slow".
fn slow_threshold(e: &Evidence) -> u64 {
    if e.baseline_p99 > 0 {
        return e.baseline_p99;
    }
    let mut v: Vec<u64> = e.baseline.iter().filter_map(|r| spiked(e, r)).collect();
    quantile(&mut v, 0.99).max(1)
}

/// Reads the spike and the baseline, one on each of two threads.
fn read<'a>(e: &Evidence<'a>) -> Read<'a> {
    let bins = PhaseBins::new(e, PHASE_BINS);
    let ((spike, slow, threshold), baseline) = std::thread::scope(|scope| {
        let baseline = scope.spawn(|| Timeline::read(e.baseline, &bins, |_| false));
        let threshold = slow_threshold(e);
        let mut slow = Vec::new();
        let spike = Timeline::read(e.spike, &bins, |r| {
            let is_slow = spiked(e, r).is_some_and(|l| l > threshold);
            if is_slow {
                slow.push(r);
            }
            is_slow
        });
        let baseline = baseline
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        ((spike, slow, threshold), baseline)
    });
    Read {
        threshold,
        slow,
        spike,
        baseline,
    }
}

/// Whether a consumer state poll (ack pending, max ack pending) found the consumer at its
/// `max_ack_pending` (within 10%).
fn at_max_ack_pending(&(pending, max): &(u64, i64)) -> bool {
    max > 0 && pending as f64 >= 0.9 * max as f64
}

/// The share of the spike's consumer state polls that found it at `max_ack_pending` (0
/// without a poll that knows the limit).
fn share_at_max_ack_pending(e: &Evidence) -> f64 {
    let limited = e.ack_pending.iter().filter(|(_, max)| *max > 0).count();
    let at = e
        .ack_pending
        .iter()
        .filter(|p| at_max_ack_pending(p))
        .count();
    at as f64 / limited.max(1) as f64
}

/// Trace ids of the slowest rows, slowest first.
fn exemplars<'a>(rows: impl IntoIterator<Item = &'a RingRow>) -> Vec<TraceId> {
    // One pass keeping the slowest few: the rows can be a million.
    let mut top: Vec<(u64, TraceId)> = Vec::with_capacity(EXEMPLARS + 1);
    for r in rows {
        let (Some(trace), l) = (r.trace_id, latency(r).unwrap_or(0)) else {
            continue;
        };
        if top.len() == EXEMPLARS && top[EXEMPLARS - 1].0 >= l {
            continue;
        }
        let at = top.partition_point(|(t, _)| *t >= l);
        top.insert(at, (l, trace));
        top.truncate(EXEMPLARS);
    }
    top.into_iter().map(|(_, t)| t).collect()
}

/// Element `i`, growing `v` with defaults to reach it: consumer ids and symbols are small
/// dense integers, so per-value state lives in vectors indexed by them.
fn slot<T: Default>(v: &mut Vec<T>, i: usize) -> &mut T {
    if i >= v.len() {
        v.resize_with(i + 1, T::default);
    }
    &mut v[i]
}

fn clamp(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn ms(ns: f64) -> f64 {
    (ns / 1e4).round() / 100.0
}

fn pct(share: f64) -> String {
    format!("{:.0}%", share * 100.0)
}

/// Per consumer id, the P99 of `latency` over `rows` (0 for a consumer without any): a usual
/// P99 for [`Evidence::usual_p99`] where no windowed history is at hand.
pub fn p99_by_consumer(rows: &[RingRow], latency: Latency) -> Vec<u64> {
    let mut by: Vec<Vec<u64>> = Vec::new();
    for r in rows {
        if let Some(l) = latency.of(r) {
            slot(&mut by, r.consumer as usize).push(l);
        }
    }
    by.iter_mut().map(|v| quantile(v, 0.99)).collect()
}

/// The confidence of `cause` among `findings` (0 when absent).
fn confidence(findings: &[CauseFinding], cause: Cause) -> f64 {
    findings
        .iter()
        .find(|f| f.cause == cause)
        .map_or(0.0, |f| f.confidence)
}

fn damp(findings: &mut [CauseFinding], cause: Cause, by: f64) {
    for f in findings.iter_mut().filter(|f| f.cause == cause) {
        f.confidence *= by;
    }
}

/// A mechanism by which one cause produces another's signature.
pub struct Chain {
    pub root: Cause,
    pub consequence: Cause,
    /// How, in words.
    pub how: &'static str,
}

/// The chains known, in the order they are applied: a consequence gets the first root found.
pub const CHAINS: &[Chain] = &[
    Chain {
        root: Cause::LoadBurst,
        consequence: Cause::Redelivery,
        how: "the backlog of the load burst outlived ack_wait and the server redelivered",
    },
    Chain {
        root: Cause::GcPause,
        consequence: Cause::Redelivery,
        how: "the stall outlived ack_wait and the server redelivered",
    },
    Chain {
        root: Cause::LoadBurst,
        consequence: Cause::FlowControl,
        how: "the backlog of the load burst filled max_ack_pending",
    },
    Chain {
        root: Cause::GcPause,
        consequence: Cause::FlowControl,
        how: "no acks during the stall filled max_ack_pending",
    },
    Chain {
        root: Cause::Redelivery,
        consequence: Cause::FlowControl,
        how: "deliveries never acked held max_ack_pending slots until ack_wait",
    },
    Chain {
        root: Cause::GcPause,
        consequence: Cause::ThreadPreemption,
        how: "the acks held during each stall came out together, at one phase",
    },
];

/// A root found with this confidence or more makes what it produces its consequence.
const CHAIN_ROOT: f64 = 0.5;

/// Marks the consequences of the roots found ([`CHAINS`]); a root that is itself a
/// consequence of the would-be consequence (a cycle) is left alone.
fn chain(findings: &mut [CauseFinding]) {
    for c in CHAINS {
        let root = findings
            .iter()
            .find(|f| f.cause == c.root)
            .filter(|f| f.confidence >= CHAIN_ROOT && f.caused_by != Some(c.consequence))
            .is_some();
        if !root {
            continue;
        }
        for f in findings
            .iter_mut()
            .filter(|f| f.cause == c.consequence && f.caused_by.is_none() && f.confidence > 0.0)
        {
            f.caused_by = Some(c.root);
            f.summary = format!("caused by {}: {}; {}", c.root, c.how, f.summary);
        }
    }
}

/// Most confident first, each consequence right after its root (and its consequences after
/// it); equal confidences keep [`DETECTORS`]' order.
fn rank(mut findings: Vec<CauseFinding>) -> Vec<CauseFinding> {
    findings.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    fn place(cause: Option<Cause>, from: &mut Vec<CauseFinding>, to: &mut Vec<CauseFinding>) {
        while let Some(i) = from.iter().position(|f| f.caused_by == cause) {
            let f = from.remove(i);
            let next = Some(f.cause);
            to.push(f);
            place(next, from, to);
        }
    }
    let mut ranked = Vec::with_capacity(findings.len());
    place(None, &mut findings, &mut ranked);
    // A consequence whose root is not listed (cannot happen; kept, not lost).
    ranked.append(&mut findings);
    ranked
}

/// Damping: any fault of one consumer makes it stand out among the others; a hot spot is the
/// answer only when no mechanism explains why.
fn hot_spot_only_without_a_mechanism(findings: &mut [CauseFinding]) {
    let mechanism = [
        Cause::GcPause,
        Cause::ThreadPreemption,
        Cause::Redelivery,
        Cause::FlowControl,
        Cause::LoadBurst,
    ]
    .into_iter()
    .map(|c| confidence(findings, c))
    .fold(0.0, f64::max);
    damp(findings, Cause::HotSpot, 1.0 - mechanism);
}

/// The damping steps, in order.
const DAMPING: &[fn(&mut [CauseFinding])] = &[hot_spot_only_without_a_mechanism];

/// `unknown`: no detector reached 0.5. Its confidence is 0 (it is not a finding); the words
/// say what was looked at and the strongest candidate, which follow it in the list.
fn unknown(slow: &Read, strongest: Option<&CauseFinding>) -> CauseFinding {
    let threshold = ms(slow.threshold as f64);
    let strongest = strongest.filter(|c| c.confidence > 0.0);
    let looked = format!(
        "no cause found for the {} samples above the baseline P99 of {threshold} ms",
        slow.slow.len()
    );
    CauseFinding {
        cause: Cause::Unknown,
        confidence: 0.0,
        evidence: json!({
            "slow_threshold_ms": threshold,
            "slow_samples": slow.slow.len(),
            "strongest": strongest.map(|c| c.cause),
            "strongest_confidence": strongest.map(|c| c.confidence),
        }),
        summary: match strongest {
            Some(c) => format!(
                "{looked}; strongest: {} {:.2} ({})",
                c.cause, c.confidence, c.summary
            ),
            None => format!("{looked}; no detector found anything"),
        },
        exemplar_trace_ids: exemplars(slow.slow.iter().copied()),
        caused_by: None,
    }
}

/// Every detector's verdict, most confident first; `unknown` first when none reaches 0.5.
pub fn attribute(e: &Evidence) -> Vec<CauseFinding> {
    let read = read(e);
    // The detectors only read the evidence: two threads take them in turn, the costliest
    // first, each taking the next one left when it is done.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let run = || {
        let mut found = Vec::new();
        loop {
            let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = BY_COST.get(k) else {
                return found;
            };
            found.push((i, DETECTORS[i].detect(e, &read)));
        }
    };
    let mut found = std::thread::scope(|scope| {
        let other = scope.spawn(run);
        let mut found = run();
        found.extend(
            other
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        );
        found
    });
    // Back in DETECTORS' order, which the stable sort below keeps for equal confidences.
    found.sort_by_key(|(i, _)| *i);
    let mut findings: Vec<CauseFinding> = found.into_iter().map(|(_, f)| f).collect();
    for step in DAMPING {
        step(&mut findings);
    }
    chain(&mut findings);
    let mut findings = rank(findings);
    if findings.first().is_none_or(|c| c.confidence < 0.5) {
        findings.insert(0, unknown(&read, findings.first()));
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NO_LABELS, SampleSource};
    use crate::tick::{Frame, Period};

    pub(super) const MS: u64 = 1_000_000;
    pub(super) const T0: i64 = 1_790_000_000_000_000_000;
    pub(super) const FRAME: i64 = 16_000_000;

    pub(super) fn row(consumer: ConsumerId, acked_ns: i64, latency_ms: u64, trace: u8) -> RingRow {
        RingRow {
            consumer,
            stream_seq: 1,
            deliveries: 1,
            acked_ns,
            delivered_ns: Some(acked_ns - (latency_ms * MS) as i64),
            ack_latency_ns: Some(latency_ms * MS),
            e2e_latency_ns: None,
            kind: AckKind::Ack,
            source: SampleSource::Observed,
            trace_id: Some(TraceId([trace; 16])),
            subject: Sym(consumer),
            labels: NO_LABELS,
        }
    }

    /// Four consumers acking 3 messages a frame at phase 4-5 ms with 3 ms latency.
    pub(super) fn healthy(from: i64, frames: i64) -> Vec<RingRow> {
        (0..frames)
            .flat_map(|f| (0..4u32).flat_map(move |c| (0..3).map(move |k| (f, c, k))))
            .map(|(f, c, k)| row(c, from + f * FRAME + 4 * MS as i64 + k * 300_000, 3, 1))
            .collect()
    }

    pub(super) fn top(
        spike: &[RingRow],
        baseline: &[RingRow],
        ack_pending: &[(u64, i64)],
    ) -> Vec<CauseFinding> {
        top_with(spike, baseline, ack_pending, Deliveries::default())
    }

    /// [`top`] with the deliveries the windows counted.
    pub(super) fn top_with(
        spike: &[RingRow],
        baseline: &[RingRow],
        ack_pending: &[(u64, i64)],
        deliveries: Deliveries,
    ) -> Vec<CauseFinding> {
        let clocks = Clocks::new(Frame::new(Period::from_ns(16 * MS), 0).unwrap());
        top_with_clocks(spike, baseline, ack_pending, deliveries, &clocks)
    }

    /// [`top_with`] with each consumer's frame clocks.
    pub(super) fn top_with_clocks(
        spike: &[RingRow],
        baseline: &[RingRow],
        ack_pending: &[(u64, i64)],
        deliveries: Deliveries,
        clocks: &Clocks,
    ) -> Vec<CauseFinding> {
        let name = |d: Dimension| format!("{d:?}");
        let e = Evidence {
            spike,
            baseline,
            context: None,
            usual_p99: &p99_by_consumer(baseline, Latency::Ack),
            spike_ns: (
                spike.iter().map(|r| r.acked_ns).min().unwrap(),
                spike.iter().map(|r| r.acked_ns).max().unwrap() + 1,
            ),
            baseline_quiet_ns: baseline[baseline.len() - 1].acked_ns + 1 - baseline[0].acked_ns,
            baseline_p99: 0,
            clocks,
            ack_pending,
            deliveries,
            name: &name,
            latency: Latency::Ack,
        };
        attribute(&e)
    }

    pub(super) fn baseline() -> Vec<RingRow> {
        healthy(T0, 300)
    }

    pub(super) fn spike_start() -> i64 {
        T0 + 300 * FRAME
    }

    /// A spike in which consumer 2's acks (traced `[7; 16]`) are held back `by_ms` into the
    /// frame (healthy acks come 4–4.6 ms in), each `latency_ms` late.
    pub(super) fn consumer_2_held_back(by_ms: u64, latency_ms: u64) -> Vec<RingRow> {
        let mut spike = healthy(spike_start(), 60);
        for r in spike.iter_mut().filter(|r| r.consumer == 2) {
            r.acked_ns += (by_ms * MS) as i64;
            r.ack_latency_ns = Some(latency_ms * MS);
            r.trace_id = Some(TraceId([7; 16]));
        }
        spike
    }

    #[test]
    fn nothing_explains_an_unremarkable_spike() {
        let causes = top(&healthy(spike_start(), 60), &baseline(), &[]);
        assert_eq!(causes[0].cause, Cause::Unknown, "{causes:#?}");
        // Every detector found nothing: they follow in DETECTORS' order.
        assert!(
            causes[1..].iter().all(|c| c.confidence == 0.0),
            "{causes:#?}"
        );
        let order: Vec<Cause> = causes[1..].iter().map(|c| c.cause).collect();
        let detectors: Vec<Cause> = DETECTORS.iter().map(|d| d.cause()).collect();
        assert_eq!(order, detectors);
    }

    fn finding(cause: Cause, confidence: f64) -> CauseFinding {
        CauseFinding {
            cause,
            confidence,
            evidence: Value::Null,
            summary: String::new(),
            exemplar_trace_ids: Vec::new(),
            caused_by: None,
        }
    }

    #[test]
    fn a_consequence_ranks_after_its_root() {
        // The redelivery storm after a load burst's backlog: both at 1.0, the burst first.
        let findings = vec![
            finding(Cause::Redelivery, 1.0),
            finding(Cause::FlowControl, 0.9),
            finding(Cause::LoadBurst, 0.8),
            finding(Cause::HotSpot, 0.3),
        ];
        let mut findings = findings;
        chain(&mut findings);
        let ranked = rank(findings);
        let order: Vec<(Cause, Option<Cause>)> =
            ranked.iter().map(|f| (f.cause, f.caused_by)).collect();
        assert_eq!(
            order,
            [
                (Cause::LoadBurst, None),
                (Cause::Redelivery, Some(Cause::LoadBurst)),
                (Cause::FlowControl, Some(Cause::LoadBurst)),
                (Cause::HotSpot, None),
            ]
        );
        assert!(
            ranked[1]
                .summary
                .starts_with("caused by load_burst: the backlog")
        );
    }

    #[test]
    fn a_hot_spot_counts_only_as_far_as_no_mechanism_explains_it() {
        let mut findings = [
            finding(Cause::HotSpot, 1.0),
            finding(Cause::GcPause, 0.75),
            finding(Cause::LoadBurst, 0.5),
        ];
        hot_spot_only_without_a_mechanism(&mut findings);
        assert_eq!(confidence(&findings, Cause::HotSpot), 0.25);
    }

    #[test]
    fn a_weak_root_explains_nothing_away() {
        let mut findings = vec![
            finding(Cause::FlowControl, 0.9),
            finding(Cause::Redelivery, 0.4),
        ];
        chain(&mut findings);
        assert!(findings.iter().all(|f| f.caused_by.is_none()));
        // Lost acks found: flow control is theirs.
        let mut findings = vec![
            finding(Cause::FlowControl, 0.9),
            finding(Cause::Redelivery, 0.6),
        ];
        chain(&mut findings);
        let ranked = rank(findings);
        assert_eq!(
            (ranked[0].cause, ranked[1].caused_by),
            (Cause::Redelivery, Some(Cause::Redelivery))
        );
    }

    #[test]
    fn every_cause_has_one_detector_and_its_contract_name() {
        let causes: Vec<Cause> = DETECTORS.iter().map(|d| d.cause()).collect();
        assert_eq!(
            causes,
            [
                Cause::GcPause,
                Cause::ThreadPreemption,
                Cause::Redelivery,
                Cause::FlowControl,
                Cause::LoadBurst,
                Cause::HotSpot
            ]
        );
        for c in causes.iter().chain([&Cause::Unknown]) {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
