//! Prometheus histograms for `/metrics`: fixed buckets, lock-free counters, text exposition.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the latency buckets every sigvault histogram uses: fine below
/// 50 ms, where the services' goals are, coarse above.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// A latency histogram over [`LATENCY_BUCKETS`].
#[derive(Default)]
pub struct Histogram {
    /// Counts per bucket (not cumulative), then +Inf.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Append the `_bucket`, `_sum` and `_count` lines of `name` with `labels` (e.g.
    /// `tree="ct"`, or empty) to `out`. HELP and TYPE lines are the caller's (once per name).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cum = 0u64;
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cum += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cum}");
        }
        cum += self.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cum}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(
            out,
            "{name}_sum{braces} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }

    /// HELP and TYPE lines of a histogram, then its samples.
    pub fn render_with_help(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        self.render(name, "", out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_exposed_in_prometheus_text() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(12));
        h.observe(Duration::from_secs(60));
        let mut s = String::new();
        h.render("x_seconds", "tree=\"t\"", &mut s);
        assert!(
            s.contains("x_seconds_bucket{tree=\"t\",le=\"0.001\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{tree=\"t\",le=\"0.01\"} 1\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{tree=\"t\",le=\"0.015\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{tree=\"t\",le=\"10\"} 2\n"),
            "{s}"
        );
        assert!(
            s.contains("x_seconds_bucket{tree=\"t\",le=\"+Inf\"} 3\n"),
            "{s}"
        );
        assert!(s.contains("x_seconds_sum{tree=\"t\"} 60.0125\n"), "{s}");
        assert!(s.contains("x_seconds_count{tree=\"t\"} 3\n"), "{s}");
        let mut s = String::new();
        h.render_with_help("y_seconds", "Help.", &mut s);
        assert!(s.starts_with("# HELP y_seconds Help.\n# TYPE y_seconds histogram\n"));
        assert!(s.contains("y_seconds_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("y_seconds_count 3\n"), "{s}");
    }
}
