//! SVG heatmaps: a grid of counts (x = frame phase or time, y = latency on a log scale) drawn
//! as coloured cells, each with a `<title>` tooltip (its latency range, x range, count, share of
//! its column and cumulative share up the column, as Brendan Gregg's latency heatmaps do).
//!
//! Pure: a grid and a style in, an SVG string out; no clock, no server. plotters draws the
//! frame (title, axes, tick labels); the cells, the P99 line, the frame-end marker and the
//! colour legend are written here, because every cell needs its own tooltip. Empty cells are
//! not drawn.

use std::fmt::Write;

use plotters::prelude::*;

use crate::aggregate::phase_grid::PhaseGrid;
use crate::model::rfc3339;

/// How counts map to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorScale {
    Log,
    Linear,
}

/// What the x axis is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Frame phase `0..period`; the P99 line and the frame-end marker are drawn.
    Phase { period_ns: u64 },
    /// Wall-clock time `[from, to)`, Unix nanoseconds.
    Time { from_ns: i64, to_ns: i64 },
}

/// Everything about a picture except its counts.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapStyle {
    pub width: u32,
    pub height: u32,
    pub scale: ColorScale,
    pub x: XAxis,
    /// First title line, e.g. "ack latency by frame phase".
    pub title: String,
    /// Second line: stream/consumer and time range.
    pub subtitle: String,
    /// Name of the latency on the y axis ("ack" or "e2e").
    pub latency: String,
    /// The frame budget (one tick): a line across the latency axis, what lies above it
    /// shaded: the acks that miss the frame.
    pub budget_ns: Option<u64>,
}

/// A P99 per phase bin is drawn only for bins with at least this many samples: on fewer it
/// jumps between neighbours on one or two slow acks.
pub const MIN_P99_SAMPLES: u64 = 20;

/// The top of a fitted latency axis: a quarter above the slowest sample, and at least twice
/// the frame budget (so the budget line shows), rounded up to 1, 2 or 5 × a power of ten and
/// at most `cap_ns`. `None` for no samples.
pub fn fit_latency_axis(slowest_ns: Option<u64>, budget_ns: u64, cap_ns: u64) -> u64 {
    let want = (slowest_ns.unwrap_or(0) as f64 * 1.25)
        .max(2.0 * budget_ns as f64)
        .max(1e3);
    (nice(want, true) as u64).min(cap_ns)
}

/// `want` rounded to 1, 2 or 5 × a power of ten: up to the next such value, or down.
fn nice(want: f64, up: bool) -> f64 {
    let power = 10f64.powi(want.log10().floor() as i32);
    let steps = [1.0, 2.0, 5.0, 10.0].map(|m| m * power);
    if up {
        steps
            .into_iter()
            .find(|v| *v >= want)
            .unwrap_or(10.0 * power)
    } else {
        steps[..3]
            .iter()
            .rev()
            .copied()
            .find(|v| *v <= want)
            .unwrap_or(power)
    }
}

/// The bottom of a fitted latency axis: a fifth below the fastest sample, rounded down to 1, 2
/// or 5 × a power of ten, at least `floor_ns` and at most a hundredth of `top_ns` (two decades
/// shown at least).
pub fn fit_latency_floor(fastest_ns: Option<u64>, top_ns: u64, floor_ns: u64) -> u64 {
    let ceiling = (top_ns / 100).max(1);
    let Some(fastest) = fastest_ns else {
        return floor_ns.min(ceiling);
    };
    let want = (fastest as f64 * 0.8).max(1.0);
    (nice(want, false) as u64).clamp(floor_ns.min(ceiling), ceiling)
}

/// `HH:MM:SS` (UTC) of a Unix-nanosecond instant, with tenths when `tenths`.
fn time_of_day(ns: i64, tenths: bool) -> String {
    let t = rfc3339(ns);
    // 2026-11-29T14:13:20.123456789Z
    let end = if tenths { 21 } else { 19 };
    t.get(11..end).unwrap_or(&t).to_string()
}

/// Why a heatmap could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the heatmap: {0}")]
pub struct Error(String);

const LEGEND_WIDTH: u32 = 90;
/// Colour stops from few to many: yellow → orange → red → dark purple; the palest still
/// stands out on white.
const STOPS: [(f64, [u8; 3]); 5] = [
    (0.0, [250, 214, 90]),
    (0.3, [254, 196, 79]),
    (0.55, [236, 112, 20]),
    (0.8, [204, 31, 38]),
    (1.0, [77, 0, 75]),
];

fn color(t: f64) -> String {
    let t = t.clamp(0.0, 1.0);
    let i = STOPS
        .iter()
        .rposition(|(at, _)| *at <= t)
        .unwrap_or(0)
        .min(STOPS.len() - 2);
    let ((a, ca), (b, cb)) = (STOPS[i], STOPS[i + 1]);
    let f = ((t - a) / (b - a)).clamp(0.0, 1.0);
    let mix = |k: usize| (ca[k] as f64 + (cb[k] as f64 - ca[k] as f64) * f).round() as u8;
    format!("#{:02x}{:02x}{:02x}", mix(0), mix(1), mix(2))
}

fn intensity(count: u32, max: u32, scale: ColorScale) -> f64 {
    match scale {
        ColorScale::Linear => count as f64 / max.max(1) as f64,
        // Never 0 for a non-empty cell, so a single sample is still visible.
        ColorScale::Log => 0.1 + 0.9 * (count as f64).ln() / (max.max(2) as f64).ln(),
    }
}

/// A latency in nanoseconds as a short human string: `16ms`, `1.5ms`, `250µs`.
pub fn format_latency(ns: f64) -> String {
    trim(if ns >= 1e9 {
        format!("{:.3}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.3}ms", ns / 1e6)
    } else {
        format!("{:.0}µs", ns / 1e3)
    })
}

fn trim(s: String) -> String {
    // "16.000ms" → "16ms", "1.500ms" → "1.5ms"
    match s.find('.') {
        Some(dot) => {
            let unit_at = s[dot..]
                .find(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or(s.len(), |i| dot + i);
            let (num, unit) = s.split_at(unit_at);
            format!("{}{unit}", num.trim_end_matches('0').trim_end_matches('.'))
        }
        None => s,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl XAxis {
    fn span(&self) -> f64 {
        match *self {
            XAxis::Phase { period_ns } => period_ns as f64,
            XAxis::Time { from_ns, to_ns } => (to_ns - from_ns).max(1) as f64,
        }
    }

    /// A column's range, for tooltips.
    fn describe(&self, from: f64, to: f64) -> String {
        match *self {
            XAxis::Phase { .. } => {
                format!("phase {}–{}", format_latency(from), format_latency(to))
            }
            XAxis::Time { from_ns, .. } => format!(
                "{} +{}",
                rfc3339(from_ns + from as i64),
                format_latency(to - from)
            ),
        }
    }
}

/// Samples in a column.
fn samples_in(grid: &PhaseGrid, column: u32) -> u64 {
    (0..grid.axis().rows())
        .map(|r| grid.count(column, r) as u64)
        .sum()
}

/// The latency (upper edge of the row) below which 99% of a column's samples lie.
fn column_p99(grid: &PhaseGrid, column: u32) -> Option<f64> {
    let rows = grid.axis().rows();
    let total: u64 = (0..rows).map(|r| grid.count(column, r) as u64).sum();
    if total == 0 {
        return None;
    }
    let target = (total as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for r in 0..rows {
        seen += grid.count(column, r) as u64;
        if seen >= target {
            return Some(grid.axis().row_range_ns(r).1 as f64);
        }
    }
    None
}

/// Draws `grid` as an SVG heatmap.
pub fn render_heatmap(grid: &PhaseGrid, style: &HeatmapStyle) -> Result<String, Error> {
    let err = |e: &dyn std::fmt::Display| Error(e.to_string());
    let (width, height) = (style.width.max(300), style.height.max(200));
    let axis = grid.axis();
    let rows = axis.rows();
    let (y_min, y_max) = (
        axis.row_range_ns(0).0.max(1) as f64,
        axis.row_range_ns(rows - 1).1 as f64,
    );
    let span = style.x.span();
    let columns = grid.bins();
    let x_of = |c: u32| span * c as f64 / columns as f64;

    let mut svg = String::new();
    let mut cells = String::new();
    // Under the cells: the shade above the frame budget.
    let mut under = String::new();
    let mut overlay = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (main, _legend) = root.split_horizontally(width - LEGEND_WIDTH);
        let x_desc = match style.x {
            XAxis::Phase { .. } => "frame phase (ms)".to_string(),
            XAxis::Time { .. } => "time of day (UTC)".to_string(),
        };
        // Tenths of a second when the whole range is under 20 s.
        let tenths =
            matches!(style.x, XAxis::Time { from_ns, to_ns } if to_ns - from_ns < 20_000_000_000);
        let mut chart = ChartBuilder::on(&main)
            .caption(&style.title, ("sans-serif", 16))
            .margin(12)
            .margin_top(8)
            .x_label_area_size(42)
            .y_label_area_size(72)
            .build_cartesian_2d(0f64..span, (y_min..y_max).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(x_desc)
            .y_desc(format!("{} latency", style.latency))
            .x_label_formatter(&|x| match style.x {
                XAxis::Phase { .. } => trim(format!("{:.3}", x / 1e6)),
                XAxis::Time { from_ns, .. } => time_of_day(from_ns + *x as i64, tenths),
            })
            .y_label_formatter(&|y| format_latency(*y))
            .draw()
            .map_err(|e| err(&e))?;

        let max = (0..columns)
            .flat_map(|c| (0..rows).map(move |r| (c, r)))
            .map(|(c, r)| grid.count(c, r))
            .max()
            .unwrap_or(0);
        for c in 0..columns {
            let column_total: u64 = (0..rows).map(|r| grid.count(c, r) as u64).sum();
            if column_total == 0 {
                continue;
            }
            let (x0, x1) = (x_of(c), x_of(c + 1));
            let mut cumulative = 0u64;
            for r in 0..rows {
                let count = grid.count(c, r);
                if count == 0 {
                    continue;
                }
                cumulative += count as u64;
                let (lo, hi) = axis.row_range_ns(r);
                let (px0, py0) = chart.backend_coord(&(x0, (hi as f64).min(y_max)));
                let (px1, py1) = chart.backend_coord(&(x1, (lo as f64).max(y_min)));
                let _ = write!(
                    cells,
                    "<rect x=\"{px0}\" y=\"{py0}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}–{} · {} · {count} · {:.1}% of column · {:.1}% cumulative</title></rect>",
                    (px1 - px0).max(1),
                    (py1 - py0).max(1),
                    color(intensity(count, max, style.scale)),
                    format_latency(lo as f64),
                    format_latency(hi as f64),
                    style.x.describe(x0, x1),
                    100.0 * count as f64 / column_total as f64,
                    100.0 * cumulative as f64 / column_total as f64,
                );
            }
        }

        if let Some(budget) = style.budget_ns.map(|b| b as f64)
            && budget > y_min
            && budget < y_max
        {
            // Shaded above the budget, under the cells; the line over them.
            let (x0, top) = chart.backend_coord(&(0.0, y_max));
            let (x1, line) = chart.backend_coord(&(span, budget));
            let _ = write!(
                under,
                "<rect class=\"over-budget\" x=\"{x0}\" y=\"{top}\" width=\"{}\" height=\"{}\" fill=\"#d73a49\" fill-opacity=\"0.07\"><title>over the frame budget ({})</title></rect>",
                x1 - x0,
                line - top,
                format_latency(budget)
            );
            let _ = write!(
                overlay,
                "<line class=\"budget\" x1=\"{x0}\" y1=\"{line}\" x2=\"{x1}\" y2=\"{line}\" stroke=\"#d73a49\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>frame budget {}</title></line><text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#d73a49\" text-anchor=\"end\">frame budget {}</text>",
                format_latency(budget),
                x1 - 4,
                line - 4,
                format_latency(budget)
            );
        }

        if let XAxis::Phase { period_ns } = style.x {
            // The P99 line, broken where a bin has too few samples to have one.
            let mut segments: Vec<Vec<String>> = vec![Vec::new()];
            for c in 0..columns {
                let enough = samples_in(grid, c) >= MIN_P99_SAMPLES;
                match column_p99(grid, c).filter(|_| enough) {
                    Some(p99) => {
                        let y = p99.clamp(y_min, y_max);
                        let (px, py) = chart.backend_coord(&((x_of(c) + x_of(c + 1)) / 2.0, y));
                        segments
                            .last_mut()
                            .expect("one segment at least")
                            .push(format!("{px},{py}"));
                    }
                    None if segments.last().is_some_and(|s| !s.is_empty()) => {
                        segments.push(Vec::new())
                    }
                    None => {}
                }
            }
            for points in segments.iter().filter(|s| !s.is_empty()) {
                let _ = write!(
                    overlay,
                    "<polyline class=\"p99\" points=\"{}\" fill=\"none\" stroke=\"#1f6feb\" stroke-width=\"2\"><title>P99 per phase bin (bins with {MIN_P99_SAMPLES} samples or more)</title></polyline>",
                    points.join(" ")
                );
            }
            let (ex, top) = chart.backend_coord(&(period_ns as f64, y_max));
            let (_, bottom) = chart.backend_coord(&(period_ns as f64, y_min));
            let _ = write!(
                overlay,
                "<line class=\"frame-end\" x1=\"{ex}\" y1=\"{top}\" x2=\"{ex}\" y2=\"{bottom}\" stroke=\"#111\" stroke-width=\"2\" stroke-dasharray=\"6 3\"><title>frame end ({})</title></line>",
                format_latency(period_ns as f64)
            );
        }

        // Legend: a colour bar from 1 to the largest cell count.
        let lx = width - LEGEND_WIDTH + 14;
        let (top, bottom) = (40u32, height.saturating_sub(60).max(60));
        let steps = 24;
        let _ = write!(
            overlay,
            "<text x=\"{lx}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\">acks/cell ({})</text>",
            top - 10,
            match style.scale {
                ColorScale::Log => "log",
                ColorScale::Linear => "linear",
            }
        );
        for i in 0..steps {
            let t = 1.0 - i as f64 / (steps - 1) as f64;
            let y = top + (bottom - top) * i / steps;
            let h = (bottom - top) / steps + 1;
            let _ = write!(
                overlay,
                "<rect x=\"{lx}\" y=\"{y}\" width=\"16\" height=\"{h}\" fill=\"{}\"/>",
                color(t)
            );
        }
        for (label, y) in [(max.max(1), top), (1, bottom)] {
            let _ = write!(
                overlay,
                "<text x=\"{}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\">{label}</text>",
                lx + 20,
                y + 4
            );
        }
        let _ = write!(
            overlay,
            "<text x=\"12\" y=\"{}\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#444\">{}</text>",
            height - 6,
            escape(&style.subtitle)
        );
        root.present().map_err(|e| err(&e))?;
    }
    let end = svg
        .rfind("</svg>")
        .ok_or_else(|| Error("plotters wrote no </svg>".into()))?;
    svg.insert_str(
        end,
        &format!("{under}<g class=\"cells\">{cells}</g>{overlay}"),
    );
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::phase_grid::LatencyAxis;

    fn style(x: XAxis) -> HeatmapStyle {
        HeatmapStyle {
            width: 900,
            height: 500,
            scale: ColorScale::Log,
            x,
            title: "ack latency by frame phase — tick 16ms, bin 100µs".into(),
            subtitle: "GAME/srv-1 <all>".into(),
            latency: "ack".into(),
            budget_ns: Some(16_000_000),
        }
    }

    fn grid() -> PhaseGrid {
        let mut g = PhaseGrid::new(160, LatencyAxis::new(10_000, 10_000_000_000, 100));
        for i in 0..1000u64 {
            g.record((i % 160) as u32, 1_000_000 + i * 1000);
        }
        for _ in 0..50 {
            g.record(155, 40_000_000); // a frame-end pile-up
        }
        g
    }

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn phase_heatmap_has_cells_tooltips_p99_and_frame_end() {
        let g = grid();
        let svg = render_heatmap(
            &g,
            &style(XAxis::Phase {
                period_ns: 16_000_000,
            }),
        )
        .unwrap();
        let non_empty = (0..160)
            .flat_map(|c| (0..100).map(move |r| (c, r)))
            .filter(|&(c, r)| g.count(c, r) > 0)
            .count();
        let cells = &svg[svg.find("<g class=\"cells\">").unwrap()..];
        let cells = &cells[..cells.find("</g>").unwrap()];
        assert_eq!(count(cells, "<rect "), non_empty);
        // The shade above the frame budget lies under the cells; the line over them.
        let shade = svg.find("class=\"over-budget\"").unwrap();
        assert!(shade < svg.find("<g class=\"cells\">").unwrap());
        assert!(svg.contains("class=\"budget\""));
        assert!(svg.contains(">frame budget 16ms</text>"));
        // Only the pile-up's bin has 20 samples or more: a P99 line of one point there.
        assert_eq!(count(&svg, "class=\"p99\""), 1);
        assert!(svg.contains("bins with 20 samples or more"));
        assert!(svg.contains("class=\"frame-end\""));
        assert!(svg.contains("frame end (16ms)"));
        assert!(
            svg.contains("GAME/srv-1 &lt;all&gt;"),
            "subtitle is escaped"
        );
        assert!(svg.contains("tick 16ms, bin 100µs"));
        // The pile-up cell: all 50 samples of that row, and their share of the column.
        assert!(svg.contains("· 50 · "), "{}", &svg[..200]);
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn time_heatmap_has_no_frame_marker() {
        let x = XAxis::Time {
            from_ns: 1_790_000_000_000_000_000,
            to_ns: 1_790_000_060_000_000_000,
        };
        let svg = render_heatmap(&grid(), &style(x)).unwrap();
        assert!(!svg.contains("frame-end"));
        // Axis labels are times of day, not seconds from the start.
        assert!(svg.contains("time of day (UTC)"));
        assert!(svg.contains("\n14:13:20\n"), "{svg}");
        assert!(svg.contains("\n14:13:50\n"));
        assert!(svg.contains("class=\"budget\""));
    }

    #[test]
    fn the_p99_line_breaks_where_bins_have_too_few_samples() {
        let mut g = PhaseGrid::new(10, LatencyAxis::new(10_000, 1_000_000_000, 50));
        for c in [0u32, 1, 2, 6, 7] {
            for k in 0..MIN_P99_SAMPLES {
                g.record(c, 1_000_000 + k * 10_000);
            }
        }
        g.record(4, 500_000_000); // one slow ack alone in its bin: no P99 there
        let svg = render_heatmap(
            &g,
            &style(XAxis::Phase {
                period_ns: 16_000_000,
            }),
        )
        .unwrap();
        let lines: Vec<&str> = svg
            .split("<polyline class=\"p99\" points=\"")
            .skip(1)
            .collect();
        let points: Vec<usize> = lines
            .iter()
            .map(|l| l[..l.find('"').unwrap()].split(' ').count())
            .collect();
        assert_eq!(points, vec![3, 2]);
    }

    #[test]
    fn a_fitted_latency_axis_rounds_up_from_the_slowest_sample() {
        const MS: u64 = 1_000_000;
        let cap = 60_000 * MS;
        assert_eq!(fit_latency_axis(Some(70 * MS), 16 * MS, cap), 100 * MS);
        assert_eq!(
            fit_latency_axis(Some(3 * MS), 16 * MS, cap),
            50 * MS,
            "twice the budget"
        );
        assert_eq!(fit_latency_axis(Some(170 * MS), 16 * MS, cap), 500 * MS);
        assert_eq!(fit_latency_axis(None, 16 * MS, cap), 50 * MS);
        assert_eq!(fit_latency_axis(Some(90_000 * MS), 16 * MS, cap), cap);
        // The bottom: below the fastest, two decades under the top at least.
        assert_eq!(fit_latency_floor(Some(9 * MS), 50 * MS, 10_000), 500_000);
        assert_eq!(fit_latency_floor(Some(300_000), 50 * MS, 10_000), 200_000);
        assert_eq!(fit_latency_floor(Some(1_000), 50 * MS, 10_000), 10_000);
        assert_eq!(fit_latency_floor(None, 50 * MS, 10_000), 10_000);
    }

    #[test]
    fn empty_grid_draws_no_cells() {
        let g = PhaseGrid::new(10, LatencyAxis::new(10_000, 1_000_000_000, 10));
        let svg = render_heatmap(
            &g,
            &style(XAxis::Phase {
                period_ns: 16_000_000,
            }),
        )
        .unwrap();
        assert!(svg.contains("<g class=\"cells\"></g>"));
        assert!(!svg.contains("class=\"p99\""));
    }

    #[test]
    fn colours_run_from_pale_to_dark() {
        assert_eq!(color(0.0), "#fad65a");
        assert_eq!(color(1.0), "#4d004b");
        assert!(intensity(1, 1000, ColorScale::Log) > 0.0);
        assert_eq!(intensity(1000, 1000, ColorScale::Linear), 1.0);
        assert_eq!(format_latency(16_000_000.0), "16ms");
        assert_eq!(format_latency(1_500_000.0), "1.5ms");
        assert_eq!(format_latency(250_000.0), "250µs");
    }
}
