//! The openraft type configuration of the cluster's one Raft group.

use std::io::Cursor;

use crate::command::{Command, Reply};

/// A node's id. Kafka clients see it as the broker id (an `i32` ≥ 0), so ids above
/// `i32::MAX` are refused where nodes are registered.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The cluster group: its log carries [`Command`]s and answers [`Reply`]s; nodes carry no
    /// address in the membership (each node resolves ids through its own address book).
    pub TypeConfig:
        D = Command,
        R = Reply,
        NodeId = NodeId,
        Node = openraft::EmptyNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The cluster group's Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// openraft's generic types, specialised to [`TypeConfig`].
pub mod typ {
    use super::{NodeId, TypeConfig};

    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<NodeId>;
    pub type Vote = openraft::Vote<NodeId>;
    pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::EmptyNode>;
    pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::EmptyNode>;
    pub type StorageError = openraft::StorageError<NodeId>;
}
