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

#[path = "support/cpu.rs"]
mod cpu;

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
        let mut feed = Feed::new();
        b.iter(|| feed.one(&mut collector));
        feed.check(&collector);
    });
    group.finish();

    // OTLP export on against off, in CPU time of the whole process (the exporter records on
    // its own thread): every sample in the histograms and counters, and every 8th ack slower
    // than a frame, so that slow-ack spans are chosen (100 a second) from a flood of them.
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(10));
    group.sample_size(30);
    let mut plain = Collector::new(Config::default());
    let mut plain_feed = Feed::new().with_slow_acks();
    group.bench_function("baseline_record_cpu", |b| {
        b.iter_custom(|iters| cpu_of(|| (0..iters).for_each(|_| plain_feed.one(&mut plain))));
    });
    plain_feed.check(&plain);
    let mut exporting = Collector::new(Config::default());
    // Nothing listens there: exports fail off the path, as to a receiver that is down.
    let raw = ackscope::otlp::RawOtlp {
        endpoint: Some("http://127.0.0.1:9".to_string()),
        ..Default::default()
    };
    let (otlp, tap) = ackscope::otlp::Otlp::start(&raw.validate().unwrap(), 1_000)
        .unwrap()
        .unwrap();
    exporting.attach_otlp(tap);
    let mut feed = Feed::new().with_slow_acks();
    group.bench_function("record_exporting_otlp_cpu", |b| {
        b.iter_custom(|iters| cpu_of(|| (0..iters).for_each(|_| feed.one(&mut exporting))));
    });
    group.finish();
    feed.check(&exporting);
    let stats = otlp.stats();
    otlp.shutdown(exporting.detach_otlp());
    let n = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "otlp: {} samples, {} spans, {} slow acks over the limit, {} samples dropped at the queue",
        exporting.counters().samples_joined,
        n(&stats.spans),
        n(&stats.spans_dropped),
        n(&stats.queue_dropped)
    );
}

/// The process's CPU time (every thread's) over `f`.
fn cpu_of(f: impl FnOnce()) -> Duration {
    let from = cpu::process_cpu();
    f();
    cpu::process_cpu() - from
}

/// Deliveries and their acks, one pair a call, 1 µs apart (acked 0.7 µs after; every 8th
/// 20 ms after with [`Feed::with_slow_acks`]).
struct Feed {
    subjects: Subjects,
    t: u64,
    slow_every: u64,
}

impl Feed {
    fn new() -> Self {
        Self {
            subjects: Subjects::new(),
            t: 0,
            slow_every: 0,
        }
    }

    fn with_slow_acks(self) -> Self {
        Self {
            slow_every: 8,
            ..self
        }
    }

    fn one(&mut self, collector: &mut Collector) {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = [("traceparent", traceparent), ("X-Server-Id", "srv-1")];
        self.t += 1_000;
        let t = self.t;
        let reply = self.subjects.next();
        let delivered = Seen {
            mono_ns: t,
            wall_ns: T0 + t as i64,
        };
        collector.on_delivery("game.srv-1.state", Some(reply), headers, delivered);
        let slow = self.slow_every > 0 && (t / 1_000).is_multiple_of(self.slow_every);
        let latency = if slow { 20_000_000 } else { 700 };
        let acked = Seen {
            mono_ns: t + latency,
            wall_ns: T0 + (t + latency) as i64,
        };
        collector.on_ack(reply, None, b"+ACK", acked);
        if t.is_multiple_of(100_000_000) {
            // Expire, release and hand over as the tap loop does every 100 ms.
            collector.tick(acked);
            black_box(collector.take_closed());
        }
    }

    /// Every ack joined its delivery (when this feed ran: a filter can skip it).
    fn check(&self, collector: &Collector) {
        if self.t == 0 {
            return;
        }
        let counters = collector.counters();
        assert!(counters.samples_joined > 0);
        assert_eq!(counters.unmatched_acks + counters.duplicate_acks, 0);
    }
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
