//! `postmortem.md`: what an SRE pastes into a postmortem, in words, from the bundle's report.

use std::fmt::Write;

use super::ExportQuery;
use crate::api::Report;

pub struct Inputs<'a> {
    pub query: &'a ExportQuery,
    pub report: &'a Report,
    /// The report of the same length of time before the range, and after it.
    pub before: Option<&'a Report>,
    pub after: Option<&'a Report>,
    /// The spikes drawn (`spike-1`, …), in the report's order.
    pub drawn: &'a [String],
    pub samples: usize,
    pub windows: usize,
    pub notes: &'a [String],
    pub settings: &'a [(String, String)],
}

fn ms(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

/// A report's P99 in words, with its sample count; `no samples` when it had none.
fn p99(report: Option<&Report>) -> String {
    match report {
        Some(r) if r.latency_us.count > 0 => {
            format!("{} ({} samples)", ms(r.latency_us.p99), r.latency_us.count)
        }
        Some(_) => "no samples".to_string(),
        None => "not available".to_string(),
    }
}

pub fn postmortem(i: &Inputs) -> String {
    let r = i.report;
    let mut out = String::new();
    let scope = match (&i.query.stream, &i.query.consumer) {
        (Some(s), Some(c)) => format!("{s}/{c}"),
        (Some(s), None) => format!("{s}/*"),
        (None, Some(c)) => format!("*/{c}"),
        (None, None) => "all consumers".to_string(),
    };
    let latency = r.latency.as_str();
    let _ = writeln!(out, "# Ack latency postmortem: {scope}\n");
    let _ = writeln!(
        out,
        "{} to {} ({latency} latency, frame budget {}).\n",
        r.range.from,
        r.range.to,
        ms(r.tick.period_us)
    );
    let _ = writeln!(out, "## P99 before, during and after\n");
    let _ = writeln!(out, "| | P99 |\n|---|---|");
    let _ = writeln!(out, "| before (same length) | {} |", p99(i.before));
    let _ = writeln!(out, "| during | {} |", p99(Some(r)));
    let _ = writeln!(out, "| after (same length) | {} |", p99(i.after));
    let q = &r.latency_us;
    let _ = writeln!(
        out,
        "\nDuring: P50 {}, P90 {}, P99 {}, P99.9 {}, max {}; {} acks, {} NAKs, {} redeliveries, \
         {} deliveries given up (max deliveries).\n",
        ms(q.p50),
        ms(q.p90),
        ms(q.p99),
        ms(q.p999),
        ms(q.max),
        r.counts.acks,
        r.counts.naks,
        r.counts.redeliveries,
        r.counts.max_deliveries
    );
    let _ = writeln!(out, "## Timeline\n");
    if r.spikes.is_empty() {
        let _ = writeln!(out, "No P99 spike was found in the range.\n");
    }
    for (k, s) in r.spikes.iter().enumerate() {
        let who = format!("{}/{}", s.stream, s.consumer);
        let _ = writeln!(
            out,
            "- **{} → {}**, {who}: P99 {} against a baseline of {} ({:.1}×, {} windows).",
            s.start,
            s.end,
            ms(s.p99_us),
            ms(s.baseline_p99_us),
            s.p99_us / s.baseline_p99_us.max(1.0),
            s.windows
        );
        if let Some(name) = i.drawn.get(k) {
            let _ = writeln!(
                out,
                "  Phase heatmaps: `{name}-phase.svg` (the spike) beside `{name}-baseline-phase.svg` (the minute before)."
            );
        }
    }
    let _ = writeln!(out, "\n## Causes\n");
    for s in &r.spikes {
        let _ = writeln!(out, "### {}/{} at {}\n", s.stream, s.consumer, s.start);
        if s.causes.is_empty() {
            let _ = writeln!(out, "No cause found.\n");
        }
        // The causes that explain something (the first always, `unknown` included).
        let shown = s
            .causes
            .iter()
            .enumerate()
            .filter(|(k, c)| *k == 0 || c.confidence >= 0.1)
            .map(|(_, c)| c);
        for c in shown {
            let chain = c
                .caused_by
                .map(|root| format!(" (a consequence of {})", root.as_str()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- **{}** ({:.0}% confidence){chain}: {}",
                c.cause.as_str(),
                c.confidence * 100.0,
                c.summary
            );
            if !c.exemplar_trace_ids.is_empty() {
                let ids: Vec<String> = c
                    .exemplar_trace_ids
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect();
                let _ = writeln!(out, "  Exemplar traces: {}", ids.join(", "));
            }
            let _ = writeln!(out, "  Evidence: `{}`", c.evidence);
        }
        let _ = writeln!(out);
    }
    let o = &r.ordering;
    let _ = writeln!(out, "## Ordered processing\n");
    let _ = writeln!(
        out,
        "{} of {} acks ({:.2}%) were of a message whose subject already had a later one acked.\n",
        o.out_of_order,
        o.checked,
        o.rate * 100.0
    );
    let _ = writeln!(out, "## Files\n");
    let _ = writeln!(
        out,
        "`report.json` and `spikes.json` (as `/api/v1/report` answers), `phase.svg`/`.png` and \
         `time.svg`/`.png` (the range's heatmaps), `samples.parquet` and `samples.csv` ({} \
         samples), `windows.csv` ({} windows).\n",
        i.samples, i.windows
    );
    let _ = writeln!(out, "## Settings\n");
    let _ = writeln!(
        out,
        "- tick: {} ({}), {} phase bins",
        ms(r.tick.period_us),
        r.tick.source,
        r.tick.phase_bins
    );
    for (k, v) in i.settings {
        let _ = writeln!(out, "- {k}: {v}");
    }
    if !r.warnings.is_empty() || !i.notes.is_empty() {
        let _ = writeln!(out, "\n## Warnings\n");
        for w in r.warnings.iter().chain(i.notes) {
            let _ = writeln!(out, "- {w}");
        }
    }
    out
}
