//! The collector fed a sequence of arbitrary messages on every tap, with the clock moving
//! forward and back: it must count and skip what it cannot use, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

use std::sync::LazyLock;

use ackscope::collector::Collector;
use ackscope::config::{Config, RawConfig};
use ackscope::model::Seen;

/// Small tables, so that the limits are reached and each run starts fast.
static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    RawConfig::from_toml(
        "[join]\ncapacity = 64\ncompleted_capacity = 64\nmax_consumers = 8\nmax_symbols = 16\n\
         [aggregate]\nring_capacity = 256\nretained_windows = 16\nlatency_rows = 10",
    )
    .unwrap()
    .validate()
    .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let mut c = Collector::new(CONFIG.clone());
    let mut t: i64 = 1_790_000_000_000_000_000;
    let mut mono: u64 = 1_000_000_000;
    // Records: one byte of kind, one of length, then that many bytes (split at '|' into
    // subject, reply, header value and payload).
    let mut rest = data;
    while rest.len() >= 2 {
        let (kind, len) = (rest[0], rest[1] as usize);
        let body = &rest[2..(2 + len).min(rest.len())];
        rest = &rest[(2 + len).min(rest.len())..];
        let text = String::from_utf8_lossy(body);
        let mut parts = text.splitn(4, '|');
        let subject = parts.next().unwrap_or("");
        let reply = parts.next();
        let header = parts.next().unwrap_or("");
        let payload = parts.next().unwrap_or("").as_bytes();
        let step = i64::from(kind >> 3) * 1_000_000;
        t = t.saturating_add(if kind & 0x80 != 0 { -step } else { step });
        mono = mono.saturating_add(step.unsigned_abs());
        let seen = Seen { mono_ns: mono, wall_ns: t };
        match kind & 0x07 {
            0 => c.on_delivery(
                subject,
                reply,
                [("traceparent", header), ("X-Server-Id", header)],
                seen,
            ),
            1 => c.on_ack(subject, reply, payload, seen),
            2 => c.on_metric(payload, seen),
            3 => c.on_advisory(subject, payload, seen),
            4 => c.on_nats_state(kind & 0x40 != 0, seen),
            5 => {
                c.tick(seen);
                let _ = c.take_closed();
            }
            6 => {
                for (scope, spike, latency) in c.find_spikes(None, i64::MIN, i64::MAX) {
                    let _ = c.spike_inputs(scope, spike, latency).explain();
                }
            }
            _ => {
                let _ = c.counters();
            }
        }
    }
});
