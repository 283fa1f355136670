//! Drawing the phase heatmap: a 160 × 100 grid built from 1,000,000 samples, rendered to SVG.
//! Beside it, in the same run: re-binning the ring into the grid, and a baseline of writing the
//! grid's 16,000 counts as JSON.
//!
//! `cargo bench --bench render`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

use ackscope::aggregate::phase_grid::LatencyAxis;
use ackscope::aggregate::rebin::{self, Filter, Latency};
use ackscope::aggregate::ring::SampleRing;
use ackscope::clocks::{Clocks, PhaseClocks};
use ackscope::model::{AckKind, NO_LABELS, Sample, SampleSource, Sym};
use ackscope::render::heatmap::{ColorScale, HeatmapStyle, XAxis, render_heatmap};
use ackscope::tick::{FrameClock, PhaseOf};

const T0: i64 = 1_790_000_000_000_000_000;
const SAMPLES: u64 = 1_000_000;

/// A million acks: every phase of the frame, latencies spread over four decades, with a
/// frame-end pile-up and a slow band, so that most of the 16,000 cells are filled.
fn ring() -> SampleRing {
    let mut ring = SampleRing::new(SAMPLES as usize);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..SAMPLES {
        // xorshift: cheap, deterministic spread.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let decade = (x % 4000) as f64 / 1000.0; // 0..4 decades above 20 µs
        let latency = (20_000.0 * 10f64.powf(decade)) as u64;
        let acked = T0 + (i as i64) * 16_000 + (x >> 40) as i64 % 16_000_000;
        ring.push(&Sample {
            consumer: (i % 8) as u32,
            stream_seq: i,
            consumer_seq: i,
            deliveries: 1,
            pending: 0,
            stored_ns: None,
            delivered_ns: Some(acked - latency as i64),
            acked_ns: acked,
            kind: AckKind::Ack,
            ack_latency_ns: Some(latency),
            e2e_latency_ns: Some(latency),
            trace_id: None,
            parent_span: None,
            subject: Sym::NONE,
            labels: NO_LABELS,
            source: SampleSource::Observed,
            ack_sync: false,
        });
    }
    ring
}

fn render(c: &mut Criterion) {
    let ring = ring();
    let clock = FrameClock::new(16_000_000, 0, 160, PhaseOf::Ack).unwrap();
    let clocks = Clocks::new(*clock.frame());
    let phases = PhaseClocks::own(&clocks, &clock);
    let axis = LatencyAxis::new(10_000, 60_000_000_000, 100);
    let filter = Filter::new(None, i64::MIN, i64::MAX, Latency::Ack);
    let grid = rebin::phase_grid(&ring, &filter, &phases, axis.clone());
    let style = HeatmapStyle {
        width: 960,
        height: 540,
        scale: ColorScale::Log,
        x: XAxis::Phase {
            period_ns: 16_000_000,
        },
        title: "ack latency by frame phase — tick 16ms, bin 100µs".into(),
        subtitle: "all consumers".into(),
        latency: "ack".into(),
        budget_ns: Some(16_000_000),
    };
    let svg = render_heatmap(&grid, &style).unwrap();
    let cells = svg.matches("<rect x=").count();
    println!(
        "grid 160 x 100 from {SAMPLES} samples: {} non-empty cells drawn, SVG {} bytes ({:.1} KiB)",
        cells,
        svg.len(),
        svg.len() as f64 / 1024.0
    );

    let mut group = c.benchmark_group("render");
    group.measurement_time(Duration::from_secs(8));
    group.sample_size(20);
    group.bench_function("baseline_grid_counts_to_json", |b| {
        b.iter(|| {
            let counts: Vec<u32> = (0..160)
                .flat_map(|col| (0..100).map(move |row| (col, row)))
                .map(|(col, row)| grid.count(col, row))
                .collect();
            black_box(serde_json::to_string(&counts).unwrap())
        })
    });
    group.bench_function("phase_heatmap_svg_160x100", |b| {
        b.iter(|| black_box(render_heatmap(black_box(&grid), &style).unwrap()))
    });
    group.bench_function("rebin_1m_samples_into_grid", |b| {
        b.iter(|| black_box(rebin::phase_grid(&ring, &filter, &phases, axis.clone())))
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
