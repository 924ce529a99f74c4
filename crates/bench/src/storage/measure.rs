//! Counting and timing: what one phase of a run (appending, reading, or a baseline) adds up to.

use std::time::Duration;

use crate::latency::Latencies;

/// Totals of one task, or of a whole phase once the tasks are merged.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Operations (appends or reads).
    pub ops: u64,
    /// Bytes appended or read.
    pub bytes: u64,
    /// Records appended or read.
    pub records: u64,
    /// Read pieces served as file regions.
    pub file_pieces: u64,
    /// Read pieces served from memory.
    pub bytes_pieces: u64,
    /// Latency of each operation.
    pub latencies: Latencies,
}

impl Tally {
    /// Adds another task's totals.
    pub fn merge(&mut self, other: &Tally) {
        self.ops += other.ops;
        self.bytes += other.bytes;
        self.records += other.records;
        self.file_pieces += other.file_pieces;
        self.bytes_pieces += other.bytes_pieces;
        self.latencies.merge(&other.latencies);
    }
}

/// A finished phase: its totals and how long it took from the first operation to the last.
#[derive(Debug, Clone, Default)]
pub struct Phase {
    /// Totals over all tasks.
    pub tally: Tally,
    /// Wall-clock time of the phase.
    pub elapsed: Duration,
    /// fsyncs issued during the phase (engine counter, or the baseline's own).
    pub fsyncs: u64,
}

impl Phase {
    /// Seconds, never zero (so rates stay finite).
    pub fn secs(&self) -> f64 {
        self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Throughput in MB/s, with MB = 10^6 bytes.
    pub fn mb_per_s(&self) -> f64 {
        self.tally.bytes as f64 / 1e6 / self.secs()
    }

    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.tally.ops as f64 / self.secs()
    }

    /// Records per second.
    pub fn records_per_s(&self) -> f64 {
        self.tally.records as f64 / self.secs()
    }
}

/// Milliseconds of a duration as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
