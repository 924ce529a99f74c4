//! The physical references each engine figure is reported against, measured in the same run:
//! the same bytes in the same batch sizes written with `pwrite` to one file (with the same
//! fsync cadence), read back sequentially, or copied in memory.
//!
//! Baselines are single-threaded on purpose: they answer "what does this disk (or this memory)
//! give one careful writer", which is the yardstick for an engine's overhead, and what group
//! commit across many writers should beat.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use strata_storage::Durability;

use super::measure::{Phase, Tally};
use super::sink::Sink;
use super::workload::BatchPool;

/// Largest destination buffer of the memcpy baseline; copies wrap around inside it.
const MEMCPY_RING: usize = 256 << 20;

/// When the baseline writer fsyncs: the engine's durability, applied by one writer inline.
#[derive(Debug, Clone, Copy)]
struct Cadence {
    every_write: bool,
    interval: Option<Duration>,
    last: Instant,
}

impl Cadence {
    fn new(d: Durability) -> Cadence {
        Cadence {
            every_write: d == Durability::Fsync,
            interval: match d {
                Durability::Interval(ms) => Some(Duration::from_millis(u64::from(ms))),
                _ => None,
            },
            last: Instant::now(),
        }
    }

    /// fsyncs if this write is due one; returns whether it did.
    fn after_write(&mut self, file: &File) -> Result<bool> {
        let due = self.every_write || self.interval.is_some_and(|i| self.last.elapsed() >= i);
        if due {
            file.sync_data().context("fdatasync of the baseline file")?;
            self.last = Instant::now();
        }
        Ok(due)
    }
}

fn create(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating baseline file {}", path.display()))
}

/// Writes `appends` batches from the pool back to back into a new file at `path`.
pub fn write(path: &Path, pool: &BatchPool, appends: u64, durability: Durability) -> Result<Phase> {
    let file = create(path)?;
    let mut cadence = Cadence::new(durability);
    let mut phase = Phase::default();
    let mut pos = 0u64;
    let start = Instant::now();
    for i in 0..appends as usize {
        let batch = pool.get(i);
        let t0 = Instant::now();
        file.write_all_at(batch.as_bytes(), pos)
            .context("pwrite of the baseline file")?;
        phase.fsyncs += u64::from(cadence.after_write(&file)?);
        phase.tally.latencies.record_since(t0);
        pos += batch.len() as u64;
        count(&mut phase.tally, pool);
    }
    phase.elapsed = start.elapsed();
    Ok(phase)
}

/// Reads the file at `path` sequentially in `budget`-byte pieces through the sink.
pub fn read(path: &Path, pool: &BatchPool, budget: usize, sink: &mut Sink) -> Result<Phase> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut phase = Phase::default();
    let mut pos = 0u64;
    let start = Instant::now();
    while pos < len {
        let n = (len - pos).min(budget as u64) as usize;
        let t0 = Instant::now();
        sink.file_range(&file, pos, n)
            .context("reading the baseline file")?;
        phase.tally.latencies.record_since(t0);
        phase.tally.ops += 1;
        phase.tally.bytes += n as u64;
        pos += n as u64;
    }
    phase.elapsed = start.elapsed();
    let batches = len / pool.batch_len as u64;
    phase.tally.records = batches * u64::from(pool.records_per_batch);
    Ok(phase)
}

/// Writes each batch and reads it straight back, `appends` times.
pub fn write_read(
    path: &Path,
    pool: &BatchPool,
    appends: u64,
    durability: Durability,
    sink: &mut Sink,
) -> Result<Phase> {
    let file = create(path)?;
    let mut cadence = Cadence::new(durability);
    let mut phase = Phase::default();
    let mut pos = 0u64;
    let start = Instant::now();
    for i in 0..appends as usize {
        let batch = pool.get(i);
        let t0 = Instant::now();
        file.write_all_at(batch.as_bytes(), pos)
            .context("pwrite of the baseline file")?;
        phase.fsyncs += u64::from(cadence.after_write(&file)?);
        sink.file_range(&file, pos, batch.len())
            .context("reading back the baseline file")?;
        phase.tally.latencies.record_since(t0);
        pos += batch.len() as u64;
        count(&mut phase.tally, pool);
    }
    phase.elapsed = start.elapsed();
    Ok(phase)
}

/// Copies `appends` batches from the pool into a pre-faulted buffer, wrapping around.
pub fn memcpy(pool: &BatchPool, appends: u64) -> Phase {
    let len = pool.batch_len;
    let total = (appends as usize).saturating_mul(len);
    let slots = (total.min(MEMCPY_RING) / len).max(1);
    // Non-zero fill so that every page is really mapped before timing starts.
    let mut dest = vec![1u8; slots * len];
    let mut phase = Phase::default();
    let start = Instant::now();
    for i in 0..appends as usize {
        let at = (i % slots) * len;
        let t0 = Instant::now();
        dest[at..at + len].copy_from_slice(pool.get(i).as_bytes());
        phase.tally.latencies.record_since(t0);
        count(&mut phase.tally, pool);
    }
    phase.elapsed = start.elapsed();
    std::hint::black_box(&dest);
    phase
}

fn count(tally: &mut Tally, pool: &BatchPool) {
    tally.ops += 1;
    tally.bytes += pool.batch_len as u64;
    tally.records += u64::from(pool.records_per_batch);
}
