//! The memory engine: batches held as shared `Bytes` in process memory.
//!
//! No disk I/O at all. Each shard is bounded by its retention bytes (oldest batches drop first)
//! and reads hand out clones of the stored `Bytes`, so a fetch copies nothing. Nothing survives
//! a restart: this is scenario 4 of the map (sub-millisecond delivery, one in-memory copy).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use strata_record::Batch;

use crate::engine::check_batch_size;
use crate::util::first_record_at_or_after;
use crate::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, LEADER_EPOCH, Maintenance,
    Model, Piece, ReadChunk, Result, ShardId, StorageError, StorageSpec, TimestampHit,
};

/// The memory engine. Cheap to clone handles are not needed: share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    shards: RwLock<HashMap<ShardId, Arc<Mutex<Shard>>>>,
    bytes: AtomicU64,
    closed: AtomicBool,
}

#[derive(Debug)]
struct Shard {
    spec: StorageSpec,
    batches: VecDeque<Stored>,
    log_start: u64,
    next_offset: u64,
    size: u64,
}

#[derive(Debug)]
struct Stored {
    base: u64,
    last: u64,
    /// Highest timestamp in this batch and every earlier one still held: monotone, so the
    /// first batch reaching a timestamp can be found by binary search.
    ts_mark: i64,
    max_ts: i64,
    bytes: Bytes,
}

impl MemoryEngine {
    /// An empty engine.
    pub fn new() -> Self {
        Self::default()
    }

    fn shard(&self, id: &ShardId) -> Result<Arc<Mutex<Shard>>> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(StorageError::Closed);
        }
        self.shards
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }

    fn release(&self, bytes: u64) {
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Shard {
    fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next_offset,
            size_bytes: self.size,
        }
    }

    /// Drops front batches that end before the log start or that `drop` selects; returns bytes freed.
    fn drop_front(&mut self, mut drop: impl FnMut(&Stored, u64) -> bool) -> u64 {
        let mut freed = 0;
        while let Some(front) = self.batches.front() {
            if front.last >= self.log_start && !drop(front, self.size) {
                break;
            }
            let front = self.batches.pop_front().expect("front exists");
            self.size -= front.bytes.len() as u64;
            freed += front.bytes.len() as u64;
            self.log_start = self.log_start.max(front.last + 1);
        }
        freed
    }

    fn out_of_range(&self, id: &ShardId, offset: u64) -> StorageError {
        StorageError::OffsetOutOfRange {
            shard: id.clone(),
            offset,
            log_start: self.log_start,
            next_offset: self.next_offset,
        }
    }
}

fn check_spec(spec: &StorageSpec) -> Result<()> {
    spec.validate()?;
    if spec.engine != EngineKind::Memory || spec.durability != Durability::Memory {
        return Err(StorageError::InvalidSpec(format!(
            "the memory engine cannot hold a shard of engine {} with durability {}",
            spec.engine, spec.durability
        )));
    }
    Ok(())
}

#[async_trait]
impl Engine for MemoryEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Memory
    }

    fn model(&self) -> Model {
        Model::Dedicated
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        check_spec(spec)?;
        let mut shards = self.shards.write();
        if shards.contains_key(id) {
            return Err(StorageError::ShardExists(id.clone()));
        }
        let shard = Shard {
            spec: *spec,
            batches: VecDeque::new(),
            log_start: 0,
            next_offset: 0,
            size: 0,
        };
        shards.insert(id.clone(), Arc::new(Mutex::new(shard)));
        Ok(())
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        let shard = self
            .shards
            .write()
            .remove(id)
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))?;
        self.release(shard.lock().size);
        Ok(())
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        check_spec(spec)?;
        self.shard(id)?.lock().spec = *spec;
        Ok(())
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        Ok(self
            .shards
            .read()
            .iter()
            .map(|(id, s)| (id.clone(), s.lock().spec))
            .collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        check_batch_size(&batch)?;
        let shard = self.shard(id)?;
        let mut s = shard.lock();
        let base = s.next_offset;
        let last = base + u64::from(batch.record_count()) - 1;
        let max_ts = batch.max_timestamp();
        // Copies at most once: the incoming bytes usually share a network buffer, which must
        // not stay alive as long as the message does.
        let bytes = batch.into_stored(base as i64, LEADER_EPOCH);
        let ts_mark = s.batches.back().map_or(max_ts, |b| b.ts_mark.max(max_ts));
        let len = bytes.len() as u64;
        s.batches.push_back(Stored {
            base,
            last,
            ts_mark,
            max_ts,
            bytes,
        });
        s.next_offset = last + 1;
        s.size += len;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        let freed = match s.spec.retention.bytes {
            // Keep the newest batch even if it alone exceeds the bound.
            Some(limit) => s.drop_front(|b, size| size > limit && b.last < last),
            None => 0,
        };
        self.release(freed);
        Ok(Appended {
            base_offset: base,
            last_offset: last,
            log_start: s.log_start,
        })
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        let shard = self.shard(id)?;
        let s = shard.lock();
        if from < s.log_start || from > s.next_offset {
            return Err(s.out_of_range(id, from));
        }
        let mut chunk = ReadChunk {
            bounds: s.bounds(),
            ..ReadChunk::default()
        };
        let first = s.batches.partition_point(|b| b.last < from);
        for b in s.batches.range(first..) {
            if !chunk.is_empty() && chunk.len + b.bytes.len() > max_bytes {
                break;
            }
            chunk.push(Piece::Bytes(b.bytes.clone()));
        }
        Ok(chunk)
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        Ok(self.shard(id)?.lock().bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        let shard = self.shard(id)?;
        let s = shard.lock();
        let first = s.batches.partition_point(|b| b.ts_mark < ts);
        for b in s.batches.range(first..).filter(|b| b.max_ts >= ts) {
            if let Some(hit) = first_record_at_or_after(b.bytes.clone(), ts, s.log_start)? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        let shard = self.shard(id)?;
        let mut s = shard.lock();
        if before > s.next_offset {
            return Err(s.out_of_range(id, before));
        }
        s.log_start = s.log_start.max(before);
        let freed = s.drop_front(|_, _| false);
        self.release(freed);
        Ok(s.bounds())
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        let shard = self.shard(id)?;
        let mut s = shard.lock();
        if to >= s.next_offset {
            return Ok(s.bounds());
        }
        let keep = s.batches.partition_point(|b| b.last < to);
        let new_next = s.batches.get(keep).map_or(to, |b| b.base.min(to));
        let freed: u64 = s.batches.drain(keep..).map(|b| b.bytes.len() as u64).sum();
        s.size -= freed;
        self.release(freed);
        s.next_offset = new_next;
        s.log_start = s.log_start.min(new_next);
        Ok(s.bounds())
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        let shards: Vec<_> = self.shards.read().values().cloned().collect();
        let mut report = Maintenance::default();
        for shard in shards {
            let mut s = shard.lock();
            let retention = s.spec.retention;
            let cutoff = retention
                .ms
                .map_or(i64::MIN, |ms| now_ms.saturating_sub(ms as i64));
            let limit = retention.bytes.unwrap_or(u64::MAX);
            let last = s.next_offset.saturating_sub(1);
            let freed =
                s.drop_front(|b, size| b.max_ts < cutoff || (size > limit && b.last < last));
            report.bytes_dropped += freed;
            self.release(freed);
        }
        Ok(report)
    }

    async fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        EngineStats {
            shards: self.shards.read().len() as u64,
            bytes: self.bytes.load(Ordering::Relaxed),
            ..EngineStats::default()
        }
    }
}
