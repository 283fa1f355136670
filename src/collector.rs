//! The collector: every tap's messages go through here, in arrival order, to become samples
//! and counted events in the [`Aggregator`]. It puts together what [`crate::collect`] parses and
//! joins and what [`crate::aggregate`] keeps.
//!
//! Synchronous and free of I/O: the tap loop ([`crate::service::taps`]) hands it subjects,
//! payloads, headers and the instant it saw them. Bad input is counted in [`Counters`] and
//! skipped. The service owns it behind a mutex and lends it out ([`lock`]); spike analysis
//! gets a copy of what it needs ([`Collector::spike_inputs`]) and runs with the lock released.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::aggregate::buckets::LatencyBuckets;
use crate::aggregate::rebin::Latency;
use crate::aggregate::window::{Counts, WindowSummary};
use crate::aggregate::{Aggregator, Event};
use crate::analyze::causes::Deliveries;
use crate::analyze::report::{self, BASELINE_NS, SpikeInputs, p99s, scope_spikes};
use crate::analyze::spikes::Spike;
use crate::archive::{ArchiveStats, ArchiveTap, ArchivedSample, Names as ArchiveNames, WindowRow};
use crate::clocks::infer::Tracker;
use crate::clocks::{ClockSource, Segment, announce};
use crate::collect::acks::{parse_ack_payload, parse_ack_subject};
use crate::collect::advisories::{
    AdvisoryCounts, AdvisoryKind, advisory_domain, parse_advisory_subject,
};
use crate::collect::clock::{ForeignClock, Gaps};
use crate::collect::consumer_state::ConsumerState;
use crate::collect::deliveries::{header_value, is_delivery};
use crate::collect::join::{AckOutcome, DeliveryMeta, DeliveryOutcome, Joiner};
use crate::collect::metrics::parse_ack_metric;
use crate::collect::trace::find_trace_id;
use crate::config::Config;
use crate::model::AckSubject;
use crate::model::{ConsumerId, FORGOTTEN_CONSUMER, NO_LABELS, Sample, SampleSource, Seen, Sym};
use crate::names::{Names, consumer_key, is_jetstream_name, key_in_domain, split_consumer_key};
use crate::telemetry::Counters;
use crate::tick::{Frame, PhaseOf};

/// Longest subject or label value kept as a name; longer ones are counted and left out.
pub const MAX_SYMBOL_BYTES: usize = 256;

/// Consumer state polls remembered per consumer (10 minutes at the default 5 s interval).
pub const STATE_HISTORY: usize = 120;

/// How often the name tables are searched for what to forget.
const FORGET_EVERY_NS: i64 = 5_000_000_000;
/// The furthest back a clock inference pass reads.
const INFER_HORIZON_NS: i64 = 60_000_000_000;
/// Clocks announced for consumers not seen yet, kept at most.
pub const PENDING_CLOCKS: usize = 1_024;
/// Passes a consumer whose acks showed no frame sits out before it is tried again.
pub const RETRY_PASSES: i64 = 4;
/// Consumers whose clocks are learned from scratch in one inference pass, at most.
pub const LEARNS_PER_PASS: usize = 8;
/// Consumers still to learn whose acks one pass reads, at most (some have too few yet).
const LEARNERS_READ: usize = 4 * LEARNS_PER_PASS;

/// One consumer's clock inference: its state, from when its next pass reads acks, and when a
/// consumer whose acks showed no frame is tried again.
#[derive(Debug, Default)]
struct InferSlot {
    tracker: Tracker,
    from_ns: i64,
    retry_at_ns: i64,
}

/// What the collector knows about one consumer beyond its windows.
#[derive(Debug, Clone, Default)]
pub struct ConsumerFacts {
    /// Event counts since start.
    pub totals: Counts,
    /// Ack latencies since start, in Prometheus buckets.
    pub ack_buckets: LatencyBuckets,
    pub advisories: AdvisoryCounts,
    pub state: Option<ConsumerState>,
    /// Recent polls' (time, ack pending, max ack pending), oldest first, at most
    /// [`STATE_HISTORY`]: the evidence for flow-control analysis of past spikes.
    pub ack_pending_history: std::collections::VecDeque<(i64, u64, i64)>,
    /// Last event, Unix nanoseconds.
    pub last_seen_ns: i64,
    /// Its deliveries need no ack (consumer info says `AckNone`): they are counted, not joined.
    pub ack_none: bool,
    /// Consumer info says it no longer exists: not polled again until it is seen again.
    pub gone: bool,
    /// Its ack subjects say its domain (the newer form, `_` for none): events never move it
    /// to another.
    pub domain_known: bool,
    /// Per configured label: the value its latest sample carried (`Sym::NONE` before one).
    pub labels: crate::model::Labels,
}

/// The collector core.
#[derive(Debug)]
pub struct Collector {
    config: Config,
    names: Names,
    joiner: Joiner,
    aggregator: Aggregator,
    facts: Vec<ConsumerFacts>,
    counters: Counters,
    /// The servers' clock, as their ack metrics' timestamps show it.
    server_clock: ForeignClock,
    /// Times NATS was down.
    gaps: Gaps,
    /// When the name tables were last searched for what to forget.
    forgot_at_ns: i64,
    /// Clock inference per consumer.
    inference: Vec<InferSlot>,
    /// The consumer whose turn it is to learn its clock from scratch.
    learn_cursor: ConsumerId,
    /// By consumer id, its place among the consumers an inference pass reads (`u32::MAX`:
    /// none); kept between passes, all `u32::MAX` between them.
    infer_index: Vec<u32>,
    /// Clocks announced for consumers not seen yet, by their names without a domain, with the
    /// domain the announcement named.
    pending_clocks: HashMap<String, (Segment, Option<String>)>,
    /// When clocks were last inferred.
    inferred_at_ns: i64,
    /// Where samples go to be kept on disk, when the archive is on, and what its writer
    /// has done (kept after the tap is let go).
    archive: Option<ArchiveTap>,
    archive_stats: Option<Arc<ArchiveStats>>,
    /// Where samples go to be exported over OTLP, when export is on.
    otlp: Option<crate::otlp::OtlpTap>,
    /// Samples the archive's tap dropped before it was let go.
    archive_dropped: u64,
    /// Windows and spikes it dropped before it was let go.
    archive_rows_dropped: u64,
    /// Since when every sample is in memory until the ring overwrites one: the start, or the
    /// oldest sample restored.
    held_since_ns: i64,
    /// Advisories and consumer info polls for the archive's next hand-over (at most
    /// [`EVENTS_HELD`] each; more are counted in `archive_rows_dropped`).
    archive_advisories: Vec<crate::archive::AdvisoryRow>,
    archive_states: Vec<crate::archive::StateRow>,
}

/// Advisories, and consumer info polls, held for the archive between two hand-overs.
const EVENTS_HELD: usize = 10_000;

/// Holds `row` for the archive's next hand-over, or counts it in `dropped` once
/// [`EVENTS_HELD`] wait.
fn hold<T>(held: &mut Vec<T>, row: T, dropped: &mut u64) {
    if held.len() < EVENTS_HELD {
        held.push(row);
    } else {
        *dropped += 1;
    }
}

impl Collector {
    pub fn new(config: Config) -> Self {
        Self {
            names: Names::new(config.join.max_consumers, config.join.max_symbols),
            joiner: Joiner::new(config.join.clone()),
            aggregator: Aggregator::new(config.aggregate.clone(), config.tick),
            facts: Vec::new(),
            counters: Counters::default(),
            server_clock: ForeignClock::new(config.join.max_clock_skew_ns),
            gaps: Gaps::default(),
            forgot_at_ns: i64::MIN,
            inference: Vec::new(),
            learn_cursor: 0,
            infer_index: Vec::new(),
            pending_clocks: HashMap::new(),
            inferred_at_ns: i64::MIN,
            archive: None,
            archive_stats: None,
            otlp: None,
            archive_dropped: 0,
            archive_rows_dropped: 0,
            held_since_ns: crate::model::Seen::now().wall_ns,
            archive_advisories: Vec::new(),
            archive_states: Vec::new(),
            config,
        }
    }

    /// Hands every sample recorded from now on to the archive.
    pub fn attach_archive(&mut self, tap: ArchiveTap) {
        self.archive_stats = Some(tap.stats());
        self.archive = Some(tap);
        self.aggregator.keep_for_archive();
    }

    /// Hands every sample recorded from now on to the OTLP export.
    pub fn attach_otlp(&mut self, tap: crate::otlp::OtlpTap) {
        self.otlp = Some(tap);
    }

    /// Lets go of the OTLP export's tap (its thread then records what it holds and stops).
    pub fn detach_otlp(&mut self) -> Option<crate::otlp::OtlpTap> {
        self.otlp.take()
    }

    /// What the OTLP export's gauges read.
    pub fn otlp_observed(&self) -> crate::otlp::Observed {
        crate::otlp::Observed {
            consumers: self
                .consumers()
                .filter_map(|(id, stream, consumer)| {
                    let state = self.facts(id)?.state.clone()?;
                    Some((stream.to_string(), consumer.to_string(), state))
                })
                .collect(),
            samples: self.counters.samples,
            join_pending: self.joiner.pending_len() as u64,
        }
    }

    /// What the OTLP export did, when it is on.
    pub fn otlp_stats(&self) -> Option<Arc<crate::otlp::OtlpStats>> {
        self.otlp.as_ref().map(|t| t.stats())
    }

    /// What the archive's writer has done, when there is one.
    pub fn archive_stats(&self) -> Option<&ArchiveStats> {
        self.archive_stats.as_deref()
    }

    /// Hands the archive what it has not been handed yet and lets go of it (the writer then
    /// writes everything and stops).
    pub fn detach_archive(&mut self) {
        if self.archive.is_none() {
            return;
        }
        // Acks held for the server's ack metric are recorded as they are: they would go with
        // the process.
        let mut held = Vec::new();
        self.joiner.release(u64::MAX, |s| held.push(s));
        for sample in held {
            self.record(sample);
        }
        self.hand_over_to_archive();
        if let Some(tap) = self.archive.take() {
            self.archive_dropped += tap.dropped;
            self.archive_rows_dropped += tap.dropped_rows;
        }
        self.aggregator.stop_keeping_for_archive();
    }

    /// Since when memory holds every sample: the oldest one in the ring once it has
    /// overwritten any, else the start (or the oldest sample restored).
    pub fn held_since_ns(&self) -> i64 {
        let ring = self.aggregator.ring();
        match ring.oldest_acked_ns() {
            Some(oldest) if ring.overwritten() > 0 => oldest,
            _ => self.held_since_ns,
        }
    }

    /// Whether samples go to an archive.
    pub fn archive_attached(&self) -> bool {
        self.archive.is_some()
    }

    /// Hands alerts that fired or resolved, and ended incidents, to the archive (nothing
    /// without one).
    pub fn archive_alerts(
        &mut self,
        alerts: Vec<crate::archive::AlertRow>,
        incidents: Vec<crate::analyze::incidents::Incident>,
    ) {
        if let Some(tap) = &mut self.archive {
            tap.hand_over_alerts(alerts, incidents);
        }
    }

    /// Whether ended spikes go anywhere: to an archive, or to OTLP export as spans.
    pub fn wants_ended_spikes(&self) -> bool {
        self.archive.is_some() || self.otlp.as_ref().is_some_and(|t| t.traces())
    }

    /// Hands ended spikes to OTLP export (a span each) and to the archive, to those attached.
    pub fn hand_over_spikes(&mut self, rows: Vec<crate::archive::SpikeRow>) {
        if let Some(otlp) = &mut self.otlp {
            otlp.spikes(&rows);
        }
        if let Some(tap) = &mut self.archive {
            tap.hand_over_spikes(rows);
        }
    }

    /// Loads archived samples (a read of the archive's `samples` table, oldest first) back
    /// into the windows, their history and the sample ring, as if just recorded: after a
    /// restart the dashboard, heatmaps and spike baselines go on from there. They are not
    /// archived again, and the windows they close are not reported again. Returns how many
    /// were loaded. Phases are taken in the clocks known now (inferred ones are learned
    /// anew).
    pub fn restore(&mut self, df: &polars::prelude::DataFrame) -> usize {
        /// Rows turned into samples at once: what they take beside the frame stays small.
        const CHUNK: usize = 65_536;
        let label_names = self.config.headers.label_names();
        let mut loaded = 0;
        for start in (0..df.height()).step_by(CHUNK) {
            let chunk = df.slice(start as i64, CHUNK);
            loaded += self.restore_rows(&chunk, &label_names);
        }
        self.aggregator.take_closed().for_each(drop);
        self.counters.archive_samples_restored += loaded as u64;
        loaded
    }

    /// Records the rows of `df` (of the `samples` table) as [`Self::restore`] does; returns how
    /// many were recorded.
    fn restore_rows(&mut self, df: &polars::prelude::DataFrame, label_names: &[String]) -> usize {
        let (rows, skipped) = crate::archive::restored(df, label_names);
        self.counters.archive_rows_skipped += skipped as u64;
        let mut loaded = 0;
        for row in rows {
            let t = row.sample.acked_ns;
            self.held_since_ns = self.held_since_ns.min(t);
            let Some(consumer) =
                self.consumer(&consumer_key(row.stream, row.consumer, row.domain), t)
            else {
                self.counters.archive_rows_skipped += 1;
                continue;
            };
            let mut sample = row.sample;
            sample.consumer = consumer;
            let mut symbol = |name: Option<&str>| {
                name.and_then(|n| self.names.symbol(n, t))
                    .unwrap_or(Sym::NONE)
            };
            sample.subject = symbol(row.subject);
            for (slot, value) in sample.labels.iter_mut().zip(row.labels) {
                *slot = symbol(value);
            }
            self.aggregator.record(&sample);
            loaded += 1;
        }
        loaded
    }

    /// Hands the samples gathered since the last call to the archive, with their names.
    fn hand_over_to_archive(&mut self) {
        let Some(tap) = &mut self.archive else {
            return;
        };
        let (consumers, symbols) = tap.ids();
        let mut names = ArchiveNames::default();
        for id in consumers {
            let (stream, consumer, domain) = self.names.scope_names(Some(id));
            names.consumers.insert(
                id,
                (stream.into(), consumer.into(), domain.map(str::to_string)),
            );
        }
        for sym in symbols {
            if let Some(name) = self.names.symbol_name(Sym(sym)) {
                names.symbols.insert(sym, name.to_string());
            }
        }
        tap.hand_over(&names);
        let windows: Vec<WindowRow> = self
            .aggregator
            .take_for_archive()
            .into_iter()
            .map(|window| {
                let (stream, consumer, domain) = self.names.scope_names(window.summary.consumer);
                WindowRow {
                    stream: stream.into(),
                    consumer: consumer.into(),
                    domain: domain.map(str::to_string),
                    window,
                }
            })
            .collect();
        tap.hand_over_windows(windows);
        tap.hand_over_events(
            std::mem::take(&mut self.archive_advisories),
            std::mem::take(&mut self.archive_states),
        );
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn aggregator(&self) -> &Aggregator {
        &self.aggregator
    }

    pub fn joiner(&self) -> &Joiner {
        &self.joiner
    }

    pub fn facts(&self, consumer: ConsumerId) -> Option<&ConsumerFacts> {
        self.facts.get(consumer as usize)
    }

    /// The servers' clock minus ackscope's, as the median of recent ack metrics shows it
    /// (the metric's trip included); `None` before the first.
    pub fn server_clock_offset_ns(&self) -> Option<i64> {
        self.server_clock.offset_ns()
    }

    /// Every counter, including those kept by the join and the aggregator.
    pub fn counters(&self) -> Counters {
        let mut c = self.counters;
        c.join_overflow = self.joiner.stats.overflow;
        c.duplicate_acks = self.joiner.stats.duplicate_acks;
        c.duplicate_deliveries = self.joiner.stats.duplicate_deliveries;
        c.late_events = self.aggregator.late_events;
        c.windows_dropped = self.aggregator.ready_dropped;
        c.ring_overwritten = self.aggregator.ring().overwritten();
        c.server_time_outliers = self.server_clock.outliers();
        c.nats_disconnects = self.gaps.opened();
        c.clock_segments_dropped = self.aggregator.clocks().segments_dropped;
        c.archive_samples_dropped =
            self.archive_dropped + self.archive.as_ref().map_or(0, |t| t.dropped);
        c.archive_rows_dropped = self.archive_rows_dropped
            + self.aggregator.archive_windows_dropped
            + self.archive.as_ref().map_or(0, |t| t.dropped_rows);
        if let Some(stats) = &self.archive_stats {
            let get = |v: &std::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
            c.archive_samples_written = get(&stats.samples_written);
            c.archive_segments_written = get(&stats.segments_written);
            c.archive_bytes_written = get(&stats.bytes_written);
            c.archive_write_errors = get(&stats.write_errors);
            c.archive_samples_lost = get(&stats.samples_lost);
            c.archive_segments_deleted = get(&stats.segments_deleted);
        }
        c
    }

    /// Counts messages the tap loop dropped because its backlog was full.
    pub fn count_backlog_overflow(&mut self, n: u64) {
        self.counters.tap_backlog_overflow += n;
    }

    /// Sets the number of slow-consumer events the NATS client reported so far.
    pub fn set_slow_consumer_events(&mut self, total: u64) {
        self.counters.slow_consumer_events = total;
    }

    /// Every (stream, consumer) seen so far, with its id.
    pub fn consumers(&self) -> impl Iterator<Item = (ConsumerId, &str, &str)> {
        self.names.consumers()
    }

    /// The id of a consumer by its key ([`consumer_key`]), added if new and there is room.
    fn consumer(&mut self, key: &str, wall_ns: i64) -> Option<ConsumerId> {
        if let Some(id) = self.names.consumer_id(key) {
            return Some(self.used(id, wall_ns));
        }
        // A name JetStream would not allow is forged, and a long one would make the consumer
        // table hold megabytes.
        if split_consumer_key(key).is_none() {
            self.counters.consumer_name_invalid += 1;
            return None;
        }
        let Some(id) = self.names.consumer(key, wall_ns) else {
            self.counters.consumer_overflow += 1;
            return None;
        };
        let i = id as usize;
        if self.facts.len() <= i {
            self.facts.resize_with(i + 1, ConsumerFacts::default);
        }
        // Its game server may have announced its clock before its first message.
        self.take_pending_clock(id, key);
        Some(self.used(id, wall_ns))
    }

    /// Marks consumer `id` used by a message seen at `wall_ns` (`i64::MIN`: by a poll).
    fn used(&mut self, id: ConsumerId, wall_ns: i64) -> ConsumerId {
        self.names.touch_consumer(id, wall_ns);
        let facts = &mut self.facts[id as usize];
        facts.last_seen_ns = facts.last_seen_ns.max(wall_ns);
        if wall_ns != i64::MIN {
            facts.gone = false;
        }
        id
    }

    /// The consumer an ack subject names.
    fn consumer_of_ack(&mut self, ack: &AckSubject<'_>, wall_ns: i64) -> Option<ConsumerId> {
        if ack.account_hash.is_none() {
            // The older form names no domain: the server's events may.
            return self.consumer_named(ack.stream_consumer, None, wall_ns);
        }
        // The newer form names it, `_` for none: exactly this consumer.
        let id = match ack.domain {
            None => self.consumer(ack.stream_consumer, wall_ns)?,
            Some(d) => self.consumer(&key_in_domain(ack.stream_consumer, d), wall_ns)?,
        };
        self.facts[id as usize].domain_known = true;
        Some(id)
    }

    /// The consumer an event names (an ack metric, an advisory, a poll).
    fn consumer_by_names(
        &mut self,
        stream: &str,
        consumer: &str,
        domain: Option<&str>,
        wall_ns: i64,
    ) -> Option<ConsumerId> {
        // Each name alone: a dot inside one would make the key name another consumer.
        if !is_jetstream_name(stream) || !is_jetstream_name(consumer) {
            self.counters.consumer_name_invalid += 1;
            return None;
        }
        self.consumer_named(&consumer_key(stream, consumer, None), domain, wall_ns)
    }

    /// The consumer of names `plain` (`stream.consumer`) in `domain`, for what may not say
    /// the domain (the older ack subjects do not; events do). The same names in two domains
    /// are two consumers. What says none finds the consumer of these names held under a
    /// domain; what names a domain moves a consumer held under none whose own acks never said
    /// so (an older server's) to it, so that one consumer stays one whichever came first.
    fn consumer_named(
        &mut self,
        plain: &str,
        domain: Option<&str>,
        wall_ns: i64,
    ) -> Option<ConsumerId> {
        let Some(d) = domain else {
            return match self.known_consumer(plain, None) {
                Some(id) => Some(self.used(id, wall_ns)),
                None => self.consumer(plain, wall_ns),
            };
        };
        let key = key_in_domain(plain, d);
        // Not held in the domain, but under none by an older server's acks: moved there.
        if self.names.consumer_id(&key).is_none()
            && let Some(id) = self.known_consumer(plain, Some(d))
            && is_jetstream_name(d)
            && self.names.move_consumer_to_domain(id, d)
        {
            if self.aggregator.clocks().current(id).source != ClockSource::Announced {
                self.take_pending_clock(id, &key);
            }
            return Some(self.used(id, wall_ns));
        }
        self.consumer(&key, wall_ns)
    }

    /// The consumer already held that what names `plain` in `domain` is about, adding and
    /// moving none: said in no domain, the one of these names in any; said in one, the one
    /// held there, else one held under none whose own acks never said its domain (an older
    /// server's).
    fn known_consumer(&self, plain: &str, domain: Option<&str>) -> Option<ConsumerId> {
        match domain {
            None => self
                .names
                .consumer_id(plain)
                .or_else(|| self.names.consumer_in_a_domain(plain)),
            Some(d) => self
                .names
                .consumer_id(&key_in_domain(plain, d))
                .or_else(|| {
                    self.names
                        .consumer_id(plain)
                        .filter(|&id| !self.facts[id as usize].domain_known)
                }),
        }
    }

    fn symbol(&mut self, s: &str, wall_ns: i64) -> Sym {
        // A subject or label value is a name, not a payload: a longer one (a hostile header)
        // would make the bounded table hold megabytes.
        if s.len() > MAX_SYMBOL_BYTES {
            self.counters.symbol_too_long += 1;
            return Sym::NONE;
        }
        self.names.symbol(s, wall_ns).unwrap_or_else(|| {
            self.counters.symbol_overflow += 1;
            Sym::NONE
        })
    }

    /// A message on a delivery pattern. `headers` are (name, value) pairs.
    pub fn on_delivery<'a, H>(&mut self, subject: &str, reply: Option<&str>, headers: H, seen: Seen)
    where
        H: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        if !is_delivery(reply) {
            self.counters.non_delivery_messages += 1;
            return;
        }
        self.counters.delivery_messages += 1;
        let Ok(ack) = parse_ack_subject(reply.unwrap_or_default()) else {
            self.counters.ack_subject_errors += 1;
            return;
        };
        let Some(consumer) = self.consumer_of_ack(&ack, seen.wall_ns) else {
            return;
        };
        if self.facts[consumer as usize].ack_none {
            // Nothing will ack it: waiting for one would only fill the join table.
            self.counters.ack_none_deliveries += 1;
            return;
        }
        let trace = find_trace_id(&self.config.headers.trace_id, headers.clone());
        self.counters.trace_id_invalid += trace.invalid as u64;
        let mut labels = NO_LABELS;
        for i in 0..self.config.headers.labels.len() {
            let value = header_value(headers.clone(), &self.config.headers.labels[i].0);
            if let Some(v) = value {
                labels[i] = self.symbol(v, seen.wall_ns);
            }
        }
        let meta = DeliveryMeta {
            trace_id: trace.trace_id,
            parent_span: trace.parent_span,
            subject: self.symbol(subject, seen.wall_ns),
            labels,
        };
        let redelivery = ack.delivered > 1;
        match self.joiner.on_delivery(consumer, &ack, meta, seen) {
            DeliveryOutcome::Stored => {
                self.count_event(consumer, Event::Delivery { redelivery }, seen.wall_ns);
            }
            DeliveryOutcome::Completed(sample) => {
                self.count_event(consumer, Event::Delivery { redelivery }, seen.wall_ns);
                self.record(sample);
            }
            DeliveryOutcome::Duplicate | DeliveryOutcome::Overflow => {}
        }
        self.count_expired(seen.wall_ns);
    }

    /// Counts the deliveries the join reports as expired.
    fn count_expired(&mut self, wall_ns: i64) {
        for (consumer, delivered_ns) in self.joiner.take_expired() {
            // Waiting for its ack while NATS was down: the ack may have been lost in the gap.
            if self.gaps.overlaps(delivered_ns, wall_ns) {
                self.counters.expired_in_nats_gap += 1;
                continue;
            }
            self.counters.expired_deliveries += 1;
            self.count_event(consumer, Event::ExpiredDelivery, wall_ns);
        }
    }

    /// A message on `$JS.ACK.>`.
    pub fn on_ack(&mut self, subject: &str, reply: Option<&str>, payload: &[u8], seen: Seen) {
        self.counters.ack_messages += 1;
        let Ok(ack) = parse_ack_subject(subject) else {
            self.counters.ack_subject_errors += 1;
            return;
        };
        let Ok(kind) = parse_ack_payload(payload) else {
            self.counters.ack_payload_errors += 1;
            return;
        };
        let Some(consumer) = self.consumer_of_ack(&ack, seen.wall_ns) else {
            return;
        };
        let ack_sync = reply.is_some();
        self.counters.ack_sync_acks += ack_sync as u64;
        match self.joiner.on_ack(consumer, &ack, &kind, ack_sync, seen) {
            AckOutcome::Sample(sample) => self.record(sample),
            AckOutcome::Progress => {
                self.counters.progress_acks += 1;
                self.count_event(consumer, Event::Progress, seen.wall_ns);
            }
            AckOutcome::Duplicate | AckOutcome::Held => {}
        }
        self.count_expired(seen.wall_ns);
    }

    /// A server ack metric event.
    pub fn on_metric(&mut self, payload: &[u8], seen: Seen) {
        self.counters.metric_messages += 1;
        let mut parsed = match parse_ack_metric(payload, seen.wall_ns) {
            Ok(p) => p,
            Err(_) => {
                self.counters.metric_errors += 1;
                return;
            }
        };
        let Some(consumer) = self.consumer_by_names(
            &parsed.stream,
            &parsed.consumer,
            parsed.domain.as_deref(),
            seen.wall_ns,
        ) else {
            self.counters.metric_errors += 1;
            return;
        };
        // The server sends ack metrics only for consumers that sample acks: for one whose info
        // says it does not, the event is forged or stale, and would add samples never acked.
        if self.facts[consumer as usize]
            .state
            .as_ref()
            .is_some_and(|s| s.sample_freq == 0)
        {
            self.counters.metric_unsampled += 1;
            return;
        }
        // The server's timestamp becomes the sample's ack time only when ackscope's clock
        // agrees it is plausible: windows follow ackscope's clock, never a message's.
        let stamp = &mut parsed.metric.timestamp_ns;
        *stamp = self.server_clock.check(*stamp, seen.wall_ns);
        if let AckOutcome::Sample(sample) = self.joiner.on_metric(consumer, &parsed.metric) {
            self.record(sample);
        }
        self.count_expired(seen.wall_ns);
    }

    /// A consumer advisory.
    pub fn on_advisory(&mut self, subject: &str, payload: &[u8], seen: Seen) {
        self.counters.advisory_messages += 1;
        let Some(adv) = parse_advisory_subject(subject) else {
            self.counters.advisory_errors += 1;
            return;
        };
        let domain = advisory_domain(payload);
        let Some(consumer) =
            self.consumer_by_names(adv.stream, adv.consumer, domain.as_deref(), seen.wall_ns)
        else {
            self.counters.advisory_errors += 1;
            return;
        };
        let counts = &mut self.facts[consumer as usize].advisories;
        match adv.kind {
            AdvisoryKind::MaxDeliveries => counts.max_deliveries += 1,
            AdvisoryKind::MsgNaked => counts.msg_naked += 1,
            AdvisoryKind::MsgTerminated => counts.msg_terminated += 1,
            AdvisoryKind::LeaderElected => counts.leader_elected += 1,
            AdvisoryKind::Other => counts.other += 1,
        }
        if adv.kind == AdvisoryKind::MaxDeliveries {
            self.count_event(consumer, Event::MaxDeliveries, seen.wall_ns);
        }
        if self.archive.is_some() {
            let (stream_seq, deliveries) = crate::collect::advisories::advisory_message(payload);
            let kind = subject.split('.').nth(4).unwrap_or("").to_ascii_lowercase();
            let row = crate::archive::AdvisoryRow {
                at_ns: seen.wall_ns,
                kind,
                stream: adv.stream.to_string(),
                consumer: adv.consumer.to_string(),
                domain,
                stream_seq,
                deliveries,
            };
            hold(
                &mut self.archive_advisories,
                row,
                &mut self.archive_rows_dropped,
            );
        }
    }

    /// A consumer info poll result; `domain` is the one it was asked in.
    pub fn on_consumer_state(
        &mut self,
        stream: &str,
        consumer: &str,
        domain: Option<&str>,
        state: ConsumerState,
    ) {
        self.counters.consumer_state_polls += 1;
        let Some(id) = self.consumer_by_names(stream, consumer, domain, i64::MIN) else {
            return;
        };
        // It exists: not a consumer to forget, however quiet.
        self.names.touch_consumer(id, state.polled_ns);
        self.joiner.set_ack_wait(id, state.ack_wait_ns);
        if state.ack_none && !self.facts[id as usize].ack_none {
            self.counters.ack_none_deliveries += self.joiner.forget(id) as u64;
        }
        let facts = &mut self.facts[id as usize];
        facts.ack_none = state.ack_none;
        facts.gone = false;
        if facts.ack_pending_history.len() == STATE_HISTORY {
            facts.ack_pending_history.pop_front();
        }
        facts.ack_pending_history.push_back((
            state.polled_ns,
            state.num_ack_pending,
            state.max_ack_pending,
        ));
        // A copy for the archive only when there is one.
        let archived = self.archive.is_some().then(|| state.clone());
        facts.state = Some(state);
        if let Some(state) = archived {
            let row = crate::archive::StateRow {
                stream: stream.to_string(),
                consumer: consumer.to_string(),
                domain: self.names.consumer_domain(id).map(str::to_string),
                state,
            };
            hold(
                &mut self.archive_states,
                row,
                &mut self.archive_rows_dropped,
            );
        }
    }

    /// Counts a failed consumer info poll; `gone` when the server says the consumer does not
    /// exist (an ephemeral one that ended): it is not polled again until seen again.
    pub fn count_consumer_state_error(
        &mut self,
        stream: &str,
        consumer: &str,
        domain: Option<&str>,
        gone: bool,
    ) {
        self.counters.consumer_state_errors += 1;
        if gone && let Some(id) = self.consumer_id(stream, consumer, domain) {
            self.facts[id as usize].gone = true;
        }
    }

    /// The id of a consumer already known, without adding it.
    fn consumer_id(
        &self,
        stream: &str,
        consumer: &str,
        domain: Option<&str>,
    ) -> Option<ConsumerId> {
        let id = self
            .names
            .consumer_id(&consumer_key(stream, consumer, domain))?;
        (self.facts.len() > id as usize).then_some(id)
    }

    /// The consumers worth polling, with their domain: seen, and not known to be gone.
    pub fn consumers_to_poll(&self) -> impl Iterator<Item = (&str, &str, Option<&str>)> {
        self.consumers()
            .filter(|(id, _, _)| !self.facts[*id as usize].gone)
            .map(|(id, s, c)| (s, c, self.names.consumer_domain(id)))
    }

    /// Counts an event in the consumer's window and its totals.
    fn count_event(&mut self, consumer: ConsumerId, event: Event, wall_ns: i64) {
        self.aggregator.count(consumer, event, wall_ns);
        if let Some(facts) = self.facts.get_mut(consumer as usize) {
            facts.totals.apply(event);
        }
    }

    /// Whether NATS is connected, as the tap loop sees it each tick: a change opens or
    /// closes a gap, which the windows it covers carry (`nats_gap_ms`).
    pub fn on_nats_state(&mut self, connected: bool, now: Seen) {
        let changed = if connected {
            self.gaps.close(now.wall_ns)
        } else {
            self.gaps.open(now.wall_ns)
        };
        if changed {
            self.aggregator.set_gap(!connected, now.wall_ns);
        }
    }

    /// Time without NATS over the outages that have ended, ns.
    pub fn nats_down_ns(&self) -> u64 {
        self.gaps.closed_ns()
    }

    /// Whether an outage is open (NATS was down at the last look).
    pub fn nats_down(&self) -> bool {
        self.gaps.is_open()
    }

    /// The last outages, oldest first: (start, end or `None` while it lasts), Unix ns.
    pub fn nats_gaps(&self) -> impl Iterator<Item = (i64, Option<i64>)> + '_ {
        self.gaps.iter()
    }

    /// Periodic work: expires deliveries past their bound and closes finished windows.
    pub fn tick(&mut self, now: Seen) {
        self.joiner.expire(now.mono_ns);
        self.count_expired(now.wall_ns);
        let mut released = Vec::new();
        self.joiner.release(now.mono_ns, |s| released.push(s));
        for sample in released {
            self.record(sample);
        }
        self.aggregator.advance(now.wall_ns);
        self.hand_over_to_archive();
        // The first pass one period after the first tick: there is nothing to fold before.
        if self.inferred_at_ns == i64::MIN {
            self.inferred_at_ns = now.wall_ns;
        }
        if now.wall_ns.saturating_sub(self.inferred_at_ns)
            >= self.config.clocks.infer_every_ns as i64
        {
            self.inferred_at_ns = now.wall_ns;
            self.infer_clocks(now.wall_ns);
        }
        if now.wall_ns.saturating_sub(self.forgot_at_ns) >= FORGET_EVERY_NS {
            self.forgot_at_ns = now.wall_ns;
            self.forget_unused(now.wall_ns);
        }
    }

    /// A frame clock announced on `<clocks.subject_prefix>.<stream>.<consumer>[.<domain>]`:
    /// the consumer's phases use it from now on. An announcement names a consumer; it never
    /// adds one to the tables nor moves one to a domain (anyone may publish on the subject): one
    /// for a consumer not seen yet (a server announces before its first ack) waits, at most
    /// [`PENDING_CLOCKS`] of them, until the consumer is seen.
    pub fn on_clock_announcement(&mut self, subject: &str, payload: &[u8], seen: Seen) {
        let parsed = announce::parse_subject(&self.config.clocks.subject_prefix, subject)
            .and_then(|t| announce::parse_payload(payload).map(|f| (t, f)));
        let Ok((target, frame)) = parsed else {
            self.counters.clock_announcement_errors += 1;
            return;
        };
        let names_ok = is_jetstream_name(target.stream)
            && is_jetstream_name(target.consumer)
            && target.domain.is_none_or(is_jetstream_name);
        if !names_ok {
            self.counters.clock_announcement_errors += 1;
            return;
        }
        // Its epoch moved to a frame start near now (exactly one): the same clock, small
        // offsets.
        let frame = Frame {
            epoch_ns: frame
                .whole_start_near(seen.wall_ns)
                .unwrap_or(frame.epoch_ns),
            ..frame
        };
        let segment = Segment {
            from_ns: seen.wall_ns,
            frame,
            source: ClockSource::Announced,
            confidence: 1.0,
        };
        let plain = consumer_key(target.stream, target.consumer, None);
        match self.known_consumer(&plain, target.domain) {
            Some(id) => {
                self.counters.clock_announcements += 1;
                self.aggregator.set_clock(id, segment);
            }
            // Waiting by the names alone: the consumer may come with its domain or without.
            None if self.pending_clocks.len() < PENDING_CLOCKS
                || self.pending_clocks.contains_key(&plain) =>
            {
                self.counters.clock_announcements += 1;
                let domain = target.domain.map(str::to_string);
                self.pending_clocks.insert(plain, (segment, domain));
            }
            None => self.counters.clock_announcements_dropped += 1,
        }
    }

    /// A new consumer takes the clock announced for it before it was seen: one for its names
    /// in its domain, or in none said; one naming a domain also goes to a consumer whose acks
    /// do not say theirs (an older server's), as a known one would.
    fn take_pending_clock(&mut self, id: ConsumerId, key: &str) {
        let Some((stream, consumer, domain)) = split_consumer_key(key) else {
            return;
        };
        let plain = consumer_key(stream, consumer, None);
        let unsaid = domain.is_none() && !self.facts[id as usize].domain_known;
        let fits = self
            .pending_clocks
            .get(&plain)
            .is_some_and(|(_, d)| d.is_none() || d.as_deref() == domain || unsaid);
        if fits && let Some((segment, _)) = self.pending_clocks.remove(&plain) {
            self.aggregator.set_clock(id, segment);
        }
    }

    /// One inference pass: each consumer that announces no clock folds its acks since its
    /// last pass ([`infer`](crate::clocks::infer)); consumers with too few wait for the next.
    /// Bounded under the collector's lock: one walk over at most the last minute of the ring,
    /// newest first, copying only the acks of the consumers taking part; at most
    /// [`LEARNS_PER_PASS`] consumers learned from scratch a pass (the others wait their turn);
    /// a consumer whose acks show no frame waits [`RETRY_PASSES`] passes before it is tried
    /// again.
    pub fn infer_clocks(&mut self, now_ns: i64) {
        if let Some(oldest) = self.aggregator.ring().oldest_acked_ns() {
            self.aggregator.prune_clocks_before(oldest);
        }
        if !self.config.clocks.infer {
            return;
        }
        let horizon = now_ns.saturating_sub(INFER_HORIZON_NS);
        let slots = self.names.consumer_slots();
        self.inference.resize_with(slots, InferSlot::default);
        // Who takes part, and from when: every consumer with a learned clock, and the next
        // few still to learn (their turns go round; learning is the costly step).
        let mut taking: Vec<(ConsumerId, i64)> = Vec::new();
        let mut learners: Vec<(ConsumerId, i64)> = Vec::new();
        for (id, _, _) in self.consumers() {
            let slot = &self.inference[id as usize];
            let announced = self.aggregator.clocks().current(id).source == ClockSource::Announced;
            if announced || slot.retry_at_ns > now_ns {
                continue;
            }
            let entry = (id, slot.from_ns.max(horizon));
            if slot.tracker.is_learned() {
                taking.push(entry);
            } else {
                learners.push(entry);
            }
        }
        let turn = learners.partition_point(|&(id, _)| id < self.learn_cursor);
        learners.rotate_left(turn);
        learners.truncate(LEARNERS_READ);
        if let Some(&(last, _)) = learners.last() {
            self.learn_cursor = last + 1;
        }
        taking.extend(learners);
        let Some(earliest) = taking.iter().map(|t| t.1).min() else {
            return;
        };
        // Which of `taking` each consumer id is, in a table kept between passes.
        let late_ns = self.ring_late_ns();
        let index = &mut self.infer_index;
        index.resize(slots, u32::MAX);
        for (k, &(id, _)) in taking.iter().enumerate() {
            index[id as usize] = k as u32;
        }
        let phase_of = self.config.tick.phase_of();
        let mut times: Vec<Vec<i64>> = vec![Vec::new(); taking.len()];
        for (c, acked, delivered) in self.aggregator.ring().recent(earliest, late_ns) {
            let Some(&k) = index.get(c as usize).filter(|&&k| k != u32::MAX) else {
                continue;
            };
            let t = match phase_of {
                PhaseOf::Ack => Some(acked),
                PhaseOf::Delivery => delivered,
            };
            if let Some(t) = t.filter(|_| acked >= taking[k as usize].1) {
                times[k as usize].push(t);
            }
        }
        for &(id, _) in &taking {
            index[id as usize] = u32::MAX;
        }
        let configured = *self.config.tick.frame();
        let inference = self.config.clocks.inference.clone();
        let mut learns = 0;
        for (k, &(id, _)) in taking.iter().enumerate() {
            let list = &mut times[k];
            if list.len() < inference.min_acks {
                continue;
            }
            let slot = &mut self.inference[id as usize];
            if !slot.tracker.is_learned() {
                if learns == LEARNS_PER_PASS {
                    continue;
                }
                learns += 1;
            }
            list.sort_unstable();
            slot.from_ns = now_ns;
            let current = self.aggregator.clocks().current(id);
            let segment = slot
                .tracker
                .step(&current, &configured, list, now_ns, &inference);
            if !slot.tracker.is_learned() {
                let wait = RETRY_PASSES * self.config.clocks.infer_every_ns as i64;
                slot.retry_at_ns = now_ns.saturating_add(wait);
            }
            if let Some(segment) = segment
                && self.aggregator.set_clock(id, segment)
            {
                self.counters.clocks_inferred += 1;
            }
        }
    }

    /// Forgets the consumers and symbols unused for `join.forget_after`, so that their slots
    /// go to new ones (ephemeral consumers, per-match subjects): first everything that still
    /// holds their ids lets go (the join, the windows, the consumer's facts), and the ring's
    /// rows naming them are rewritten. `forget_after` is longer than anything analysis reads
    /// and than a delivery may wait, so no analysed row or waiting delivery is touched.
    pub fn forget_unused(&mut self, now_ns: i64) {
        // Nor anything the retained windows' spikes may read: with sparse traffic they reach
        // further back than `forget_after` (only windows with samples are kept).
        let oldest_analysed = self
            .aggregator
            .oldest_window_start()
            .map_or(i64::MAX, |t| t.saturating_sub(BASELINE_NS));
        let before = now_ns
            .saturating_sub(self.config.join.forget_after_ns as i64)
            .min(oldest_analysed);
        // Clocks announced for consumers never seen go as an unused consumer would.
        let announced_before = now_ns.saturating_sub(self.config.join.forget_after_ns as i64);
        self.pending_clocks
            .retain(|_, (segment, _)| segment.from_ns >= announced_before);
        let forgotten = self.names.forget_unused_since(before);
        if forgotten.is_empty() {
            return;
        }
        self.joiner.drop_consumers(&forgotten.consumers);
        for &id in &forgotten.consumers {
            if let Some(t) = self.inference.get_mut(id as usize) {
                *t = InferSlot::default();
            }
        }
        for &id in &forgotten.consumers {
            if let Some(f) = self.facts.get_mut(id as usize) {
                *f = ConsumerFacts::default();
            }
        }
        if let Some(otlp) = &mut self.otlp {
            // Ids and label symbols are given out again: attributes built from them go.
            otlp.forget();
        }
        let rows = self
            .aggregator
            .forget(&forgotten.consumers, &forgotten.symbols);
        self.counters.consumers_forgotten += forgotten.consumers.len() as u64;
        self.counters.symbols_forgotten += forgotten.symbols.len() as u64;
        self.counters.forgotten_rows += rows as u64;
    }

    fn record(&mut self, sample: Sample) {
        self.counters.samples += 1;
        match sample.source {
            SampleSource::Observed => self.counters.samples_joined += 1,
            SampleSource::ServerMetric => self.counters.samples_server_metric += 1,
            SampleSource::Reordered => self.counters.samples_reordered += 1,
            SampleSource::AckOnly => {
                // An ack soon after an outage, of a message stored before it ended: its
                // delivery may have gone by while NATS was down.
                let stored = sample.stored_ns.unwrap_or(i64::MIN);
                let soon = self.config.join.default_ack_wait_ns as i64;
                if self.gaps.overlaps(stored, sample.acked_ns)
                    && self.gaps.ended_within(sample.acked_ns, soon)
                {
                    self.counters.unmatched_acks_in_nats_gap += 1;
                } else {
                    self.counters.unmatched_acks += 1;
                    self.count_event(sample.consumer, Event::UnmatchedAck, sample.acked_ns);
                }
            }
        }
        if sample.stored_ns.is_some_and(|s| s > sample.acked_ns) {
            self.counters.clock_skew += 1;
        }
        let max = self.config.aggregate.max_latency_ns;
        self.counters.latency_clamped += [sample.ack_latency_ns, sample.e2e_latency_ns]
            .iter()
            .filter(|l| l.is_some_and(|v| v > max))
            .count() as u64;
        // The sample's frame under its consumer's clock, once, for the taps that keep it.
        let frame = (self.otlp.is_some() || self.archive.is_some()).then(|| {
            let clock = self
                .aggregator
                .clocks()
                .at(sample.consumer, sample.acked_ns);
            crate::otlp::FrameOf {
                phase_ns: clock.phase_ns(sample.acked_ns),
                period_ns: clock.period.ns(),
            }
        });
        if let Some(facts) = self.facts.get_mut(sample.consumer as usize) {
            facts.totals.count_kind(sample.kind);
            for (kept, seen) in facts.labels.iter_mut().zip(sample.labels) {
                if !seen.is_none() {
                    *kept = seen;
                }
            }
            if let Some(ns) = sample.ack_latency_ns {
                facts
                    .ack_buckets
                    .record_traced(ns, sample.trace_id, sample.acked_ns);
            }
            if let (Some(otlp), Some(frame)) = (&mut self.otlp, frame) {
                otlp.push(
                    &sample,
                    facts.labels,
                    frame,
                    &self.names,
                    &self.config.headers,
                );
            }
        }
        if let Some(tap) = &mut self.archive {
            tap.push(ArchivedSample {
                sample: sample.clone(),
                phase_ns: frame.map(|f| f.phase_ns),
            });
        }
        self.aggregator.record(&sample);
    }

    /// Keeps every window closed from now on for [`Self::take_closed`].
    pub fn keep_closed(&mut self) {
        self.aggregator.keep_closed();
    }

    /// Takes the windows closed since the last call (none unless [`Self::keep_closed`]).
    pub fn take_closed(&mut self) -> Vec<WindowSummary> {
        self.aggregator.take_closed().collect()
    }

    /// The spikes overlapping `[from, to)` of each consumer in `ids` (all when `None`, plus the
    /// all-consumers scope), oldest first, not yet explained.
    pub fn find_spikes(
        &self,
        ids: Option<&[ConsumerId]>,
        from: i64,
        to: i64,
    ) -> Vec<(Option<ConsumerId>, Spike, Latency)> {
        let all: Vec<ConsumerId> = self.consumers().map(|(id, _, _)| id).collect();
        let mut scopes: Vec<Option<ConsumerId>> =
            ids.unwrap_or(&all).iter().map(|&id| Some(id)).collect();
        if ids.is_none() {
            scopes.push(None);
        }
        let mut out = Vec::new();
        for scope in scopes {
            let found = scope_spikes(|| self.aggregator.history(scope), &self.config.spikes);
            out.extend(
                found
                    .into_iter()
                    .filter(|(s, _)| s.end_ns > from && s.start_ns < to)
                    .map(|(s, latency)| (scope, s, latency)),
            );
        }
        out.sort_by_key(|(_, s, _)| s.start_ns);
        out
    }

    /// A copy of what explaining `spike` needs, so that [`SpikeInputs::explain`] runs with the
    /// collector free.
    pub fn spike_inputs(
        &self,
        scope: Option<ConsumerId>,
        spike: Spike,
        latency: Latency,
    ) -> SpikeInputs {
        let spike_ns = (spike.start_ns, spike.end_ns);
        // One pass over the ring: the scope's samples during the spike and before it, and,
        // for one consumer, every consumer's during it (whether this one stands out among
        // them, each against its own usual P99).
        let (mut spike_rows, mut baseline_rows, mut context) = (Vec::new(), Vec::new(), Vec::new());
        let baseline_from = spike.start_ns - BASELINE_NS;
        // The baseline is the spike's own: quiet time. The scope's earlier spikes in the
        // minute before are not part of it (their samples are not what is usual).
        let earlier: Vec<(i64, i64)> =
            scope_spikes(|| self.aggregator.history(scope), &self.config.spikes)
                .into_iter()
                .map(|(s, _)| (s.start_ns.max(baseline_from), s.end_ns.min(spike.start_ns)))
                .filter(|(a, b)| a < b)
                .collect();
        // A forgotten consumer's rows are older than anything analysed; they belong to none.
        for r in self.aggregator.ring().iter() {
            if r.consumer == FORGOTTEN_CONSUMER {
                continue;
            }
            let ours = scope.is_none_or(|id| r.consumer == id);
            if r.acked_ns >= spike_ns.0 && r.acked_ns < spike_ns.1 {
                if scope.is_some() {
                    context.push(r);
                }
                if ours {
                    spike_rows.push(r);
                }
            } else if ours
                && r.acked_ns >= baseline_from
                && r.acked_ns < spike_ns.0
                && !earlier
                    .iter()
                    .any(|&(a, b)| r.acked_ns >= a && r.acked_ns < b)
            {
                baseline_rows.push(r);
            }
        }
        // Rates are over the quiet time the baseline really covers, not the time asked for.
        let first = baseline_rows
            .iter()
            .map(|r| r.acked_ns)
            .min()
            .unwrap_or(spike.start_ns - 1);
        let excluded: i64 = earlier
            .iter()
            .map(|&(a, b)| (b - a.max(first)).max(0))
            .sum();
        let baseline_quiet_ns = (spike.start_ns - first - excluded).max(1);
        let ack_pending = self
            .consumers()
            .filter(|(id, _, _)| scope.is_none_or(|s| s == *id))
            .filter_map(|(id, _, _)| self.facts(id))
            .flat_map(|f| f.ack_pending_history.iter())
            .filter(|(t, _, _)| *t >= spike_ns.0 && *t < spike_ns.1)
            .map(|&(_, pending, max)| (pending, max))
            .collect();
        // Deliveries as the scope's windows counted them, during and in the quiet baseline.
        let mut deliveries = Deliveries::default();
        for w in self.aggregator.history(scope) {
            let (counts, in_spike) = (
                &w.counts,
                w.start_ns >= spike_ns.0 && w.start_ns < spike_ns.1,
            );
            let quiet = w.end_ns > first
                && w.end_ns <= spike_ns.0
                && !earlier.iter().any(|&(a, b)| w.start_ns < b && a < w.end_ns);
            let slot = if in_spike {
                &mut deliveries.during
            } else if quiet {
                &mut deliveries.baseline
            } else {
                continue;
            };
            slot.0 += counts.redeliveries;
            slot.1 += counts.deliveries;
        }
        // Per consumer, its usual P99 over the baseline stretch before the spike.
        let usual = (baseline_from, spike.start_ns);
        let usual_p99 = (0..self.names.consumer_slots() as ConsumerId)
            .map(|id| {
                let windows = p99s(self.aggregator.history(Some(id)), latency)
                    .into_iter()
                    .filter(|w| w.start_ns >= usual.0 && w.end_ns <= usual.1)
                    .collect();
                report::usual_p99(windows, self.config.spikes.min_samples)
            })
            .collect();
        SpikeInputs {
            scope,
            spike,
            latency,
            spike_rows,
            baseline_rows,
            context,
            baseline_quiet_ns,
            usual_p99,
            ack_pending,
            deliveries,
            clocks: self.aggregator.clocks().clone(),
            names: self.names.clone(),
            labels: self.config.headers.label_names(),
        }
    }
}

impl Collector {
    /// How long after its ack a sample may still reach the ring: ack-only samples wait up to
    /// `join.metric_wait` before they are recorded.
    fn ring_late_ns(&self) -> i64 {
        self.config.join.metric_wait_ns as i64 + 1_000_000_000
    }

    /// The ring's rows acked in `[from_ns, to_ns)`, newest first, without walking what came
    /// before (see [`crate::aggregate::ring::Ring::recent`]).
    fn ring_between(
        &self,
        from_ns: i64,
        to_ns: i64,
    ) -> impl Iterator<Item = crate::aggregate::ring::RingRow> + '_ {
        self.aggregator
            .ring()
            .rows_since(from_ns, self.ring_late_ns())
            .filter(move |r| r.acked_ns < to_ns)
    }

    /// Per consumer, the value of label `label` that most of its samples acked in
    /// `[from_ns, to_ns)` carried (consumers without one are left out).
    pub fn dominant_label(
        &self,
        ids: &[ConsumerId],
        label: &str,
        from_ns: i64,
        to_ns: i64,
    ) -> HashMap<ConsumerId, String> {
        let Some(slot) = self
            .config
            .headers
            .label_names()
            .iter()
            .position(|l| l == label)
        else {
            return HashMap::new();
        };
        let mut counts: HashMap<(ConsumerId, Sym), u64> = HashMap::new();
        for r in self.ring_between(from_ns, to_ns) {
            if ids.contains(&r.consumer) {
                let value = r.labels[slot];
                if !value.is_none() {
                    *counts.entry((r.consumer, value)).or_default() += 1;
                }
            }
        }
        let mut best: HashMap<ConsumerId, (u64, Sym)> = HashMap::new();
        for ((id, value), n) in counts {
            let b = best.entry(id).or_insert((0, value));
            if n > b.0 {
                *b = (n, value);
            }
        }
        best.into_iter()
            .filter_map(|(id, (_, value))| Some((id, self.names.symbol_name(value)?.to_string())))
            .collect()
    }

    /// Per consumer and for all of them, what the rate rules count over `[from_ns, to_ns)`:
    /// deliveries, redeliveries and messages given up from the closed windows, the ordering
    /// audit from the samples.
    pub fn rates(&self, from_ns: i64, to_ns: i64) -> Vec<crate::analyze::alerts::Rates> {
        let over_ns = to_ns - from_ns;
        let mut per: Vec<(Option<ConsumerId>, crate::analyze::alerts::Rates)> = Vec::new();
        let scopes = self
            .consumers()
            .map(|(id, _, _)| Some(id))
            .chain(std::iter::once(None));
        for scope in scopes {
            let mut r = crate::analyze::alerts::Rates {
                over_ns,
                ..Default::default()
            };
            let (stream, consumer, _) = self.names.scope_names(scope);
            (r.stream, r.consumer) = (stream.to_string(), consumer.to_string());
            for w in self.aggregator.history(scope) {
                if w.end_ns > from_ns && w.end_ns <= to_ns {
                    r.deliveries += w.counts.deliveries;
                    r.redeliveries += w.counts.redeliveries;
                    r.max_deliveries += w.counts.max_deliveries;
                }
            }
            per.push((scope, r));
        }
        let rows: Vec<_> = self.ring_between(from_ns, to_ns).collect();
        let mut by_consumer: HashMap<ConsumerId, Vec<crate::aggregate::ring::RingRow>> =
            HashMap::new();
        for r in &rows {
            by_consumer.entry(r.consumer).or_default().push(*r);
        }
        for (scope, rates) in per.iter_mut() {
            let audit = match scope {
                Some(id) => match by_consumer.remove(id) {
                    Some(rows) => crate::analyze::ordering::audit(rows),
                    None => continue,
                },
                None => crate::analyze::ordering::audit(rows.iter().copied()),
            };
            rates.ordering_checked = audit.checked;
            rates.ordering_failed = audit.out_of_order;
        }
        per.into_iter().map(|(_, r)| r).collect()
    }

    /// Windows closed after `after_ns` (by their end) for every consumer and for all of them:
    /// (stream, consumer), end, acks within one frame, acks with a latency.
    pub fn budget_windows(&self, after_ns: i64) -> Vec<((String, String), i64, u64, u64)> {
        let scopes = self
            .consumers()
            .map(|(id, _, _)| Some(id))
            .chain(std::iter::once(None));
        let mut out = Vec::new();
        for scope in scopes {
            let (stream, consumer, _) = self.names.scope_names(scope);
            for w in self
                .aggregator
                .history(scope)
                .filter(|w| w.end_ns > after_ns)
            {
                out.push((
                    (stream.to_string(), consumer.to_string()),
                    w.end_ns,
                    w.within_budget,
                    w.ack_latency_us.count,
                ));
            }
        }
        out
    }

    /// Consumers with a sample since `since_ns`.
    pub fn active_consumers(&self, since_ns: i64) -> usize {
        self.consumers()
            .filter(|(id, _, _)| self.facts(*id).is_some_and(|f| f.last_seen_ns >= since_ns))
            .count()
    }
}

/// Locks what the service shares (the collector, the spike cache, the simulator's tallies); a
/// panic elsewhere never loses what was kept.
pub fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::TraceId;

    const T0: i64 = 1_790_000_000_000_000_000;
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    pub(crate) fn seen(ms: u64) -> Seen {
        Seen {
            mono_ns: ms * 1_000_000,
            wall_ns: T0 + (ms * 1_000_000) as i64,
        }
    }

    pub(crate) fn reply(delivered: u64, seq: u64) -> String {
        format!("$JS.ACK.GAME.srv-1.{delivered}.{seq}.{seq}.{}.0", T0)
    }

    #[test]
    fn delivery_then_ack_records_a_traced_sample() {
        let mut c = Collector::new(Config::default());
        let r = reply(1, 1);
        let headers = [("TraceParent", TP), ("X-Server-Id", "srv-1")];
        c.on_delivery("game.srv-1.state", Some(&r), headers, seen(10));
        c.on_ack(&r, None, b"+ACK", seen(14));
        let counters = c.counters();
        assert_eq!(counters.samples_joined, 1);
        assert_eq!(counters.delivery_messages, 1);
        let row = c.aggregator().ring().iter().next().unwrap();
        assert_eq!(row.ack_latency_ns, Some(4_000_000));
        assert_eq!(row.e2e_latency_ns, Some(14_000_000));
        assert_eq!(
            row.trace_id,
            Some(TraceId(
                *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36"
            ))
        );
        assert_eq!(c.names().symbol_name(row.subject), Some("game.srv-1.state"));
        assert_eq!(c.names().symbol_name(row.labels[0]), Some("srv-1"));
    }

    #[test]
    fn bad_input_is_counted_and_skipped() {
        let mut c = Collector::new(Config::default());
        c.on_ack("$JS.ACK.bad", None, b"+ACK", seen(1));
        c.on_ack(&reply(1, 1), None, b"+WHAT", seen(1));
        c.on_delivery("x", Some("$JS.ACK.S.C.x.1.1.1.1"), [], seen(1));
        c.on_delivery("x", Some("_INBOX.reply"), [], seen(1));
        c.on_delivery("x", Some(&reply(1, 2)), [("traceparent", "junk")], seen(1));
        let huge = "s".repeat(MAX_SYMBOL_BYTES + 1);
        c.on_delivery(
            "x",
            Some(&reply(1, 3)),
            [("X-Server-Id", huge.as_str())],
            seen(1),
        );
        c.on_metric(b"\xff\x00", seen(1));
        c.on_advisory("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES", b"{}", seen(1));
        let k = c.counters();
        assert_eq!(k.ack_subject_errors, 2);
        assert_eq!(k.ack_payload_errors, 1);
        assert_eq!(k.non_delivery_messages, 1);
        assert_eq!(k.trace_id_invalid, 1);
        assert_eq!(k.symbol_too_long, 1);
        // Names JetStream would not allow never enter the consumer table.
        let long = "s".repeat(crate::names::MAX_NAME_BYTES + 1);
        let forged = format!(
            r#"{{"type":"io.nats.jetstream.metric.v1.consumer_ack","stream":"{long}","consumer":"c","stream_seq":1,"ack_time":1,"deliveries":1}}"#
        );
        c.on_metric(forged.as_bytes(), seen(1));
        c.on_ack("$JS.ACK.GAME.srv*1.1.1.1.1.0", None, b"+ACK", seen(1));
        assert_eq!(c.counters().consumer_name_invalid, 2);
        assert_eq!(c.names().consumer_count(), 1);
        assert_eq!(
            c.names().symbol_count(),
            1,
            "the subject `x`, not the huge label"
        );
        assert_eq!(k.metric_errors, 1);
        assert_eq!(k.advisory_errors, 1);
        assert_eq!(c.joiner().pending_len(), 2);
    }

    fn metric(seq: u64, timestamp: &str) -> Vec<u8> {
        format!(
            r#"{{"type":"io.nats.jetstream.metric.v1.consumer_ack","timestamp":"{timestamp}","stream":"GAME","consumer":"srv-1","consumer_seq":{seq},"stream_seq":{seq},"ack_time":2500000,"deliveries":1}}"#
        )
        .into_bytes()
    }

    #[test]
    fn a_server_timestamp_from_another_time_cannot_move_the_windows() {
        let mut c = Collector::new(Config::default());
        c.keep_closed();
        let rfc = |ns: i64| crate::model::rfc3339(ns);
        // A plausible stamp is the sample's ack time; 2200 and 1970 are not.
        c.on_metric(&metric(1, &rfc(T0 + 99_000_000)), seen(100));
        c.on_metric(&metric(2, "2200-01-01T00:00:00Z"), seen(200));
        c.on_metric(&metric(3, "1970-01-01T00:00:01Z"), seen(300));
        c.on_metric(&metric(4, &rfc(T0 + 5_000_000_000)), seen(400));
        let acked: Vec<i64> = c.aggregator().ring().iter().map(|r| r.acked_ns).collect();
        assert_eq!(
            acked,
            [99, 200, 300, 400].map(|ms| T0 + ms * 1_000_000).to_vec()
        );
        assert_eq!(c.counters().server_time_outliers, 3);
        // The windows keep closing on ackscope's clock.
        for s in 1..5u64 {
            let r = reply(1, 10 + s);
            c.on_delivery("game.srv-1.state", Some(&r), [], seen(s * 1_000));
            c.on_ack(&r, None, b"+ACK", seen(s * 1_000 + 2));
            c.tick(seen(s * 1_000 + 10));
        }
        let closed = c.take_closed();
        assert_eq!(closed.iter().filter(|w| w.consumer.is_some()).count(), 4);
        assert_eq!(c.counters().late_events, 0);
        // The offset measured is the median of the stamps: the plausible one is 1 ms behind.
        assert!(c.server_clock_offset_ns().is_some());
    }

    /// Forgetting after 2 minutes, 10 windows retained.
    fn forgetful() -> Collector {
        let raw = crate::config::RawConfig::from_toml(
            "[aggregate]\nretained_windows = 10\n[join]\nmax_pending_age = \"1m\"\nforget_after = \"2m\"",
        )
        .unwrap();
        Collector::new(raw.validate().unwrap())
    }

    /// Consumer `name` delivers and acks message `seq` at `ms` (3 ms), with a subject and a
    /// server label.
    fn play(c: &mut Collector, name: &str, seq: u64, subject: &str, server: &str, ms: u64) {
        let r = format!("$JS.ACK.GAME.{name}.1.{seq}.{seq}.{T0}.0");
        c.on_delivery(subject, Some(&r), [("X-Server-Id", server)], seen(ms));
        c.on_ack(&r, None, b"+ACK", seen(ms + 3));
    }

    /// `name` plays one message a second from `from_s` to `to_s`, the windows closing.
    fn keep_playing(c: &mut Collector, name: &str, from_s: u64, to_s: u64) {
        for s in from_s..=to_s {
            play(c, name, s, "game.state", "srv-1", s * 1_000);
            c.tick(seen(s * 1_000 + 10));
        }
    }

    #[test]
    fn an_announced_clock_waits_for_its_consumer_and_never_adds_one() {
        let mut c = Collector::new(Config::default());
        let body = br#"{"hz": 60, "epoch_ns": 1790000000005000000}"#;
        c.on_clock_announcement("ackscope.frame.GAME.srv-1", body, seen(10));
        assert_eq!(c.consumers().count(), 0, "an announcement adds no consumer");
        for (subject, payload) in [
            ("ackscope.frame.GAME", &body[..]),
            ("ackscope.frame.GAME.srv-1", b"{"),
            ("ackscope.frame.GAME.srv 1", &body[..]),
            ("ackscope.frame.GAME.srv-1", br#"{"hz": 0, "epoch_ns": 1}"#),
        ] {
            c.on_clock_announcement(subject, payload, seen(11));
        }
        assert_eq!(c.counters().clock_announcement_errors, 4);
        assert_eq!(c.counters().clock_announcements, 1);
        // srv-1's first message: it has its announced clock, from the announcement on.
        let r = reply(2, 5);
        c.on_delivery("game.srv-1.state", Some(&r), [], seen(100));
        c.on_ack(&r, None, b"+ACK", seen(108));
        let (id, _, _) = c.consumers().next().unwrap();
        let clock = c.aggregator().clocks().current(id);
        assert_eq!(clock.source, ClockSource::Announced);
        assert_eq!(clock.from_ns, seen(10).wall_ns);
        assert_eq!(clock.frame.period.to_string(), "60hz");
        // The same frames as announced, counted from a frame start near the announcement.
        assert_eq!(clock.frame.phase_ns(1_790_000_000_005_000_000), 0);
        let since = seen(10).wall_ns - clock.frame.epoch_ns;
        assert!((0..16_666_667).contains(&since), "{since}");
        // A later one for a known consumer applies at once.
        c.on_clock_announcement(
            "ackscope.frame.GAME.srv-1",
            br#"{"period_ns": 16000000, "epoch_ns": 1790000000000000000}"#,
            seen(200),
        );
        let clock = c.aggregator().clocks().current(id);
        assert_eq!(clock.frame.period.to_string(), "16000000ns");
        assert_eq!(c.aggregator().clocks().segments(id).len(), 2);
        // The same clock announced again, from another of its frame starts, is no new clock.
        c.on_clock_announcement(
            "ackscope.frame.GAME.srv-1",
            br#"{"period_ns": 16000000, "epoch_ns": 1790000000160000000}"#,
            seen(300),
        );
        assert_eq!(c.aggregator().clocks().segments(id).len(), 2);
        // One for a consumer never seen waits, and goes as an unused consumer would.
        c.on_clock_announcement("ackscope.frame.GAME.srv-9", body, seen(400));
        assert_eq!(c.pending_clocks.len(), 1);
        let later = seen(400).wall_ns + c.config.join.forget_after_ns as i64 + 1;
        c.forget_unused(later);
        assert!(c.pending_clocks.is_empty());
    }

    #[test]
    fn a_waiting_clock_goes_to_its_consumer_in_whatever_domain_it_comes() {
        let mut c = Collector::new(Config::default());
        let body = br#"{"hz": 60, "epoch_ns": 1790000000005000000}"#;
        // A server announcing without its domain, a consumer first seen in one; and the
        // reverse, an announcement naming a domain for a consumer seen in none.
        c.on_clock_announcement("ackscope.frame.GAME.srv-1", body, seen(10));
        c.on_clock_announcement("ackscope.frame.GAME.srv-2.hub", body, seen(10));
        // One naming another domain than its consumer's is not taken by it.
        c.on_clock_announcement("ackscope.frame.GAME.srv-3.edge", body, seen(10));
        let r = format!("$JS.ACK.hub.ACCHASH.GAME.srv-1.1.1.1.{T0}.0.tok");
        c.on_ack(&r, None, b"+ACK", seen(100));
        c.on_ack(
            &reply(1, 7).replace("srv-1", "srv-2"),
            None,
            b"+ACK",
            seen(100),
        );
        let r = format!("$JS.ACK.hub.ACCHASH.GAME.srv-3.1.1.1.{T0}.0.tok");
        c.on_ack(&r, None, b"+ACK", seen(100));
        let source = |name: &str| {
            let (id, _, _) = c.consumers().find(|(_, _, n)| *n == name).unwrap();
            c.aggregator().clocks().current(id).source
        };
        assert_eq!(source("srv-1"), ClockSource::Announced);
        assert_eq!(source("srv-2"), ClockSource::Announced);
        assert_eq!(source("srv-3"), ClockSource::Configured);
        assert_eq!(c.pending_clocks.len(), 1, "srv-3's waits on");
    }

    #[test]
    fn what_goes_unused_is_forgotten_and_its_slot_reused() {
        let mut c = forgetful();
        // An ephemeral consumer plays once; srv-1 keeps playing.
        play(&mut c, "eph-1", 7, "match.1", "srv-9", 10);
        let eph = c.names().consumer_id("GAME.eph-1").unwrap();
        keep_playing(&mut c, "srv-1", 1, 100);
        assert_eq!(c.counters().consumers_forgotten, 0, "not yet");
        keep_playing(&mut c, "srv-1", 101, 200);
        let k = c.counters();
        assert_eq!((k.consumers_forgotten, k.symbols_forgotten), (1, 2));
        assert_eq!(k.forgotten_rows, 1);
        let held: Vec<_> = c.consumers().map(|(_, s, n)| (s, n)).collect();
        assert_eq!(held, vec![("GAME", "srv-1")]);
        // The row is kept, attributed to none, without its subject and label.
        let rows: Vec<_> = c.aggregator().ring().iter().collect();
        assert_eq!(rows.len(), 201);
        assert_eq!(rows[0].consumer, FORGOTTEN_CONSUMER);
        assert_eq!((rows[0].subject, rows[0].labels[0]), (Sym::NONE, Sym::NONE));
        assert_eq!(rows[0].ack_latency_ns, Some(3_000_000));
        assert_eq!(c.names().symbol_name(rows[1].subject), Some("game.state"));
        // The next ephemeral consumer takes the slot; reading the same stream message is its
        // own first sample, not a duplicate of the forgotten one's, and starts from zero.
        play(&mut c, "eph-2", 7, "match.2", "srv-8", 200_100);
        let eph2 = c.names().consumer_id("GAME.eph-2").unwrap();
        assert_eq!(eph2, eph);
        assert_eq!(c.counters().duplicate_acks, 0);
        assert_eq!(c.facts(eph2).unwrap().totals.acks, 1);
        let own: Vec<_> = c
            .aggregator()
            .ring()
            .iter()
            .filter(|r| r.consumer == eph2)
            .collect();
        assert_eq!(own.len(), 1);
        assert_eq!(c.names().symbol_name(own[0].subject), Some("match.2"));
    }

    #[test]
    fn nothing_the_retained_windows_reach_is_forgotten() {
        // Sparse traffic: 10 windows with samples reach back 3 minutes, past forget_after.
        let mut c = forgetful();
        play(&mut c, "eph-1", 7, "match.1", "srv-9", 10);
        for s in 0..10 {
            play(
                &mut c,
                "srv-1",
                s,
                "game.state",
                "srv-1",
                60_000 + s * 15_000,
            );
        }
        c.tick(seen(210_000));
        assert_eq!(c.counters().consumers_forgotten, 0);
        assert!(c.names().consumer_id("GAME.eph-1").is_some());
    }

    #[test]
    fn a_consumer_the_server_still_has_is_not_forgotten() {
        let mut c = forgetful();
        let r = reply(1, 1);
        c.on_delivery("game.srv-1.state", Some(&r), [], seen(10));
        c.on_ack(&r, None, b"+ACK", seen(12));
        let state = |ms: u64| ConsumerState {
            num_ack_pending: 0,
            max_ack_pending: 1_000,
            num_redelivered: 0,
            num_waiting: 0,
            num_pending: 0,
            ack_wait_ns: 30_000_000_000,
            max_deliver: -1,
            sample_freq: 100,
            push: false,
            ack_none: false,
            polled_ns: seen(ms).wall_ns,
        };
        keep_playing(&mut c, "srv-2", 1, 100);
        c.on_consumer_state("GAME", "srv-1", None, state(100_000));
        keep_playing(&mut c, "srv-2", 101, 200);
        assert_eq!(c.counters().consumers_forgotten, 0);
        assert_eq!(c.consumers().count(), 2);
        // Once the server no longer has it, it goes.
        c.count_consumer_state_error("GAME", "srv-1", None, true);
        keep_playing(&mut c, "srv-2", 201, 300);
        assert_eq!(c.counters().consumers_forgotten, 1);
        let polled: Vec<_> = c.consumers_to_poll().map(|(_, n, _)| n).collect();
        assert_eq!(polled, vec!["srv-2"]);
    }

    #[test]
    fn the_same_names_in_two_domains_are_two_consumers() {
        let mut c = Collector::new(Config::default());
        // The newer ack subjects carry the domain (`_` for none) and the account.
        let v2 = |domain: &str, seq: u64| {
            format!("$JS.ACK.{domain}.ACCHASH.GAME.srv-1.1.{seq}.{seq}.{T0}.0.tok")
        };
        // No domain first: the later ones with a domain are not taken for it.
        for (domain, seq, ms) in [("_", 2, 10), ("hub", 1, 11), ("leaf", 1, 12)] {
            let r = v2(domain, seq);
            c.on_delivery("game.state", Some(&r), [], seen(ms));
            c.on_ack(&r, None, b"+ACK", seen(ms + 2));
        }
        let mut held: Vec<_> = c
            .consumers()
            .map(|(id, s, n)| (s, n, c.names().consumer_domain(id)))
            .collect();
        held.sort();
        assert_eq!(
            held,
            vec![
                ("GAME", "srv-1", None),
                ("GAME", "srv-1", Some("hub")),
                ("GAME", "srv-1", Some("leaf")),
            ]
        );
        let key = |d| {
            c.names()
                .consumer_id(&consumer_key("GAME", "srv-1", d))
                .unwrap()
        };
        let (hub, leaf, none) = (key(Some("hub")), key(Some("leaf")), key(None));
        assert_eq!(
            c.counters().duplicate_acks,
            0,
            "seq 1 in two domains is two messages"
        );
        // An event goes to the consumer of its domain; one without a domain to the consumer
        // whose acks say none; one from another domain is another consumer, not this one.
        let advisory = |domain: &str| format!(r#"{{"type":"x","domain":"{domain}"}}"#);
        let subject = "$JS.EVENT.ADVISORY.CONSUMER.MSG_NAKED.GAME.srv-1";
        c.on_advisory(subject, advisory("leaf").as_bytes(), seen(20));
        c.on_advisory(subject, advisory("edge").as_bytes(), seen(21));
        c.on_advisory(subject, b"not json", seen(22));
        let naked = |id| c.facts(id).unwrap().advisories.msg_naked;
        assert_eq!((naked(hub), naked(leaf), naked(none)), (0, 1, 1));
        assert_eq!(c.consumers().count(), 4);
        // Each is polled in its own domain.
        let mut polled: Vec<_> = c.consumers_to_poll().map(|(_, _, d)| d).collect();
        polled.sort();
        assert_eq!(polled, vec![None, Some("edge"), Some("hub"), Some("leaf")]);
        // A dot inside a name would make the key name another consumer: refused.
        let forged = br#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","stream":"GAME.srv-1","consumer":"hub","stream_seq":1,"ack_time":1,"deliveries":1}"#;
        c.on_metric(forged, seen(30));
        assert_eq!(c.counters().consumer_name_invalid, 1);

        // An older server with a domain: its events name it, its ack subjects do not. Whether
        // the consumer's creation or its first ack comes first, it is one consumer, in "hub".
        let created = "$JS.EVENT.ADVISORY.CONSUMER.CREATED.GAME.srv-1";
        for event_first in [true, false] {
            let mut c = Collector::new(Config::default());
            if event_first {
                c.on_advisory(created, advisory("hub").as_bytes(), seen(1));
            }
            let r = reply(1, 1);
            c.on_delivery("game.state", Some(&r), [], seen(10));
            c.on_ack(&r, None, b"+ACK", seen(12));
            let metric = br#"{"type":"io.nats.jetstream.metric.v1.consumer_ack","stream":"GAME","consumer":"srv-1","stream_seq":2,"ack_time":1,"deliveries":1,"domain":"hub"}"#;
            c.on_metric(metric, seen(20));
            let r = reply(1, 3);
            c.on_delivery("game.state", Some(&r), [], seen(30));
            c.on_ack(&r, None, b"+ACK", seen(32));
            let held: Vec<_> = c
                .consumers()
                .map(|(id, _, _)| {
                    let acks = c.facts(id).unwrap().totals.acks;
                    (c.names().consumer_domain(id), acks)
                })
                .collect();
            assert_eq!(held, vec![(Some("hub"), 3)], "event first: {event_first}");
        }
    }

    #[test]
    fn a_spike_after_an_earlier_one_is_explained_against_the_quiet_baseline() {
        let mut c = Collector::new(Config::default());
        // 25 acks a second at 3 ms; a 60 ms spike in seconds 20-24, a 12 ms one in 45-49.
        let mut seq = 0;
        for second in 0..60u64 {
            let latency = match second {
                20..=24 => 60,
                45..=49 => 12,
                _ => 3,
            };
            for k in 0..25 {
                seq += 1;
                let at = second * 1_000 + k * 37;
                let r = reply(1, seq);
                c.on_delivery("game.srv-1.state", Some(&r), [], seen(at));
                c.on_ack(&r, None, b"+ACK", seen(at + latency));
            }
            c.tick(seen(second * 1_000 + 999));
        }
        c.tick(seen(61_000));
        let id = c.names().consumer_id("GAME.srv-1").unwrap();
        let spikes = c.find_spikes(Some(&[id]), i64::MIN, i64::MAX);
        assert_eq!(spikes.len(), 2, "{spikes:?}");
        let (scope, second, latency) = spikes[1];
        assert_eq!(second.start_ns, seen(45_000).wall_ns);
        let inputs = c.spike_inputs(scope, second, latency);
        // The earlier spike is not part of the baseline.
        assert!(
            inputs
                .baseline_rows
                .iter()
                .all(|r| r.ack_latency_ns < Some(10_000_000)),
            "the 60 ms samples of the first spike are left out"
        );
        // Rates are over the quiet time: from the first ack (3 ms) to 45 s, less the first
        // spike's 20-25 s.
        assert_eq!(
            inputs.baseline_quiet_ns,
            45_000_000_000 - 3_000_000 - 5_000_000_000
        );
        let report = inputs.explain();
        let unknown = &report.causes[0];
        assert_eq!(
            unknown.cause,
            crate::analyze::causes::Cause::Unknown,
            "{report:#?}"
        );
        // The detectors measured "slow" against the spike's own baseline, and say so (to the
        // 10 µs the evidence is rounded to).
        let quoted_us = unknown.evidence["slow_threshold_ms"].as_f64().unwrap() * 1_000.0;
        assert!(
            (quoted_us - report.baseline_p99_us).abs() <= 5.0,
            "{quoted_us} vs {}",
            report.baseline_p99_us
        );
        assert_eq!(unknown.evidence["slow_samples"], 125);
        assert_eq!(unknown.confidence, 0.0);
        assert!(
            unknown
                .summary
                .starts_with("no cause found for the 125 samples"),
            "{}",
            unknown.summary
        );
    }
}
