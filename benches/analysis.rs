//! Analysing one spike: every cause detector over a spike of 1,000,000 samples and a baseline of
//! 1,000,000 more (8 consumers, 3 acks a frame each; in the spike one consumer stalls every
//! second and another's acks are pushed to the frame's end). Beside it, in the same run, a
//! baseline: the P99 of the baseline's latencies, the least any analysis has to do.
//!
//! `cargo bench --bench analysis`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use ackscope::aggregate::rebin::{Latency, quantile};
use ackscope::aggregate::ring::RingRow;
use ackscope::analyze::causes::{Dimension, Evidence, attribute, p99_by_consumer};
use ackscope::clocks::Clocks;
use ackscope::model::{AckKind, NO_LABELS, SampleSource, Sym, TraceId};
use ackscope::tick::{FrameClock, PhaseOf};

const T0: i64 = 1_790_000_000_000_000_000;
const FRAME: i64 = 16_000_000;
const MS: i64 = 1_000_000;
const SAMPLES: i64 = 1_000_000;
const CONSUMERS: i64 = 8;
const PER_FRAME: i64 = 3;

/// `SAMPLES` acks from `from` on; `faulty` makes consumer 1 stall 60 ms every second and
/// consumer 2 ack only in the frame's last 2 ms.
fn rows(from: i64, faulty: bool) -> Vec<RingRow> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(SAMPLES as usize);
    for i in 0..SAMPLES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let frame = i / (CONSUMERS * PER_FRAME);
        let consumer = (i / PER_FRAME) % CONSUMERS;
        let frame_start = from + frame * FRAME;
        let mut latency = MS + (x % 3_000_000) as i64;
        let mut acked = frame_start + 2 * MS + (x >> 32) as i64 % (10 * MS) + latency;
        if faulty && consumer == 1 {
            let into_second = (acked - from) % 1_000_000_000;
            if into_second < 60 * MS {
                // Held until the stall ends.
                latency += 60 * MS - into_second;
                acked += 60 * MS - into_second;
            }
        }
        if faulty && consumer == 2 {
            let end = frame_start + FRAME - MS / 2;
            latency += (end - acked).max(0);
            acked = acked.max(end);
        }
        out.push(RingRow {
            consumer: consumer as u32,
            stream_seq: i as u64,
            deliveries: 1,
            acked_ns: acked,
            delivered_ns: Some(acked - latency),
            ack_latency_ns: Some(latency as u64),
            e2e_latency_ns: Some(latency as u64 + MS as u64),
            kind: AckKind::Ack,
            source: SampleSource::Observed,
            trace_id: Some(TraceId((x as u128 | 1).to_be_bytes())),
            subject: Sym(consumer as u32),
            labels: NO_LABELS,
        });
    }
    out.sort_by_key(|r| r.acked_ns);
    out
}

fn analysis(c: &mut Criterion) {
    let baseline = rows(T0, false);
    let start = baseline.last().unwrap().acked_ns + 1;
    let spike = rows(start, true);
    let clocks = Clocks::new(
        *FrameClock::new(FRAME as u64, 0, 160, PhaseOf::Ack)
            .unwrap()
            .frame(),
    );
    let pending = vec![(12u64, 1_000i64); 60];
    let name = |d: Dimension| format!("{d:?}");
    // In the service each consumer's usual P99 comes from its windows' P99s.
    let usual = p99_by_consumer(&baseline, Latency::Ack);
    // And the spike's baseline P99 from the quiet windows before it.
    let baseline_p99 = {
        let mut v: Vec<u64> = baseline.iter().filter_map(|r| r.ack_latency_ns).collect();
        quantile(&mut v, 0.99)
    };
    let evidence = Evidence {
        spike: &spike,
        baseline: &baseline,
        context: None,
        usual_p99: &usual,
        spike_ns: (start, spike.last().unwrap().acked_ns + 1),
        baseline_quiet_ns: start - T0,
        baseline_p99,
        deliveries: Default::default(),
        clocks: &clocks,
        ack_pending: &pending,
        name: &name,
        latency: Latency::Ack,
    };
    let causes = attribute(&evidence);
    println!(
        "causes: {:?}",
        causes
            .iter()
            .map(|c| (c.cause, (c.confidence * 100.0).round() / 100.0))
            .collect::<Vec<_>>()
    );
    let mut group = c.benchmark_group("analysis");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("baseline: P99 of 1M latencies", |b| {
        b.iter(|| {
            let mut v: Vec<u64> = baseline.iter().filter_map(|r| r.ack_latency_ns).collect();
            black_box(quantile(&mut v, 0.99))
        })
    });
    group.bench_function("attribute a 1M-sample spike", |b| {
        b.iter(|| black_box(attribute(black_box(&evidence))))
    });
    group.finish();
}

criterion_group!(benches, analysis);
criterion_main!(benches);
