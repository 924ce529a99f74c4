//! Topics and their partitions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use strata_storage::{Engine, ShardId};
use tokio::sync::Notify;

use crate::producer::ProducerStates;
use crate::topic_config::TopicConfig;

/// Counters of one topic, for metrics.
#[derive(Debug, Default)]
pub struct TopicMetrics {
    /// Bytes of record batches appended.
    pub bytes_in: AtomicU64,
    /// Records appended.
    pub messages_in: AtomicU64,
    /// Bytes of record batches returned by reads.
    pub bytes_out: AtomicU64,
    /// Read requests served (one per partition read that returned data).
    pub reads: AtomicU64,
}

impl TopicMetrics {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// One partition: a shard in the topic's engine.
#[derive(Debug)]
pub struct Partition {
    /// Partition number.
    pub index: u32,
    /// The shard holding it.
    pub shard: ShardId,
    /// Woken on every append, for long-polling reads.
    pub appended: Notify,
    /// Idempotent producers' sequences, loaded on first use.
    pub(crate) producers: tokio::sync::Mutex<ProducerSlot>,
}

/// The producer state of a partition and whether it has been loaded since start.
#[derive(Debug, Default)]
pub(crate) struct ProducerSlot {
    pub loaded: bool,
    pub state: ProducerStates,
    /// Changed since the last snapshot.
    pub dirty: bool,
}

impl Partition {
    pub(crate) fn new(shard: ShardId) -> Self {
        Partition {
            index: shard.partition(),
            shard,
            appended: Notify::new(),
            producers: tokio::sync::Mutex::new(ProducerSlot::default()),
        }
    }
}

/// A topic: a name, an id, configs and partitions in one engine.
#[derive(Debug)]
pub struct Topic {
    /// Topic name.
    pub name: Arc<str>,
    /// Kafka topic id (a UUID).
    pub id: [u8; 16],
    pub(crate) config: RwLock<TopicConfig>,
    pub(crate) partitions: RwLock<Vec<Arc<Partition>>>,
    /// The engine holding every partition.
    pub engine: Arc<dyn Engine>,
    /// Counters.
    pub metrics: TopicMetrics,
}

impl Topic {
    /// The topic's effective configs.
    pub fn config(&self) -> TopicConfig {
        self.config.read().clone()
    }

    /// Its partitions.
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }

    /// One partition, if it exists.
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.read().get(i).cloned())
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.read().len() as u32
    }

    /// True for Strata's own topics (`__` prefix), which clients do not see.
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// What the state log keeps of a topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TopicMeta {
    pub name: String,
    pub id: String,
    pub partitions: u32,
    /// Configs set explicitly.
    pub overrides: std::collections::BTreeMap<String, String>,
    /// Engine, model and default durability, fixed at creation even if the broker's defaults
    /// change later.
    pub engine: String,
    pub model: String,
    #[serde(default)]
    pub durability: Option<String>,
}

/// Formats a topic id as Kafka prints UUIDs in logs (hex).
pub fn format_id(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn parse_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A fresh random topic id (version 4 UUID layout).
pub(crate) fn new_id() -> [u8; 16] {
    let mut id: [u8; 16] = rand::random();
    id[6] = (id[6] & 0x0f) | 0x40;
    id[8] = (id[8] & 0x3f) | 0x80;
    id
}
