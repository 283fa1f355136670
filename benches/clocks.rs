//! Clock inference, per consumer and pass: learning a consumer's clock from scratch (at the
//! configured period, and searching the period when the acks follow another) and tracking a
//! learned one, over one pass of its acks (5 s of a 60 Hz server acking 90 times a
//! second), beside a baseline in the same run: sorting those acks' times, which every pass does
//! anyway. An inference pass holds the collector's lock for about (consumers × tracking) plus
//! (learned from scratch, at most 8 a pass × learning) plus one walk over the ring rows read.
//!
//! `cargo bench --bench clocks`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

use ackscope::clocks::infer::{InferConfig, Tracker};
use ackscope::clocks::{ClockSource, Clocks, Segment};
use ackscope::tick::{Frame, Period};

const T0: i64 = 1_790_000_000_000_000_000;
const PASS_NS: i64 = 5_000_000_000;

/// The acks of a server whose frames start 5.3 ms past the configured grid, spread over 3–12 ms
/// of each frame, in `[from, from + 5 s)`.
fn acks(from: i64) -> Vec<i64> {
    let period = 1e9 / 60.0;
    let mut out = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut k = ((from - T0) as f64 / period).floor() as i64;
    loop {
        let start = T0 as f64 + 5.3e6 + k as f64 * period;
        if start as i64 >= from + PASS_NS {
            break;
        }
        for _ in 0..3 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x.is_multiple_of(2) {
                let t = (start + 3e6 + (x % 9_000_000) as f64) as i64;
                if t >= from && t < from + PASS_NS {
                    out.push(t);
                }
            }
        }
        k += 1;
    }
    out.sort_unstable();
    out
}

fn clocks(c: &mut Criterion) {
    let mut group = c.benchmark_group("clocks");
    group.measurement_time(Duration::from_secs(5));
    let configured = Frame::new(Period::parse("60hz").unwrap(), 0).unwrap();
    let config = InferConfig::default();
    let first = acks(T0);
    let next = acks(T0 + PASS_NS);
    // A tracker that has learned the clock from the first pass.
    let mut learned = Tracker::default();
    let clocks = Clocks::new(configured);
    let segment: Segment = learned
        .step(
            &clocks.current(0),
            &configured,
            &first,
            T0 + PASS_NS,
            &config,
        )
        .expect("the clock is learned");
    assert_eq!(segment.source, ClockSource::Inferred);
    println!("{} acks a pass", next.len());

    group.bench_function("baseline_sort_a_pass", |b| {
        b.iter_batched(
            || next.iter().rev().copied().collect::<Vec<i64>>(),
            |mut v| {
                v.sort_unstable();
                black_box(v)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("learn_one_consumer", |b| {
        b.iter_batched(
            Tracker::default,
            |mut t| black_box(t.step(&clocks.current(0), &configured, &first, T0, &config)),
            BatchSize::SmallInput,
        )
    });
    // The same acks under a 16 ms configured tick: the period is searched first.
    let sixteen = Frame::new(Period::from_ns(16_000_000), 0).unwrap();
    group.bench_function("learn_one_consumer_searching_its_period", |b| {
        b.iter_batched(
            Tracker::default,
            |mut t| {
                let found = t.step(&clocks.current(0), &sixteen, &first, T0, &config);
                assert!(found.is_some_and(|s| s.frame.period.ns().abs_diff(16_666_667) < 2_000));
                black_box(found)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("track_one_consumer", |b| {
        b.iter_batched(
            || learned.clone(),
            |mut t| black_box(t.step(&segment, &configured, &next, T0 + 2 * PASS_NS, &config)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, clocks);
criterion_main!(benches);
