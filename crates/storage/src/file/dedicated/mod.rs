//! The file engine's dedicated model: one directory per shard holding a chain of segment files
//! named by base offset, each with a sparse offset index and a time index (Kafka's layout).
//!
//! Layout and recovery rules: `docs/format/file.md`. Appends are positioned writes into the
//! active segment; fsyncs go through the engine's group-commit thread. Segments roll by size
//! and by time, retention deletes whole segments, and an open-file cache bounds descriptors.

mod format;
mod log;
mod reader;
mod recovery;
mod segment;
mod tiering;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use strata_record::{Batch, BatchHeader, HEADER_LEN};

use self::format::{
    CLEAN_SHUTDOWN, DELETED_SUFFIX, INDEX_HEADER_LEN, LOG_START_FILE, OFFSET_MAGIC, SPEC_FILE,
    decode_header, index_path, log_path, parse_log_name, time_index_path,
};
use self::log::{Ctx, LogState, ShardLog, write_index_files};
use self::segment::{IndexData, Indexer, Segment};
use super::FileOptions;
use super::fdcache::FdCache;
use super::index_cache::IndexCache;
use super::sync::Syncer;
use crate::util::{fsync_dir, write_atomic};
use crate::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, Maintenance, Model, ReadChunk,
    Result, ShardId, ShardNo, StorageError, StorageSpec, TimestampHit,
};

/// The dedicated-model file engine.
#[derive(Debug)]
pub struct DedicatedEngine {
    root: PathBuf,
    ctx: Ctx,
    shards: RwLock<HashMap<ShardId, Arc<ShardLog>>>,
    next_no: AtomicU64,
    tier: Option<Arc<dyn super::RemoteTier>>,
    remote_cache: Mutex<tiering::RemoteCache>,
}

impl DedicatedEngine {
    /// Opens (and recovers) the engine rooted at `root`, creating it if needed.
    pub fn open(root: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(&root)?;
        let marker = root.join(CLEAN_SHUTDOWN);
        let clean = marker.exists();
        if clean {
            fs::remove_file(&marker)?;
            fsync_dir(&root)?;
        }
        let engine = DedicatedEngine {
            ctx: Ctx {
                files: FdCache::new(options.open_files),
                indexes: IndexCache::new(options.index_cache_bytes),
                syncer: Syncer::start("dedicated"),
            },
            root,
            shards: RwLock::new(HashMap::new()),
            next_no: AtomicU64::new(0),
            tier: options.tier.clone(),
            remote_cache: Mutex::new(tiering::RemoteCache::default()),
        };
        let mut shards = HashMap::new();
        for entry in fs::read_dir(&engine.root)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if name.ends_with(DELETED_SUFFIX) {
                fs::remove_dir_all(&path)?;
                continue;
            }
            let Ok(id) = ShardId::parse(&name) else {
                tracing::warn!(dir = %path.display(), "ignoring a directory that names no shard");
                continue;
            };
            if let Some(log) = engine.open_shard(id.clone(), path, clean)? {
                shards.insert(id, Arc::new(log));
            }
        }
        tracing::info!(root = %engine.root.display(), shards = shards.len(), clean, "dedicated file engine open");
        *engine.shards.write() = shards;
        Ok(engine)
    }

    fn open_shard(&self, id: ShardId, dir: PathBuf, clean: bool) -> Result<Option<ShardLog>> {
        let spec = match fs::read_to_string(dir.join(SPEC_FILE)) {
            Ok(text) => parse_spec(&text)
                .map_err(|e| StorageError::corruption(dir.join(SPEC_FILE), 0, e.to_string()))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let has_data = fs::read_dir(&dir)?.flatten().any(|e| {
                    parse_log_name(&e.file_name().to_string_lossy()).is_some()
                        && e.metadata().is_ok_and(|m| m.len() > 0)
                });
                if !has_data {
                    // The shard's creation never finished: nothing was acknowledged into it.
                    fs::remove_dir_all(&dir)?;
                    return Ok(None);
                }
                // The spec file was lost (a power failure under os durability) but data was
                // written: keep the data under a default spec; the broker re-applies the
                // topic's own spec when it opens.
                tracing::error!(dir = %dir.display(), "shard spec file missing; keeping its data under a default spec");
                StorageSpec::default()
            }
            Err(e) => return Err(e.into()),
        };
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(base) = parse_log_name(&name) {
                bases.push(base);
            } else if name.ends_with(".tmp") {
                fs::remove_file(dir.join(&name))?;
            }
        }
        bases.sort_unstable();
        let saved_start: u64 = fs::read_to_string(dir.join(LOG_START_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let log = ShardLog {
            id,
            no: ShardNo(self.next_no.fetch_add(1, Ordering::Relaxed)),
            dir,
            state: Mutex::new(LogState {
                spec,
                log_start: 0,
                segments: Vec::new(),
                deleted: false,
                remote: Vec::new(),
            }),
        };
        let remote = tiering::load(&log.dir)?;
        let mut segments = Vec::with_capacity(bases.len().max(1));
        for (i, &base) in bases.iter().enumerate() {
            let last = i + 1 == bases.len();
            segments.push(self.open_segment(&log, base, last, clean)?);
        }
        if segments.is_empty() {
            log.open_segment(&self.ctx, saved_start, true)?;
            segments.push(Segment::empty(saved_start));
        }
        // Each closed segment must end where the next begins; one that does not has a stale
        // index header (or lost data), so read what it really holds.
        for i in 0..segments.len().saturating_sub(1) {
            if segments[i].next != segments[i + 1].base && segments[i].active.is_none() {
                tracing::warn!(dir = %log.dir.display(), base = segments[i].base, "segment does not end where the next begins; rescanning it");
                segments[i] = self.scan_closed(&log, segments[i].base)?;
            }
            if segments[i].next != segments[i + 1].base {
                tracing::error!(dir = %log.dir.display(), from = segments[i].next, to = segments[i + 1].base, "offsets missing between segments");
            }
        }
        let next = segments.last().map_or(0, |s| s.next);
        let first = remote
            .first()
            .map_or(segments[0].base, |r| r.base.min(segments[0].base));
        let mut st = log.state.lock();
        st.log_start = saved_start.max(first).min(next);
        st.segments = segments;
        st.remote = remote;
        drop(st);
        Ok(Some(log))
    }

    /// Opens one segment: a closed one from its index header, the last one from its index
    /// files after a clean shutdown, and anything else by scanning it.
    fn open_segment(&self, log: &ShardLog, base: u64, last: bool, clean: bool) -> Result<Segment> {
        let path = log_path(&log.dir, base);
        let file = log.open_segment(&self.ctx, base, false)?;
        let len = file.metadata()?.len();
        if !last && let Some(summary) = read_summary(&log.dir, base).filter(|s| s.log_len == len) {
            return Ok(Segment {
                base,
                next: summary.next_offset,
                size: len,
                max_ts: summary.max_ts,
                first_ts: None,
                active: None,
                verified: Default::default(),
            });
        }
        if last && clean {
            let loaded = fs::read(index_path(&log.dir, base))
                .ok()
                .zip(fs::read(time_index_path(&log.dir, base)).ok())
                .and_then(|(o, t)| IndexData::decode(&o, &t))
                .filter(|(s, _)| s.log_len == len);
            if let Some((summary, data)) = loaded {
                return Ok(Segment {
                    base,
                    next: summary.next_offset,
                    size: len,
                    max_ts: summary.max_ts,
                    first_ts: first_batch_ts(&file, len)?,
                    active: Some(Indexer::resume(data, summary.max_ts)),
                    verified: Default::default(),
                });
            }
        }
        if !last {
            return self.scan_closed(log, base);
        }
        let scanned = recovery::scan(&path, &file, base)?;
        if let Some((pos, reason)) = &scanned.torn {
            tracing::warn!(file = %path.display(), position = pos, %reason, "cutting torn tail");
            file.set_len(*pos)?;
            file.sync_all()?;
        }
        // The active segment's index files are rewritten when it rolls or the engine closes.
        let _ = fs::remove_file(index_path(&log.dir, base));
        let _ = fs::remove_file(time_index_path(&log.dir, base));
        Ok(Segment {
            base,
            next: scanned.next,
            size: scanned.size,
            max_ts: scanned.max_ts,
            first_ts: scanned.first_ts,
            active: Some(scanned.indexer),
            verified: scanned.verified,
        })
    }

    /// Scans a closed segment and rewrites its index files from what it holds.
    fn scan_closed(&self, log: &ShardLog, base: u64) -> Result<Segment> {
        let path = log_path(&log.dir, base);
        let file = log.open_segment(&self.ctx, base, false)?;
        let scanned = recovery::scan(&path, &file, base)?;
        if let Some((pos, reason)) = &scanned.torn {
            tracing::warn!(file = %path.display(), position = pos, %reason, "cutting torn tail");
            file.set_len(*pos)?;
            file.sync_all()?;
        }
        let seg = Segment {
            base,
            next: scanned.next,
            size: scanned.size,
            max_ts: scanned.max_ts,
            first_ts: scanned.first_ts,
            active: None,
            verified: scanned.verified,
        };
        write_index_files(&log.dir, base, &scanned.indexer.data, seg.summary(), true)?;
        self.ctx
            .indexes
            .put((log.no.get(), base), Arc::new(scanned.indexer.data));
        Ok(seg)
    }

    fn check_tier(&self, spec: &StorageSpec) -> Result<()> {
        if spec.remote && self.tier.is_none() {
            return Err(StorageError::InvalidSpec(
                "remote.storage.enable=true needs object storage: start strata with \
                 --s3-bucket NAME (and --s3-endpoint URL for S3-compatible servers)"
                    .into(),
            ));
        }
        Ok(())
    }

    fn tier_or_err(&self) -> Result<&Arc<dyn super::RemoteTier>> {
        self.tier.as_ref().ok_or_else(|| {
            StorageError::Unavailable(
                "this shard has segments in object storage, but no object store is configured"
                    .into(),
            )
        })
    }

    fn shard(&self, id: &ShardId) -> Result<Arc<ShardLog>> {
        self.ctx.syncer.gate().check_open()?;
        self.shards
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }
}

fn parse_spec(text: &str) -> Result<StorageSpec> {
    let pairs = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once('=').unwrap_or((l, "")));
    StorageSpec::from_properties(StorageSpec::default(), pairs)
}

fn read_summary(dir: &Path, base: u64) -> Option<format::SegmentSummary> {
    let f = fs::File::open(index_path(dir, base)).ok()?;
    let mut head = [0u8; INDEX_HEADER_LEN];
    f.read_exact_at(&mut head, 0).ok()?;
    // Only the header is read (and checked) here; the entries' checksum is checked when the
    // index is loaded for a read, and a mismatch rebuilds it from the log.
    let (summary, count, _) = decode_header(OFFSET_MAGIC, &head)?;
    let len = f.metadata().ok()?.len() as usize;
    (len == INDEX_HEADER_LEN + count * 8).then_some(summary)
}

fn first_batch_ts(file: &fs::File, len: u64) -> Result<Option<i64>> {
    if len < HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, 0)?;
    Ok(BatchHeader::parse(&head).ok().map(|h| h.max_timestamp))
}

#[async_trait]
impl Engine for DedicatedEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::File
    }

    fn model(&self) -> Model {
        Model::Dedicated
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        self.ctx.syncer.gate().check()?;
        spec.check_held_by(EngineKind::File, Model::Dedicated)?;
        self.check_tier(spec)?;
        if self.shards.read().contains_key(id) {
            return Err(StorageError::ShardExists(id.clone()));
        }
        let dir = self.root.join(id.to_string());
        match fs::create_dir(&dir) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StorageError::ShardExists(id.clone()));
            }
            r => r?,
        }
        let log = ShardLog {
            id: id.clone(),
            no: ShardNo(self.next_no.fetch_add(1, Ordering::Relaxed)),
            dir: dir.clone(),
            state: Mutex::new(LogState {
                spec: *spec,
                log_start: 0,
                segments: vec![Segment::empty(0)],
                deleted: false,
                remote: Vec::new(),
            }),
        };
        // The spec file marks the shard as created; it, the first segment and both
        // directory entries are made durable together, in one group-commit round shared with
        // concurrent creates and appends.
        let durable = spec.durability != Durability::OsCache;
        let created = log.open_segment(&self.ctx, 0, true).and_then(|segment| {
            log.write_spec(spec, false)?;
            if !durable {
                return Ok(Vec::new());
            }
            let open = |p: &Path| fs::File::open(p).map(Arc::new);
            Ok(vec![
                segment,
                open(&log.spec_path())?,
                open(&dir)?,
                open(&self.root)?,
            ])
        });
        let files = match created {
            Ok(files) => files,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        if let Some(last) = files.iter().map(|f| self.ctx.syncer.request(f)).last() {
            self.ctx.syncer.wait(last).await?;
        }
        self.shards.write().insert(id.clone(), Arc::new(log));
        Ok(())
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        self.ctx.syncer.gate().check()?;
        let log = self
            .shards
            .write()
            .remove(id)
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))?;
        let remote = {
            let mut st = log.state.lock();
            st.deleted = true;
            self.ctx.files.forget_owner(log.no.get());
            for seg in &st.segments {
                self.ctx.indexes.forget((log.no.get(), seg.base));
            }
            let doomed = self.root.join(format!("{}.{}{DELETED_SUFFIX}", id, log.no));
            fs::rename(&log.dir, &doomed)?;
            fsync_dir(&self.root)?;
            let remote = std::mem::take(&mut st.remote);
            drop(st);
            fs::remove_dir_all(&doomed)?;
            remote
        };
        if let Some(tier) = &self.tier {
            tiering::forget(&**tier, id, &remote).await;
        }
        Ok(())
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::File, Model::Dedicated)?;
        self.check_tier(spec)?;
        self.ctx.syncer.check()?;
        let log = self.shard(id)?;
        let mut st = log.lock_live()?;
        log.write_spec(spec, spec.durability != Durability::OsCache)?;
        st.spec = *spec;
        Ok(())
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        self.ctx.syncer.gate().check_open()?;
        Ok(self
            .shards
            .read()
            .iter()
            .map(|(id, log)| (id.clone(), log.state.lock().spec))
            .collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        self.shard(id)?.append(&self.ctx, batch).await
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        let log = self.shard(id)?;
        if let Some((seg, bounds)) = log.remote_segment_for(from)? {
            let tier = self.tier_or_err()?;
            let cache = &self.remote_cache;
            return tiering::read(&**tier, cache, &log, seg, from, max_bytes, bounds).await;
        }
        log.read(&self.ctx, from, max_bytes)
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        Ok(self.shard(id)?.lock_live()?.bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        let log = self.shard(id)?;
        let tiered = !log.lock_live()?.remote.is_empty();
        if tiered {
            let tier = self.tier_or_err()?;
            let cache = &self.remote_cache;
            if let Some(hit) = tiering::offset_for_timestamp(&**tier, cache, &log, ts).await? {
                return Ok(Some(hit));
            }
        }
        log.offset_for_timestamp(&self.ctx, ts)
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        self.shard(id)?.trim(&self.ctx, before)
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        let log = self.shard(id)?;
        {
            let st = log.lock_live()?;
            if to < st.local_start() && to < st.next_offset() {
                return Err(StorageError::InvalidSpec(format!(
                    "cannot truncate {id} to {to}: offsets below {} are only in object storage",
                    st.local_start()
                )));
            }
        }
        let bounds = log.truncate(&self.ctx, to)?;
        if let Some(tier) = &self.tier {
            tiering::after_truncate(&**tier, &log).await?;
        }
        Ok(bounds)
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        self.ctx.syncer.gate().check_open()?;
        let logs: Vec<_> = self.shards.read().values().cloned().collect();
        let mut report = Maintenance::default();
        for log in logs {
            let tiered = log
                .lock_live()
                .is_ok_and(|st| st.spec.remote || !st.remote.is_empty());
            if let (true, Some(tier)) = (tiered, &self.tier) {
                match tiering::pass(&**tier, &log, &self.ctx, now_ms).await {
                    Ok(pass) => {
                        report.bytes_dropped += pass.bytes_dropped;
                        report.files_deleted += pass.files_deleted;
                    }
                    Err(StorageError::ShardNotFound(_)) => continue,
                    Err(e) => {
                        // An object store outage must not stop retention of other shards.
                        tracing::warn!(shard = %log.id, error = %e, "tiering pass failed; retrying later");
                    }
                }
            }
            match log.maintain(&self.ctx, now_ms) {
                Ok((bytes, files)) => {
                    report.bytes_dropped += bytes;
                    report.files_deleted += files;
                    if let Some(tier) = &self.tier {
                        let mut pass = tiering::Pass::default();
                        if let Err(e) =
                            tiering::drop_expired(&**tier, &log, now_ms, &mut pass).await
                        {
                            tracing::warn!(shard = %log.id, error = %e, "deleting uploaded segments failed; retrying later");
                        }
                        report.files_deleted += pass.files_deleted;
                    }
                }
                Err(StorageError::ShardNotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    async fn close(&self) -> Result<()> {
        if !self.ctx.syncer.gate().close() {
            return Err(StorageError::Closed);
        }
        let logs: Vec<_> = self.shards.read().values().cloned().collect();
        for log in logs {
            let st = log.state.lock();
            log.write_index(st.active(), false)?;
        }
        // One syncfs makes every segment, index file and directory durable before the marker
        // says the index files can be trusted; per-file fsyncs would cost one each per shard.
        let root = fs::File::open(&self.root)?;
        self.ctx.syncer.sync_fs(&root)?;
        self.ctx.syncer.shutdown();
        self.ctx.files.clear();
        write_atomic(&self.root.join(CLEAN_SHUTDOWN), b"")?;
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        let shards = self.shards.read();
        EngineStats {
            shards: shards.len() as u64,
            bytes: shards.values().map(|l| l.state.lock().size()).sum(),
            open_files: self.ctx.files.len() as u64,
            fsyncs: self.ctx.syncer.fsyncs(),
            ..EngineStats::default()
        }
    }
}
