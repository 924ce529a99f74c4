//! The cluster image: what every node agrees on, as the Raft group's state machine holds it.
//!
//! It names the nodes, the topics and, per partition, its replicas, ISR, leader and epochs
//! (Kafka's KRaft `PartitionRecord`). It changes only by [`ClusterImage::apply`] of a committed
//! command, so every node that applies the same log holds the same image.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Format version of a serialized image (in snapshots).
pub const IMAGE_VERSION: u32 = 1;

/// The whole cluster as committed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterImage {
    /// Set once, by the first command of the log.
    pub cluster_id: Option<String>,
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    /// By name.
    pub topics: BTreeMap<String, TopicRecord>,
    pub partitions: BTreeMap<PartitionKey, PartitionRecord>,
}

/// One partition of one topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PartitionKey {
    pub topic: String,
    pub partition: u32,
}

impl PartitionKey {
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

/// Where clients reach a listener of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// A node as registered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    /// The inter-node listener (`host:port`).
    pub cluster_addr: String,
    /// The Kafka listener clients are told to use.
    pub kafka: Endpoint,
    /// Random per process start: a restarted node registers again with a new one.
    pub incarnation: u64,
    /// Log index of the registration: Kafka's broker epoch. A command about a node names the
    /// epoch it was decided for, so a decision about an earlier incarnation is refused.
    pub broker_epoch: u64,
    pub state: NodeState,
}

/// Whether a node may lead and be in an ISR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Registered, not yet caught up with the image: neither leads nor joins an ISR.
    Fenced,
    /// Caught up and heartbeating.
    Active,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRecord {
    pub name: String,
    /// Kafka's topic id; a topic deleted and created again under one name gets a new one.
    pub id: [u8; 16],
    pub partitions: u32,
    pub replication_factor: u16,
    /// Topic configs as given (Kafka's names and `storage.*`); the storage spec is derived
    /// from them by the broker.
    pub configs: BTreeMap<String, String>,
    /// The defaults the topic was created with where it gave no config (its engine, model
    /// and durability): a later change of a node's defaults does not move the topic.
    #[serde(default)]
    pub base: BTreeMap<String, String>,
}

/// A partition's replication state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// In preference order: the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// In sync replicas, a subset of `replicas`.
    pub isr: Vec<NodeId>,
    /// `None` while no ISR member is active (the partition is offline).
    pub leader: Option<NodeId>,
    /// Bumped on every change of leader, to `None` too (KIP-101's leader epoch).
    pub leader_epoch: u32,
    /// Bumped on every change of this record: the token of a compare-and-set change.
    pub partition_epoch: u32,
}

impl PartitionRecord {
    /// A new partition on `replicas` (active nodes), every one in sync, led by the first.
    pub fn new(replicas: Vec<NodeId>) -> Self {
        let leader = replicas.first().copied();
        Self {
            isr: replicas.clone(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }
}

impl ClusterImage {
    /// The nodes that may lead and be in an ISR.
    pub fn active_nodes(&self) -> BTreeSet<NodeId> {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Active)
            .map(|n| n.id)
            .collect()
    }

    /// The partitions of `topic`, in partition order.
    pub fn topic_partitions<'a>(
        &'a self,
        topic: &'a str,
    ) -> impl Iterator<Item = (&'a PartitionKey, &'a PartitionRecord)> + 'a {
        let start = PartitionKey::new(topic, 0);
        self.partitions
            .range(start..)
            .take_while(move |(k, _)| k.topic == topic)
    }
}
