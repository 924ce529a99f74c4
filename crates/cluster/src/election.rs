//! Where partitions are placed and who leads them: pure functions of the image that the
//! controller proposes from. The image checks their results again when they are applied.

use std::collections::BTreeSet;

use crate::command::{PartitionChange, Proposer, Rejection};
use crate::image::{ClusterImage, PartitionRecord};
use crate::types::NodeId;

/// Kafka's election rule (no unclean election): the first replica, in preference order, that
/// is in the ISR and active.
pub fn elect(record: &PartitionRecord, active: &BTreeSet<NodeId>) -> Option<NodeId> {
    record
        .replicas
        .iter()
        .copied()
        .find(|n| record.isr.contains(n) && active.contains(n))
}

/// The changes that take `node` out of every ISR and leadership, for when its session ends.
///
/// An ISR that would become empty keeps its last member (then without a leader), as KRaft
/// does: that node holds every acknowledged record, and it leads again when it comes back.
/// Other active nodes lead in its place (the node itself counts as inactive).
pub fn fence_changes(image: &ClusterImage, node: NodeId) -> Vec<PartitionChange> {
    let mut active = image.active_nodes();
    active.remove(&node);
    let mut changes = Vec::new();
    for (key, record) in &image.partitions {
        if !record.isr.contains(&node) && record.leader != Some(node) {
            continue;
        }
        let mut isr: Vec<NodeId> = record.isr.iter().copied().filter(|n| *n != node).collect();
        if isr.is_empty() {
            isr = vec![node];
        }
        let next = PartitionRecord {
            isr,
            ..record.clone()
        };
        let leader = match record.leader {
            Some(l) if l != node && active.contains(&l) => Some(l),
            _ => elect(&next, &active),
        };
        changes.push(PartitionChange {
            key: key.clone(),
            expected_partition_epoch: record.partition_epoch,
            leader,
            isr: next.isr,
            by: Proposer::Controller,
        });
    }
    changes
}

/// Leaders for the partitions that have none but an active ISR member (after a node came
/// back).
pub fn recovery_changes(image: &ClusterImage) -> Vec<PartitionChange> {
    let active = image.active_nodes();
    image
        .partitions
        .iter()
        .filter(|(_, r)| r.leader.is_none())
        .filter_map(|(key, record)| {
            elect(record, &active).map(|leader| PartitionChange {
                key: key.clone(),
                expected_partition_epoch: record.partition_epoch,
                leader: Some(leader),
                isr: record.isr.clone(),
                by: Proposer::Controller,
            })
        })
        .collect()
}

/// Replicas for `count` partitions numbered from `first`: partition p's replicas are the
/// `replication_factor` nodes following position `start + p` of `nodes` (sorted), so leaders
/// and followers spread evenly. `start` varies per topic (the caller hashes the name), so
/// that one-partition topics do not all lead on the same node.
pub fn assign(
    nodes: &BTreeSet<NodeId>,
    first: u32,
    count: u32,
    replication_factor: u16,
    start: usize,
) -> Result<Vec<Vec<NodeId>>, Rejection> {
    let nodes: Vec<NodeId> = nodes.iter().copied().collect();
    let rf = replication_factor as usize;
    if rf == 0 || rf > nodes.len() {
        return Err(Rejection::Invalid(format!(
            "replication factor {replication_factor} with {} nodes available",
            nodes.len()
        )));
    }
    Ok((first..first + count)
        .map(|p| {
            let at = start.wrapping_add(p as usize);
            (0..rf).map(|r| nodes[(at + r) % nodes.len()]).collect()
        })
        .collect())
}
