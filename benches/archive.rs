//! The archive writer: 1,000,000 samples (200 consumers, a subject and a server label each, a
//! trace id on every one) turned into columns and written as one zstd Parquet segment, crash
//! safe (temporary name, sync, rename). Beside it, in the same run, a baseline: the same
//! samples' fixed-size fields dumped raw into a file and synced, the least a writer does.
//! Prints the segment's bytes per sample. Then loading back at start: the segment read into a
//! collector's windows and ring, against recording the same samples from memory.
//!
//! `cargo bench --bench archive`

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use ackscope::aggregate::Aggregator;
use ackscope::archive::files::{self, Table};
use ackscope::archive::{ArchivedSample, Columns, Names};
use ackscope::collector::Collector;

#[path = "support/fleet.rs"]
mod fleet;
use fleet::Fleet;

const T0: i64 = 1_790_000_000_000_000_000;
const SAMPLES: usize = 1_000_000;
const CONSUMERS: u32 = 200;

const FLEET: Fleet = Fleet {
    consumers: CONSUMERS,
    width: 3,
    hosts: 16,
    host_width: 2,
};

fn samples() -> (Vec<ArchivedSample>, Names) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let rows = (0..SAMPLES)
        .map(|i| {
            let x = fleet::next(&mut x);
            // 10,000 acks a second, 1–4 ms after their delivery.
            let acked_ns = T0 + i as i64 * 100_000;
            FLEET.sample(i, x, acked_ns, 1_000_000 + x % 3_000_000)
        })
        .collect();
    (rows, FLEET.names())
}

fn archive(c: &mut Criterion) {
    let (rows, names) = samples();
    let labels = vec!["server".to_string()];
    let dir = tempfile::tempdir().unwrap();
    let write = |dir: &std::path::Path| {
        let mut columns = Columns::new(labels.len());
        for r in &rows {
            columns.push(r, &names);
        }
        let span = columns.span();
        let mut df = columns.frame(&labels).unwrap();
        files::write_segment(dir, Table::Samples, &span, &mut df).unwrap()
    };
    let bytes = write(dir.path());
    println!(
        "segment: {bytes} bytes for {SAMPLES} samples, {:.1} bytes a sample",
        bytes as f64 / SAMPLES as f64
    );
    let mut group = c.benchmark_group("archive");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30))
        .throughput(Throughput::Elements(SAMPLES as u64));
    group.bench_function("baseline: dump fixed fields raw and sync", |b| {
        let path = dir.path().join("raw.bin");
        b.iter(|| {
            let mut out = Vec::with_capacity(SAMPLES * 72);
            for r in &rows {
                let s = &r.sample;
                for v in [
                    s.acked_ns,
                    s.delivered_ns.unwrap_or(0),
                    s.stored_ns.unwrap_or(0),
                    s.ack_latency_ns.unwrap_or(0) as i64,
                    s.e2e_latency_ns.unwrap_or(0) as i64,
                    s.stream_seq as i64,
                    r.phase_ns.unwrap_or(0) as i64,
                ] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&s.trace_id.map_or([0; 16], |t| t.0));
            }
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(&out).unwrap();
            file.sync_all().unwrap();
            black_box(out.len())
        })
    });
    group.bench_function("write 1M samples as a Parquet segment", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap();
            black_box(write(dir.path()))
        })
    });
    // Loading back at start: the segment read and its rows recorded into a new collector's
    // windows and ring, against recording the same samples (already in memory) into them.
    let config = {
        let mut c = ackscope::config::Config::default();
        c.headers.labels = vec![("x-server".to_string(), "server".to_string())];
        c
    };
    group.bench_function(
        "baseline: record 1M samples into the windows and ring",
        |b| {
            b.iter(|| {
                let mut a = Aggregator::new(config.aggregate.clone(), config.tick);
                for r in &rows {
                    a.record(&r.sample);
                }
                black_box(a.ring().len())
            })
        },
    );
    group.bench_function("restore 1M samples from the archive", |b| {
        b.iter(|| {
            let (df, _) = ackscope::archive::latest_samples(dir.path(), T0, i64::MAX, SAMPLES);
            let mut c = Collector::new(config.clone());
            black_box(c.restore(&df))
        })
    });
    group.finish();
}

criterion_group!(benches, archive);
criterion_main!(benches);
