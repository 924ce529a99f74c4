//! The latency histogram every bench records into, so that `p50_us`… mean the same in the
//! storage, Kafka and MQTT lines.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// Largest latency recorded, in nanoseconds (a minute); anything slower is clamped to it.
const MAX_NANOS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, three significant digits. Recording never allocates.
#[derive(Debug, Clone)]
pub struct Latencies(Histogram<u64>);

impl Default for Latencies {
    fn default() -> Self {
        Latencies(Histogram::new_with_bounds(1, MAX_NANOS, 3).expect("valid histogram bounds"))
    }
}

impl Latencies {
    /// Records the time since `start`.
    pub fn record_since(&mut self, start: Instant) {
        self.record(start.elapsed());
    }

    /// Records one duration.
    pub fn record(&mut self, d: Duration) {
        let nanos = (d.as_nanos() as u64).clamp(1, MAX_NANOS);
        self.0.saturating_record(nanos);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// The latency at `quantile` (0–1) in microseconds, or `None` without samples.
    pub fn quantile_us(&self, quantile: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(quantile) as f64 / 1e3)
    }

    /// The largest latency in microseconds.
    pub fn max_us(&self) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.max() as f64 / 1e3)
    }
}
