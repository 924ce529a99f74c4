//! The broker: topics and partitions over Strata's storage engines, idempotent producers,
//! committed offsets and consumer groups. Every protocol front end (Kafka, MQTT) talks to it;
//! it knows no protocol.
//!
//! Start with [`Broker::open`] and the operations in `topics.rs` (create, delete, alter),
//! `data.rs` (produce, read, offsets by time, delete records) and `offsets.rs` (committed
//! offsets, producer ids). The broker's own state lives in [`state::StateLog`].

mod broker;
mod cluster_view;
mod config;
mod data;
mod engines;
mod error;
pub mod groups;
mod offsets;
pub mod producer;
pub mod state;
mod topic;
mod topic_config;
mod topics;

pub use broker::Broker;
pub use config::BrokerConfig;
pub use data::{ProduceOutcome, TimestampQuery};
pub use engines::{Engines, missing_engine};
pub use error::{BrokerError, Result};
pub use offsets::CommittedOffset;
pub use topic::{Partition, Topic, TopicMetrics, format_id};
pub use topic_config::{
    ConfigEntry, ConfigSource, SUPPORTED as SUPPORTED_TOPIC_CONFIGS, TopicConfig,
};

/// Whether unknown topics are created on first use, unless configured.
pub const DEFAULT_AUTO_CREATE_TOPICS: bool = true;
/// Partitions of auto-created topics, unless configured.
pub const DEFAULT_NUM_PARTITIONS: u32 = 1;
/// How long a new group waits for more members before its first rebalance, in ms.
pub const DEFAULT_GROUP_INITIAL_REBALANCE_DELAY_MS: u64 = 3000;
/// How often retention, tiering uploads and compaction run, in ms, unless configured.
pub const DEFAULT_MAINTENANCE_INTERVAL_MS: u64 = 30_000;
