//! The engine's in-memory state: shards, where each batch lives, the upload buffer and the
//! cache of recent batches. The same `apply` replays log objects at recovery and applies a
//! commit once its log object is written.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Instant;

use bytes::Bytes;
use strata_record::Batch;
use strata_storage::{Bounds, Result, ShardId, ShardNo, StorageError, StorageSpec, WriteGate};
use tokio::sync::oneshot;

use crate::format::{self, BatchRec, Checkpoint, LogIndex, ObjectRec, Op, ShardRec};
use crate::wal::Entry;

/// Object number of a batch that is in the write-ahead log but not yet uploaded.
pub const PENDING: u64 = u64::MAX;

/// Where one batch is.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    pub base: u64,
    pub last: u64,
    pub max_ts: i64,
    /// Running maximum of `max_ts` up to this batch, so timestamp lookups can bisect.
    pub ts_mark: i64,
    pub len: u32,
    pub obj: u64,
    pub pos: u64,
}

/// A batch waiting for upload.
#[derive(Debug)]
pub struct Pending {
    pub no: ShardNo,
    pub base: u64,
    pub last: u64,
    pub max_ts: i64,
    pub bytes: Bytes,
    /// Who waits for the upload (appends without a write-ahead log).
    pub done: Option<oneshot::Sender<Result<()>>>,
    /// True if the write-ahead log holds it (already visible and acknowledged).
    pub wal: bool,
    /// Compaction: the object this batch is moved out of.
    pub moved_from: Option<u64>,
}

#[derive(Debug)]
pub struct Shard {
    pub no: ShardNo,
    pub id: ShardId,
    pub spec: StorageSpec,
    pub epoch: u32,
    pub log_start: u64,
    /// Next offset visible to readers.
    pub next: u64,
    /// Next offset to hand out (ahead of `next` while uploads without a log are in flight).
    pub assigned: u64,
    pub size: u64,
    pub batches: VecDeque<Loc>,
    /// Recent batches' bytes: (base, last, bytes), by base.
    pub cache: VecDeque<(u64, u64, Bytes)>,
}

impl Shard {
    pub fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next,
            size_bytes: self.size,
        }
    }

    fn find(&self, base: u64) -> Option<usize> {
        self.batches.binary_search_by_key(&base, |l| l.base).ok()
    }

    /// The batch holding `offset`.
    pub fn batch_holding(&self, offset: u64) -> Option<Loc> {
        let i = self.batches.partition_point(|l| l.last < offset);
        self.batches.get(i).filter(|l| l.base <= offset).copied()
    }

    /// Base of the first batch whose running maximum timestamp reaches `ts`.
    pub fn first_with_ts_mark(&self, ts: i64) -> Option<u64> {
        let i = self.batches.partition_point(|l| l.ts_mark < ts);
        self.batches.get(i).map(|l| l.base)
    }

    /// Base of the batch after the one at `base`.
    pub fn batch_after(&self, base: u64) -> Option<u64> {
        let i = self.batches.partition_point(|l| l.base <= base);
        self.batches.get(i).map(|l| l.base)
    }

    fn cached(&self, base: u64) -> Option<Bytes> {
        self.cache
            .binary_search_by_key(&base, |c| c.0)
            .ok()
            .map(|i| self.cache[i].2.clone())
    }

    /// Next offset of what the bucket holds (the write-ahead log holds the rest).
    fn uploaded_next(&self) -> u64 {
        self.batches
            .iter()
            .find(|l| l.obj == PENDING)
            .map_or(self.next, |l| l.base)
    }
}

#[derive(Debug)]
pub struct Obj {
    pub key: String,
    /// Data bytes (without a log object's index).
    pub size: u64,
    pub seq: u64,
    pub log: bool,
    /// Bytes of live batches in it.
    pub live: u64,
}

/// An object to compact: its number, key, and its live batches as (shard number, location).
pub type Rewrite = (u64, String, Vec<(ShardNo, Loc)>);

/// A part of a read: cached bytes, or batches to fetch from one object of which the first
/// `serve` are returned and the rest read ahead into the cache.
#[derive(Debug)]
pub enum Part {
    Cached(Bytes),
    Object {
        key: String,
        locs: Vec<Loc>,
        serve: usize,
    },
}

/// What a read fetches.
#[derive(Debug)]
pub struct ReadPlan {
    pub no: ShardNo,
    pub bounds: Bounds,
    pub parts: Vec<Part>,
}

#[derive(Debug, Default)]
pub struct State {
    pub shards: HashMap<ShardNo, Shard>,
    pub by_name: HashMap<ShardId, ShardNo>,
    pub objects: HashMap<u64, Obj>,
    pub next_no: ShardNo,
    pub next_object: u64,
    pub buffer: Vec<Pending>,
    pub buffer_bytes: usize,
    pub buffer_since: Option<Instant>,
    /// Write-ahead log position just past the last entry buffered.
    pub wal_mark: u64,
    /// Bytes in the write-ahead log not yet uploaded.
    pub wal_backlog: usize,
    fifo: VecDeque<(ShardNo, u64)>,
    cache_bytes: usize,
    cache_entries: usize,
    pub seq: u64,
    pub checkpoint_seq: u64,
    pub logs_since_checkpoint: u64,
    /// Closed by `close`, poisoned by a failed write-ahead log fsync or a lost commit race;
    /// checked and changed under the state lock, so that no append slips past a close.
    pub gate: WriteGate,
    pub orphans_checked: bool,
    dirty_trims: BTreeSet<ShardNo>,
    pub puts: u64,
    pub put_bytes: u64,
}

/// A copy of an error for each of several waiters.
fn copy_err(e: &StorageError) -> StorageError {
    match e {
        StorageError::Closed => StorageError::Closed,
        StorageError::Poisoned(w) => StorageError::Poisoned(w.clone()),
        StorageError::ShardNotFound(id) => StorageError::ShardNotFound(id.clone()),
        StorageError::Unavailable(w) => StorageError::Unavailable(w.clone()),
        other => StorageError::Unavailable(other.to_string()),
    }
}

impl State {
    pub fn no(&self, id: &ShardId) -> Result<ShardNo> {
        self.by_name
            .get(id)
            .copied()
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }

    pub fn take_dirty_trims(&mut self) -> Vec<Op> {
        std::mem::take(&mut self.dirty_trims)
            .into_iter()
            .filter_map(|no| {
                self.shards.get(&no).map(|s| Op::Trim {
                    no,
                    log_start: s.log_start,
                })
            })
            .collect()
    }

    fn live(&mut self, obj: u64, delta: i64) {
        if obj == PENDING {
            return;
        }
        if let Some(o) = self.objects.get_mut(&obj) {
            o.live = o.live.saturating_add_signed(delta);
        }
    }

    /// Applies one log object: its objects, then its batches, then its ops.
    pub fn apply(&mut self, index: &LogIndex) -> Result<()> {
        for o in &index.objects {
            self.add_object(o);
        }
        for b in &index.batches {
            self.apply_batch(b);
        }
        for op in &index.ops {
            self.apply_op(op)?;
        }
        self.seq = self.seq.max(index.seq);
        Ok(())
    }

    fn add_object(&mut self, o: &ObjectRec) {
        self.objects.insert(
            o.id,
            Obj {
                key: o.key.clone(),
                size: o.size,
                seq: o.seq,
                log: o.log,
                live: 0,
            },
        );
        self.next_object = self.next_object.max(o.id + 1);
    }

    fn apply_batch(&mut self, b: &BatchRec) {
        let BatchRec {
            no,
            base,
            last,
            max_ts,
            object: obj,
            position: pos,
            length,
            moved_from,
        } = *b;
        let len = i64::from(length);
        let Some(s) = self.shards.get_mut(&no) else {
            return;
        };
        if let Some(old) = moved_from {
            if let Some(i) = s.find(base).filter(|&i| s.batches[i].obj == old) {
                s.batches[i].obj = obj;
                s.batches[i].pos = pos;
                self.live(old, -len);
                self.live(obj, len);
            }
            return;
        }
        if let Some(i) = s.find(base) {
            if s.batches[i].obj == PENDING {
                s.batches[i].obj = obj;
                s.batches[i].pos = pos;
                self.live(obj, len);
            }
            return;
        }
        if base < s.next {
            return;
        }
        s.next = last + 1;
        s.assigned = s.assigned.max(s.next);
        if last < s.log_start {
            return;
        }
        let ts_mark = s.batches.back().map_or(max_ts, |l| l.ts_mark.max(max_ts));
        s.batches.push_back(Loc {
            base,
            last,
            max_ts,
            ts_mark,
            len: length,
            obj,
            pos,
        });
        s.size += u64::from(length);
        self.live(obj, len);
    }

    fn apply_op(&mut self, op: &Op) -> Result<()> {
        let bad = |why: String| StorageError::corruption("s3 metadata log", 0, why);
        match op {
            Op::Create { no, name, spec } => {
                let id = ShardId::parse(name).map_err(|e| bad(e.to_string()))?;
                let spec = StorageSpec::from_text(spec).map_err(|e| bad(e.to_string()))?;
                self.by_name.insert(id.clone(), *no);
                self.shards.insert(
                    *no,
                    Shard {
                        no: *no,
                        id,
                        spec,
                        epoch: 0,
                        log_start: 0,
                        next: 0,
                        assigned: 0,
                        size: 0,
                        batches: VecDeque::new(),
                        cache: VecDeque::new(),
                    },
                );
                self.next_no = self.next_no.max(no.next());
            }
            Op::Delete { no } => {
                if let Some(s) = self.shards.remove(no) {
                    self.by_name.remove(&s.id);
                    for l in &s.batches {
                        self.live(l.obj, -(l.len as i64));
                    }
                    for c in &s.cache {
                        self.cache_bytes -= c.2.len();
                        self.cache_entries -= 1;
                    }
                }
            }
            Op::Reconfigure { no, spec } => {
                let spec = StorageSpec::from_text(spec).map_err(|e| bad(e.to_string()))?;
                if let Some(s) = self.shards.get_mut(no) {
                    s.spec = spec;
                }
            }
            Op::Trim { no, log_start } => self.trim_to(*no, *log_start),
            Op::Truncate { no, next } => {
                let Some(s) = self.shards.get_mut(no) else {
                    return Ok(());
                };
                let mut freed = Vec::new();
                while s.batches.back().is_some_and(|l| l.base >= *next) {
                    let l = s.batches.pop_back().expect("checked");
                    s.size -= u64::from(l.len);
                    freed.push((l.obj, l.len));
                }
                let mut uncached = (0, 0);
                while s.cache.back().is_some_and(|c| c.0 >= *next) {
                    let c = s.cache.pop_back().expect("checked");
                    uncached.0 += c.2.len();
                    uncached.1 += 1;
                }
                s.next = *next;
                s.assigned = *next;
                s.epoch += 1;
                s.log_start = s.log_start.min(*next);
                self.cache_bytes -= uncached.0;
                self.cache_entries -= uncached.1;
                for (obj, len) in freed {
                    self.live(obj, -(len as i64));
                }
            }
        }
        Ok(())
    }

    /// Moves a shard's log start to `log_start` and forgets the batches before it.
    fn trim_to(&mut self, no: ShardNo, log_start: u64) {
        let Some(s) = self.shards.get_mut(&no) else {
            return;
        };
        s.log_start = s.log_start.max(log_start);
        let mut freed = Vec::new();
        while s.batches.front().is_some_and(|l| l.last < s.log_start) {
            let l = s.batches.pop_front().expect("checked");
            s.size -= u64::from(l.len);
            freed.push((l.obj, l.len));
        }
        let mut uncached = (0, 0);
        while s.cache.front().is_some_and(|c| c.1 < s.log_start) {
            let c = s.cache.pop_front().expect("checked");
            uncached.0 += c.2.len();
            uncached.1 += 1;
        }
        self.cache_bytes -= uncached.0;
        self.cache_entries -= uncached.1;
        for (obj, len) in freed {
            self.live(obj, -(len as i64));
        }
    }

    /// Drops the oldest batches of a shard beyond its `retention.bytes` (keeping the newest);
    /// the trim is written with the next commit.
    fn bytes_retention(&mut self, no: ShardNo) {
        let Some(s) = self.shards.get(&no) else {
            return;
        };
        let Some(limit) = s.spec.retention.bytes else {
            return;
        };
        let mut size = s.size;
        let mut start = s.log_start;
        for l in s.batches.iter().take(s.batches.len().saturating_sub(1)) {
            if size <= limit {
                break;
            }
            size -= u64::from(l.len);
            start = l.last + 1;
        }
        if start > s.log_start {
            self.trim_to(no, start);
            self.dirty_trims.insert(no);
        }
    }

    pub fn load_checkpoint(&mut self, cp: &Checkpoint) -> Result<()> {
        for o in &cp.objects {
            self.add_object(o);
        }
        for r in &cp.shards {
            self.apply_op(&Op::Create {
                no: r.no,
                name: r.name.clone(),
                spec: r.spec.clone(),
            })?;
            let s = self.shards.get_mut(&r.no).expect("just created");
            s.epoch = r.epoch;
            s.log_start = r.log_start;
        }
        for b in &cp.batches {
            self.apply_batch(b);
        }
        for r in &cp.shards {
            let s = self.shards.get_mut(&r.no).expect("just created");
            s.next = s.next.max(r.next);
            s.assigned = s.next;
        }
        self.next_no = self.next_no.max(cp.next_no);
        self.next_object = self.next_object.max(cp.next_object);
        self.seq = cp.seq;
        Ok(())
    }

    /// Re-buffers a write-ahead log entry the bucket does not have yet; true if it was.
    pub fn replay_wal(&mut self, e: Entry) -> Result<bool> {
        self.wal_mark = e.end;
        let batch = Batch::validate(e.batch.clone())?;
        let h = *batch.header();
        let Some(s) = self.shards.get(&e.no) else {
            return Ok(false);
        };
        let base = h.base_offset as u64;
        if e.epoch != s.epoch || base < s.next {
            return Ok(false);
        }
        if base > s.next {
            tracing::warn!(shard = %s.id, expected = s.next, found = base,
                "write-ahead log skips offsets; later entries of this shard are ignored");
            return Ok(false);
        }
        let item = Pending {
            no: e.no,
            base,
            last: h.last_offset() as u64,
            max_ts: h.max_timestamp,
            bytes: e.batch,
            done: None,
            wal: true,
            moved_from: None,
        };
        self.push_visible(item, usize::MAX);
        Ok(true)
    }

    pub fn finish_recovery(&mut self, cache_budget: usize) {
        for s in self.shards.values_mut() {
            if s.next < s.log_start {
                s.next = s.log_start;
                s.assigned = s.log_start;
            }
        }
        self.evict(cache_budget);
    }

    fn buffer_push(&mut self, item: Pending) {
        self.buffer_bytes += item.bytes.len();
        self.buffer_since.get_or_insert_with(Instant::now);
        self.buffer.push(item);
    }

    /// Buffers a write-ahead-logged batch, visible at once.
    pub fn push_visible(&mut self, item: Pending, cache_budget: usize) {
        let no = item.no;
        let s = self.shards.get_mut(&no).expect("caller checked the shard");
        let len = item.bytes.len();
        let ts_mark = s
            .batches
            .back()
            .map_or(item.max_ts, |l| l.ts_mark.max(item.max_ts));
        s.batches.push_back(Loc {
            base: item.base,
            last: item.last,
            max_ts: item.max_ts,
            ts_mark,
            len: len as u32,
            obj: PENDING,
            pos: 0,
        });
        s.next = item.last + 1;
        s.assigned = s.next;
        s.size += len as u64;
        s.cache
            .push_back((item.base, item.last, item.bytes.clone()));
        self.cache_bytes += len;
        self.cache_entries += 1;
        self.wal_backlog += len;
        self.buffer_push(item);
        self.bytes_retention(no);
        self.evict(cache_budget);
    }

    /// Buffers a batch that is acknowledged once uploaded.
    pub fn push_pending(&mut self, item: Pending) {
        let s = self
            .shards
            .get_mut(&item.no)
            .expect("caller checked the shard");
        s.assigned = item.last + 1;
        self.buffer_push(item);
    }

    /// After a commit is written: caches what was uploaded and answers the waiting appends.
    pub fn uploaded(&mut self, items: Vec<Pending>, cache_budget: usize) {
        let mut touched = BTreeSet::new();
        for mut item in items {
            if item.moved_from.is_some() {
                continue;
            }
            let len = item.bytes.len();
            if item.wal {
                self.wal_backlog -= len;
                self.fifo.push_back((item.no, item.base));
            } else if let Some(s) = self.shards.get_mut(&item.no) {
                if s.find(item.base).is_some() && s.cache.back().is_none_or(|c| c.0 < item.base) {
                    s.cache
                        .push_back((item.base, item.last, item.bytes.clone()));
                    self.cache_bytes += len;
                    self.cache_entries += 1;
                    self.fifo.push_back((item.no, item.base));
                }
                touched.insert(item.no);
            }
            if let Some(done) = item.done.take() {
                let _ = done.send(Ok(()));
            }
        }
        for no in touched {
            self.bytes_retention(no);
        }
        self.evict(cache_budget);
    }

    /// After a failed commit: write-ahead-logged batches wait for the next one; the others
    /// fail, with every later batch of their shards (their offsets are handed out again).
    pub fn fail(&mut self, items: Vec<Pending>, err: &StorageError) {
        let mut keep = Vec::new();
        let mut rolled_back = BTreeSet::new();
        for mut item in items {
            if item.moved_from.is_some() {
                continue;
            }
            if item.wal && !self.gate.is_shut() {
                keep.push(item);
                continue;
            }
            if item.wal {
                self.wal_backlog -= item.bytes.len();
            } else {
                rolled_back.insert(item.no);
            }
            if let Some(done) = item.done.take() {
                let _ = done.send(Err(copy_err(err)));
            }
        }
        let later = std::mem::take(&mut self.buffer);
        self.buffer_bytes = 0;
        self.buffer_since = None;
        for mut item in later {
            if !item.wal && rolled_back.contains(&item.no) {
                if let Some(done) = item.done.take() {
                    let _ = done.send(Err(copy_err(err)));
                }
            } else {
                keep.push(item);
            }
        }
        for no in rolled_back {
            if let Some(s) = self.shards.get_mut(&no) {
                s.assigned = s.next;
            }
        }
        for item in keep {
            self.buffer_push(item);
        }
    }

    /// Removes a shard's buffered batches from `from` on (delete, truncate).
    pub fn drop_buffered(&mut self, no: ShardNo, from: u64, err: &StorageError) {
        let all = std::mem::take(&mut self.buffer);
        self.buffer_bytes = 0;
        self.buffer_since = None;
        for mut item in all {
            if item.no == no && item.base >= from {
                if item.wal {
                    self.wal_backlog -= item.bytes.len();
                }
                if let Some(done) = item.done.take() {
                    let _ = done.send(Err(copy_err(err)));
                }
            } else {
                self.buffer_push(item);
            }
        }
    }

    fn evict(&mut self, budget: usize) {
        while self.cache_bytes > budget {
            let Some((no, base)) = self.fifo.pop_front() else {
                break;
            };
            let Some(s) = self.shards.get_mut(&no) else {
                continue;
            };
            // Never a batch only the write-ahead log and the cache hold (a truncation may
            // have reused the base offset).
            let uploaded = s.find(base).is_none_or(|i| s.batches[i].obj != PENDING);
            if let Ok(i) = s.cache.binary_search_by_key(&base, |c| c.0)
                && uploaded
            {
                let c = s.cache.remove(i).expect("found");
                self.cache_bytes -= c.2.len();
                self.cache_entries -= 1;
            }
        }
        if self.fifo.len() > 4 * self.cache_entries + 4096 {
            let shards = &self.shards;
            self.fifo.retain(|(no, base)| {
                shards
                    .get(no)
                    .is_some_and(|s| s.cache.binary_search_by_key(base, |c| c.0).is_ok())
            });
        }
    }

    /// Caches batches read ahead of a read, if they are still where they were read from.
    pub fn cache_read_ahead(&mut self, no: ShardNo, read: &[(Loc, Bytes)], budget: usize) {
        let Some(s) = self.shards.get_mut(&no) else {
            return;
        };
        for (l, bytes) in read {
            let live = s.find(l.base).is_some_and(|i| s.batches[i].obj == l.obj);
            if let (true, Err(at)) = (live, s.cache.binary_search_by_key(&l.base, |c| c.0)) {
                s.cache.insert(at, (l.base, l.last, bytes.clone()));
                self.cache_bytes += bytes.len();
                self.cache_entries += 1;
                self.fifo.push_back((no, l.base));
            }
        }
        self.evict(budget);
    }

    /// What a read of `max_bytes` from `from` serves from the cache and fetches, with up to
    /// `read_ahead` more bytes of the following batches fetched with the last part.
    pub fn plan_read(
        &self,
        id: &ShardId,
        from: u64,
        max_bytes: usize,
        read_ahead: usize,
    ) -> Result<ReadPlan> {
        self.gate.check_open()?;
        let no = self.no(id)?;
        let s = &self.shards[&no];
        let bounds = s.bounds();
        if from < s.log_start || from > s.next {
            return Err(StorageError::out_of_range(id, from, bounds));
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut total = 0usize;
        let mut i = s.batches.partition_point(|l| l.last < from);
        while let Some(l) = s.batches.get(i) {
            if l.base >= s.next || (!parts.is_empty() && total + l.len as usize > max_bytes) {
                break;
            }
            if let Some(bytes) = s.cached(l.base) {
                parts.push(Part::Cached(bytes));
            } else {
                let Some(o) = self.objects.get(&l.obj) else {
                    return Err(StorageError::Unavailable(format!(
                        "batch at {} of {id} is neither cached nor uploaded",
                        l.base
                    )));
                };
                match parts.last_mut() {
                    Some(Part::Object { key, locs, serve })
                        if *key == o.key
                            && locs
                                .last()
                                .is_some_and(|p| p.pos + u64::from(p.len) == l.pos) =>
                    {
                        locs.push(*l);
                        *serve += 1;
                    }
                    _ => parts.push(Part::Object {
                        key: o.key.clone(),
                        locs: vec![*l],
                        serve: 1,
                    }),
                }
            }
            total += l.len as usize;
            i += 1;
        }
        // Read ahead: the batches that follow in the same object, in the same GET.
        if let Some(Part::Object { locs, .. }) = parts.last_mut() {
            let mut extra = 0usize;
            while let Some(l) = s.batches.get(i) {
                let last = locs.last().expect("a part has a batch");
                let contiguous = l.obj == last.obj && l.pos == last.pos + u64::from(last.len);
                if l.base >= s.next
                    || !contiguous
                    || extra + l.len as usize > read_ahead
                    || s.cached(l.base).is_some()
                {
                    break;
                }
                extra += l.len as usize;
                locs.push(*l);
                i += 1;
            }
        }
        Ok(ReadPlan { no, bounds, parts })
    }

    /// Trims due to `retention.ms` and `retention.bytes`, and the bytes they drop.
    pub fn retention(&self, now_ms: i64) -> (Vec<Op>, u64) {
        let mut ops = Vec::new();
        let mut dropped = 0;
        for s in self.shards.values() {
            let mut start = s.log_start;
            let mut size = s.size;
            let n = s.batches.len();
            for (i, l) in s.batches.iter().enumerate() {
                let expired = s
                    .spec
                    .retention
                    .ms
                    .is_some_and(|ms| l.max_ts < now_ms.saturating_sub(ms as i64));
                let too_big = i + 1 < n && s.spec.retention.bytes.is_some_and(|b| size > b);
                if !expired && !too_big {
                    break;
                }
                size -= u64::from(l.len);
                start = l.last + 1;
            }
            if start > s.log_start {
                dropped += s.size - size;
                ops.push(Op::Trim {
                    no: s.no,
                    log_start: start,
                });
            }
        }
        (ops, dropped)
    }

    pub fn needs_checkpoint(&self, every: u64) -> bool {
        let dead_logs = self
            .objects
            .values()
            .filter(|o| o.log && o.live == 0 && o.seq > self.checkpoint_seq)
            .count() as u64;
        self.logs_since_checkpoint >= every || dead_logs >= every.div_ceil(4)
    }

    pub fn checkpoint(&self) -> Checkpoint {
        let mut cp = Checkpoint {
            seq: self.seq,
            next_no: self.next_no,
            next_object: self.next_object,
            ..Checkpoint::default()
        };
        let mut used = HashSet::new();
        for s in self.shards.values() {
            cp.shards.push(ShardRec {
                no: s.no,
                name: s.id.to_string(),
                spec: s.spec.to_text(),
                epoch: s.epoch,
                log_start: s.log_start,
                next: s.uploaded_next(),
            });
            for l in s.batches.iter().filter(|l| l.obj != PENDING) {
                used.insert(l.obj);
                cp.batches.push(BatchRec {
                    no: s.no,
                    base: l.base,
                    last: l.last,
                    max_ts: l.max_ts,
                    object: l.obj,
                    position: l.pos,
                    length: l.len,
                    moved_from: None,
                });
            }
        }
        for id in used {
            let o = &self.objects[&id];
            cp.objects.push(ObjectRec {
                id,
                key: o.key.clone(),
                size: o.size,
                seq: o.seq,
                log: o.log,
            });
        }
        cp
    }

    /// Objects no batch lives in that recovery no longer needs.
    pub fn dead_objects(&self) -> Vec<(u64, String)> {
        self.objects
            .iter()
            .filter(|(_, o)| o.live == 0 && (!o.log || o.seq <= self.checkpoint_seq))
            .map(|(id, o)| (*id, o.key.clone()))
            .collect()
    }

    /// Every key the metadata refers to.
    pub fn known_keys(&self) -> HashSet<String> {
        let mut keys: HashSet<String> = self.objects.values().map(|o| o.key.clone()).collect();
        if self.checkpoint_seq > 0 {
            keys.insert(format::checkpoint_key(self.checkpoint_seq));
        }
        for seq in self.checkpoint_seq + 1..=self.seq {
            keys.insert(format::log_key(seq));
        }
        keys
    }

    /// Objects worth rewriting (small or mostly dead), oldest first, with their live batches.
    pub fn compaction_plan(&self, below: u64, max: u64) -> Vec<Rewrite> {
        let mut candidates: Vec<(u64, u64)> = self
            .objects
            .iter()
            .filter(|(_, o)| {
                o.live > 0 && o.seq < self.seq && (o.size < below || o.live * 2 < o.size)
            })
            .map(|(id, o)| (o.seq, *id))
            .collect();
        let mostly_dead = candidates
            .iter()
            .any(|(_, id)| self.objects[id].live * 2 < self.objects[id].size);
        if candidates.len() < 4 && !mostly_dead {
            return Vec::new();
        }
        candidates.sort();
        let mut chosen = HashMap::new();
        let mut total = 0;
        for (_, id) in candidates {
            if total >= max {
                break;
            }
            total += self.objects[&id].live;
            chosen.insert(id, Vec::new());
        }
        for s in self.shards.values() {
            for l in &s.batches {
                if let Some(v) = chosen.get_mut(&l.obj) {
                    v.push((s.no, *l));
                }
            }
        }
        let mut plan: Vec<_> = chosen
            .into_iter()
            .map(|(id, mut locs)| {
                locs.sort_by_key(|(_, l)| l.pos);
                (id, self.objects[&id].key.clone(), locs)
            })
            .collect();
        plan.sort_by_key(|(id, _, _)| self.objects[id].seq);
        plan
    }
}
