//! The frame-phase × latency grid: columns are phase bins of the game frame, rows are
//! log-spaced latency bands, cells count samples.
//!
//! Dense and fixed-size once built; values outside the latency axis land in the first or last
//! row. Building a grid from samples is the caller's job; this type only counts.

/// Log-spaced latency rows between `min_ns` and `max_ns`.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyAxis {
    /// `rows + 1` edges; row `r` covers `edges[r]..edges[r + 1]`, the first row also everything
    /// below and the last row everything above.
    edges: Vec<u64>,
}

impl LatencyAxis {
    /// `rows` log-spaced rows; requires `1 <= min_ns < max_ns` and `rows >= 1`.
    pub fn new(min_ns: u64, max_ns: u64, rows: u32) -> Self {
        let (min, max) = (min_ns.max(1) as f64, max_ns.max(min_ns + 1) as f64);
        let ratio = (max / min).ln();
        let rows = rows.max(1);
        let edges = (0..=rows)
            .map(|r| (min * (ratio * r as f64 / rows as f64).exp()).round() as u64)
            .collect();
        Self { edges }
    }

    pub fn rows(&self) -> u32 {
        (self.edges.len() - 1) as u32
    }

    /// The row of latency `ns`.
    pub fn row(&self, ns: u64) -> u32 {
        // Index of the first edge above `ns`, minus one, clamped into 0..rows.
        let above = self.edges.partition_point(|&e| e <= ns);
        (above.saturating_sub(1) as u32).min(self.rows() - 1)
    }

    /// The latency range `[from, to)` of `row` in nanoseconds.
    pub fn row_range_ns(&self, row: u32) -> (u64, u64) {
        (self.edges[row as usize], self.edges[row as usize + 1])
    }
}

/// Counts per (phase bin, latency row).
#[derive(Debug, Clone, PartialEq)]
pub struct PhaseGrid {
    bins: u32,
    axis: LatencyAxis,
    /// Row-major by phase bin: `counts[bin * rows + row]`.
    counts: Vec<u32>,
    total: u64,
}

impl PhaseGrid {
    pub fn new(bins: u32, axis: LatencyAxis) -> Self {
        let cells = bins as usize * axis.rows() as usize;
        Self {
            bins,
            axis,
            counts: vec![0; cells],
            total: 0,
        }
    }

    pub fn bins(&self) -> u32 {
        self.bins
    }

    pub fn axis(&self) -> &LatencyAxis {
        &self.axis
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts one sample in phase bin `bin` with latency `ns`.
    pub fn record(&mut self, bin: u32, ns: u64) {
        let bin = bin.min(self.bins - 1) as usize;
        let row = self.axis.row(ns) as usize;
        let cell = &mut self.counts[bin * self.axis.rows() as usize + row];
        *cell = cell.saturating_add(1);
        self.total += 1;
    }

    pub fn count(&self, bin: u32, row: u32) -> u32 {
        self.counts[bin as usize * self.axis.rows() as usize + row as usize]
    }

    /// Samples per phase bin (summed over latency rows).
    pub fn column_totals(&self) -> Vec<u64> {
        self.counts
            .chunks(self.axis.rows() as usize)
            .map(|col| col.iter().map(|&c| c as u64).sum())
            .collect()
    }

    /// Adds the counts of `other`, a grid of the same shape.
    pub fn merge(&mut self, other: &PhaseGrid) {
        debug_assert_eq!((self.bins, &self.axis), (other.bins, &other.axis));
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.total += other.total;
    }

    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_rows_are_log_spaced_and_clamped() {
        let axis = LatencyAxis::new(10_000, 10_000_000_000, 6); // 10us .. 10s, a decade a row
        assert_eq!(axis.rows(), 6);
        assert_eq!(axis.row_range_ns(0), (10_000, 100_000));
        assert_eq!(axis.row_range_ns(5), (1_000_000_000, 10_000_000_000));
        assert_eq!(axis.row(0), 0);
        assert_eq!(axis.row(99_999), 0);
        assert_eq!(axis.row(100_000), 1);
        assert_eq!(axis.row(16_000_000), 3);
        assert_eq!(axis.row(u64::MAX), 5);
    }

    #[test]
    fn grid_counts_by_bin_and_row() {
        let mut g = PhaseGrid::new(4, LatencyAxis::new(10_000, 10_000_000_000, 6));
        g.record(3, 16_000_000);
        g.record(3, 16_500_000);
        g.record(0, 50_000);
        g.record(99, 50_000); // out-of-range bins clamp to the last one
        assert_eq!(g.count(3, 3), 2);
        assert_eq!(g.count(0, 0), 1);
        assert_eq!(g.count(3, 0), 1);
        assert_eq!(g.column_totals(), vec![1, 0, 0, 3]);
        assert_eq!(g.total(), 4);
        g.reset();
        assert_eq!(g.total(), 0);
        assert_eq!(g.column_totals(), vec![0; 4]);
    }
}
