//! The join: a delivery and its ack share the exact ack reply subject; together they make one
//! [`Sample`].
//!
//! The table is keyed by (consumer, stream sequence): a reply subject names exactly one delivery
//! of one stream message to one consumer. An ack matches when its delivery count and consumer
//! sequence equal a pending delivery's, which is the exact reply subject. A redelivery of the
//! same message (higher delivery count) takes the entry's place, but the delivery it supersedes
//! is kept beside it: the taps read acks and deliveries from separate subscriptions, so a NAK
//! and the redelivery it causes can be handled in either order. The superseded delivery counts
//! as expired only when it leaves the table without its ack.
//!
//! An ack whose delivery was not seen is held for `join.metric_wait`: if the server's ack
//! metric for the same delivery arrives meanwhile, the two make one sample with the server's
//! ack latency and the ack's e2e latency; otherwise it is released as an ack-only sample.
//!
//! Everything here is bounded: the pending table has a capacity (new deliveries beyond it are
//! counted, not stored) and the memory of completed deliveries, used to drop duplicates (double
//! acks, a server ack metric for a delivery already sampled), is a direct-mapped table of fixed
//! size: a newer delivery that hashes to the same slot makes it forget an older one.

use std::collections::VecDeque;

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::config::JoinConfig;
use crate::model::{
    AckKind, AckPayload, AckSubject, ConsumerId, Labels, Sample, SampleSource, Seen, Sym, TraceId,
};
use crate::names::id_mask;

/// What the delivery tap learned from a delivery's headers and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryMeta {
    pub trace_id: Option<TraceId>,
    pub parent_span: Option<crate::model::ParentSpan>,
    pub subject: Sym,
    pub labels: Labels,
}

/// A server ack metric (`io.nats.jetstream.metric.v1.consumer_ack`), already parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckMetric {
    pub stream_seq: u64,
    pub consumer_seq: u64,
    pub deliveries: u64,
    pub ack_time_ns: u64,
    /// When the server took the ack, Unix nanoseconds.
    pub timestamp_ns: i64,
}

/// One delivery of a message, as the delivery tap saw it.
#[derive(Debug, Clone)]
struct Delivery {
    delivered: u32,
    consumer_seq: u64,
    stored_ns: i64,
    pending: u64,
    seen: Seen,
    meta: DeliveryMeta,
}

impl Delivery {
    fn matches(&self, delivered: u64, consumer_seq: u64) -> bool {
        self.delivered as u64 == delivered && self.consumer_seq == consumer_seq
    }
}

#[derive(Debug, Clone)]
struct Pending {
    current: Delivery,
    /// The delivery `current` superseded, while its ack may still be in flight.
    previous: Option<Box<Delivery>>,
    /// Last delivery or progress: the age used for expiry.
    active_mono_ns: u64,
}

/// What a delivery did to the table.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryOutcome {
    /// A new pending delivery (a redelivery when it superseded an earlier one).
    Stored,
    /// The delivery of an ack already seen and held: together they complete this sample.
    Completed(Sample),
    /// The same delivery seen twice (overlapping tap patterns).
    Duplicate,
    /// The table is full; the delivery was not stored.
    Overflow,
}

/// What an ack (or ack metric) did.
#[derive(Debug, Clone, PartialEq)]
pub enum AckOutcome {
    /// A completed delivery.
    Sample(Sample),
    /// `+WPI`: the delivery is still pending, its deadline extended.
    Progress,
    /// The delivery was already sampled (a double ack, or the ack after its metric).
    Duplicate,
    /// An ack without its delivery, held for the server's ack metric; see [`Joiner::release`].
    Held,
}

/// Counters the join keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinStats {
    pub overflow: u64,
    pub duplicate_deliveries: u64,
    pub duplicate_acks: u64,
}

/// The delivery ↔ ack join table.
#[derive(Debug)]
pub struct Joiner {
    config: JoinConfig,
    pending: FxHashMap<(ConsumerId, u64), Pending>,
    /// Fingerprints (64-bit hashes, never 0) of recently completed deliveries, one per slot;
    /// the length is a power of two. Small enough to stay in cache.
    completed: Vec<u64>,
    /// Ack-only samples waiting for their server ack metric, with when they were held.
    held: FxHashMap<(ConsumerId, u64, u64), Sample>,
    held_order: VecDeque<((ConsumerId, u64, u64), u64)>,
    /// `ack_wait` per consumer, in nanoseconds, when known.
    ack_wait_ns: Vec<u64>,
    /// Per consumer id, how many consumers had it before: part of each completed fingerprint,
    /// so a consumer given a forgotten one's id never meets its deliveries.
    generation: Vec<u32>,
    /// Consumers of deliveries that left the table unacked, not yet taken by the caller.
    /// Deliveries that left without their ack: the consumer and when the delivery was seen.
    expired: Vec<(ConsumerId, i64)>,
    pub stats: JoinStats,
}

impl Joiner {
    pub fn new(config: JoinConfig) -> Self {
        Self {
            pending: FxHashMap::default(),
            completed: vec![0; config.completed_capacity.next_power_of_two()],
            held: FxHashMap::default(),
            held_order: VecDeque::new(),
            ack_wait_ns: Vec::new(),
            generation: Vec::new(),
            expired: Vec::new(),
            stats: JoinStats::default(),
            config,
        }
    }

    /// Deliveries waiting for their ack.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    pub fn capacity(&self) -> usize {
        self.config.capacity
    }

    /// Sets the consumer's `ack_wait`, which bounds how long its deliveries wait.
    pub fn set_ack_wait(&mut self, consumer: ConsumerId, ack_wait_ns: u64) {
        let i = consumer as usize;
        if self.ack_wait_ns.len() <= i {
            self.ack_wait_ns.resize(i + 1, 0);
        }
        self.ack_wait_ns[i] = ack_wait_ns;
    }

    /// How long a delivery of `consumer` may wait: twice its `ack_wait` (the server redelivers
    /// after one), capped by `max_pending_age`.
    pub fn expiry_ns(&self, consumer: ConsumerId) -> u64 {
        expiry_ns(&self.config, &self.ack_wait_ns, consumer)
    }

    /// Takes the deliveries that expired since the last call: each one's consumer and the
    /// wall-clock time it was seen.
    pub fn take_expired(&mut self) -> Vec<(ConsumerId, i64)> {
        std::mem::take(&mut self.expired)
    }

    pub fn on_delivery(
        &mut self,
        consumer: ConsumerId,
        subject: &AckSubject<'_>,
        meta: DeliveryMeta,
        seen: Seen,
    ) -> DeliveryOutcome {
        if let Some(mut sample) =
            self.held
                .remove(&(consumer, subject.stream_seq, subject.delivered))
        {
            sample.delivered_ns = Some(seen.wall_ns);
            sample.trace_id = meta.trace_id;
            sample.parent_span = meta.parent_span;
            sample.subject = meta.subject;
            sample.labels = meta.labels;
            sample.source = SampleSource::Reordered;
            return DeliveryOutcome::Completed(sample);
        }
        let key = (consumer, subject.stream_seq);
        let delivery = Delivery {
            delivered: u32::try_from(subject.delivered).unwrap_or(u32::MAX),
            consumer_seq: subject.consumer_seq,
            stored_ns: subject.stored_ns,
            pending: subject.pending,
            seen,
            meta,
        };
        let full = self.pending.len() >= self.config.capacity;
        match self.pending.get_mut(&key) {
            Some(old) if old.current.delivered >= delivery.delivered => {
                self.stats.duplicate_deliveries += 1;
                DeliveryOutcome::Duplicate
            }
            Some(old) => {
                let superseded = std::mem::replace(&mut old.current, delivery);
                if let Some(lost) = old.previous.replace(Box::new(superseded)) {
                    self.expired.push((consumer, lost.seen.wall_ns));
                }
                old.active_mono_ns = seen.mono_ns;
                DeliveryOutcome::Stored
            }
            None if full => {
                self.stats.overflow += 1;
                DeliveryOutcome::Overflow
            }
            None => {
                self.pending.insert(
                    key,
                    Pending {
                        current: delivery,
                        previous: None,
                        active_mono_ns: seen.mono_ns,
                    },
                );
                DeliveryOutcome::Stored
            }
        }
    }

    /// Remembers that a delivery was sampled; false if it already was.
    fn complete(&mut self, key: (ConsumerId, u64, u64)) -> bool {
        let generation = self.generation.get(key.0 as usize).copied().unwrap_or(0);
        let owner = u64::from(key.0) | u64::from(generation) << 32;
        let fingerprint = FxBuildHasher.hash_one((owner, key.1, key.2)).max(1);
        // Slots follow the stream sequence, offset per consumer, so a consumer's consecutive
        // deliveries touch neighbouring slots (cache lines already loaded) instead of random ones.
        let spread = owner.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mask = self.completed.len() - 1;
        let slot = &mut self.completed[key.1.wrapping_add(spread) as usize & mask];
        if *slot == fingerprint {
            return false;
        }
        *slot = fingerprint;
        true
    }

    /// Removes and returns the pending delivery of `key` that `matches`, if any.
    fn take_delivery(
        &mut self,
        key: (ConsumerId, u64),
        matches: impl Fn(&Delivery) -> bool,
    ) -> Option<Delivery> {
        let entry = self.pending.get_mut(&key)?;
        if entry.previous.as_deref().is_some_and(&matches) {
            return entry.previous.take().map(|d| *d);
        }
        if !matches(&entry.current) {
            return None;
        }
        let entry = self.pending.remove(&key)?;
        if let Some(lost) = entry.previous {
            self.expired.push((key.0, lost.seen.wall_ns));
        }
        Some(entry.current)
    }

    pub fn on_ack(
        &mut self,
        consumer: ConsumerId,
        subject: &AckSubject<'_>,
        payload: &AckPayload,
        ack_sync: bool,
        seen: Seen,
    ) -> AckOutcome {
        let key = (consumer, subject.stream_seq);
        if payload.kind == AckKind::Progress {
            if let Some(p) = self.pending.get_mut(&key) {
                p.active_mono_ns = seen.mono_ns;
            }
            return AckOutcome::Progress;
        }
        if !self.complete((consumer, subject.stream_seq, subject.delivered)) {
            self.stats.duplicate_acks += 1;
            // A delivery it answers is answered all the same (a server that lost its consumer
            // state redelivers as first deliveries): it must not wait here and expire.
            let _ = self.take_delivery(key, |d| d.matches(subject.delivered, subject.consumer_seq));
            return AckOutcome::Duplicate;
        }
        let e2e = seen.wall_ns.saturating_sub(subject.stored_ns);
        let mut sample = Sample {
            consumer,
            stream_seq: subject.stream_seq,
            consumer_seq: subject.consumer_seq,
            deliveries: u32::try_from(subject.delivered).unwrap_or(u32::MAX),
            pending: subject.pending,
            stored_ns: Some(subject.stored_ns),
            delivered_ns: None,
            acked_ns: seen.wall_ns,
            kind: payload.kind,
            ack_latency_ns: None,
            e2e_latency_ns: Some(e2e.max(0) as u64),
            trace_id: None,
            parent_span: None,
            subject: Sym::NONE,
            labels: crate::model::NO_LABELS,
            source: SampleSource::AckOnly,
            ack_sync,
        };
        if let Some(d) =
            self.take_delivery(key, |d| d.matches(subject.delivered, subject.consumer_seq))
        {
            sample.delivered_ns = Some(d.seen.wall_ns);
            sample.ack_latency_ns = Some(seen.mono_ns.saturating_sub(d.seen.mono_ns));
            sample.trace_id = d.meta.trace_id;
            sample.parent_span = d.meta.parent_span;
            sample.subject = d.meta.subject;
            sample.labels = d.meta.labels;
            sample.source = SampleSource::Observed;
            return AckOutcome::Sample(sample);
        }
        // Held acks are bounded by the completed memory; beyond it they go out at once.
        if self.config.metric_wait_ns == 0 || self.held.len() >= self.config.completed_capacity {
            return AckOutcome::Sample(sample);
        }
        let key = (consumer, subject.stream_seq, subject.delivered);
        self.held.insert(key, sample);
        self.held_order.push_back((key, seen.mono_ns));
        AckOutcome::Held
    }

    /// Releases held ack-only samples older than `metric_wait`.
    pub fn release(&mut self, now_mono_ns: u64, mut out: impl FnMut(Sample)) {
        while let Some(&(key, held_at)) = self.held_order.front() {
            if now_mono_ns.saturating_sub(held_at) < self.config.metric_wait_ns {
                break;
            }
            self.held_order.pop_front();
            if let Some(sample) = self.held.remove(&key) {
                out(sample);
            }
        }
    }

    pub fn on_metric(&mut self, consumer: ConsumerId, m: &AckMetric) -> AckOutcome {
        if let Some(mut sample) = self.held.remove(&(consumer, m.stream_seq, m.deliveries)) {
            sample.ack_latency_ns = Some(m.ack_time_ns);
            sample.source = SampleSource::ServerMetric;
            return AckOutcome::Sample(sample);
        }
        if !self.complete((consumer, m.stream_seq, m.deliveries)) {
            self.stats.duplicate_acks += 1;
            return AckOutcome::Duplicate;
        }
        let mut sample = Sample {
            consumer,
            stream_seq: m.stream_seq,
            consumer_seq: m.consumer_seq,
            deliveries: u32::try_from(m.deliveries).unwrap_or(u32::MAX),
            pending: 0,
            stored_ns: None,
            delivered_ns: None,
            acked_ns: m.timestamp_ns,
            kind: AckKind::Ack,
            ack_latency_ns: Some(m.ack_time_ns),
            e2e_latency_ns: None,
            trace_id: None,
            parent_span: None,
            subject: Sym::NONE,
            labels: crate::model::NO_LABELS,
            source: SampleSource::ServerMetric,
            ack_sync: false,
        };
        if let Some(d) = self.take_delivery((consumer, m.stream_seq), |d| {
            d.delivered as u64 == m.deliveries
        }) {
            sample.pending = d.pending;
            sample.stored_ns = Some(d.stored_ns);
            sample.delivered_ns = Some(d.seen.wall_ns);
            sample.e2e_latency_ns = Some(m.timestamp_ns.saturating_sub(d.stored_ns).max(0) as u64);
            sample.trace_id = d.meta.trace_id;
            sample.parent_span = d.meta.parent_span;
            sample.subject = d.meta.subject;
            sample.labels = d.meta.labels;
        }
        AckOutcome::Sample(sample)
    }

    /// Drops every delivery of `consumer` waiting here (a consumer found to need no acks);
    /// returns how many. They are not expired: no ack was ever coming.
    pub fn forget(&mut self, consumer: ConsumerId) -> usize {
        self.drop_waiting(|c| c == consumer)
    }

    /// Drops the waiting deliveries of the consumers `gone` says, a superseded one too, and
    /// those already let go but not taken (no ack was coming for them either); returns how
    /// many.
    fn drop_waiting(&mut self, gone: impl Fn(ConsumerId) -> bool) -> usize {
        let mut dropped = 0;
        self.pending.retain(|&(c, _), p| {
            let keep = !gone(c);
            if !keep {
                dropped += 1 + usize::from(p.previous.is_some());
            }
            keep
        });
        let before = self.expired.len();
        self.expired.retain(|&(c, _)| !gone(c));
        dropped + (before - self.expired.len())
    }

    /// Lets go of everything about `consumers` before their ids go to other consumers: waiting
    /// deliveries, held acks, `ack_wait`, and (by a new generation of each id) the deliveries
    /// they completed. One pass over each table, however many go. Returns the deliveries and
    /// acks dropped.
    pub fn drop_consumers(&mut self, consumers: &[ConsumerId]) -> usize {
        let gone = id_mask(consumers);
        let is_gone = |c: ConsumerId| gone.get(c as usize).copied().unwrap_or(false);
        let held = self.held.len();
        self.held.retain(|k, _| !is_gone(k.0));
        let dropped = self.drop_waiting(is_gone) + (held - self.held.len());
        for &c in consumers {
            let i = c as usize;
            if let Some(w) = self.ack_wait_ns.get_mut(i) {
                *w = 0;
            }
            if self.generation.len() <= i {
                self.generation.resize(i + 1, 0);
            }
            self.generation[i] = self.generation[i].wrapping_add(1);
        }
        dropped
    }

    /// Removes deliveries that waited longer than their consumer's bound; they are counted in
    /// [`Joiner::take_expired`].
    pub fn expire(&mut self, now_mono_ns: u64) {
        let (config, waits, expired) = (&self.config, &self.ack_wait_ns, &mut self.expired);
        self.pending.retain(|&(consumer, _), p| {
            let keep =
                now_mono_ns.saturating_sub(p.active_mono_ns) <= expiry_ns(config, waits, consumer);
            if !keep {
                expired.push((consumer, p.current.seen.wall_ns));
                if let Some(lost) = &p.previous {
                    expired.push((consumer, lost.seen.wall_ns));
                }
            }
            keep
        });
    }
}

fn expiry_ns(config: &JoinConfig, ack_wait_ns: &[u64], consumer: ConsumerId) -> u64 {
    let ack_wait = match ack_wait_ns.get(consumer as usize) {
        Some(&w) if w > 0 => w,
        _ => config.default_ack_wait_ns,
    };
    ack_wait.saturating_mul(2).min(config.max_pending_age_ns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::acks::{parse_ack_payload, parse_ack_subject};
    use crate::model::NO_LABELS;

    const MS: u64 = 1_000_000;

    fn joiner(capacity: usize) -> Joiner {
        Joiner::new(JoinConfig {
            capacity,
            ..JoinConfig::default()
        })
    }

    fn seen(ms: u64) -> Seen {
        Seen {
            mono_ns: ms * MS,
            wall_ns: 1_790_000_000_000_000_000 + (ms * MS) as i64,
        }
    }

    fn meta(trace: u8) -> DeliveryMeta {
        DeliveryMeta {
            trace_id: Some(TraceId([trace; 16])),
            parent_span: None,
            subject: Sym(3),
            labels: NO_LABELS,
        }
    }

    fn subj(delivered: u64, seq: u64) -> String {
        format!("$JS.ACK.S.C.{delivered}.{seq}.{seq}.1790000000000000000.0")
    }

    fn ack(j: &mut Joiner, subject: &str, payload: &[u8], at: u64) -> AckOutcome {
        let s = parse_ack_subject(subject).unwrap();
        j.on_ack(0, &s, &parse_ack_payload(payload).unwrap(), false, seen(at))
    }

    #[test]
    fn delivery_and_ack_join_into_one_sample() {
        let mut j = joiner(10);
        let s = subj(1, 42);
        let d = j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(9), seen(100));
        assert_eq!(d, DeliveryOutcome::Stored);
        let AckOutcome::Sample(sample) = ack(&mut j, &s, b"+ACK", 117) else {
            panic!("expected a sample");
        };
        assert_eq!(sample.ack_latency_ns, Some(17 * MS));
        assert_eq!(sample.e2e_latency_ns, Some(117 * MS));
        assert_eq!(sample.trace_id, Some(TraceId([9; 16])));
        assert_eq!(sample.source, SampleSource::Observed);
        assert_eq!(sample.subject, Sym(3));
        assert_eq!(j.pending_len(), 0);
        // The same ack again is a duplicate.
        assert_eq!(ack(&mut j, &s, b"+ACK", 118), AckOutcome::Duplicate);
    }

    #[test]
    fn unmatched_ack_is_held_then_gives_an_e2e_sample() {
        let mut j = joiner(10);
        assert_eq!(ack(&mut j, &subj(1, 5), b"", 20), AckOutcome::Held);
        let mut out = Vec::new();
        j.release(20 * MS + 499 * MS, |s| out.push(s));
        assert!(out.is_empty(), "held for metric_wait (500ms)");
        j.release(20 * MS + 500 * MS, |s| out.push(s));
        let [sample] = out.as_slice() else {
            panic!("expected one sample, got {out:?}");
        };
        assert_eq!(sample.source, SampleSource::AckOnly);
        assert_eq!(sample.ack_latency_ns, None);
        assert_eq!(sample.e2e_latency_ns, Some(20 * MS));
    }

    #[test]
    fn held_ack_and_its_metric_merge() {
        let mut j = joiner(10);
        assert_eq!(ack(&mut j, &subj(1, 6), b"+ACK", 30), AckOutcome::Held);
        let metric = AckMetric {
            stream_seq: 6,
            consumer_seq: 6,
            deliveries: 1,
            ack_time_ns: 4 * MS,
            timestamp_ns: 0,
        };
        let AckOutcome::Sample(s) = j.on_metric(0, &metric) else {
            panic!("expected the merged sample");
        };
        assert_eq!(s.source, SampleSource::ServerMetric);
        assert_eq!(
            (s.ack_latency_ns, s.e2e_latency_ns),
            (Some(4 * MS), Some(30 * MS))
        );
        let mut out = Vec::new();
        j.release(u64::MAX, |s| out.push(s));
        assert!(out.is_empty());
        assert_eq!(j.on_metric(0, &metric), AckOutcome::Duplicate);
    }

    #[test]
    fn redelivery_supersedes_the_earlier_delivery() {
        let mut j = joiner(10);
        let first = subj(1, 7);
        let second = subj(2, 7);
        j.on_delivery(0, &parse_ack_subject(&first).unwrap(), meta(1), seen(0));
        let d = j.on_delivery(
            0,
            &parse_ack_subject(&second).unwrap(),
            meta(1),
            seen(30_000),
        );
        assert_eq!(d, DeliveryOutcome::Stored);
        assert_eq!(j.take_expired().len(), 0);
        // The ack of the redelivery ends both: the first delivery was never acked.
        let AckOutcome::Sample(s) = ack(&mut j, &second, b"+ACK", 30_005) else {
            panic!()
        };
        assert_eq!((s.deliveries, s.ack_latency_ns), (2, Some(5 * MS)));
        assert_eq!(j.take_expired(), vec![(0, seen(0).wall_ns)]);
        assert_eq!(j.pending_len(), 0);
    }

    #[test]
    fn forgetting_a_consumer_drops_all_it_had_waiting() {
        let mut j = joiner(10);
        let d = |j: &mut Joiner, consumer, delivered, seq, ms| {
            let subject = subj(delivered, seq);
            j.on_delivery(
                consumer,
                &parse_ack_subject(&subject).unwrap(),
                meta(1),
                seen(ms),
            );
        };
        d(&mut j, 0, 1, 7, 0);
        d(&mut j, 0, 2, 7, 10);
        d(&mut j, 0, 1, 8, 10);
        d(&mut j, 1, 1, 7, 10);
        // A third delivery of seq 7 lets the first go as expired, not yet taken.
        d(&mut j, 0, 3, 7, 20);
        assert_eq!(j.forget(0), 4, "two of seq 7 waiting, one of 8, one let go");
        assert_eq!(j.pending_len(), 1);
        assert!(j.take_expired().is_empty());
    }

    #[test]
    fn a_consumer_given_a_dropped_ones_id_starts_clean() {
        let mut j = joiner(10);
        let s = subj(1, 42);
        j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(1), seen(0));
        assert!(matches!(ack(&mut j, &s, b"+ACK", 5), AckOutcome::Sample(_)));
        j.set_ack_wait(0, 7 * MS);
        assert_eq!(ack(&mut j, &subj(1, 43), b"+ACK", 6), AckOutcome::Held);
        assert_eq!(j.drop_consumers(&[0]), 1, "the held ack");
        assert_eq!(
            j.expiry_ns(0),
            2 * JoinConfig::default().default_ack_wait_ns
        );
        // Another consumer on the same stream, now id 0, reads the same message: not a
        // duplicate of the one before.
        j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(2), seen(10));
        let AckOutcome::Sample(sample) = ack(&mut j, &s, b"+ACK", 12) else {
            panic!("the new consumer's ack was taken for the old one's");
        };
        assert_eq!(sample.ack_latency_ns, Some(2 * MS));
        let mut released = Vec::new();
        j.release(u64::MAX, |s| released.push(s));
        assert!(released.is_empty(), "the dropped ack is gone");
    }

    #[test]
    fn a_nak_handled_after_its_redelivery_still_matches() {
        let mut j = joiner(10);
        let first = subj(1, 9);
        let second = subj(2, 9);
        j.on_delivery(0, &parse_ack_subject(&first).unwrap(), meta(1), seen(0));
        j.on_delivery(0, &parse_ack_subject(&second).unwrap(), meta(1), seen(5));
        let AckOutcome::Sample(nak) = ack(&mut j, &first, b"-NAK", 4) else {
            panic!()
        };
        assert_eq!(
            (nak.kind, nak.deliveries, nak.ack_latency_ns),
            (AckKind::Nak, 1, Some(4 * MS))
        );
        let AckOutcome::Sample(done) = ack(&mut j, &second, b"+ACK", 8) else {
            panic!()
        };
        assert_eq!((done.deliveries, done.ack_latency_ns), (2, Some(3 * MS)));
        assert_eq!(j.take_expired().len(), 0);
    }

    #[test]
    fn an_ack_that_overtakes_its_delivery_still_gets_its_trace_id() {
        let mut j = joiner(10);
        let s = subj(1, 13);
        assert_eq!(ack(&mut j, &s, b"+ACK", 10), AckOutcome::Held);
        let d = j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(8), seen(11));
        let DeliveryOutcome::Completed(sample) = d else {
            panic!("expected the held ack to complete, got {d:?}");
        };
        assert_eq!(sample.source, SampleSource::Reordered);
        assert_eq!(sample.trace_id, Some(TraceId([8; 16])));
        assert_eq!(sample.ack_latency_ns, None);
        assert_eq!(j.pending_len(), 0);
        let mut released = Vec::new();
        j.release(u64::MAX, |s| released.push(s));
        assert!(released.is_empty());
    }

    #[test]
    fn progress_keeps_the_delivery_pending() {
        let mut j = joiner(10);
        let s = subj(1, 8);
        j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(1), seen(0));
        assert_eq!(ack(&mut j, &s, b"+WPI", 10), AckOutcome::Progress);
        assert_eq!(j.pending_len(), 1);
        let AckOutcome::Sample(done) = ack(&mut j, &s, b"-NAK", 25) else {
            panic!()
        };
        assert_eq!(done.kind, AckKind::Nak);
        assert_eq!(done.ack_latency_ns, Some(25 * MS));
    }

    #[test]
    fn table_is_bounded_and_overflow_counted() {
        let mut j = joiner(2);
        for seq in 1..=3 {
            let s = subj(1, seq);
            j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(1), seen(0));
        }
        assert_eq!(j.pending_len(), 2);
        assert_eq!(j.stats.overflow, 1);
        let s = subj(1, 1);
        let d = j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(1), seen(0));
        assert_eq!(d, DeliveryOutcome::Duplicate);
    }

    #[test]
    fn expiry_follows_ack_wait() {
        let mut j = joiner(10);
        j.set_ack_wait(0, 100 * MS);
        for seq in 1..=3 {
            let s = subj(1, seq);
            j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(1), seen(seq * 100));
        }
        j.expire(450 * MS);
        let expired = j.take_expired().len();
        assert_eq!(
            expired, 2,
            "deliveries at 100ms and 200ms are older than 2 x 100ms"
        );
        assert_eq!(j.pending_len(), 1);
    }

    #[test]
    fn metric_and_ack_of_one_delivery_give_one_sample() {
        let mut j = joiner(10);
        let s = subj(1, 11);
        j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(4), seen(0));
        let AckOutcome::Sample(observed) = ack(&mut j, &s, b"+ACK", 3) else {
            panic!()
        };
        let metric = AckMetric {
            stream_seq: 11,
            consumer_seq: 11,
            deliveries: 1,
            ack_time_ns: 3 * MS,
            timestamp_ns: observed.acked_ns,
        };
        assert_eq!(j.on_metric(0, &metric), AckOutcome::Duplicate);

        // Metric first: it takes the pending delivery's trace id, and the ack is the duplicate.
        let s = subj(1, 12);
        j.on_delivery(0, &parse_ack_subject(&s).unwrap(), meta(5), seen(10));
        let metric = AckMetric {
            stream_seq: 12,
            ..metric
        };
        let AckOutcome::Sample(m) = j.on_metric(0, &metric) else {
            panic!()
        };
        assert_eq!(m.source, SampleSource::ServerMetric);
        assert_eq!(m.trace_id, Some(TraceId([5; 16])));
        assert_eq!(m.ack_latency_ns, Some(3 * MS));
        assert_eq!(ack(&mut j, &s, b"+ACK", 13), AckOutcome::Duplicate);
        assert_eq!(j.stats.duplicate_acks, 2);
    }

    #[test]
    fn completed_memory_is_bounded() {
        let mut j = Joiner::new(JoinConfig {
            completed_capacity: 4,
            ..JoinConfig::default()
        });
        assert_eq!(j.completed.len(), 4);
        for seq in 1..=100 {
            ack(&mut j, &subj(1, seq), b"+ACK", 1);
        }
        // The newest is remembered; most older ones are forgotten, and memory stays at 4 slots.
        assert_eq!(
            ack(&mut j, &subj(1, 100), b"+ACK", 2),
            AckOutcome::Duplicate
        );
        let forgotten = (1..=99)
            .filter(|&seq| ack(&mut j, &subj(1, seq), b"+ACK", 3) != AckOutcome::Duplicate)
            .count();
        assert!(forgotten >= 95, "{forgotten}");
        assert_eq!(j.completed.len(), 4);
    }
}
