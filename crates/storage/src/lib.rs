//! Strata's storage layer: the seam every engine implements ([`Engine`]), the per-topic
//! [`StorageSpec`], and the engines themselves.
//!
//! - [`memory::MemoryEngine`]: process memory, zero-copy reads, bounded by retention bytes.
//! - [`file::DedicatedEngine`]: one segment chain per shard, Kafka-style.
//! - [`file::SharedEngine`]: one journal for all shards, RocketMQ-style, for millions of shards.
//!
//! Every engine passes the same contract suite, [`testkit`].

mod engine;
mod error;
pub mod file;
mod gate;
pub mod memory;
mod shard;
mod spec;
#[cfg(feature = "testkit")]
pub mod testkit;
mod util;

pub use util::{first_record_at_or_after, now_ms, write_replace};

pub use engine::{
    Appended, Bounds, Engine, EngineStats, FileRegion, LEADER_EPOCH, MAX_BATCH_BYTES, Maintenance,
    Piece, ReadChunk, TimestampHit, check_batch_size,
};
pub use error::{Result, StorageError};
pub use gate::WriteGate;
pub use shard::{MAX_TOPIC_LEN, ShardId, ShardNo};
pub use spec::{
    DEFAULT_RETENTION_MS, DEFAULT_SEGMENT_BYTES, Durability, EngineKind, MIN_SEGMENT_BYTES, Model,
    Retention, StorageSpec,
};
