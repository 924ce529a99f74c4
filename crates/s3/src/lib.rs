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

mod commit;
mod compaction;
mod engine;
pub mod format;
mod options;
mod recovery;
mod state;
mod tier;
mod wal;

pub use engine::S3Engine;
pub use options::{S3Options, S3Tuning};
pub use tier::S3Tier;
pub use wal::Wal;
