//! Errors the broker reports to its front ends, which map them onto protocol codes.

use strata_record::RecordError;
use strata_storage::StorageError;

/// Result alias for broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

/// What went wrong, in terms a protocol front end can translate.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No such topic.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The topic exists but not this partition.
    #[error("unknown partition {partition} of topic {topic}")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition asked for.
        partition: i32,
    },
    /// `create_topic` for an existing topic.
    #[error("topic {0} already exists")]
    TopicExists(String),
    /// The topic name is not allowed.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A topic config is unknown or has an invalid value; the message names it.
    #[error("{0}")]
    InvalidConfig(String),
    /// A partition count that cannot be applied.
    #[error("{0}")]
    InvalidPartitions(String),
    /// A replication factor other than 1.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Produced bytes that are not valid record batches.
    #[error("invalid record batch: {0}")]
    CorruptRecord(#[from] RecordError),
    /// A record batch the broker will not store.
    #[error("{0}")]
    InvalidRecord(String),
    /// A batch larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge {
        /// Batch size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An offset outside the partition's bounds.
    #[error(
        "offset {offset} out of range (log start {log_start}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        /// Offset asked for.
        offset: i64,
        /// First readable offset.
        log_start: u64,
        /// Next offset.
        high_watermark: u64,
    },
    /// An idempotent producer's batch is not the next in its sequence.
    #[error("out of order sequence number {got} from producer {producer_id}, expected {expected}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Sequence expected next.
        expected: i32,
        /// Sequence received.
        got: i32,
    },
    /// An idempotent producer's epoch is older than the one known.
    #[error("producer {producer_id} epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch known.
        current: i16,
        /// Epoch received.
        got: i16,
    },
    /// Another process holds the data directory.
    #[error("the data directory is in use by another process (lock {} is held)", .0.display())]
    DataDirInUse(std::path::PathBuf),
    /// The cluster could not agree on a change or is not reachable.
    #[error("{0}")]
    Cluster(#[from] strata_cluster::ClusterError),
    /// Storage failed.
    #[error("storage error: {0}")]
    Storage(#[from] StorageError),
}

impl BrokerError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        BrokerError::InvalidConfig(msg.into())
    }
}
