//! The join: a delivery and its ack share the exact ack reply subject; together they make one
//! [`Sample`].
//!
//! The table is keyed by (consumer, stream sequence): a reply subject names exactly one delivery
//! of one stream message to one consumer, and a redelivery of the same message (higher delivery
//! count) replaces, and so expires, the earlier one. An ack matches when its delivery count and
//! consumer sequence equal the pending delivery's, which is the exact reply subject.
//!
//! Everything here is bounded: the pending table has a capacity (new deliveries beyond it are
//! counted, not stored) and the set of completed deliveries, used to drop duplicates (double
//! acks, a server ack metric for a delivery already sampled), is a FIFO of fixed size.

use std::collections::VecDeque;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::config::JoinConfig;
use crate::model::{
    AckKind, AckPayload, AckSubject, ConsumerId, Labels, Sample, SampleSource, Seen, Sym, TraceId,
};

/// What the delivery tap learned from a delivery's headers and subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryMeta {
    pub trace_id: Option<TraceId>,
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

#[derive(Debug, Clone)]
struct Pending {
    delivered: u32,
    consumer_seq: u64,
    stored_ns: i64,
    pending: u64,
    seen: Seen,
    /// Last delivery or progress: the age used for expiry.
    active_mono_ns: u64,
    meta: DeliveryMeta,
}

/// What a delivery did to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A new pending delivery; `expired` when it replaced an earlier, never-acked delivery.
    Stored { expired: bool },
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
    completed: FxHashSet<(ConsumerId, u64, u64)>,
    completed_order: VecDeque<(ConsumerId, u64, u64)>,
    /// `ack_wait` per consumer, in nanoseconds, when known.
    ack_wait_ns: Vec<u64>,
    pub stats: JoinStats,
}

impl Joiner {
    pub fn new(config: JoinConfig) -> Self {
        Self {
            pending: FxHashMap::default(),
            completed: FxHashSet::default(),
            completed_order: VecDeque::new(),
            ack_wait_ns: Vec::new(),
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

    /// Deliveries of `consumer` waiting for their ack.
    pub fn pending_of(&self, consumer: ConsumerId) -> usize {
        self.pending.keys().filter(|(c, _)| *c == consumer).count()
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
        let ack_wait = match self.ack_wait_ns.get(consumer as usize) {
            Some(&w) if w > 0 => w,
            _ => self.config.default_ack_wait_ns,
        };
        ack_wait
            .saturating_mul(2)
            .min(self.config.max_pending_age_ns)
    }

    pub fn on_delivery(
        &mut self,
        consumer: ConsumerId,
        subject: &AckSubject<'_>,
        meta: DeliveryMeta,
        seen: Seen,
    ) -> DeliveryOutcome {
        let key = (consumer, subject.stream_seq);
        let delivered = u32::try_from(subject.delivered).unwrap_or(u32::MAX);
        let entry = Pending {
            delivered,
            consumer_seq: subject.consumer_seq,
            stored_ns: subject.stored_ns,
            pending: subject.pending,
            seen,
            active_mono_ns: seen.mono_ns,
            meta,
        };
        let full = self.pending.len() >= self.config.capacity;
        match self.pending.get_mut(&key) {
            Some(old) if old.delivered >= delivered => {
                self.stats.duplicate_deliveries += 1;
                DeliveryOutcome::Duplicate
            }
            Some(old) => {
                *old = entry;
                DeliveryOutcome::Stored { expired: true }
            }
            None if full => {
                self.stats.overflow += 1;
                DeliveryOutcome::Overflow
            }
            None => {
                self.pending.insert(key, entry);
                DeliveryOutcome::Stored { expired: false }
            }
        }
    }

    /// Remembers that a delivery was sampled; the oldest memory goes first.
    fn complete(&mut self, key: (ConsumerId, u64, u64)) -> bool {
        if !self.completed.insert(key) {
            return false;
        }
        if self.completed_order.len() >= self.config.completed_capacity
            && let Some(old) = self.completed_order.pop_front()
        {
            self.completed.remove(&old);
        }
        self.completed_order.push_back(key);
        true
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
        let matches = |p: &Pending| {
            p.delivered as u64 == subject.delivered && p.consumer_seq == subject.consumer_seq
        };
        if payload.kind == AckKind::Progress {
            if let Some(p) = self.pending.get_mut(&key).filter(|p| matches(p)) {
                p.active_mono_ns = seen.mono_ns;
            }
            return AckOutcome::Progress;
        }
        if !self.complete((consumer, subject.stream_seq, subject.delivered)) {
            self.stats.duplicate_acks += 1;
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
            subject: Sym::NONE,
            labels: crate::model::NO_LABELS,
            source: SampleSource::AckOnly,
            ack_sync,
        };
        if self.pending.get(&key).is_some_and(matches)
            && let Some(p) = self.pending.remove(&key)
        {
            sample.delivered_ns = Some(p.seen.wall_ns);
            sample.ack_latency_ns = Some(seen.mono_ns.saturating_sub(p.seen.mono_ns));
            sample.trace_id = p.meta.trace_id;
            sample.subject = p.meta.subject;
            sample.labels = p.meta.labels;
            sample.source = SampleSource::Observed;
        }
        AckOutcome::Sample(sample)
    }

    pub fn on_metric(&mut self, consumer: ConsumerId, m: &AckMetric) -> AckOutcome {
        if !self.complete((consumer, m.stream_seq, m.deliveries)) {
            self.stats.duplicate_acks += 1;
            return AckOutcome::Duplicate;
        }
        let key = (consumer, m.stream_seq);
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
            subject: Sym::NONE,
            labels: crate::model::NO_LABELS,
            source: SampleSource::ServerMetric,
            ack_sync: false,
        };
        if self
            .pending
            .get(&key)
            .is_some_and(|p| p.delivered as u64 == m.deliveries)
            && let Some(p) = self.pending.remove(&key)
        {
            sample.pending = p.pending;
            sample.stored_ns = Some(p.stored_ns);
            sample.delivered_ns = Some(p.seen.wall_ns);
            sample.e2e_latency_ns = Some(m.timestamp_ns.saturating_sub(p.stored_ns).max(0) as u64);
            sample.trace_id = p.meta.trace_id;
            sample.subject = p.meta.subject;
            sample.labels = p.meta.labels;
        }
        AckOutcome::Sample(sample)
    }

    /// Removes deliveries that waited longer than their consumer's bound; calls `expired` for
    /// each with its consumer.
    pub fn expire(&mut self, now_mono_ns: u64, mut expired: impl FnMut(ConsumerId)) {
        let default = self.config.default_ack_wait_ns;
        let cap = self.config.max_pending_age_ns;
        let waits = &self.ack_wait_ns;
        self.pending.retain(|&(consumer, _), p| {
            let wait = match waits.get(consumer as usize) {
                Some(&w) if w > 0 => w,
                _ => default,
            };
            let bound = wait.saturating_mul(2).min(cap);
            let keep = now_mono_ns.saturating_sub(p.active_mono_ns) <= bound;
            if !keep {
                expired(consumer);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::acks::{parse_ack_payload, parse_ack_subject};
    use crate::config::Config;
    use crate::model::NO_LABELS;

    const MS: u64 = 1_000_000;

    fn joiner(capacity: usize) -> Joiner {
        let mut c = Config::default().join;
        c.capacity = capacity;
        Joiner::new(c)
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
        assert_eq!(d, DeliveryOutcome::Stored { expired: false });
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
    fn unmatched_ack_gives_an_e2e_sample() {
        let mut j = joiner(10);
        let AckOutcome::Sample(sample) = ack(&mut j, &subj(1, 5), b"", 20) else {
            panic!("expected a sample");
        };
        assert_eq!(sample.source, SampleSource::AckOnly);
        assert_eq!(sample.ack_latency_ns, None);
        assert_eq!(sample.e2e_latency_ns, Some(20 * MS));
    }

    #[test]
    fn redelivery_expires_the_earlier_delivery() {
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
        assert_eq!(d, DeliveryOutcome::Stored { expired: true });
        // A late ack of the first delivery does not match the second.
        let AckOutcome::Sample(late) = ack(&mut j, &first, b"+ACK", 30_001) else {
            panic!()
        };
        assert_eq!(late.source, SampleSource::AckOnly);
        let AckOutcome::Sample(s) = ack(&mut j, &second, b"+ACK", 30_005) else {
            panic!()
        };
        assert_eq!((s.deliveries, s.ack_latency_ns), (2, Some(5 * MS)));
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
        let mut expired = 0;
        j.expire(450 * MS, |_| expired += 1);
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
        let mut c = Config::default().join;
        c.completed_capacity = 2;
        let mut j = Joiner::new(c);
        for seq in 1..=3 {
            ack(&mut j, &subj(1, seq), b"+ACK", 1);
        }
        // The first is forgotten, so its repeat is no longer recognised as a duplicate.
        assert!(matches!(
            ack(&mut j, &subj(1, 1), b"+ACK", 2),
            AckOutcome::Sample(_)
        ));
        assert_eq!(ack(&mut j, &subj(1, 3), b"+ACK", 2), AckOutcome::Duplicate);
    }
}
