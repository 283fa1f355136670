//! Synthetic archived samples for the archive benches: a fleet of consumers acking in turn,
//! each with a subject, a server label and a trace id, 1 ms of e2e before every delivery.

use ackscope::archive::{ArchivedSample, Names};
use ackscope::model::{AckKind, NO_LABELS, Sample, SampleSource, Sym, TraceId};

/// `consumers` named `srv-<n>` (`width` digits) on `hosts` servers named `host-<n>`
/// (`host_width` digits).
pub struct Fleet {
    pub consumers: u32,
    pub width: usize,
    pub hosts: u32,
    pub host_width: usize,
}

/// The next value of a xorshift sequence: cheap, deterministic spread.
pub fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

impl Fleet {
    /// What the fleet's consumer ids and symbols stand for.
    pub fn names(&self) -> Names {
        let mut names = Names::default();
        for c in 0..self.consumers {
            let (w, hw) = (self.width, self.host_width);
            names
                .consumers
                .insert(c, ("GAME".into(), format!("srv-{c:0w$}"), None));
            names.symbols.insert(c, format!("game.srv-{c:0w$}.state"));
            names.symbols.insert(
                1_000 + c % self.hosts,
                format!("host-{:0hw$}", c % self.hosts),
            );
        }
        names
    }

    /// Sample `i` of the fleet (consumer `i % consumers`), acked at `acked_ns` `latency` after
    /// its delivery; `x` spreads its pending count and trace id.
    pub fn sample(&self, i: usize, x: u64, acked_ns: i64, latency: u64) -> ArchivedSample {
        let consumer = i as u32 % self.consumers;
        let mut labels = NO_LABELS;
        labels[0] = Sym(1_000 + consumer % self.hosts);
        ArchivedSample {
            sample: Sample {
                consumer,
                stream_seq: i as u64 + 1,
                consumer_seq: i as u64 / self.consumers as u64 + 1,
                deliveries: 1,
                pending: x % 8,
                stored_ns: Some(acked_ns - latency as i64 - 200_000),
                delivered_ns: Some(acked_ns - latency as i64),
                acked_ns,
                kind: AckKind::Ack,
                ack_latency_ns: Some(latency),
                e2e_latency_ns: Some(latency + 200_000),
                trace_id: Some(TraceId(
                    ((x as u128 * 0x2545_f491_4f6c_dd1d) | 1).to_be_bytes(),
                )),
                parent_span: None,
                subject: Sym(consumer),
                labels,
                source: SampleSource::Observed,
                ack_sync: false,
            },
            phase_ns: Some((acked_ns % 16_000_000) as u64),
        }
    }
}
