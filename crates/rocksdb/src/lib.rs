//! The RocksDB engine: one embedded database per node holds every rocksdb shard.
//!
//! - `shared` model: every shard's batches are keys of one column family, `shared`, keyed by
//!   shard number and base offset, so a million shards cost a million key ranges, not files.
//! - `dedicated` model: each topic has its own column family, `topic:<name>`, with the same
//!   keys; deleting the topic drops the column family.
//!
//! Both keep a summary of every batch in the `index` column family, keyed so that a timestamp
//! lookup is one seek, and each shard's description and offsets in `meta`. A batch's data,
//! index entry and the shard's new state go in one atomic write batch.
//!
//! Durability maps onto RocksDB's write-ahead log: every write goes to the WAL (so it survives
//! a process crash, as `os` durability promises); `fsync` topics wait for a WAL sync shared by
//! all concurrent appends ([`sync`]); `flush.ms` topics are synced by the same thread on that
//! interval. Retention and trims remove whole batches with range deletes.
//!
//! The layout is in docs/format/rocksdb.md.

mod keys;
mod sync;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, DBRecoveryMode,
    DBWithThreadMode, MultiThreaded, Options, ReadOptions, WriteBatch, WriteOptions,
};
use strata_record::{Batch, BatchHeader, HEADER_LEN};
use strata_storage::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, LEADER_EPOCH, Maintenance,
    Model, Piece, ReadChunk, Result, ShardId, ShardNo, StorageError, StorageSpec, TimestampHit,
    check_batch_size, first_record_at_or_after,
};

use keys::{IndexEntry, ShardState};
use sync::WalSync;

type Db = DBWithThreadMode<MultiThreaded>;

/// Tuning for the node's database.
#[derive(Debug, Clone)]
pub struct RocksOptions {
    /// Memory for all memtables together (RocksDB's `db_write_buffer_size`).
    pub write_buffer_bytes: usize,
    /// Memtable size of each column family.
    pub cf_write_buffer_bytes: usize,
    /// Background flush and compaction threads.
    pub background_jobs: i32,
}

impl Default for RocksOptions {
    fn default() -> Self {
        RocksOptions {
            write_buffer_bytes: 256 << 20,
            cf_write_buffer_bytes: 64 << 20,
            background_jobs: 2,
        }
    }
}

/// The node's database, shared by the two model engines.
#[derive(Debug)]
pub struct RocksDb {
    db: Arc<Db>,
    path: PathBuf,
    options: RocksOptions,
    sync: Arc<WalSync>,
    next_no: AtomicU64,
    /// Shards as recovered at open, by model, until each engine takes its own.
    recovered: Mutex<ShardsByModel>,
    /// Serialises column-family creation and drops and the shard-number counter.
    ddl: Mutex<()>,
}

/// Shards found at open, by model, until each model's engine takes its own.
type ShardsByModel = HashMap<Model, Vec<(ShardId, Arc<Shard>)>>;

#[derive(Debug)]
struct Shard {
    no: ShardNo,
    state: Mutex<(StorageSpec, ShardState)>,
}

/// One model's engine over the node's database.
#[derive(Debug)]
pub struct RocksEngine {
    db: Arc<RocksDb>,
    model: Model,
    shards: RwLock<HashMap<ShardId, Arc<Shard>>>,
}

fn cf_options(options: &RocksOptions) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(options.cf_write_buffer_bytes);
    // Batches come compressed by producers (or not, by choice); a second pass rarely pays.
    o.set_compression_type(rocksdb::DBCompressionType::None);
    o
}

fn topic_cf(topic: &str) -> String {
    format!("{}{topic}", keys::TOPIC_CF_PREFIX)
}

fn db_error(path: &Path, e: rocksdb::Error) -> StorageError {
    match e.kind() {
        rocksdb::ErrorKind::Corruption => {
            let message = e.into_string();
            let (file, detail) = damaged_file(path).unwrap_or_else(|| (path.to_path_buf(), None));
            let reason = match detail {
                Some(d) => format!("{message} ({d})"),
                None => message,
            };
            StorageError::corruption(file, 0, reason)
        }
        _ => StorageError::Io(std::io::Error::other(format!(
            "RocksDB at {}: {}",
            path.display(),
            e.into_string()
        ))),
    }
}

/// RocksDB's status messages do not name the damaged file, but its info log does (for
/// write-ahead-log recovery: `<dir>/000004.log: dropping 2508 bytes; Corruption: ...`).
fn damaged_file(path: &Path) -> Option<(PathBuf, Option<String>)> {
    let log = std::fs::read_to_string(path.join("LOG")).ok()?;
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Corruption") && l.contains(": dropping "))?;
    let (before, after) = line.split_once(": dropping ")?;
    let file = before.rsplit(' ').next()?;
    let detail = after
        .split(';')
        .next()
        .map(|d| format!("recovery would drop {d}"));
    Some((PathBuf::from(file), detail))
}

impl RocksDb {
    /// Opens (creating if needed) the node's database at `path` and recovers its shards.
    pub fn open(path: impl Into<PathBuf>, options: RocksOptions) -> Result<Arc<RocksDb>> {
        let path = path.into();
        std::fs::create_dir_all(&path)?;
        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_db_write_buffer_size(options.write_buffer_bytes);
        db_opts.set_max_background_jobs(options.background_jobs);
        // A torn last WAL record (a crash mid-write) is cut; damage before it fails the open
        // rather than silently dropping the acknowledged writes after it.
        db_opts.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
        db_opts.set_keep_log_file_num(4);
        let mut names = match Db::list_cf(&db_opts, &path) {
            Ok(names) => names,
            Err(_) if !path.join("CURRENT").exists() => Vec::new(),
            Err(e) => return Err(db_error(&path, e)),
        };
        for base in ["default", keys::SHARED_CF, keys::INDEX_CF, keys::META_CF] {
            if !names.iter().any(|n| n == base) {
                names.push(base.to_owned());
            }
        }
        let mut attempts = 0;
        let db = loop {
            let descriptors = names
                .iter()
                .map(|n| ColumnFamilyDescriptor::new(n, cf_options(&options)));
            match Db::open_cf_descriptors(&db_opts, &path, descriptors) {
                Ok(db) => break Arc::new(db),
                // An instance of this process that is being dropped (its sync thread finishing
                // a sync) still holds the lock for a moment.
                Err(e) if attempts < 200 && e.as_ref().contains("lock hold by current process") => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(db_error(&path, e)),
            }
        };
        let sync = WalSync::start(Arc::downgrade(&db));
        let this = RocksDb {
            db,
            path,
            options,
            sync,
            next_no: AtomicU64::new(0),
            recovered: Mutex::new(HashMap::new()),
            ddl: Mutex::new(()),
        };
        this.recover()?;
        Ok(Arc::new(this))
    }

    fn err(&self, e: rocksdb::Error) -> StorageError {
        db_error(&self.path, e)
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| {
            StorageError::corruption(&self.path, 0, format!("column family {name} is missing"))
        })
    }

    fn recover(&self) -> Result<()> {
        let meta = self.cf(keys::META_CF)?;
        let next = self
            .db
            .get_cf(&meta, keys::NEXT_NO_KEY)
            .map_err(|e| self.err(e))?
            .map_or(0, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])));
        self.next_no.store(next, Ordering::Relaxed);
        let (start, end) = keys::config_range();
        let mut it = self.iter(&meta, &start, &end);
        it.seek(start);
        let mut recovered = ShardsByModel::new();
        while it.valid() {
            let key = it.key().expect("valid iterator");
            let no = ShardNo(u64::from_be_bytes(key[1..9].try_into().map_err(|_| {
                StorageError::corruption(&self.path, 0, "shard description key is malformed")
            })?));
            let (id, spec) = keys::decode_config(it.value().expect("valid iterator"))?;
            let state = self
                .db
                .get_cf(&meta, keys::state_key(no))
                .map_err(|e| self.err(e))?
                .map(|v| ShardState::decode(&v))
                .transpose()?
                .unwrap_or_else(ShardState::empty);
            self.note_durability(spec.durability);
            let shard = Shard {
                no,
                state: Mutex::new((spec, state)),
            };
            recovered
                .entry(spec.model)
                .or_default()
                .push((id, Arc::new(shard)));
            it.next();
        }
        it.status().map_err(|e| self.err(e))?;
        *self.recovered.lock() = recovered;
        Ok(())
    }

    fn iter<'a>(
        &'a self,
        cf: &Arc<BoundColumnFamily<'a>>,
        lower: &[u8],
        upper: &[u8],
    ) -> DBRawIteratorWithThreadMode<'a, Db> {
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lower.to_vec());
        ro.set_iterate_upper_bound(upper.to_vec());
        self.db.raw_iterator_cf_opt(cf, ro)
    }

    fn note_durability(&self, d: Durability) {
        if let Durability::Interval(ms) = d {
            let _ =
                self.sync
                    .interval_ms
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                        (cur == 0 || ms < cur).then_some(ms)
                    });
        }
    }

    /// The engine for one model. Each model's engine should be taken once.
    pub fn engine(self: &Arc<Self>, model: Model) -> RocksEngine {
        let shards = self
            .recovered
            .lock()
            .remove(&model)
            .unwrap_or_default()
            .into_iter()
            .collect();
        RocksEngine {
            db: self.clone(),
            model,
            shards: RwLock::new(shards),
        }
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// WAL files, oldest first.
    pub fn wal_files(&self) -> Vec<PathBuf> {
        wal_files(&self.path)
    }

    fn check_writable(&self) -> Result<()> {
        self.sync.gate.check()
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(false);
        self.db.write_opt(batch, &wo).map_err(|e| self.err(e))
    }

    async fn made_durable(&self, d: Durability) -> Result<()> {
        match d {
            Durability::Fsync => self.sync.sync().await.map_err(StorageError::Poisoned),
            Durability::Interval(_) => {
                self.sync.dirty.store(true, Ordering::Relaxed);
                Ok(())
            }
            Durability::OsCache | Durability::Memory => Ok(()),
        }
    }

    /// Syncs the WAL and stops the sync thread; later calls fail with `Closed`.
    pub async fn close(&self) -> Result<()> {
        if !self.sync.gate.close() {
            return Ok(());
        }
        let r = self.sync.sync().await.map_err(StorageError::Poisoned);
        self.sync.stop();
        r
    }
}

/// WAL files of the database at `path`, oldest first.
pub fn wal_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    files.sort();
    files
}

impl RocksEngine {
    fn shard(&self, id: &ShardId) -> Result<Arc<Shard>> {
        self.db.sync.gate.check_open()?;
        self.shards
            .read()
            .get(id)
            .cloned()
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }

    fn data_cf(&self, id: &ShardId) -> Result<Arc<BoundColumnFamily<'_>>> {
        match self.model {
            Model::Shared => self.db.cf(keys::SHARED_CF),
            Model::Dedicated => self.db.cf(&topic_cf(id.topic())),
        }
    }

    fn check_spec(&self, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::Rocksdb, self.model)
    }

    fn out_of_range(id: &ShardId, offset: u64, s: &ShardState) -> StorageError {
        StorageError::out_of_range(id, offset, s.bounds())
    }

    /// Index entries of a shard from its oldest, while `keep_going` says so.
    fn front_entries(
        &self,
        no: ShardNo,
        mut keep_going: impl FnMut(&IndexEntry) -> bool,
    ) -> Result<(Vec<IndexEntry>, Option<IndexEntry>)> {
        let index = self.db.cf(keys::INDEX_CF)?;
        let (lo, hi) = keys::shard_range(no);
        let mut it = self.db.iter(&index, &lo, &hi);
        it.seek(lo);
        let mut dropped = Vec::new();
        let mut first_kept = None;
        while it.valid() {
            let e = IndexEntry::decode(it.key().expect("valid"), it.value().expect("valid"))?;
            if !keep_going(&e) {
                first_kept = Some(e);
                break;
            }
            dropped.push(e);
            it.next();
        }
        it.status().map_err(|e| self.db.err(e))?;
        Ok((dropped, first_kept))
    }

    /// Removes the oldest batches that `drop(entry, size_before)` selects (stopping at the
    /// first it keeps) and moves the log start to at least `log_start`. Returns bytes freed.
    fn drop_front(
        &self,
        id: &ShardId,
        shard: &Shard,
        state: &mut ShardState,
        log_start: u64,
        mut drop: impl FnMut(&IndexEntry, u64) -> bool,
    ) -> Result<u64> {
        let mut size = state.size;
        let new_start = state.log_start.max(log_start);
        let (dropped, first_kept) = self.front_entries(shard.no, |e| {
            let go = e.last < new_start || drop(e, size);
            if go {
                size -= u64::from(e.size);
            }
            go
        })?;
        let mut next = *state;
        next.log_start = new_start;
        if let Some(last) = dropped.last() {
            next.log_start = next.log_start.max(last.last + 1);
        }
        if dropped.is_empty() && next.log_start == state.log_start {
            return Ok(0);
        }
        next.size = size;
        let freed = state.size - size;
        let mut wb = WriteBatch::default();
        if let Some(last) = dropped.last() {
            let data = self.data_cf(id)?;
            let index = self.db.cf(keys::INDEX_CF)?;
            let end_base = first_kept.map_or(last.last + 1, |e| e.base);
            wb.delete_range_cf(
                &data,
                keys::data_key(shard.no, 0),
                keys::data_key(shard.no, end_base),
            );
            let index_end = match first_kept {
                Some(e) => e.key(shard.no).to_vec(),
                None => keys::shard_range(shard.no).1.to_vec(),
            };
            wb.delete_range_cf(&index, &keys::shard_range(shard.no).0[..], &index_end[..]);
        }
        let meta = self.db.cf(keys::META_CF)?;
        wb.put_cf(&meta, keys::state_key(shard.no), next.encode());
        self.db.write(wb)?;
        *state = next;
        Ok(freed)
    }
}

#[async_trait]
impl Engine for RocksEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Rocksdb
    }

    fn model(&self) -> Model {
        self.model
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        self.check_spec(spec)?;
        self.db.check_writable()?;
        {
            let _ddl = self.db.ddl.lock();
            if self.shards.read().contains_key(id) {
                return Err(StorageError::ShardExists(id.clone()));
            }
            if self.model == Model::Dedicated
                && self.db.db.cf_handle(&topic_cf(id.topic())).is_none()
            {
                self.db
                    .db
                    .create_cf(topic_cf(id.topic()), &cf_options(&self.db.options))
                    .map_err(|e| self.db.err(e))?;
            }
            let no = ShardNo(self.db.next_no.fetch_add(1, Ordering::Relaxed));
            let state = ShardState::empty();
            let meta = self.db.cf(keys::META_CF)?;
            let mut wb = WriteBatch::default();
            wb.put_cf(&meta, keys::NEXT_NO_KEY, no.next().get().to_be_bytes());
            wb.put_cf(&meta, keys::config_key(no), keys::encode_config(id, spec));
            wb.put_cf(&meta, keys::state_key(no), state.encode());
            self.db.write(wb)?;
            let shard = Shard {
                no,
                state: Mutex::new((*spec, state)),
            };
            self.shards.write().insert(id.clone(), Arc::new(shard));
        }
        self.db.note_durability(spec.durability);
        self.db.sync.sync().await.map_err(StorageError::Poisoned)
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        self.db.check_writable()?;
        let shard = self.shard(id)?;
        {
            let _ddl = self.db.ddl.lock();
            let _state = shard.state.lock();
            let meta = self.db.cf(keys::META_CF)?;
            let index = self.db.cf(keys::INDEX_CF)?;
            let (lo, hi) = keys::shard_range(shard.no);
            let mut wb = WriteBatch::default();
            wb.delete_cf(&meta, keys::config_key(shard.no));
            wb.delete_cf(&meta, keys::state_key(shard.no));
            wb.delete_range_cf(&index, lo, hi);
            let last_of_topic = self.model == Model::Dedicated
                && !self
                    .shards
                    .read()
                    .keys()
                    .any(|other| other != id && other.topic() == id.topic());
            if !last_of_topic {
                wb.delete_range_cf(&self.data_cf(id)?, lo, hi);
            }
            self.db.write(wb)?;
            self.shards.write().remove(id);
            if last_of_topic {
                self.db
                    .db
                    .drop_cf(&topic_cf(id.topic()))
                    .map_err(|e| self.db.err(e))?;
            }
        }
        self.db.sync.sync().await.map_err(StorageError::Poisoned)
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        self.check_spec(spec)?;
        self.db.check_writable()?;
        let shard = self.shard(id)?;
        {
            let mut st = shard.state.lock();
            let meta = self.db.cf(keys::META_CF)?;
            let mut wb = WriteBatch::default();
            wb.put_cf(
                &meta,
                keys::config_key(shard.no),
                keys::encode_config(id, spec),
            );
            self.db.write(wb)?;
            st.0 = *spec;
        }
        self.db.note_durability(spec.durability);
        self.db.sync.sync().await.map_err(StorageError::Poisoned)
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        Ok(self
            .shards
            .read()
            .iter()
            .map(|(id, s)| (id.clone(), s.state.lock().0))
            .collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        check_batch_size(&batch)?;
        self.db.check_writable()?;
        let shard = self.shard(id)?;
        let (durability, appended) = {
            let mut guard = shard.state.lock();
            let (spec, state) = &mut *guard;
            let base = state.next_offset;
            let last = base + u64::from(batch.record_count()) - 1;
            let max_ts = batch.max_timestamp();
            let bytes = batch.into_stored(base as i64, LEADER_EPOCH);
            let entry = IndexEntry {
                ts_mark: state.ts_mark.max(max_ts),
                base,
                last,
                size: bytes.len() as u32,
                max_ts,
            };
            let mut next = *state;
            next.next_offset = last + 1;
            next.size += bytes.len() as u64;
            next.ts_mark = entry.ts_mark;
            let mut wb = WriteBatch::default();
            wb.put_cf(&self.data_cf(id)?, keys::data_key(shard.no, base), &bytes);
            wb.put_cf(
                &self.db.cf(keys::INDEX_CF)?,
                entry.key(shard.no),
                entry.value(),
            );
            wb.put_cf(
                &self.db.cf(keys::META_CF)?,
                keys::state_key(shard.no),
                next.encode(),
            );
            self.db.write(wb)?;
            *state = next;
            if let Some(limit) = spec.retention.bytes
                && state.size > limit
            {
                // Keep the newest batch even if it alone exceeds the bound.
                self.drop_front(id, &shard, state, 0, |e, size| {
                    size > limit && e.last < last
                })?;
            }
            (
                spec.durability,
                Appended {
                    base_offset: base,
                    last_offset: last,
                    log_start: state.log_start,
                },
            )
        };
        self.db.made_durable(durability).await?;
        Ok(appended)
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        let shard = self.shard(id)?;
        let state = shard.state.lock().1;
        if from < state.log_start || from > state.next_offset {
            return Err(Self::out_of_range(id, from, &state));
        }
        let mut chunk = ReadChunk {
            bounds: state.bounds(),
            ..ReadChunk::default()
        };
        if from == state.next_offset {
            return Ok(chunk);
        }
        let data = self.data_cf(id)?;
        let (lo, hi) = keys::shard_range(shard.no);
        let mut it = self.db.iter(&data, &lo, &hi);
        it.seek_for_prev(keys::data_key(shard.no, from));
        if !it.valid() {
            it.seek(lo);
        }
        while it.valid() {
            let value = it.value().expect("valid");
            let header =
                BatchHeader::parse(value.get(..HEADER_LEN).unwrap_or(&[])).map_err(|e| {
                    let cf = match self.model {
                        Model::Shared => keys::SHARED_CF.to_owned(),
                        Model::Dedicated => topic_cf(id.topic()),
                    };
                    StorageError::corruption(
                        &self.db.path,
                        0,
                        format!("batch of shard {id} in column family {cf}: {e}"),
                    )
                })?;
            if (header.last_offset() as u64) < from {
                it.next();
                continue;
            }
            if (header.base_offset as u64) >= state.next_offset {
                break;
            }
            if !chunk.is_empty() && chunk.len + value.len() > max_bytes {
                break;
            }
            chunk.push(Piece::Bytes(Bytes::copy_from_slice(value)));
            it.next();
        }
        it.status().map_err(|e| self.db.err(e))?;
        Ok(chunk)
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        Ok(self.shard(id)?.state.lock().1.bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        let shard = self.shard(id)?;
        let state = shard.state.lock().1;
        let index = self.db.cf(keys::INDEX_CF)?;
        let data = self.data_cf(id)?;
        let (lo, hi) = keys::shard_range(shard.no);
        let mut it = self.db.iter(&index, &lo, &hi);
        it.seek(keys::index_seek(shard.no, ts));
        while it.valid() {
            let e = IndexEntry::decode(it.key().expect("valid"), it.value().expect("valid"))?;
            if e.base >= state.next_offset {
                break;
            }
            if e.max_ts >= ts && e.last >= state.log_start {
                let bytes = self
                    .db
                    .db
                    .get_pinned_cf(&data, keys::data_key(shard.no, e.base))
                    .map_err(|e| self.db.err(e))?;
                if let Some(bytes) = bytes
                    && let Some(hit) = first_record_at_or_after(
                        Bytes::copy_from_slice(&bytes),
                        ts,
                        state.log_start,
                    )?
                {
                    return Ok(Some(hit));
                }
            }
            it.next();
        }
        it.status().map_err(|e| self.db.err(e))?;
        Ok(None)
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        self.db.check_writable()?;
        let shard = self.shard(id)?;
        let (durability, bounds) = {
            let mut guard = shard.state.lock();
            let (spec, state) = &mut *guard;
            if before > state.next_offset {
                return Err(Self::out_of_range(id, before, state));
            }
            self.drop_front(id, &shard, state, before, |_, _| false)?;
            (spec.durability, state.bounds())
        };
        self.db.made_durable(durability).await?;
        Ok(bounds)
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        self.db.check_writable()?;
        let shard = self.shard(id)?;
        let (durability, bounds) = {
            let mut guard = shard.state.lock();
            let (spec, state) = &mut *guard;
            if to < state.next_offset {
                let index = self.db.cf(keys::INDEX_CF)?;
                let (lo, hi) = keys::shard_range(shard.no);
                let mut it = self.db.iter(&index, &lo, &hi);
                it.seek_to_last();
                let mut removed = Vec::new();
                let mut kept_mark = i64::MIN;
                while it.valid() {
                    let e =
                        IndexEntry::decode(it.key().expect("valid"), it.value().expect("valid"))?;
                    if e.last < to {
                        kept_mark = e.ts_mark;
                        break;
                    }
                    removed.push(e);
                    it.prev();
                }
                it.status().map_err(|e| self.db.err(e))?;
                drop(it);
                let new_next = removed.last().map_or(to, |e| e.base.min(to));
                let mut next = *state;
                next.next_offset = new_next;
                next.log_start = state.log_start.min(new_next);
                next.size -= removed.iter().map(|e| u64::from(e.size)).sum::<u64>();
                next.ts_mark = kept_mark;
                let mut wb = WriteBatch::default();
                for e in &removed {
                    wb.delete_cf(&index, e.key(shard.no));
                }
                wb.delete_range_cf(
                    &self.data_cf(id)?,
                    &keys::data_key(shard.no, new_next)[..],
                    &hi[..],
                );
                wb.put_cf(
                    &self.db.cf(keys::META_CF)?,
                    keys::state_key(shard.no),
                    next.encode(),
                );
                self.db.write(wb)?;
                *state = next;
            }
            (spec.durability, state.bounds())
        };
        self.db.made_durable(durability).await?;
        Ok(bounds)
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        self.db.sync.gate.check_open()?;
        let shards: Vec<_> = self
            .shards
            .read()
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect();
        let mut report = Maintenance::default();
        for (id, shard) in shards {
            let mut guard = shard.state.lock();
            let (spec, state) = &mut *guard;
            let cutoff = spec
                .retention
                .ms
                .map_or(i64::MIN, |ms| now_ms.saturating_sub(ms as i64));
            let limit = spec.retention.bytes.unwrap_or(u64::MAX);
            let last = state.next_offset.saturating_sub(1);
            report.bytes_dropped += self.drop_front(&id, &shard, state, 0, |e, size| {
                e.max_ts < cutoff || (size > limit && e.last < last)
            })?;
        }
        Ok(report)
    }

    async fn close(&self) -> Result<()> {
        self.db.close().await
    }

    fn stats(&self) -> EngineStats {
        let shards = self.shards.read();
        EngineStats {
            shards: shards.len() as u64,
            bytes: shards.values().map(|s| s.state.lock().1.size).sum(),
            open_files: 0,
            fsyncs: self.db.sync.fsyncs.load(Ordering::Relaxed),
            ..EngineStats::default()
        }
    }
}
