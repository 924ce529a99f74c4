//! The engine: the [`Engine`] trait over the state, the commit path and the bucket.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use strata_record::Batch;
use strata_storage::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, LEADER_EPOCH, Maintenance,
    Model, Piece, ReadChunk, Result, ShardId, ShardNo, StorageError, StorageSpec, TimestampHit,
    check_batch_size, first_record_at_or_after,
};
use tokio::sync::oneshot;

use crate::format::Op;
use crate::options::{S3Options, S3Tuning};
use crate::state::{self, Loc, Pending, State};
use crate::wal::Wal;

/// The s3 engine, one model, over one prefix of one bucket.
#[derive(Debug)]
pub struct S3Engine {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for S3Engine {
    fn drop(&mut self) {
        // What a crash looks like: nothing more is uploaded.
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What the engine's tasks share. The log lock is taken before the state lock, never after:
/// a commit holds the log lock across its uploads and takes the state lock only briefly.
pub(crate) struct Inner {
    pub(crate) model: Model,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// `<prefix>/<model>`, without a trailing slash.
    pub(crate) root: String,
    pub(crate) where_: String,
    pub(crate) tuning: S3Tuning,
    pub(crate) state: Mutex<State>,
    /// The last committed log sequence number; held for the whole of a commit.
    pub(crate) log: tokio::sync::Mutex<u64>,
    pub(crate) wal: Option<Arc<Wal>>,
    pub(crate) wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Engine")
            .field("model", &self.model)
            .field("where", &self.where_)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unavailable(where_: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(format!("object store {where_}: {e}"))
}

impl S3Engine {
    /// Opens the engine for `model` under `<options.prefix>/<model>/` in the bucket, with its
    /// write-ahead log (for `storage.wal=local` shards) in `wal_dir`, recovering every shard
    /// from the latest checkpoint, the log objects after it and the write-ahead log.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        options: &S3Options,
        model: Model,
        wal_dir: Option<PathBuf>,
    ) -> Result<S3Engine> {
        let root = format!("{}/{}", options.prefix.trim_matches('/'), model);
        let where_ = format!("{} ({model} model)", options.describe());
        let (wal, entries) = match &wal_dir {
            Some(dir) => {
                let (wal, entries) = Wal::open(dir)?;
                (Some(Arc::new(wal)), entries)
            }
            None => (None, Vec::new()),
        };
        let inner = Arc::new(Inner {
            model,
            store,
            root,
            where_,
            tuning: options.tuning.clone(),
            state: Mutex::new(State::default()),
            log: tokio::sync::Mutex::new(0),
            wal,
            wake: tokio::sync::Notify::new(),
        });
        let seq = inner.recover(entries).await?;
        *inner.log.lock().await = seq;
        let mut tasks = vec![tokio::spawn(flusher(Arc::downgrade(&inner)))];
        if let Some(wal) = &inner.wal {
            tasks.push(tokio::spawn(Wal::interval_syncs(Arc::downgrade(wal))));
        }
        Ok(S3Engine { inner, tasks })
    }

    /// Write-ahead log segment files in `dir`, oldest first (for crash tests).
    pub fn wal_files(dir: &FsPath) -> Vec<PathBuf> {
        Wal::files(dir)
    }
}

impl Inner {
    pub(crate) fn path(&self, key: &str) -> Path {
        Path::from(format!("{}/{key}", self.root))
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> StorageError {
        unavailable(&self.where_, e)
    }
    async fn shard_op(&self, id: &ShardId) -> Result<(tokio::sync::MutexGuard<'_, u64>, ShardNo)> {
        let log = self.log.lock().await;
        let st = self.state.lock();
        st.gate.check()?;
        let no = st.no(id)?;
        drop(st);
        Ok((log, no))
    }

    async fn fetch(&self, key: &str, locs: &[Loc]) -> Result<Vec<Bytes>> {
        let path = self.path(key);
        let start = locs[0].pos;
        let end = locs.last().map_or(start, |l| l.pos + l.len as u64);
        let all = self
            .store
            .get_range(&path, start..end)
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => {
                    StorageError::Unavailable(format!("object {key} was deleted while being read"))
                }
                e => self.err(e),
            })?;
        let mut out = Vec::with_capacity(locs.len());
        for l in locs {
            let from = (l.pos - start) as usize;
            let bytes = all.slice(from..from + l.len as usize);
            check_stored(&bytes, l.base, &path, l.pos)?;
            out.push(bytes);
        }
        Ok(out)
    }
}

/// Checks a batch read back from the bucket: whole, CRC-valid and at the expected offset.
pub(crate) fn check_stored(bytes: &Bytes, base: u64, path: &Path, pos: u64) -> Result<()> {
    let batch = Batch::validate(bytes.clone())
        .map_err(|e| StorageError::corruption(path.as_ref(), pos, e.to_string()))?;
    if batch.header().base_offset as u64 != base {
        return Err(StorageError::corruption(
            path.as_ref(),
            pos,
            format!(
                "batch has base offset {}, the index says {base}",
                batch.header().base_offset
            ),
        ));
    }
    Ok(())
}

async fn flusher(inner: std::sync::Weak<Inner>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(me) = inner.upgrade() else { return };
        let (due, closed) = {
            let st = me.state.lock();
            let due = st.buffer_since.map(|since| {
                if st.buffer_bytes >= me.tuning.flush_bytes {
                    since
                } else {
                    since + me.tuning.flush_interval
                }
            });
            (due, st.gate.is_shut())
        };
        if closed {
            return;
        }
        match due {
            Some(at) if at <= Instant::now() => {
                let mut seq = me.log.lock().await;
                match me.commit(&mut seq, Vec::new(), Vec::new()).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(StorageError::Closed | StorageError::Poisoned(_)) => return,
                    Err(e) => {
                        drop(seq);
                        tracing::warn!(error = %e, retry_in = ?backoff, "s3 engine: flush failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        drop(me);
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            Some(at) => {
                let sleep = tokio::time::sleep_until(at.into());
                tokio::select! { _ = sleep => {}, _ = me.wake.notified() => {} }
            }
            None => {
                let idle = tokio::time::sleep(Duration::from_secs(1));
                tokio::select! { _ = idle => {}, _ = me.wake.notified() => {} }
            }
        }
    }
}

#[async_trait]
impl Engine for S3Engine {
    fn kind(&self) -> EngineKind {
        EngineKind::S3
    }

    fn model(&self) -> Model {
        self.inner.model
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::S3, self.inner.model)?;
        if spec.wal && self.inner.wal.is_none() {
            return Err(StorageError::InvalidSpec(
                "storage.wal=local needs a local data directory for the write-ahead log".into(),
            ));
        }
        let mut seq = self.inner.log.lock().await;
        let no = {
            let mut st = self.inner.state.lock();
            st.gate.check()?;
            if st.by_name.contains_key(id) {
                return Err(StorageError::ShardExists(id.clone()));
            }
            let no = st.next_no;
            st.next_no = no.next();
            no
        };
        let op = Op::Create {
            no,
            name: id.to_string(),
            spec: spec.to_text(),
        };
        self.inner.commit(&mut seq, vec![op], Vec::new()).await
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        let (mut seq, no) = self.inner.shard_op(id).await?;
        self.inner
            .state
            .lock()
            .drop_buffered(no, 0, &StorageError::ShardNotFound(id.clone()));
        self.inner
            .commit(&mut seq, vec![Op::Delete { no }], Vec::new())
            .await
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::S3, self.inner.model)?;
        let (mut seq, no) = self.inner.shard_op(id).await?;
        if self.inner.state.lock().shards[&no].spec.wal != spec.wal {
            return Err(StorageError::InvalidSpec(
                "storage.wal is fixed when a topic is created".into(),
            ));
        }
        let op = Op::Reconfigure {
            no,
            spec: spec.to_text(),
        };
        self.inner.commit(&mut seq, vec![op], Vec::new()).await
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        let st = self.inner.state.lock();
        Ok(st.shards.values().map(|s| (s.id.clone(), s.spec)).collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        check_batch_size(&batch)?;
        let count = u64::from(batch.record_count());
        let max_ts = batch.max_timestamp();
        let inner = &self.inner;
        let (base, wait) = {
            let mut st = inner.state.lock();
            st.gate.check()?;
            let no = st.no(id)?;
            let backlog = st.wal_backlog;
            let shard = st.shards.get_mut(&no).expect("numbered shard exists");
            let (wal_on, durability, epoch) = (shard.spec.wal, shard.spec.durability, shard.epoch);
            if wal_on && backlog > inner.tuning.wal_backlog_bytes {
                return Err(StorageError::Unavailable(format!(
                    "{backlog} bytes written to the local write-ahead log are not yet uploaded to \
                     {}; appends resume once the object store takes them",
                    inner.where_
                )));
            }
            let base = shard.assigned;
            let last = base + count - 1;
            let bytes = batch.into_stored(base as i64, LEADER_EPOCH);
            let item = Pending {
                no,
                base,
                last,
                max_ts,
                bytes,
                done: None,
                wal: wal_on,
                moved_from: None,
            };
            let wait = if wal_on {
                let wal = inner.wal.as_ref().expect("checked at creation");
                let pos = wal.append(no, epoch, &item.bytes)?;
                st.wal_mark = pos;
                st.push_visible(item, inner.tuning.cache_bytes);
                match durability {
                    Durability::Fsync => Wait::Sync(pos),
                    Durability::Interval(ms) => {
                        wal.sync_within(ms);
                        Wait::None
                    }
                    _ => Wait::None,
                }
            } else {
                let (tx, rx) = oneshot::channel();
                let mut item = item;
                item.done = Some(tx);
                st.push_pending(item);
                Wait::Upload(rx)
            };
            if st.buffer_bytes >= inner.tuning.flush_bytes || st.buffer.len() == 1 {
                inner.wake.notify_one();
            }
            (base, wait)
        };
        match wait {
            Wait::None => {}
            Wait::Sync(pos) => {
                let wal = inner.wal.as_ref().expect("checked at creation");
                if let Err(e) = wal.sync_to(pos).await {
                    let why = format!("write-ahead log fsync failed: {e}");
                    return Err(inner.state.lock().gate.poison(why));
                }
            }
            Wait::Upload(rx) => match rx.await {
                Ok(r) => r?,
                Err(_) => return Err(StorageError::Closed),
            },
        }
        let log_start = {
            let st = inner.state.lock();
            st.no(id).ok().map_or(0, |no| st.shards[&no].log_start)
        };
        Ok(Appended {
            base_offset: base,
            last_offset: base + count - 1,
            log_start,
        })
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        for attempt in 0..3 {
            let read_ahead = self.inner.tuning.read_ahead_bytes;
            let plan = self
                .inner
                .state
                .lock()
                .plan_read(id, from, max_bytes, read_ahead)?;
            let mut chunk = ReadChunk {
                bounds: plan.bounds,
                ..ReadChunk::default()
            };
            let mut failed = None;
            for part in plan.parts {
                match part {
                    state::Part::Cached(b) => chunk.push(Piece::Bytes(b)),
                    state::Part::Object { key, locs, serve } => {
                        match self.inner.fetch(&key, &locs).await {
                            Ok(mut all) => {
                                let ahead: Vec<_> = locs[serve..]
                                    .iter()
                                    .copied()
                                    .zip(all.drain(serve..))
                                    .collect();
                                all.into_iter().for_each(|b| chunk.push(Piece::Bytes(b)));
                                if !ahead.is_empty() {
                                    let budget = self.inner.tuning.cache_bytes;
                                    self.inner
                                        .state
                                        .lock()
                                        .cache_read_ahead(plan.no, &ahead, budget);
                                }
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                }
            }
            match failed {
                None => return Ok(chunk),
                // Retention deleted the object between planning and fetching: plan again.
                Some(StorageError::Unavailable(_)) if attempt < 2 => {}
                Some(e) => return Err(e),
            }
        }
        Err(StorageError::Unavailable(format!(
            "read of {id} at {from} kept racing with retention"
        )))
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        let st = self.inner.state.lock();
        st.gate.check_open()?;
        let no = st.no(id)?;
        Ok(st.shards[&no].bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        let mut from = None;
        loop {
            let (at, log_start) = {
                let st = self.inner.state.lock();
                let no = st.no(id)?;
                let s = &st.shards[&no];
                let at = match from {
                    None => s.first_with_ts_mark(ts),
                    Some(after) => s.batch_after(after),
                };
                (at, s.log_start)
            };
            let Some(base) = at else { return Ok(None) };
            let chunk = match self.read(id, base.max(log_start), 1).await {
                Ok(c) => c,
                Err(StorageError::OffsetOutOfRange { .. }) => {
                    from = Some(base);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let bytes = chunk.to_bytes()?;
            let first = strata_record::split_batches(bytes)
                .next()
                .transpose()
                .map_err(StorageError::InvalidBatch)?;
            let Some(first) = first else { return Ok(None) };
            let batch_base = Batch::validate(first.clone())?.header().base_offset as u64;
            if let Some(hit) = first_record_at_or_after(first, ts, log_start)? {
                return Ok(Some(hit));
            }
            from = Some(batch_base);
        }
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        let (mut seq, no) = self.inner.shard_op(id).await?;
        let bounds = self.inner.state.lock().shards[&no].bounds();
        if before > bounds.next_offset {
            return Err(StorageError::out_of_range(id, before, bounds));
        }
        if before <= bounds.log_start {
            return Ok(bounds);
        }
        let op = Op::Trim {
            no,
            log_start: before,
        };
        self.inner.commit(&mut seq, vec![op], Vec::new()).await?;
        Ok(self.inner.state.lock().shards[&no].bounds())
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        let (mut seq, no) = self.inner.shard_op(id).await?;
        let next = {
            let mut st = self.inner.state.lock();
            let s = &st.shards[&no];
            if to >= s.next {
                return Ok(s.bounds());
            }
            let next = s.batch_holding(to).map_or(to, |l| l.base);
            st.drop_buffered(
                no,
                next,
                &StorageError::Unavailable(format!("{id} was truncated to {next}")),
            );
            next
        };
        self.inner
            .commit(&mut seq, vec![Op::Truncate { no, next }], Vec::new())
            .await?;
        Ok(self.inner.state.lock().shards[&no].bounds())
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        let inner = &self.inner;
        let (ops, dropped) = {
            let st = inner.state.lock();
            st.gate.check()?;
            st.retention(now_ms)
        };
        let mut seq = inner.log.lock().await;
        if !ops.is_empty() {
            inner.commit(&mut seq, ops, Vec::new()).await?;
        }
        drop(seq);
        let relocated = inner.compact().await?;
        let mut seq = inner.log.lock().await;
        let need = inner
            .state
            .lock()
            .needs_checkpoint(inner.tuning.checkpoint_every);
        if need {
            inner.checkpoint(&mut seq).await?;
        }
        drop(seq);
        let mut files_deleted = inner.delete_dead().await?;
        let checked = std::mem::replace(&mut inner.state.lock().orphans_checked, true);
        if !checked {
            // Under the log lock, so that no commit is between its data PUTs and its log object.
            let _seq = inner.log.lock().await;
            files_deleted += inner.collect_orphans().await?;
        }
        Ok(Maintenance {
            bytes_dropped: dropped,
            files_deleted,
            bytes_relocated: relocated,
        })
    }

    async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        let mut seq = inner.log.lock().await;
        inner.state.lock().gate.check_open()?;
        let flushed = inner.commit(&mut seq, Vec::new(), Vec::new()).await;
        let checkpointed = match &flushed {
            Ok(()) => inner.checkpoint(&mut seq).await,
            Err(_) => Ok(()),
        };
        if let Some(wal) = &inner.wal {
            let end = wal.end();
            wal.sync_to(end).await?;
        }
        let mut st = inner.state.lock();
        st.gate.close();
        let pending = std::mem::take(&mut st.buffer);
        st.fail(pending, &StorageError::Closed);
        drop(st);
        inner.wake.notify_one();
        flushed.and(checkpointed)
    }

    fn stats(&self) -> EngineStats {
        let st = self.inner.state.lock();
        EngineStats {
            shards: st.shards.len() as u64,
            bytes: st.shards.values().map(|s| s.size).sum(),
            open_files: 0,
            fsyncs: self.inner.wal.as_ref().map_or(0, |w| w.fsyncs()),
            objects_written: st.puts,
            object_bytes_written: st.put_bytes,
        }
    }
}

enum Wait {
    None,
    Sync(u64),
    Upload(oneshot::Receiver<Result<()>>),
}
