//! Strata's s3 engine: record batches in S3-compatible object storage.
//!
//! Appends are buffered for up to `flush_interval` or `flush_bytes` and written together:
//! - **shared** model: one object per flush holding the batches of every shard, plus an index
//!   of which shard ranges it holds, so the number of PUTs follows bytes, not partitions;
//! - **dedicated** model: one object per shard per flush, a chain of objects per shard.
//!
//! Every flush ends with a log object (`log/<seq>`) created with a conditional write; the log
//! and periodic checkpoints are the metadata, so a node that keeps nothing but the bucket comes
//! back with every acknowledged batch. Without a write-ahead log an append is acknowledged once
//! its flush's log object is written; with `storage.wal=local` it is acknowledged once the local
//! log has it (fsynced as the topic's durability says) and uploaded later. Reads use range GETs
//! with an in-memory cache of recent batches. Small objects are compacted in the background.
//!
//! The bucket layout is in [`format`] and `docs/format/s3.md`.

pub mod format;
mod state;
mod tier;
mod wal;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};
use parking_lot::Mutex;
use strata_record::Batch;
use strata_storage::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, LEADER_EPOCH, Maintenance,
    Model, Piece, ReadChunk, Result, ShardId, StorageError, StorageSpec, TimestampHit,
    check_batch_size, first_record_at_or_after,
};
use tokio::sync::oneshot;

use format::{BatchRec, LogIndex, ObjectRec, Op};
use state::{Loc, Pending, State};
pub use tier::S3Tier;
pub use wal::Wal;

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint URL for S3-compatible servers (MinIO, Ceph, …); `None` means AWS.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Region (`us-east-1` if unset and not in the environment).
    pub region: Option<String>,
    /// Access key; `None` takes `AWS_ACCESS_KEY_ID` or the instance's credentials.
    pub access_key: Option<String>,
    /// Secret key; `None` takes `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: Option<String>,
    /// Key prefix for everything this node writes.
    pub prefix: String,
    /// Buffering, caching and background work.
    pub tuning: S3Tuning,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// How the engine buffers, caches and maintains.
#[derive(Debug, Clone)]
pub struct S3Tuning {
    /// Longest time an append waits in the buffer before its flush.
    pub flush_interval: Duration,
    /// Buffered bytes that start a flush at once.
    pub flush_bytes: usize,
    /// Bytes of recent batches kept in memory for reads.
    pub cache_bytes: usize,
    /// Bytes of following batches a read fetches along (in the same GET) into the cache.
    pub read_ahead_bytes: usize,
    /// Bytes of write-ahead-logged batches not yet uploaded beyond which appends fail.
    pub wal_backlog_bytes: usize,
    /// Objects smaller than this (or less than half live) are compacted.
    pub compact_below: u64,
    /// Largest amount of live data compacted in one maintenance pass.
    pub compact_max: u64,
    /// A checkpoint is written after this many log objects.
    pub checkpoint_every: u64,
}

impl Default for S3Tuning {
    fn default() -> Self {
        S3Tuning {
            flush_interval: Duration::from_millis(250),
            flush_bytes: 8 << 20,
            cache_bytes: 64 << 20,
            read_ahead_bytes: 4 << 20,
            wal_backlog_bytes: 1 << 30,
            compact_below: 4 << 20,
            compact_max: 64 << 20,
            checkpoint_every: 64,
        }
    }
}

impl S3Options {
    /// Options for `bucket` with defaults for everything else.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: "strata".into(),
            ..S3Options::default()
        }
    }

    /// A client for the bucket. The usual `AWS_*` environment variables apply; the options
    /// override them. Custom endpoints use path-style addressing; `http://` endpoints are
    /// allowed.
    pub fn connect(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &self.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(k) = &self.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &self.secret_key {
            b = b.with_secret_access_key(k);
        }
        let store = b
            .build()
            .map_err(|e| StorageError::InvalidSpec(format!("S3 bucket {}: {e}", self.bucket)))?;
        Ok(Arc::new(store))
    }

    /// Human-readable location, for errors and logs.
    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.bucket,
            self.prefix,
            self.endpoint.as_deref().unwrap_or("AWS")
        )
    }
}

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

struct Inner {
    model: Model,
    store: Arc<dyn ObjectStore>,
    root: String,
    where_: String,
    tuning: S3Tuning,
    state: Mutex<State>,
    log: tokio::sync::Mutex<u64>,
    wal: Option<Arc<Wal>>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Engine")
            .field("model", &self.model)
            .field("where", &self.where_)
            .finish_non_exhaustive()
    }
}

fn unavailable(where_: &str, e: impl std::fmt::Display) -> StorageError {
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
    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}/{key}", self.root))
    }

    fn err(&self, e: impl std::fmt::Display) -> StorageError {
        unavailable(&self.where_, e)
    }

    async fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let prefix = self.path(dir);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| self.err(e))?;
        let root = format!("{}/", self.root);
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(&root)?.to_owned();
                Some((key, m.size))
            })
            .collect())
    }

    async fn recover(&self, wal_entries: Vec<wal::Entry>) -> Result<u64> {
        let mut st = State::default();
        let checkpoints = self.list("checkpoint/").await?;
        let latest = checkpoints
            .iter()
            .filter_map(|(k, _)| format::parse_seq(k.strip_prefix("checkpoint/")?))
            .max();
        let mut seq = 0;
        if let Some(c) = latest {
            let key = format::checkpoint_key(c);
            let bytes = self
                .store
                .get(&self.path(&key))
                .await
                .map_err(|e| self.err(e))?
                .bytes()
                .await
                .map_err(|e| self.err(e))?;
            let cp = format::decode_checkpoint(&bytes)
                .map_err(|why| StorageError::corruption(self.path(&key).as_ref(), 0, why))?;
            st.load_checkpoint(&cp)?;
            seq = c;
        }
        let mut logs: Vec<(u64, u64)> = self
            .list("log/")
            .await?
            .into_iter()
            .filter_map(|(k, size)| Some((format::parse_seq(k.strip_prefix("log/")?)?, size)))
            .filter(|(s, _)| *s > seq)
            .collect();
        logs.sort();
        for (s, size) in logs {
            if s != seq + 1 {
                return Err(StorageError::corruption(
                    self.path(&format::log_key(seq + 1)).as_ref(),
                    0,
                    format!("log object is missing (found {s} after {seq})"),
                ));
            }
            let index = self.read_index(s, size).await?;
            st.apply(&index)?;
            seq = s;
        }
        st.seq = seq;
        st.checkpoint_seq = latest.unwrap_or(0);
        st.logs_since_checkpoint = seq - st.checkpoint_seq;
        let mut replayed = 0usize;
        for e in wal_entries {
            replayed += usize::from(st.replay_wal(e)?);
        }
        st.finish_recovery(self.tuning.cache_bytes);
        if replayed > 0 {
            tracing::info!(batches = replayed, where_ = %self.where_,
                "s3 engine: write-ahead log batches not yet uploaded will be uploaded");
        }
        *self.state.lock() = st;
        Ok(seq)
    }

    async fn read_index(&self, seq: u64, size: u64) -> Result<LogIndex> {
        let key = format::log_key(seq);
        let path = self.path(&key);
        let corrupt = |pos: u64, why: String| StorageError::corruption(path.as_ref(), pos, why);
        let tail_len = size.min(64 << 10);
        let tail = self
            .store
            .get_range(&path, size - tail_len..size)
            .await
            .map_err(|e| self.err(e))?;
        let (index_len, crc) = format::decode_footer(&tail).map_err(|w| corrupt(size, w))?;
        let need = (index_len + format::FOOTER_LEN) as u64;
        if need > size {
            return Err(corrupt(size, "index longer than the object".into()));
        }
        let start = size - need;
        let index = if need <= tail_len {
            let from = (tail_len - need) as usize;
            tail.slice(from..from + index_len)
        } else {
            self.store
                .get_range(&path, start..start + index_len as u64)
                .await
                .map_err(|e| self.err(e))?
        };
        let index = format::decode_index(&index, crc).map_err(|w| corrupt(start, w))?;
        if index.seq != seq {
            return Err(corrupt(start, format!("index says sequence {}", index.seq)));
        }
        Ok(index)
    }

    fn check_open(&self, st: &State) -> Result<()> {
        if st.closed {
            return Err(StorageError::Closed);
        }
        if let Some(why) = &st.poisoned {
            return Err(StorageError::Poisoned(why.clone()));
        }
        Ok(())
    }

    /// Writes one commit: everything buffered, `extra` (compaction), and `ops`, then applies it.
    /// The caller holds the log lock (`seq` is the last committed sequence number).
    async fn commit(&self, seq: &mut u64, ops: Vec<Op>, extra: Vec<Pending>) -> Result<()> {
        let (mut items, ops, wal_mark, mut next_object) = {
            let mut st = self.state.lock();
            self.check_open(&st)?;
            let mut ops = ops;
            ops.extend(st.take_dirty_trims());
            let items = std::mem::take(&mut st.buffer);
            st.buffer_bytes = 0;
            st.buffer_since = None;
            (items, ops, st.wal_mark, st.next_object)
        };
        items.extend(extra);
        if items.is_empty() && ops.is_empty() {
            return Ok(());
        }
        let this = *seq + 1;
        let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            groups.entry(item.no).or_default().push(i);
        }
        let mut index = LogIndex {
            seq: this,
            ops,
            ..LogIndex::default()
        };
        let mut shared_data = BytesMut::new();
        let mut puts: Vec<(String, Bytes)> = Vec::new();
        let log_id = next_object;
        next_object += 1;
        for (no, idx) in &groups {
            let (obj, data) = match self.model {
                Model::Shared => (log_id, &mut shared_data),
                Model::Dedicated => {
                    let id = next_object;
                    next_object += 1;
                    let mut data = BytesMut::new();
                    for &i in idx {
                        data.extend_from_slice(&items[i].bytes);
                    }
                    let key = format::data_key(*no, this);
                    index.objects.push(ObjectRec {
                        id,
                        key: key.clone(),
                        size: data.len() as u64,
                        seq: this,
                        log: false,
                    });
                    puts.push((key, data.freeze()));
                    (id, &mut BytesMut::new())
                }
            };
            let mut pos = 0u64;
            for &i in idx {
                let it = &items[i];
                if self.model == Model::Shared {
                    pos = data.len() as u64;
                    data.extend_from_slice(&it.bytes);
                }
                index.batches.push(BatchRec {
                    no: it.no,
                    base: it.base,
                    last: it.last,
                    max_ts: it.max_ts,
                    object: obj,
                    position: pos,
                    length: it.bytes.len() as u32,
                    moved_from: it.moved_from,
                });
                if self.model == Model::Dedicated {
                    pos += it.bytes.len() as u64;
                }
            }
        }
        index.objects.insert(
            0,
            ObjectRec {
                id: log_id,
                key: format::log_key(this),
                size: shared_data.len() as u64,
                seq: this,
                log: true,
            },
        );
        let log_bytes = format::encode_log(shared_data, &index);
        let put_count = puts.len() as u64 + 1;
        let put_bytes =
            puts.iter().map(|(_, b)| b.len() as u64).sum::<u64>() + log_bytes.len() as u64;
        let result = async {
            futures::stream::iter(puts.into_iter().map(|(key, data)| {
                let path = self.path(&key);
                async move { self.store.put(&path, PutPayload::from(data)).await }
            }))
            .buffer_unordered(16)
            .try_collect::<Vec<_>>()
            .await?;
            self.store
                .put_opts(
                    &self.path(&format::log_key(this)),
                    PutPayload::from(log_bytes),
                    PutOptions {
                        mode: PutMode::Create,
                        ..PutOptions::default()
                    },
                )
                .await
        }
        .await;
        match result {
            Ok(_) => {
                *seq = this;
                let mut st = self.state.lock();
                st.puts += put_count;
                st.put_bytes += put_bytes;
                if let Err(e) = st.apply(&index) {
                    st.poisoned = Some(format!("cannot apply commit {this}: {e}"));
                }
                st.seq = this;
                st.logs_since_checkpoint += 1;
                st.uploaded(items, self.tuning.cache_bytes);
                drop(st);
                if let Some(wal) = &self.wal {
                    wal.release(wal_mark);
                }
                Ok(())
            }
            Err(object_store::Error::AlreadyExists { .. }) => {
                let why = format!(
                    "log object {} already exists in {}: another writer uses this prefix; \
                     this engine stops writing",
                    format::log_key(this),
                    self.where_
                );
                tracing::error!("{why}");
                let mut st = self.state.lock();
                st.poisoned = Some(why.clone());
                st.fail(items, &StorageError::Poisoned(why.clone()));
                Err(StorageError::Poisoned(why))
            }
            Err(e) => {
                let err = self.err(&e);
                tracing::warn!(error = %err, "s3 engine: upload failed");
                self.state.lock().fail(items, &err);
                Err(err)
            }
        }
    }

    async fn shard_op(&self, id: &ShardId) -> Result<(tokio::sync::MutexGuard<'_, u64>, u64)> {
        let log = self.log.lock().await;
        let st = self.state.lock();
        self.check_open(&st)?;
        let no = st.no(id)?;
        drop(st);
        Ok((log, no))
    }

    /// Writes a checkpoint of the state; the caller holds the log lock.
    async fn checkpoint(&self, _seq: &mut u64) -> Result<()> {
        let (cp, previous) = {
            let st = self.state.lock();
            (st.checkpoint(), st.checkpoint_seq)
        };
        if cp.seq == previous && previous != 0 {
            return Ok(());
        }
        let key = format::checkpoint_key(cp.seq);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(
                &self.path(&key),
                PutPayload::from(format::encode_checkpoint(&cp)),
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let why = format!(
                    "checkpoint {key} already exists in {}: another writer uses this prefix",
                    self.where_
                );
                self.state.lock().poisoned = Some(why.clone());
                return Err(StorageError::Poisoned(why));
            }
            Err(e) => return Err(self.err(e)),
        }
        {
            let mut st = self.state.lock();
            st.checkpoint_seq = cp.seq;
            st.logs_since_checkpoint = 0;
        }
        if previous != 0 && previous != cp.seq {
            let old = self.path(&format::checkpoint_key(previous));
            if let Err(e) = self.store.delete(&old).await {
                tracing::warn!(error = %e, "s3 engine: cannot delete an old checkpoint");
            }
        }
        Ok(())
    }

    /// Deletes objects nothing refers to any more; returns how many.
    async fn delete_dead(&self) -> Result<u64> {
        let dead = self.state.lock().dead_objects();
        let mut deleted = 0;
        for (id, key) in dead {
            match self.store.delete(&self.path(&key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    self.state.lock().objects.remove(&id);
                    deleted += 1;
                }
                Err(e) => return Err(self.err(e)),
            }
        }
        Ok(deleted)
    }

    /// Deletes keys under the prefix that no metadata refers to (left by a crash between a
    /// data PUT and its log object, or between a checkpoint and the deletions after it).
    async fn collect_orphans(&self) -> Result<u64> {
        let known = self.state.lock().known_keys();
        let mut deleted = 0;
        for dir in ["data/", "log/", "checkpoint/"] {
            for (key, _) in self.list(dir).await? {
                if !known.contains(&key) {
                    match self.store.delete(&self.path(&key)).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => deleted += 1,
                        Err(e) => return Err(self.err(e)),
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// Rewrites the live batches of small or mostly dead objects into new ones.
    async fn compact(&self) -> Result<u64> {
        let plan = self
            .state
            .lock()
            .compaction_plan(self.tuning.compact_below, self.tuning.compact_max);
        if plan.is_empty() {
            return Ok(0);
        }
        let mut extra = Vec::new();
        let mut moved = 0;
        for (obj, key, locs) in plan {
            let path = self.path(&key);
            let ranges: Vec<_> = locs
                .iter()
                .map(|(_, l)| l.pos..l.pos + l.len as u64)
                .collect();
            let chunks = match self.store.get_ranges(&path, &ranges).await {
                Ok(c) => c,
                Err(object_store::Error::NotFound { .. }) => continue,
                Err(e) => return Err(self.err(e)),
            };
            for ((no, loc), bytes) in locs.into_iter().zip(chunks) {
                check_stored(&bytes, loc.base, &path, loc.pos)?;
                moved += bytes.len() as u64;
                extra.push(Pending {
                    no,
                    base: loc.base,
                    last: loc.last,
                    max_ts: loc.max_ts,
                    bytes,
                    done: None,
                    wal: false,
                    moved_from: Some(obj),
                });
            }
        }
        let mut seq = self.log.lock().await;
        self.commit(&mut seq, Vec::new(), extra).await?;
        Ok(moved)
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
fn check_stored(bytes: &Bytes, base: u64, path: &Path, pos: u64) -> Result<()> {
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
            (due, st.closed || st.poisoned.is_some())
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
            self.inner.check_open(&st)?;
            if st.by_name.contains_key(id) {
                return Err(StorageError::ShardExists(id.clone()));
            }
            let no = st.next_no;
            st.next_no += 1;
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
            inner.check_open(&st)?;
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
                    inner.state.lock().poisoned = Some(why.clone());
                    return Err(StorageError::Poisoned(why));
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
        if st.closed {
            return Err(StorageError::Closed);
        }
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
            inner.check_open(&st)?;
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
        if inner.state.lock().closed {
            return Err(StorageError::Closed);
        }
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
        st.closed = true;
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
