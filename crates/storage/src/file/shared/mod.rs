//! The file engine's shared model: every shard appends into one journal of rolling files, as
//! RocketMQ's CommitLog does, so writes stay one sequential stream however many shards exist.
//!
//! Each batch gets a 32-byte index entry. Entries appended since the last checkpoint stay in
//! memory (a shard's `tail`); a checkpoint writes them into an index run file as one block per
//! shard and records the whole shard table, so recovery reads the checkpoint and replays only
//! the journal written after it. A shard keeps at most a few run references, merged as they
//! accumulate, so its memory stays small for millions of shards. Journal files are deleted once
//! no live entry points into them; when a long-retention shard pins old files, its live batches
//! there are copied to the head of the journal (relocated) so the files can go. Layout and
//! rules: `docs/format/file.md`.

mod checkpoint;
mod format;
mod gc;
mod journal;
mod ops;
mod read;
mod recovery;
mod state;

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use parking_lot::{Condvar, Mutex};
use strata_record::Batch;

use self::checkpoint::Pending;
use self::format::{ENTRY_LEN, Kind, decode_entry, journal_path, run_path};
use self::journal::Writer;
use self::state::{Entry, RunRef, Table};
use super::FileOptions;
use super::fdcache::FdCache;
use super::index_cache::{IndexCache, Weigh};
use super::sync::{Syncer, Ticket};
use crate::engine::check_batch_size;
use crate::{
    Appended, Bounds, Durability, Engine, EngineKind, EngineStats, Maintenance, Model, ReadChunk,
    Result, ShardId, ShardNo, StorageError, StorageSpec, TimestampHit,
};

/// File-cache owner of journal files.
const JOURNAL_OWNER: u64 = 0;
/// File-cache owner of index run files.
const RUN_OWNER: u64 = 1;

impl Weigh for Vec<Entry> {
    fn weight(&self) -> usize {
        self.len() * ENTRY_LEN + 48
    }
}

/// What does not change while the engine runs, and the caches.
#[derive(Debug)]
pub(super) struct Ctx {
    root: PathBuf,
    options: FileOptions,
    files: FdCache,
    blocks: IndexCache<Vec<Entry>>,
    syncer: Syncer,
}

impl Ctx {
    fn journal(&self, seq: u32) -> std::io::Result<Arc<File>> {
        self.files.open(
            (JOURNAL_OWNER, u64::from(seq)),
            &journal_path(&self.root, seq),
            false,
        )
    }

    /// A shard's index block, checked against its CRC.
    fn load_block(&self, r: &RunRef) -> Result<Arc<Vec<Entry>>> {
        let key = (u64::from(r.run), u64::from(r.pos));
        if let Some(b) = self.blocks.get(key) {
            return Ok(b);
        }
        let path = run_path(&self.root, r.run);
        let file = self
            .files
            .open((RUN_OWNER, u64::from(r.run)), &path, false)?;
        let mut buf = vec![0u8; r.count as usize * ENTRY_LEN];
        file.read_exact_at(&mut buf, u64::from(r.pos))?;
        if crc32c::crc32c(&buf) != r.crc {
            return Err(StorageError::corruption(
                path,
                u64::from(r.pos),
                "index block checksum mismatch",
            ));
        }
        let entries = Arc::new(buf.chunks_exact(ENTRY_LEN).map(decode_entry).collect());
        self.blocks.put(key, Arc::clone(&entries));
        Ok(entries)
    }

    fn ticket(&self, durability: Durability, file: &Arc<File>) -> Option<Ticket> {
        match durability {
            Durability::Fsync => Some(self.syncer.request(file)),
            Durability::Interval(ms) => {
                self.syncer
                    .sync_within(file, std::time::Duration::from_millis(u64::from(ms)));
                None
            }
            Durability::OsCache | Durability::Memory => None,
        }
    }

    async fn wait(&self, ticket: Option<Ticket>) -> Result<()> {
        match ticket {
            Some(t) => self.syncer.wait(t).await,
            None => Ok(()),
        }
    }
}

/// Everything that changes, behind one lock: appends to the journal are serial anyway.
#[derive(Debug)]
pub(super) struct Inner {
    table: Table,
    writer: Writer,
    /// Journal bytes written since the last checkpoint was settled.
    since_checkpoint: u64,
    /// Where the last durable checkpoint says replay starts.
    replay_from: (u32, u64),
    /// Run files the last durable checkpoint refers to.
    durable_runs: BTreeSet<u32>,
    /// A settled checkpoint is being made durable in the background.
    in_flight: bool,
    /// Size of the last checkpoint file written.
    last_checkpoint_bytes: u64,
    /// The last checkpoint's buffer, reused for the next.
    spare: Vec<u8>,
    next_run: u32,
    runs_on_disk: BTreeSet<u32>,
    closed: bool,
}

/// The shared-model file engine.
#[derive(Debug)]
pub struct SharedEngine {
    ctx: Arc<Ctx>,
    inner: Arc<Mutex<Inner>>,
    /// Signalled whenever a checkpoint stops being in flight.
    idle: Arc<Condvar>,
    /// The thread that makes settled checkpoints durable, off the append path.
    worker: Mutex<Option<(mpsc::Sender<Pending>, JoinHandle<()>)>>,
}

impl Drop for SharedEngine {
    fn drop(&mut self) {
        if let Some((tx, thread)) = self.worker.lock().take() {
            drop(tx);
            let _ = thread.join();
        }
    }
}

impl SharedEngine {
    /// Opens (and recovers) the engine rooted at `root`, creating it if needed.
    pub fn open(root: impl AsRef<Path>, options: FileOptions) -> Result<Self> {
        recovery::open(root.as_ref(), options)
    }

    fn new(ctx: Ctx, inner: Inner) -> Self {
        let ctx = Arc::new(ctx);
        let inner = Arc::new(Mutex::new(inner));
        let idle = Arc::new(Condvar::new());
        let (tx, rx) = mpsc::channel::<Pending>();
        let thread = {
            let (ctx, inner, idle) = (ctx.clone(), inner.clone(), idle.clone());
            std::thread::Builder::new()
                .name("shared-checkpoint".into())
                .spawn(move || {
                    for pending in rx {
                        let persisted = pending.persist(&ctx);
                        let mut g = inner.lock();
                        match persisted {
                            Ok(()) => {
                                g.finish(&ctx, pending);
                            }
                            Err(e) => {
                                // The in-memory state already points at the run file; without a
                                // durable checkpoint behind it, writing on would be unsafe.
                                ctx.syncer.poison(&std::io::Error::other(format!(
                                    "checkpoint could not be made durable: {e}"
                                )));
                            }
                        }
                        g.in_flight = false;
                        idle.notify_all();
                    }
                })
                .expect("spawn checkpoint thread")
        };
        SharedEngine {
            ctx,
            inner,
            idle,
            worker: Mutex::new(Some((tx, thread))),
        }
    }

    /// Settles a due checkpoint and hands it to the background thread.
    fn checkpoint_in_background(&self, g: &mut Inner) -> Result<()> {
        if g.in_flight || !g.checkpoint_due(&self.ctx) {
            return Ok(());
        }
        let pending = g.begin_checkpoint(&self.ctx)?;
        g.in_flight = true;
        if let Some((tx, _)) = &*self.worker.lock()
            && let Err(mpsc::SendError(p)) = tx.send(pending)
        {
            tracing::error!("checkpoint thread is gone; checkpoint dropped");
            drop(p);
            g.in_flight = false;
        }
        Ok(())
    }

    /// Writes a checkpoint now and waits until it is durable; returns the files it let go.
    fn checkpoint_now(&self) -> Result<u64> {
        let mut g = self.inner.lock();
        while g.in_flight {
            self.idle.wait(&mut g);
        }
        let pending = g.begin_checkpoint(&self.ctx)?;
        g.in_flight = true;
        drop(g);
        let persisted = pending.persist(&self.ctx);
        let mut g = self.inner.lock();
        g.in_flight = false;
        self.idle.notify_all();
        if let Err(e) = persisted {
            self.ctx.syncer.poison(&std::io::Error::other(format!(
                "checkpoint could not be made durable: {e}"
            )));
            return Err(e);
        }
        Ok(g.finish(&self.ctx, pending))
    }

    fn lock(&self) -> Result<parking_lot::MutexGuard<'_, Inner>> {
        let g = self.inner.lock();
        if g.closed {
            return Err(StorageError::Closed);
        }
        Ok(g)
    }
}

impl Inner {
    /// A checkpoint is due after `checkpoint_bytes` of journal, or after four times the size of
    /// the last checkpoint if that is more: with millions of shards the checkpoint itself is
    /// tens of megabytes, and writing it that often would cost more than the appends. Replay
    /// after a crash stays bounded by the same interval.
    fn checkpoint_due(&self, ctx: &Ctx) -> bool {
        self.since_checkpoint
            >= ctx
                .options
                .checkpoint_bytes
                .max(4 * self.last_checkpoint_bytes)
    }

    fn no(&self, id: &ShardId) -> Result<ShardNo> {
        self.table
            .no(id)
            .ok_or_else(|| StorageError::ShardNotFound(id.clone()))
    }

    fn spec_of(&self, no: ShardNo) -> StorageSpec {
        let s = self.table.get(no).expect("live shard");
        self.table.specs[s.spec as usize]
    }
}

#[async_trait]
impl Engine for SharedEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::File
    }

    fn model(&self) -> Model {
        Model::Shared
    }

    async fn create_shard(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::File, Model::Shared)?;
        self.ctx.syncer.check()?;
        let ticket = {
            let mut g = self.lock()?;
            if g.table.no(id).is_some() {
                return Err(StorageError::ShardExists(id.clone()));
            }
            g.create(&self.ctx, id, spec)?;
            self.ctx.ticket(spec.durability, &g.writer.file)
        };
        self.ctx.wait(ticket).await
    }

    async fn delete_shard(&self, id: &ShardId) -> Result<()> {
        self.ctx.syncer.check()?;
        let ticket = {
            let mut g = self.lock()?;
            let no = g.no(id)?;
            let spec = g.spec_of(no);
            g.record(&self.ctx, Kind::Delete, no, &[])?;
            g.table.remove(no);
            self.ctx.ticket(spec.durability, &g.writer.file)
        };
        self.ctx.wait(ticket).await
    }

    async fn reconfigure(&self, id: &ShardId, spec: &StorageSpec) -> Result<()> {
        spec.check_held_by(EngineKind::File, Model::Shared)?;
        self.ctx.syncer.check()?;
        let ticket = {
            let mut g = self.lock()?;
            let no = g.no(id)?;
            g.record(&self.ctx, Kind::Spec, no, &checkpoint::encode_spec(spec))?;
            let idx = g.table.intern(*spec);
            g.table.get_mut(no).expect("live shard").spec = idx;
            self.ctx.ticket(spec.durability, &g.writer.file)
        };
        self.ctx.wait(ticket).await
    }

    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>> {
        let g = self.lock()?;
        Ok(g.table
            .live()
            .map(|(_, s)| (s.id.clone(), g.table.specs[s.spec as usize]))
            .collect())
    }

    async fn append(&self, id: &ShardId, batch: Batch) -> Result<Appended> {
        check_batch_size(&batch)?;
        let (appended, ticket) = {
            let mut g = self.lock()?;
            self.ctx.syncer.check()?;
            let no = g.no(id)?;
            let appended = g.append(&self.ctx, no, &batch)?;
            let ticket = self.ctx.ticket(g.spec_of(no).durability, &g.writer.file);
            self.checkpoint_in_background(&mut g)?;
            (appended, ticket)
        };
        self.ctx.wait(ticket).await?;
        Ok(appended)
    }

    async fn read(&self, id: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        read::read(self, id, from, max_bytes)
    }

    async fn bounds(&self, id: &ShardId) -> Result<Bounds> {
        let g = self.lock()?;
        let no = g.no(id)?;
        Ok(g.table.get(no).expect("live shard").bounds())
    }

    async fn offset_for_timestamp(&self, id: &ShardId, ts: i64) -> Result<Option<TimestampHit>> {
        read::offset_for_timestamp(self, id, ts)
    }

    async fn trim(&self, id: &ShardId, before: u64) -> Result<Bounds> {
        self.ctx.syncer.check()?;
        let (bounds, ticket) = {
            let mut g = self.lock()?;
            let no = g.no(id)?;
            let b = g.table.get(no).expect("live shard").bounds();
            if before > b.next_offset {
                return Err(StorageError::OffsetOutOfRange {
                    shard: id.clone(),
                    offset: before,
                    log_start: b.log_start,
                    next_offset: b.next_offset,
                });
            }
            if before <= b.log_start {
                return Ok(b);
            }
            g.record(&self.ctx, Kind::Trim, no, &before.to_le_bytes())?;
            g.apply_trim(&self.ctx, no, before)?;
            let spec = g.spec_of(no);
            let ticket = self.ctx.ticket(spec.durability, &g.writer.file);
            (g.table.get(no).expect("live shard").bounds(), ticket)
        };
        self.ctx.wait(ticket).await?;
        Ok(bounds)
    }

    async fn truncate(&self, id: &ShardId, to: u64) -> Result<Bounds> {
        self.ctx.syncer.check()?;
        let (bounds, ticket) = {
            let mut g = self.lock()?;
            let no = g.no(id)?;
            let b = g.table.get(no).expect("live shard").bounds();
            if to >= b.next_offset {
                return Ok(b);
            }
            g.record(&self.ctx, Kind::Truncate, no, &to.to_le_bytes())?;
            g.apply_truncate(&self.ctx, no, to)?;
            let spec = g.spec_of(no);
            let ticket = self.ctx.ticket(spec.durability, &g.writer.file);
            (g.table.get(no).expect("live shard").bounds(), ticket)
        };
        self.ctx.wait(ticket).await?;
        Ok(bounds)
    }

    async fn maintain(&self, now_ms: i64) -> Result<Maintenance> {
        self.ctx.syncer.check()?;
        let (mut report, changed) = {
            let mut g = self.lock()?;
            let dropped = g.apply_retention(&self.ctx, now_ms)?;
            let changed = dropped > 0 || g.since_checkpoint > 0;
            (
                Maintenance {
                    bytes_dropped: dropped,
                    ..Maintenance::default()
                },
                changed,
            )
        };
        if changed {
            report.files_deleted += self.checkpoint_now()?;
        }
        let relocated = {
            let mut g = self.lock()?;
            match g.relocation_victim(&self.ctx)? {
                Some(victim) => g.relocate(&self.ctx, victim)?,
                None => 0,
            }
        };
        if relocated > 0 {
            report.bytes_relocated = relocated;
            report.files_deleted += self.checkpoint_now()?;
        }
        Ok(report)
    }

    async fn close(&self) -> Result<()> {
        drop(self.lock()?);
        self.checkpoint_now()?;
        self.inner.lock().closed = true;
        if let Some((tx, thread)) = self.worker.lock().take() {
            drop(tx);
            let _ = thread.join();
        }
        self.ctx.syncer.shutdown();
        self.ctx.files.clear();
        Ok(())
    }

    fn stats(&self) -> EngineStats {
        let g = self.inner.lock();
        EngineStats {
            shards: g.table.names.len() as u64,
            bytes: g.table.live().map(|(_, s)| s.size).sum(),
            open_files: self.ctx.files.len() as u64,
            fsyncs: self.ctx.syncer.fsyncs(),
            ..EngineStats::default()
        }
    }
}
