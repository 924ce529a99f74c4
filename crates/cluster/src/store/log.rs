//! The Raft log on Strata's own file engine.
//!
//! One shard of a [`DedicatedEngine`] in its own directory holds the log, fsynced before an
//! append is reported done. Each `append` call is one record batch (one record per entry,
//! value = the entry as JSON), so a follower receiving many entries pays one fsync; the
//! batch's CRC-32C guards them, and the engine's recovery cuts a torn tail. Raft indexes are
//! kept in the entries, not taken from offsets, because openraft may leave gaps (after a
//! snapshot). The unpurged entries are also held in memory: snapshots bound the log to a few
//! thousand entries, and openraft reads it often.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader, StorageIOError};
use strata_record::{Batch, BatchBuilder, Compression, split_batches};
use strata_storage::file::{DedicatedEngine, FileOptions};
use strata_storage::{Durability, Engine, Retention, ShardId, StorageSpec};
use tokio::sync::Mutex;

use super::{io, meta};
use crate::types::{TypeConfig, typ};

const VOTE: &[u8; 4] = b"SVOT";
const PURGED: &[u8; 4] = b"SPRG";
const COMMITTED: &[u8; 4] = b"SCMT";
/// Bytes read from the engine per call while loading the log.
const READ_BYTES: usize = 1 << 20;

type StorageResult<T> = Result<T, typ::StorageError>;

/// The Raft log and the vote. Clones share one log (the reader openraft asks for is one).
#[derive(Clone, Debug)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    engine: DedicatedEngine,
    shard: ShardId,
    dir: PathBuf,
    /// Raft index → (engine offset, entry), every entry after `purged`.
    entries: BTreeMap<u64, (u64, typ::Entry)>,
    purged: Option<typ::LogId>,
}

fn spec() -> StorageSpec {
    StorageSpec {
        durability: Durability::Fsync,
        retention: Retention::default(),
        segment_bytes: 64 << 20,
        segment_ms: None,
        ..StorageSpec::default()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering what the last run acknowledged.
    pub async fn open(dir: &Path) -> StorageResult<Self> {
        let fail = |e: &dyn std::error::Error| -> typ::StorageError {
            StorageIOError::read_logs(&io(e)).into()
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
        let options = FileOptions {
            open_files: 16,
            index_cache_bytes: 1 << 20,
            ..FileOptions::default()
        };
        let engine = DedicatedEngine::open(dir.join("log"), options).map_err(|e| fail(&e))?;
        let shard = ShardId::new("raft", 0).map_err(|e| fail(&e))?;
        let exists = engine
            .shards()
            .await
            .map_err(|e| fail(&e))?
            .iter()
            .any(|(s, _)| *s == shard);
        if !exists {
            engine
                .create_shard(&shard, &spec())
                .await
                .map_err(|e| fail(&e))?;
        }
        let purged: Option<Option<typ::LogId>> =
            meta::read(&dir.join("purged"), PURGED).map_err(|e| fail(&e))?;
        let mut inner = Inner {
            engine,
            shard,
            dir: dir.to_owned(),
            entries: BTreeMap::new(),
            purged: purged.flatten(),
        };
        inner.load().await?;
        Ok(Self {
            inner: Arc::new(Mutex::new(inner)),
        })
    }
}

impl Inner {
    /// Reads every stored entry after the purge point into memory.
    async fn load(&mut self) -> StorageResult<()> {
        let fail = |e: &dyn std::error::Error| -> typ::StorageError {
            StorageIOError::read_logs(&io(e)).into()
        };
        let bounds = self
            .engine
            .bounds(&self.shard)
            .await
            .map_err(|e| fail(&e))?;
        let mut from = bounds.log_start;
        while from < bounds.next_offset {
            let chunk = self
                .engine
                .read(&self.shard, from, READ_BYTES)
                .await
                .map_err(|e| fail(&e))?;
            let bytes = chunk.to_bytes().map_err(|e| fail(&e))?;
            let before = from;
            for raw in split_batches(bytes) {
                let batch = Batch::validate(raw.map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
                for record in batch.records().map_err(|e| fail(&e))? {
                    let record = record.map_err(|e| fail(&e))?;
                    let offset = record.offset as u64;
                    if offset < from {
                        continue;
                    }
                    let entry: typ::Entry =
                        serde_json::from_slice(record.value.as_deref().unwrap_or_default())
                            .map_err(|e| fail(&e))?;
                    if Some(entry.log_id.index) > self.purged.map(|p| p.index) {
                        self.entries.insert(entry.log_id.index, (offset, entry));
                    }
                    from = offset + 1;
                }
            }
            if from == before {
                return Err(fail(&std::io::Error::other(format!(
                    "the raft log read no record at offset {from}"
                ))));
            }
        }
        Ok(())
    }

    /// Appends `entries` as one batch, durable when this returns.
    async fn write(&mut self, entries: Vec<typ::Entry>) -> StorageResult<()> {
        let fail = |e: &dyn std::error::Error| -> typ::StorageError {
            StorageIOError::write_logs(&io(e)).into()
        };
        if entries.is_empty() {
            return Ok(());
        }
        let mut builder = BatchBuilder::new(Compression::None);
        let now = strata_storage::now_ms();
        for entry in &entries {
            let value = serde_json::to_vec(entry).map_err(|e| fail(&e))?;
            builder.push(None, Some(&value), &[], now);
        }
        let batch =
            Batch::validate(builder.build().map_err(|e| fail(&e))?).map_err(|e| fail(&e))?;
        let appended = self
            .engine
            .append(&self.shard, batch)
            .await
            .map_err(|e| fail(&e))?;
        for (i, entry) in entries.into_iter().enumerate() {
            self.entries
                .insert(entry.log_id.index, (appended.base_offset + i as u64, entry));
        }
        Ok(())
    }

    fn last_log_id(&self) -> Option<typ::LogId> {
        self.entries
            .values()
            .next_back()
            .map(|(_, e)| e.log_id)
            .or(self.purged)
    }

    /// Removes the entries at and after raft index `index`. The engine drops whole batches,
    /// so the earlier entries of the batch holding `index` are written again.
    async fn truncate(&mut self, index: u64) -> StorageResult<()> {
        let fail = |e: &dyn std::error::Error| -> typ::StorageError {
            StorageIOError::write_logs(&io(e)).into()
        };
        let Some((_, &(offset, _))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        let bounds = self
            .engine
            .truncate(&self.shard, offset)
            .await
            .map_err(|e| fail(&e))?;
        let gone: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, (o, _))| *o >= bounds.next_offset)
            .map(|(i, _)| *i)
            .collect();
        let mut again = Vec::new();
        for i in gone {
            if let Some((_, entry)) = self.entries.remove(&i)
                && i < index
            {
                again.push(entry);
            }
        }
        self.write(again).await
    }

    /// Forgets the entries up to and including `log_id`: the purge point is durable first,
    /// so a crash before the engine trims only leaves entries that are ignored.
    async fn purge(&mut self, log_id: typ::LogId) -> StorageResult<()> {
        let fail = |e: &dyn std::error::Error| -> typ::StorageError {
            StorageIOError::write_logs(&io(e)).into()
        };
        meta::write(&self.dir.join("purged"), PURGED, &Some(log_id), true).map_err(|e| fail(&e))?;
        self.purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let before = match self.entries.values().next() {
            Some((offset, _)) => *offset,
            None => {
                let bounds = self
                    .engine
                    .bounds(&self.shard)
                    .await
                    .map_err(|e| fail(&e))?;
                bounds.next_offset
            }
        };
        self.engine
            .trim(&self.shard, before)
            .await
            .map_err(|e| fail(&e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<typ::Entry>> {
        let inner = self.inner.lock().await;
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (_, e))| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock().await;
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &typ::Vote) -> StorageResult<()> {
        let inner = self.inner.lock().await;
        // Durable before returning: a vote forgotten after a crash could be given twice.
        meta::write(&inner.dir.join("vote"), VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(&io(e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<typ::Vote>> {
        let inner = self.inner.lock().await;
        meta::read(&inner.dir.join("vote"), VOTE)
            .map_err(|e| StorageIOError::read_vote(&io(e)).into())
    }

    async fn save_committed(&mut self, committed: Option<typ::LogId>) -> StorageResult<()> {
        let inner = self.inner.lock().await;
        // Not fsynced: a stale value only means more of the log is applied again at start.
        meta::write(&inner.dir.join("committed"), COMMITTED, &committed, false)
            .map_err(|e| StorageIOError::write(&io(e)).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<typ::LogId>> {
        let inner = self.inner.lock().await;
        // A damaged file is only a lost hint: start from the snapshot instead.
        Ok(meta::read(&inner.dir.join("committed"), COMMITTED)
            .ok()
            .flatten()
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = typ::Entry> + Send,
    {
        let mut inner = self.inner.lock().await;
        inner.write(entries.into_iter().collect()).await?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: typ::LogId) -> StorageResult<()> {
        self.inner.lock().await.truncate(log_id.index).await
    }

    async fn purge(&mut self, log_id: typ::LogId) -> StorageResult<()> {
        self.inner.lock().await.purge(log_id).await
    }
}
