//! The collector's hot path: parse the delivery's and the ack's reply subject, join them, record
//! the sample into windows, histograms, the phase grid and the ring. Measured per sample, beside
//! a baseline of parsing one ack subject alone, in the same run.
//!
//! `cargo bench --bench hot_path`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ackscope::collect::acks::parse_ack_subject;
use ackscope::collect::core::Collector;
use ackscope::config::Config;
use ackscope::model::Seen;

const T0: i64 = 1_790_000_000_000_000_000;
const CONSUMERS: usize = 200;
/// More distinct deliveries than the join remembers, so cycling through them never repeats a
/// delivery the join still knows.
const DELIVERIES: usize = 400_000;

fn reply_subjects() -> Vec<String> {
    (0..DELIVERIES)
        .map(|i| {
            let seq = i / CONSUMERS + 1;
            format!(
                "$JS.ACK.GAME.srv-{}.1.{seq}.{seq}.{}.3",
                i % CONSUMERS,
                T0 + i as i64 * 1_000
            )
        })
        .collect()
}

fn hot_path(c: &mut Criterion) {
    let subjects = reply_subjects();
    let traceparents: Vec<String> = (0..DELIVERIES)
        .map(|i| {
            format!(
                "00-4bf92f3577b34da6a3ce929d{:08x}-00f067aa0ba902b7-01",
                i + 1
            )
        })
        .collect();
    let mut group = c.benchmark_group("hot_path");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    group.sample_size(30);

    group.bench_function("baseline_parse_ack_subject", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % DELIVERIES;
            black_box(parse_ack_subject(black_box(&subjects[i])).is_ok())
        })
    });

    group.bench_function("delivery_ack_join_record", |b| {
        let mut collector = Collector::new(Config::default());
        let mut i = 0usize;
        let mut t: u64 = 0;
        b.iter(|| {
            i = (i + 1) % DELIVERIES;
            t += 1_000;
            let reply = subjects[i].as_str();
            let headers = [
                ("traceparent", traceparents[i].as_str()),
                ("X-Server-Id", "srv-1"),
            ];
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
            if i == 0 {
                // Drain closed windows as the tap loop does.
                collector.tick(acked);
                black_box(collector.take_closed());
            }
        });
        assert!(collector.counters().samples_joined > 0);
        assert_eq!(collector.counters().unmatched_acks, 0);
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
