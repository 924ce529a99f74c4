//! Strata's cluster metadata.
//!
//! One Raft group (openraft) agrees on the [`ClusterImage`]: the nodes, the topics and, per
//! partition, its replicas, in-sync replicas, leader and leader epoch. The image changes only
//! by [`Command`]s committed through the group and applied by the pure
//! [`ClusterImage::apply`], so every node holds the same image at the same log index. The
//! [`election`] functions compute what the controller proposes when a node goes or returns.
//! A single node is a one-voter group on the same path.

pub mod command;
pub mod election;
pub mod image;
pub mod net;
mod node;
pub mod store;
pub mod types;

pub use command::{Command, PartitionChange, Proposer, Rejection, Reply};
pub use image::{
    ClusterImage, Endpoint, NodeRecord, NodeState, PartitionKey, PartitionRecord, TopicRecord,
};
pub use node::{
    Cluster, ClusterConfig, ClusterError, DEFAULT_RAFT_ELECTION_TIMEOUT_MS,
    DEFAULT_RAFT_HEARTBEAT_MS,
};
pub use types::{NodeId, Raft, TypeConfig};
