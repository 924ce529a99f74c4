//! The storage seam: the one trait every engine implements.

use std::fmt;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use strata_record::Batch;

use crate::{EngineKind, Model, Result, ShardId, StorageSpec};

/// The partition leader epoch written into stored batches. A single node is always epoch 0;
/// replication will assign real epochs.
pub const LEADER_EPOCH: i32 = 0;

/// Largest record batch any engine stores. Larger appends fail with `InvalidBatch`-like
/// `TooLarge` errors before anything is written.
pub const MAX_BATCH_BYTES: usize = 256 << 20;

/// Refuses a batch larger than [`MAX_BATCH_BYTES`].
pub fn check_batch_size(batch: &Batch) -> Result<()> {
    if batch.len() > MAX_BATCH_BYTES {
        return Err(crate::StorageError::BatchTooLarge {
            size: batch.len(),
            max: MAX_BATCH_BYTES,
        });
    }
    Ok(())
}

/// A storage engine: stores shards, each an append-only log of record batches with dense
/// offsets starting at 0.
///
/// Contract, checked for every engine by the suite in [`crate::testkit`]:
/// - `append` assigns the next offsets to the batch's records and returns only once the batch is
///   as durable as the shard's [`crate::Durability`] says; offsets never go back, except through
///   `truncate`.
/// - `read` returns whole batches in offset order, starting with the batch that holds `from`,
///   and at least one batch when `from < next_offset`, even if that batch is larger than
///   `max_bytes`; it never returns bytes that fail their checksum.
/// - Opening an engine recovers it: every acknowledged batch is there, a torn tail is cut at
///   the last valid batch, and damage before the tail is reported as
///   [`crate::StorageError::Corruption`] naming the file and position.
/// - After an fsync fails, writes fail with [`crate::StorageError::Poisoned`] until reopened.
#[async_trait]
pub trait Engine: Send + Sync + fmt::Debug + 'static {
    /// Which engine this is.
    fn kind(&self) -> EngineKind;

    /// Which physical model this instance uses.
    fn model(&self) -> Model;

    /// Creates an empty shard. Fails with `ShardExists` if it exists.
    async fn create_shard(&self, shard: &ShardId, spec: &StorageSpec) -> Result<()>;

    /// Deletes a shard and all its data.
    async fn delete_shard(&self, shard: &ShardId) -> Result<()>;

    /// Changes a shard's retention, segment size or durability. Engine and model cannot change.
    async fn reconfigure(&self, shard: &ShardId, spec: &StorageSpec) -> Result<()>;

    /// Every shard this engine holds, with its spec (after open, what recovery found).
    async fn shards(&self) -> Result<Vec<(ShardId, StorageSpec)>>;

    /// Appends one validated batch; its base offset becomes the shard's next offset.
    async fn append(&self, shard: &ShardId, batch: Batch) -> Result<Appended>;

    /// Reads whole batches starting with the one that holds `from`, up to `max_bytes` (but at
    /// least one batch). `from == next_offset` gives an empty chunk; `from` outside
    /// `[log_start, next_offset]` is `OffsetOutOfRange`.
    async fn read(&self, shard: &ShardId, from: u64, max_bytes: usize) -> Result<ReadChunk>;

    /// Log start, next offset and stored size.
    async fn bounds(&self, shard: &ShardId) -> Result<Bounds>;

    /// The first offset whose record timestamp is at or after `timestamp`, or `None` if every
    /// stored record is older.
    async fn offset_for_timestamp(
        &self,
        shard: &ShardId,
        timestamp: i64,
    ) -> Result<Option<TimestampHit>>;

    /// Moves the log start forward to `before` (Kafka DeleteRecords); offsets below it are no
    /// longer readable. Storage is reclaimed at whole-batch or whole-file granularity.
    async fn trim(&self, shard: &ShardId, before: u64) -> Result<Bounds>;

    /// Removes every batch that holds an offset at or after `to`, so the next offset becomes
    /// the base of the batch holding `to` (or `to` itself at a batch boundary).
    async fn truncate(&self, shard: &ShardId, to: u64) -> Result<Bounds>;

    /// Applies time- and size-based retention and rolling, and reclaims space. `now_ms` is
    /// wall-clock milliseconds since the epoch, passed in so that it can be tested.
    async fn maintain(&self, now_ms: i64) -> Result<Maintenance>;

    /// Flushes everything and records a clean shutdown. Further calls fail with `Closed`.
    async fn close(&self) -> Result<()>;

    /// Counters for metrics.
    fn stats(&self) -> EngineStats;
}

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the batch's first record.
    pub base_offset: u64,
    /// Offset of the batch's last record.
    pub last_offset: u64,
    /// Log start after the append (retention may have moved it).
    pub log_start: u64,
}

/// The offsets a shard holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds {
    /// First readable offset.
    pub log_start: u64,
    /// Offset the next append gets (the high watermark on a single node).
    pub next_offset: u64,
    /// Bytes of batches stored for the shard.
    pub size_bytes: u64,
}

/// Answer of a timestamp lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampHit {
    /// First offset with a timestamp at or after the one asked for.
    pub offset: u64,
    /// That record's timestamp.
    pub timestamp: i64,
}

/// What a `maintain` pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maintenance {
    /// Bytes of batches dropped by retention.
    pub bytes_dropped: u64,
    /// Files (or objects) deleted.
    pub files_deleted: u64,
    /// Bytes copied to reclaim space (shared-model relocation).
    pub bytes_relocated: u64,
}

/// Engine-wide counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Shards held.
    pub shards: u64,
    /// Bytes of batches held.
    pub bytes: u64,
    /// Files currently open (file engines).
    pub open_files: u64,
    /// fsync calls made.
    pub fsyncs: u64,
    /// Objects written to object storage (PUTs).
    pub objects_written: u64,
    /// Bytes written to object storage.
    pub object_bytes_written: u64,
}

/// A byte range of an open file that a caller can send without copying (sendfile).
#[derive(Clone)]
pub struct FileRegion {
    /// The open file; holding it keeps the bytes readable even if the engine deletes the file.
    pub file: Arc<File>,
    /// Start position in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: usize,
}

impl fmt::Debug for FileRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileRegion")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl FileRegion {
    /// Reads the region into memory (for callers that cannot send a file).
    pub fn read_to(&self, out: &mut BytesMut) -> std::io::Result<()> {
        let start = out.len();
        out.resize(start + self.len, 0);
        self.file.read_exact_at(&mut out[start..], self.offset)
    }
}

/// One piece of a read: bytes in memory or a region of a file.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Shared bytes, handed out without copying.
    Bytes(Bytes),
    /// A file region for zero-copy sending.
    File(FileRegion),
}

impl Piece {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::File(r) => r.len,
        }
    }

    /// True if the piece holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whole batches returned by a read, as a sequence of pieces whose concatenation is the batches'
/// bytes in offset order.
#[derive(Debug, Clone, Default)]
pub struct ReadChunk {
    /// The pieces, in order.
    pub pieces: Vec<Piece>,
    /// Total length of all pieces.
    pub len: usize,
    /// The shard's bounds when the read was served.
    pub bounds: Bounds,
}

impl ReadChunk {
    /// Adds a piece.
    pub fn push(&mut self, piece: Piece) {
        self.len += piece.len();
        self.pieces.push(piece);
    }

    /// True if no batch was returned.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All bytes in one buffer (copies; file regions are read).
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        if let [Piece::Bytes(b)] = self.pieces.as_slice() {
            return Ok(b.clone());
        }
        let mut out = BytesMut::with_capacity(self.len);
        for piece in &self.pieces {
            match piece {
                Piece::Bytes(b) => out.extend_from_slice(b),
                Piece::File(r) => r.read_to(&mut out)?,
            }
        }
        Ok(out.freeze())
    }
}
