//! What gets appended where: a pool of distinct, pre-built batches and the split of shards and
//! appends over tasks.
//!
//! Batches are built before any timing starts; the timed loops only clone them (`Batch` holds
//! `Bytes`, so a clone is a reference-count increment), so no record is encoded and no buffer
//! is allocated per append by the benchmark itself.

use anyhow::{Context, Result, ensure};
use strata_record::{Batch, BatchBuilder, Compression};
use strata_storage::ShardId;

/// Distinct batches in the pool: enough that consecutive appends do not carry identical
/// bytes, few enough to stay small next to the data written.
pub const POOL_SIZE: usize = 16;

/// The topic every benchmark shard belongs to.
pub const TOPIC: &str = "bench";

/// Identical-size batches with different contents.
#[derive(Debug, Clone)]
pub struct BatchPool {
    batches: Vec<Batch>,
    /// Encoded size of every batch in the pool.
    pub batch_len: usize,
    /// Records in every batch of the pool.
    pub records_per_batch: u32,
}

impl BatchPool {
    /// Builds `count` batches of records with `record_bytes`-byte values, as many records per
    /// batch as bring the encoded batch nearest to `batch_bytes` (at least one).
    pub fn build(batch_bytes: usize, record_bytes: usize, count: usize) -> Result<BatchPool> {
        let records = records_that_fit(batch_bytes, record_bytes);
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut value = vec![0u8; record_bytes];
        let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
        let mut batches = Vec::with_capacity(count);
        for _ in 0..count {
            let mut builder = BatchBuilder::new(Compression::None);
            for _ in 0..records {
                fill_pseudo_random(&mut value, &mut seed);
                builder.push(None, Some(&value), &[], timestamp);
            }
            let bytes = builder.build().context("building a benchmark batch")?;
            batches.push(Batch::validate(bytes).context("validating a benchmark batch")?);
        }
        let batch_len = batches[0].len();
        ensure!(
            batches.iter().all(|b| b.len() == batch_len),
            "benchmark batches differ in size; reads rely on a uniform size"
        );
        Ok(BatchPool {
            batches,
            batch_len,
            records_per_batch: records as u32,
        })
    }

    /// The `i`-th batch of an endless cycle through the pool.
    pub fn get(&self, i: usize) -> &Batch {
        &self.batches[i % self.batches.len()]
    }
}

/// Records with `record_bytes`-byte values whose batch comes nearest to `batch_bytes`, at least
/// one.
///
/// Computed by encoding, not by formula, so that varint widths are exact: a probe builder takes
/// records until the next one would cross the target.
fn records_that_fit(batch_bytes: usize, record_bytes: usize) -> usize {
    let value = vec![0u8; record_bytes];
    let mut probe = BatchBuilder::new(Compression::None);
    probe.push(None, Some(&value), &[], 0);
    let first = probe.uncompressed_len();
    probe.push(None, Some(&value), &[], 0);
    // Every later record encodes to within a byte or two of the second one.
    let per_record = probe.uncompressed_len() - first;
    if first >= batch_bytes {
        return 1;
    }
    let mut count = 1 + (batch_bytes - first) / per_record;
    // Offset-delta varints widen as the count grows: step back until the batch fits.
    while count > 1 && encoded_len(count, &value) > batch_bytes {
        count -= 1;
    }
    // Then take one record more if that lands nearer the target, over or not.
    let under = batch_bytes - encoded_len(count, &value);
    let over = encoded_len(count + 1, &value) - batch_bytes;
    if over < under { count + 1 } else { count }
}

fn encoded_len(count: usize, value: &[u8]) -> usize {
    let mut b = BatchBuilder::new(Compression::None);
    for _ in 0..count {
        b.push(None, Some(value), &[], 0);
    }
    b.uncompressed_len()
}

/// xorshift64: incompressible-looking bytes without a dependency or a per-byte call.
fn fill_pseudo_random(buf: &mut [u8], seed: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
    }
}

/// The ids of shards `0..count` of the benchmark topic.
pub fn shard_ids(count: usize) -> Result<Vec<ShardId>> {
    let topic: std::sync::Arc<str> = TOPIC.into();
    (0..count)
        .map(|p| ShardId::with_topic(topic.clone(), p as u32).context("naming a benchmark shard"))
        .collect()
}

/// Which shards task `task` of `tasks` owns: every `tasks`-th one, starting at `task`.
pub fn owned_shards(shards: usize, tasks: usize, task: usize) -> Vec<usize> {
    (task..shards).step_by(tasks).collect()
}

/// How many of `appends` round-robin appends over `shards` shards land in the given shards.
///
/// Append `i` goes to shard `i % shards`, so shard `s` receives `appends / shards` appends plus
/// one if `s < appends % shards`. A task that cycles through its own (ascending) shards for this
/// many appends therefore gives every shard exactly what the global round robin would.
pub fn appends_for(appends: u64, shards: usize, owned: &[usize]) -> u64 {
    let (each, extra) = (appends / shards as u64, appends % shards as u64);
    owned
        .iter()
        .map(|&s| each + u64::from((s as u64) < extra))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_come_close_to_the_target() {
        for (target, record) in [
            (1024, 100),
            (65536, 100),
            (1 << 20, 100),
            (1024, 10),
            (200, 1000),
        ] {
            let pool = BatchPool::build(target, record, 2).unwrap();
            if pool.records_per_batch > 1 {
                let off = pool.batch_len.abs_diff(target);
                assert!(
                    off <= (record + 8) / 2 + 1,
                    "{target}/{record}: {}",
                    pool.batch_len
                );
            }
            assert_eq!(pool.get(0).record_count(), pool.records_per_batch);
        }
    }

    #[test]
    fn tasks_split_appends_like_the_global_round_robin() {
        let (shards, tasks, appends) = (10, 3, 47);
        let total: u64 = (0..tasks)
            .map(|t| appends_for(appends, shards, &owned_shards(shards, tasks, t)))
            .sum();
        assert_eq!(total, appends);
        assert_eq!(owned_shards(10, 3, 1), vec![1, 4, 7]);
        // Shards 0..7 get 5 appends, 7..10 get 4: task 1 owns 1, 4 (5 each) and 7 (4).
        assert_eq!(appends_for(appends, shards, &[1, 4, 7]), 14);
    }
}
