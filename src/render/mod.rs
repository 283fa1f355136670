//! Rendering: pure functions from data to bytes (SVG heatmaps, Prometheus text) and the
//! dashboard page.

pub mod heatmap;
pub mod prometheus;

/// The dashboard page, self-contained: inline CSS and JS, no external requests.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");
