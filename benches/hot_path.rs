//! The collector's hot path: parse the delivery's and the ack's reply subject, join them, record
//! the sample into windows, histograms, the phase grid and the ring. Measured per sample, beside
//! a baseline of parsing one ack subject alone, in the same run.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ackscope::collect::acks::parse_ack_subject;
use ackscope::collector::Collector;
use ackscope::config::Config;
use ackscope::model::Seen;

const T0: i64 = 1_790_000_000_000_000_000;
const CONSUMERS: u32 = 200;

/// Reply subjects of consecutive deliveries, written in place: consumer `srv-NNN` cycles through
/// 200 consumers and the zero-padded stream/consumer sequences count up, so no delivery repeats
/// and the subject is in cache, as a subject fresh off the socket is.
struct Subjects {
    buf: Vec<u8>,
    consumer_at: usize,
    seqs_at: [usize; 2],
    consumer: u32,
}

const SEQ_DIGITS: usize = 12;

impl Subjects {
    fn new() -> Self {
        let zeros = "0".repeat(SEQ_DIGITS);
        let text = format!("$JS.ACK.GAME.srv-000.1.{zeros}.{zeros}.{T0}.3");
        let consumer_at = text.find("srv-").unwrap() + 4;
        let first = consumer_at + 6;
        Self {
            buf: text.into_bytes(),
            consumer_at,
            seqs_at: [first, first + SEQ_DIGITS + 1],
            consumer: CONSUMERS - 1,
        }
    }

    fn increment(digits: &mut [u8]) {
        for d in digits.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                return;
            }
        }
    }

    /// The next delivery's reply subject.
    fn next(&mut self) -> &str {
        self.consumer = (self.consumer + 1) % CONSUMERS;
        let c = self.consumer;
        let at = self.consumer_at;
        self.buf[at..at + 3].copy_from_slice(&[
            b'0' + (c / 100) as u8,
            b'0' + (c / 10 % 10) as u8,
            b'0' + (c % 10) as u8,
        ]);
        if c == 0 {
            for at in self.seqs_at {
                Self::increment(&mut self.buf[at..at + SEQ_DIGITS]);
            }
        }
        std::str::from_utf8(&self.buf).expect("ASCII")
    }
}

fn hot_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(30);

    group.bench_function("baseline_parse_ack_subject", |b| {
        let mut subjects = Subjects::new();
        b.iter(|| black_box(parse_ack_subject(black_box(subjects.next())).is_ok()))
    });

    group.bench_function("delivery_ack_join_record", |b| {
        let mut collector = Collector::new(Config::default());
        let mut subjects = Subjects::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = [("traceparent", traceparent), ("X-Server-Id", "srv-1")];
        let mut t: u64 = 0;
        b.iter(|| {
            t += 1_000;
            let reply = subjects.next();
            let delivered = Seen {
                mono_ns: t,
                wall_ns: T0 + t as i64,
            };
            collector.on_delivery("game.srv-1.state", Some(reply), headers, delivered);
            let acked = Seen {
                mono_ns: t + 700,
                wall_ns: T0 + t as i64 + 700,
            };
            collector.on_ack(reply, None, b"+ACK", acked);
            if t.is_multiple_of(100_000_000) {
                // Expire, release and hand over as the tap loop does every 100 ms.
                collector.tick(acked);
                black_box(collector.take_closed());
            }
        });
        let counters = collector.counters();
        assert!(counters.samples_joined > 0);
        assert_eq!(counters.unmatched_acks + counters.duplicate_acks, 0);
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
