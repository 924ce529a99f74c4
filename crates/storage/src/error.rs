//! The one error type every engine returns.

use std::io;
use std::path::PathBuf;

use strata_record::RecordError;

use crate::ShardId;

/// Result alias for storage operations.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// What went wrong in an engine, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The shard does not exist in this engine.
    #[error("shard {0} not found")]
    ShardNotFound(ShardId),
    /// `create_shard` for a shard that already exists.
    #[error("shard {0} already exists")]
    ShardExists(ShardId),
    /// A read or lookup named an offset outside `[log_start, next_offset]`.
    #[error(
        "offset {offset} is out of range for shard {shard} (log start {log_start}, next offset {next_offset})"
    )]
    OffsetOutOfRange {
        /// The shard.
        shard: ShardId,
        /// The offset asked for.
        offset: u64,
        /// First offset still stored.
        log_start: u64,
        /// Offset the next append will get.
        next_offset: u64,
    },
    /// The appended bytes are not a valid record batch.
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] RecordError),
    /// A batch larger than any engine stores.
    #[error("record batch of {size} bytes exceeds the largest stored, {max} bytes")]
    BatchTooLarge {
        /// The batch's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Stored bytes fail their checksum or structure check. Never served.
    #[error("corruption in {} at byte {position}: {reason}", file.display())]
    Corruption {
        /// The damaged file (or object / table name for non-file engines).
        file: PathBuf,
        /// Byte position of the damaged record within it.
        position: u64,
        /// What check failed.
        reason: String,
    },
    /// An fsync failed earlier; the page cache may have dropped acknowledged-to-be data, so the
    /// engine refuses writes until it is reopened and has recovered from disk.
    #[error("engine refuses writes after a failed fsync ({0}); reopen it to recover")]
    Poisoned(String),
    /// The spec asks for something this engine cannot do, or is inconsistent.
    #[error("invalid storage spec: {0}")]
    InvalidSpec(String),
    /// The shard name cannot be used.
    #[error("invalid shard name {name:?}: {reason}")]
    InvalidShardName {
        /// The rejected name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The engine has been closed.
    #[error("engine is closed")]
    Closed,
    /// A backing service (database, object store) cannot be reached right now.
    #[error("storage backend unavailable: {0}")]
    Unavailable(String),
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl StorageError {
    /// Builds a [`StorageError::OffsetOutOfRange`] from the shard's bounds.
    pub fn out_of_range(shard: &ShardId, offset: u64, bounds: crate::Bounds) -> Self {
        StorageError::OffsetOutOfRange {
            shard: shard.clone(),
            offset,
            log_start: bounds.log_start,
            next_offset: bounds.next_offset,
        }
    }

    /// Builds a [`StorageError::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, position: u64, reason: impl Into<String>) -> Self {
        StorageError::Corruption {
            file: file.into(),
            position,
            reason: reason.into(),
        }
    }
}
