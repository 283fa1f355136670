//! A bounded ring of recent raw samples, stored by column.
//!
//! Windows and grids are fixed at record time; the ring keeps the raw facts so a later question
//! (another tick period, another filter, another latency) can re-bin them. When full, the oldest
//! sample is overwritten and counted.

use crate::model::{
    AckKind, ConsumerId, FORGOTTEN_CONSUMER, Labels, Sample, SampleSource, Sym, TraceId,
};

const NONE_I64: i64 = i64::MIN;
const NONE_U64: u64 = u64::MAX;

/// One row read back from the ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RingRow {
    pub consumer: ConsumerId,
    pub stream_seq: u64,
    pub deliveries: u32,
    pub acked_ns: i64,
    pub delivered_ns: Option<i64>,
    pub ack_latency_ns: Option<u64>,
    pub e2e_latency_ns: Option<u64>,
    pub kind: AckKind,
    pub source: SampleSource,
    pub trace_id: Option<TraceId>,
    pub subject: Sym,
    pub labels: Labels,
}

/// Bytes one sample takes in the ring, all columns together.
pub const ROW_BYTES: usize = std::mem::size_of::<ConsumerId>()
    + std::mem::size_of::<u64>() * 5
    + std::mem::size_of::<u32>()
    + 1
    + 16
    + std::mem::size_of::<Sym>()
    + std::mem::size_of::<Labels>();

/// Columnar ring buffer of samples.
#[derive(Debug, Clone)]
pub struct SampleRing {
    capacity: usize,
    /// Next slot to write.
    head: usize,
    len: usize,
    overwritten: u64,
    consumer: Vec<ConsumerId>,
    stream_seq: Vec<u64>,
    deliveries: Vec<u32>,
    acked_ns: Vec<i64>,
    delivered_ns: Vec<i64>,
    ack_latency_ns: Vec<u64>,
    e2e_latency_ns: Vec<u64>,
    /// Ack kind in the low nibble, source in the high nibble.
    kind_source: Vec<u8>,
    /// All zero when absent (a valid trace id is never all zero).
    trace_id: Vec<[u8; 16]>,
    subject: Vec<Sym>,
    labels: Vec<Labels>,
}

fn kind_code(k: AckKind) -> u8 {
    k as u8
}

fn kind_from(code: u8) -> AckKind {
    AckKind::ALL[(code & 0x0f) as usize % AckKind::ALL.len()]
}

fn source_code(s: SampleSource) -> u8 {
    match s {
        SampleSource::Observed => 0,
        SampleSource::AckOnly => 1,
        SampleSource::ServerMetric => 2,
        SampleSource::Reordered => 3,
    }
}

fn source_from(code: u8) -> SampleSource {
    match code >> 4 {
        0 => SampleSource::Observed,
        1 => SampleSource::AckOnly,
        2 => SampleSource::ServerMetric,
        _ => SampleSource::Reordered,
    }
}

impl SampleRing {
    pub fn new(capacity: usize) -> Self {
        // Reserved once, so filling never reallocates and copies; pages become resident only
        // as rows are written.
        let capacity = capacity.max(1);
        Self {
            capacity,
            head: 0,
            len: 0,
            overwritten: 0,
            consumer: Vec::with_capacity(capacity),
            stream_seq: Vec::with_capacity(capacity),
            deliveries: Vec::with_capacity(capacity),
            acked_ns: Vec::with_capacity(capacity),
            delivered_ns: Vec::with_capacity(capacity),
            ack_latency_ns: Vec::with_capacity(capacity),
            e2e_latency_ns: Vec::with_capacity(capacity),
            kind_source: Vec::with_capacity(capacity),
            trace_id: Vec::with_capacity(capacity),
            subject: Vec::with_capacity(capacity),
            labels: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Samples overwritten because the ring was full.
    pub fn overwritten(&self) -> u64 {
        self.overwritten
    }

    pub fn push(&mut self, s: &Sample) {
        let kind_source = kind_code(s.kind) | (source_code(s.source) << 4);
        let trace = s.trace_id.map_or([0; 16], |t| t.0);
        if self.consumer.len() < self.capacity {
            // Still filling: the columns grow up to `capacity`, then stay.
            self.consumer.push(s.consumer);
            self.stream_seq.push(s.stream_seq);
            self.deliveries.push(s.deliveries);
            self.acked_ns.push(s.acked_ns);
            self.delivered_ns.push(s.delivered_ns.unwrap_or(NONE_I64));
            self.ack_latency_ns
                .push(s.ack_latency_ns.unwrap_or(NONE_U64));
            self.e2e_latency_ns
                .push(s.e2e_latency_ns.unwrap_or(NONE_U64));
            self.kind_source.push(kind_source);
            self.trace_id.push(trace);
            self.subject.push(s.subject);
            self.labels.push(s.labels);
        } else {
            let i = self.head;
            self.consumer[i] = s.consumer;
            self.stream_seq[i] = s.stream_seq;
            self.deliveries[i] = s.deliveries;
            self.acked_ns[i] = s.acked_ns;
            self.delivered_ns[i] = s.delivered_ns.unwrap_or(NONE_I64);
            self.ack_latency_ns[i] = s.ack_latency_ns.unwrap_or(NONE_U64);
            self.e2e_latency_ns[i] = s.e2e_latency_ns.unwrap_or(NONE_U64);
            self.kind_source[i] = kind_source;
            self.trace_id[i] = trace;
            self.subject[i] = s.subject;
            self.labels[i] = s.labels;
            self.overwritten += 1;
        }
        self.head = (self.head + 1) % self.capacity;
        self.len = (self.len + 1).min(self.capacity);
    }

    fn row(&self, i: usize) -> RingRow {
        let trace = self.trace_id[i];
        RingRow {
            consumer: self.consumer[i],
            stream_seq: self.stream_seq[i],
            deliveries: self.deliveries[i],
            acked_ns: self.acked_ns[i],
            delivered_ns: Some(self.delivered_ns[i]).filter(|&v| v != NONE_I64),
            ack_latency_ns: Some(self.ack_latency_ns[i]).filter(|&v| v != NONE_U64),
            e2e_latency_ns: Some(self.e2e_latency_ns[i]).filter(|&v| v != NONE_U64),
            kind: kind_from(self.kind_source[i]),
            source: source_from(self.kind_source[i]),
            trace_id: (trace != [0; 16]).then_some(TraceId(trace)),
            subject: self.subject[i],
            labels: self.labels[i],
        }
    }

    /// Rewrites the rows that name a forgotten consumer or symbol, before their ids go to new
    /// names: the consumer becomes [`FORGOTTEN_CONSUMER`], the symbol [`Sym::NONE`]; the rest
    /// of the row (times, latencies, trace id) stays. Returns the rows rewritten.
    pub fn forget(
        &mut self,
        consumer: impl Fn(ConsumerId) -> bool,
        symbol: impl Fn(Sym) -> bool,
    ) -> usize {
        let mut rewritten = 0;
        for i in 0..self.consumer.len() {
            let mut hit = false;
            if self.consumer[i] != FORGOTTEN_CONSUMER && consumer(self.consumer[i]) {
                self.consumer[i] = FORGOTTEN_CONSUMER;
                hit = true;
            }
            for s in std::iter::once(&mut self.subject[i]).chain(self.labels[i].iter_mut()) {
                if !s.is_none() && symbol(*s) {
                    *s = Sym::NONE;
                    hit = true;
                }
            }
            rewritten += usize::from(hit);
        }
        rewritten
    }

    /// Consumer, ack time and delivery time (if known) of the rows acked at `since_ns` or
    /// later, newest first, without reading the other columns. Rows are pushed in about the
    /// order of their acks, a held one at most `late_ns` after its ack: the walk stops at the
    /// first row acked `late_ns` before `since_ns`.
    pub fn recent(
        &self,
        since_ns: i64,
        late_ns: i64,
    ) -> impl Iterator<Item = (ConsumerId, i64, Option<i64>)> + '_ {
        self.newest_since(since_ns, late_ns).map(move |i| {
            let delivered = self.delivered_ns[i];
            (
                self.consumer[i],
                self.acked_ns[i],
                (delivered != NONE_I64).then_some(delivered),
            )
        })
    }

    /// The rows acked at `since_ns` or later, newest first, by the walk of [`Ring::recent`].
    pub fn rows_since(&self, since_ns: i64, late_ns: i64) -> impl Iterator<Item = RingRow> + '_ {
        self.newest_since(since_ns, late_ns)
            .map(move |i| self.row(i))
    }

    /// Slots of the rows acked at `since_ns` or later, newest first, stopping at the first row
    /// acked `late_ns` before it.
    fn newest_since(&self, since_ns: i64, late_ns: i64) -> impl Iterator<Item = usize> + '_ {
        let stop = since_ns.saturating_sub(late_ns);
        (0..self.len)
            .map(move |k| (self.head + self.capacity - 1 - k) % self.capacity)
            .take_while(move |&i| self.acked_ns[i] >= stop)
            .filter(move |&i| self.acked_ns[i] >= since_ns)
    }

    /// The ack time of the oldest row.
    pub fn oldest_acked_ns(&self) -> Option<i64> {
        if self.len == 0 {
            return None;
        }
        let oldest = if self.len < self.capacity {
            0
        } else {
            self.head
        };
        Some(self.acked_ns[oldest])
    }

    /// Rows from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = RingRow> + '_ {
        let start = if self.len < self.capacity {
            0
        } else {
            self.head
        };
        (0..self.len).map(move |k| self.row((start + k) % self.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::NO_LABELS;

    fn sample(seq: u64) -> Sample {
        Sample {
            consumer: 1,
            stream_seq: seq,
            consumer_seq: seq,
            deliveries: 1,
            pending: 0,
            stored_ns: Some(0),
            delivered_ns: if seq.is_multiple_of(2) { Some(5) } else { None },
            acked_ns: seq as i64 * 10,
            kind: if seq.is_multiple_of(3) {
                AckKind::Nak
            } else {
                AckKind::Ack
            },
            ack_latency_ns: Some(seq * 1000),
            e2e_latency_ns: None,
            trace_id: (seq % 2 == 1).then_some(TraceId([seq as u8; 16])),
            parent_span: None,
            subject: Sym(7),
            labels: NO_LABELS,
            source: SampleSource::ServerMetric,
            ack_sync: false,
        }
    }

    #[test]
    fn keeps_the_newest_and_counts_overwrites() {
        let mut ring = SampleRing::new(3);
        for seq in 1..=5 {
            ring.push(&sample(seq));
        }
        assert_eq!(ring.len(), 3);
        assert_eq!(ring.overwritten(), 2);
        let seqs: Vec<u64> = ring.iter().map(|r| r.stream_seq).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        let r = ring.iter().next().unwrap();
        assert_eq!(r.kind, AckKind::Nak);
        assert_eq!(r.source, SampleSource::ServerMetric);
        assert_eq!(r.trace_id, Some(TraceId([3; 16])));
        assert_eq!(r.delivered_ns, None);
        assert_eq!(r.e2e_latency_ns, None);
        assert_eq!(r.ack_latency_ns, Some(3000));
        assert_eq!(ring.iter().nth(1).unwrap().delivered_ns, Some(5));
    }

    #[test]
    fn forgetting_rewrites_names_and_keeps_the_facts() {
        let mut ring = SampleRing::new(4);
        for seq in 1..=4 {
            let mut s = sample(seq);
            s.consumer = seq as u32 % 2;
            s.subject = Sym(seq as u32);
            s.labels[1] = Sym(10 + seq as u32);
            ring.push(&s);
        }
        // Consumer 1 (seqs 1, 3), subject 2 and label value 14 are forgotten.
        let n = ring.forget(|c| c == 1, |s| s == Sym(2) || s == Sym(14));
        assert_eq!(n, 4);
        let rows: Vec<RingRow> = ring.iter().collect();
        let consumers: Vec<ConsumerId> = rows.iter().map(|r| r.consumer).collect();
        assert_eq!(
            consumers,
            vec![FORGOTTEN_CONSUMER, 0, FORGOTTEN_CONSUMER, 0]
        );
        let subjects: Vec<Sym> = rows.iter().map(|r| r.subject).collect();
        assert_eq!(subjects, vec![Sym(1), Sym::NONE, Sym(3), Sym(4)]);
        assert_eq!(rows[3].labels[1], Sym::NONE);
        assert_eq!(rows[2].labels[1], Sym(13));
        // Times, latencies and trace ids stay.
        assert_eq!(rows[0].ack_latency_ns, Some(1000));
        assert_eq!(rows[0].trace_id, Some(TraceId([1; 16])));
        // A forgotten row is not forgotten again.
        assert_eq!(ring.forget(|c| c == FORGOTTEN_CONSUMER, |_| false), 0);
    }
}
