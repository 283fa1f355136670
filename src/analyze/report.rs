//! Spikes with their causes, for one consumer, a stream, or every consumer together: windows
//! from the aggregator's history, samples from the ring, consumer state from the collector.

use serde_json::{Value, json};

use super::causes::{Dimension, Evidence, attribute};
use super::spikes::{Spike, WindowP99, find_spikes};
use crate::aggregate::rebin::{Filter, Latency};
use crate::aggregate::ring::RingRow;
use crate::aggregate::window::WindowSummary;
use crate::collect::core::Collector;
use crate::model::{ConsumerId, rfc3339};

/// How much time before a spike serves as its baseline.
pub const BASELINE_NS: i64 = 60_000_000_000;

/// Windowed P99s of one latency.
fn p99s<'a>(windows: impl Iterator<Item = &'a WindowSummary>, latency: Latency) -> Vec<WindowP99> {
    windows
        .map(|w| {
            let q = match latency {
                Latency::Ack => &w.ack_latency_us,
                Latency::E2e => &w.e2e_latency_us,
            };
            WindowP99 {
                start_ns: w.start_ns,
                end_ns: w.end_ns,
                p99_ns: (q.p99 * 1_000.0) as u64,
                samples: q.count,
            }
        })
        .collect()
}

/// The spikes overlapping `[from, to)` of each consumer in `ids` (all when `None`, plus the
/// all-consumers scope), newest last, each with its ranked causes.
pub fn spikes(c: &Collector, ids: Option<&[ConsumerId]>, from: i64, to: i64) -> Vec<Value> {
    let all: Vec<ConsumerId> = (0..c.names().consumer_count() as ConsumerId).collect();
    let mut scopes: Vec<Option<ConsumerId>> =
        ids.unwrap_or(&all).iter().map(|&id| Some(id)).collect();
    if ids.is_none() {
        scopes.push(None);
    }
    let mut out = Vec::new();
    for scope in scopes {
        // Both latencies: e2e catches what ack latency cannot see (a redelivered message's
        // ack latency starts at its redelivery). Where spikes of the two overlap, the one that
        // began first stands for both.
        let mut candidates: Vec<(Spike, Latency)> = Vec::new();
        for latency in [Latency::Ack, Latency::E2e] {
            let windows = p99s(c.aggregator().history(scope), latency);
            candidates.extend(
                find_spikes(&windows, &c.config().spikes)
                    .into_iter()
                    .map(|s| (s, latency)),
            );
        }
        candidates.sort_by_key(|(s, _)| s.start_ns);
        let mut found: Vec<(Spike, Latency)> = Vec::new();
        for (spike, latency) in candidates {
            if !found
                .iter()
                .any(|(s, _)| s.start_ns < spike.end_ns && spike.start_ns < s.end_ns)
            {
                found.push((spike, latency));
            }
        }
        for (spike, latency) in found {
            if spike.end_ns <= from || spike.start_ns >= to {
                continue;
            }
            out.push((spike.start_ns, explain(c, scope, spike, latency)));
        }
    }
    out.sort_by_key(|(start, _)| *start);
    out.into_iter().map(|(_, v)| v).collect()
}

fn rows(c: &Collector, scope: Option<ConsumerId>, from: i64, to: i64) -> Vec<RingRow> {
    let ids = scope.map(|id| vec![id]);
    let filter = Filter::new(
        ids.as_deref(),
        from,
        to,
        crate::aggregate::rebin::Latency::Ack,
    );
    c.aggregator()
        .ring()
        .iter()
        .filter(|r| filter.matches(r))
        .collect()
}

fn explain(c: &Collector, scope: Option<ConsumerId>, spike: Spike, latency: Latency) -> Value {
    let spike_ns = (spike.start_ns, spike.end_ns);
    let spike_rows = rows(c, scope, spike_ns.0, spike_ns.1);
    let baseline_rows = rows(c, scope, spike.start_ns - BASELINE_NS, spike.start_ns);
    // Rates are over the time the baseline really covers, not the time asked for.
    let first = baseline_rows
        .iter()
        .map(|r| r.acked_ns)
        .min()
        .unwrap_or(spike.start_ns - 1);
    let baseline_ns = (first, spike.start_ns);
    // Every consumer during the spike and before it: whether this one stands out among them,
    // each against its own usual latency.
    let (context, context_baseline) = match scope {
        Some(_) => (
            rows(c, None, spike_ns.0, spike_ns.1),
            rows(c, None, baseline_ns.0, baseline_ns.1),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let ack_pending: Vec<(u64, i64)> = c
        .consumers()
        .filter(|(id, _, _)| scope.is_none_or(|s| s == *id))
        .filter_map(|(id, _, _)| c.facts(id))
        .flat_map(|f| f.ack_pending_history.iter())
        .filter(|(t, _, _)| *t >= spike_ns.0 && *t < spike_ns.1)
        .map(|&(_, pending, max)| (pending, max))
        .collect();
    let labels = &c.config().headers.labels;
    let name = |d: Dimension| match d {
        Dimension::Consumer(id) => {
            let (s, n) = c.names().consumer_names(id);
            format!("{s}/{n}")
        }
        Dimension::Subject(sym) => c.names().symbol_name(sym).unwrap_or("?").to_string(),
        Dimension::Label(i, sym) => format!(
            "{}={}",
            labels.get(i).map_or("label", |l| l.1.as_str()),
            c.names().symbol_name(sym).unwrap_or("?")
        ),
    };
    let causes = if spike_rows.is_empty() || baseline_rows.is_empty() {
        Vec::new()
    } else {
        attribute(&Evidence {
            spike: &spike_rows,
            baseline: &baseline_rows,
            context: if scope.is_some() {
                &context
            } else {
                &spike_rows
            },
            context_baseline: if scope.is_some() {
                &context_baseline
            } else {
                &baseline_rows
            },
            spike_ns,
            baseline_ns,
            clock: c.aggregator().clock(),
            ack_pending: &ack_pending,
            name: &name,
            latency,
        })
    };
    let (stream, consumer) = match scope {
        Some(id) => c.names().consumer_names(id),
        None => ("*", "*"),
    };
    json!({
        "start": rfc3339(spike.start_ns),
        "end": rfc3339(spike.end_ns),
        "stream": stream,
        "consumer": consumer,
        "latency": latency.as_str(),
        "p99_us": spike.peak_p99_ns as f64 / 1_000.0,
        "baseline_p99_us": spike.baseline_p99_ns as f64 / 1_000.0,
        "windows": spike.windows,
        "causes": causes.iter().map(|cause| json!({
            "cause": cause.cause,
            "confidence": (cause.confidence * 1_000.0).round() / 1_000.0,
            "evidence": cause.evidence,
            "summary": cause.summary,
            "exemplar_trace_ids": cause.exemplar_trace_ids,
        })).collect::<Vec<_>>(),
    })
}
