//! The commands of the cluster log and the rules by which the image applies them.
//!
//! [`ClusterImage::apply`] is pure and deterministic: every check happens there, at apply
//! time, because a proposer decides on the image as it saw it, which may be stale by the time
//! its command commits. A refused command changes nothing and says why; for a
//! compare-and-set change of a partition ([`Command::AlterPartition`]) that is the normal
//! outcome of a race, and the proposer looks again (Kafka's KIP-497 AlterPartition and the
//! KIP-841 rule that a fenced node does not join an ISR).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::election;
use crate::image::{
    ClusterImage, Endpoint, NodeRecord, NodeState, PartitionKey, PartitionRecord, TopicRecord,
};
use crate::types::NodeId;

/// A change of the cluster image, as proposed to the Raft group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Names the cluster; the first command of a new cluster's log.
    Bootstrap { cluster_id: String },
    /// A node starting (again): registered fenced, with the entry's index as its broker epoch.
    /// A new start of a known node also takes it out of every ISR and leadership, since what
    /// it held may be gone (a memory engine) and its old leaderships are no longer served.
    RegisterBroker {
        id: NodeId,
        incarnation: u64,
        cluster_addr: String,
        kafka: Endpoint,
    },
    /// The node has caught up with the image and may lead and join ISRs; partitions left
    /// without a leader whose ISR it is in get one in the same entry.
    UnfenceBroker { id: NodeId, broker_epoch: u64 },
    /// The node's session ended: it leaves every ISR and leadership in the same entry.
    FenceBroker { id: NodeId, broker_epoch: u64 },
    /// A topic and the replicas of each of its partitions (`assignment[p]`).
    CreateTopic {
        topic: TopicRecord,
        assignment: Vec<Vec<NodeId>>,
    },
    /// Deletes the topic of this name if it still has this id.
    DeleteTopic { name: String, id: [u8; 16] },
    /// Adds partitions, `assignment[i]` being the replicas of the i-th new one.
    CreatePartitions {
        name: String,
        assignment: Vec<Vec<NodeId>>,
    },
    /// Replaces the topic's configs.
    AlterTopicConfig {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// A new ISR (from the partition's leader) or a new leader and ISR (from the controller).
    AlterPartition(PartitionChange),
}

/// A compare-and-set change of one partition's leader and ISR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionChange {
    pub key: PartitionKey,
    /// The `partition_epoch` the proposer saw: the change applies only to that version.
    pub expected_partition_epoch: u32,
    pub leader: Option<NodeId>,
    pub isr: Vec<NodeId>,
    pub by: Proposer,
}

/// Who proposes a partition change; the leader may change only the ISR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposer {
    Leader { node: NodeId, leader_epoch: u32 },
    Controller,
}

/// What applying a command gave.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Applied,
    /// A registration: the broker epoch the node holds (the index of the entry that
    /// registered this incarnation).
    Registered {
        broker_epoch: u64,
    },
    Rejected(Rejection),
}

/// Why a command was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("the cluster is already named {0}")]
    ClusterNamed(String),
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    #[error("node {id} has broker epoch {current}, not {given}")]
    StaleBrokerEpoch {
        id: NodeId,
        current: u64,
        given: u64,
    },
    #[error("topic {0} exists")]
    TopicExists(String),
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error("unknown partition {}-{}", .0.topic, .0.partition)]
    UnknownPartition(PartitionKey),
    #[error("partition {}-{} is at partition epoch {current}", key.topic, key.partition)]
    StalePartitionEpoch { key: PartitionKey, current: u32 },
    #[error("node {node} is not the leader of {}-{} at leader epoch {leader_epoch}", key.topic, key.partition)]
    NotLeader {
        key: PartitionKey,
        node: NodeId,
        leader_epoch: u32,
    },
    #[error("{0}")]
    Invalid(String),
}

type Outcome = Result<Reply, Rejection>;

impl ClusterImage {
    /// Applies the command committed at log index `index`: the image changes, or the command
    /// is refused and the image is as it was.
    pub fn apply(&mut self, command: &Command, index: u64) -> Reply {
        let outcome = match command {
            Command::Bootstrap { cluster_id } => self.bootstrap(cluster_id),
            Command::RegisterBroker {
                id,
                incarnation,
                cluster_addr,
                kafka,
            } => self.register(*id, *incarnation, cluster_addr, kafka, index),
            Command::UnfenceBroker { id, broker_epoch } => self.unfence(*id, *broker_epoch),
            Command::FenceBroker { id, broker_epoch } => self.fence(*id, *broker_epoch),
            Command::CreateTopic { topic, assignment } => self.create_topic(topic, assignment),
            Command::DeleteTopic { name, id } => self.delete_topic(name, id),
            Command::CreatePartitions { name, assignment } => {
                self.create_partitions(name, assignment)
            }
            Command::AlterTopicConfig { name, configs } => self.alter_configs(name, configs),
            Command::AlterPartition(change) => self.alter_partition(change),
        };
        outcome.unwrap_or_else(Reply::Rejected)
    }

    fn bootstrap(&mut self, cluster_id: &str) -> Outcome {
        match &self.cluster_id {
            Some(id) if id != cluster_id => Err(Rejection::ClusterNamed(id.clone())),
            _ => {
                self.cluster_id = Some(cluster_id.to_owned());
                Ok(Reply::Applied)
            }
        }
    }

    fn register(
        &mut self,
        id: NodeId,
        incarnation: u64,
        cluster_addr: &str,
        kafka: &Endpoint,
        index: u64,
    ) -> Outcome {
        if id > i32::MAX as u64 {
            return Err(Rejection::Invalid(format!(
                "node id {id} is above {}, the largest Kafka broker id",
                i32::MAX
            )));
        }
        if let Some(node) = self.nodes.get(&id) {
            if node.incarnation == incarnation {
                // The same start registering again (a retried proposal): nothing changes.
                return Ok(Reply::Registered {
                    broker_epoch: node.broker_epoch,
                });
            }
            let broker_epoch = node.broker_epoch;
            self.fence(id, broker_epoch)?;
        }
        self.nodes.insert(
            id,
            NodeRecord {
                id,
                cluster_addr: cluster_addr.to_owned(),
                kafka: kafka.clone(),
                incarnation,
                broker_epoch: index,
                state: NodeState::Fenced,
            },
        );
        Ok(Reply::Registered {
            broker_epoch: index,
        })
    }

    fn node_at(&mut self, id: NodeId, broker_epoch: u64) -> Result<&mut NodeRecord, Rejection> {
        let node = self.nodes.get_mut(&id).ok_or(Rejection::UnknownNode(id))?;
        if node.broker_epoch != broker_epoch {
            return Err(Rejection::StaleBrokerEpoch {
                id,
                current: node.broker_epoch,
                given: broker_epoch,
            });
        }
        Ok(node)
    }

    fn unfence(&mut self, id: NodeId, broker_epoch: u64) -> Outcome {
        self.node_at(id, broker_epoch)?;
        self.transition(id, NodeState::Active, |image, _| {
            election::recovery_changes(image)
        })
    }

    fn fence(&mut self, id: NodeId, broker_epoch: u64) -> Outcome {
        self.node_at(id, broker_epoch)?;
        self.transition(id, NodeState::Fenced, election::fence_changes)
    }

    /// Sets the node's state and applies the partition changes `derive` computes from the
    /// image so changed, all in one step: every change is checked before any is made, so a
    /// change the rules refuse (which would be a fault of `derive`) leaves the image as it was.
    fn transition(
        &mut self,
        id: NodeId,
        state: NodeState,
        derive: impl Fn(&ClusterImage, NodeId) -> Vec<PartitionChange>,
    ) -> Outcome {
        let Some(previous) = self.nodes.get(&id).map(|n| n.state) else {
            return Err(Rejection::UnknownNode(id));
        };
        self.set_state(id, state);
        let changes = derive(self, id);
        let active = self.active_nodes();
        if let Err(e) = changes
            .iter()
            .try_for_each(|c| self.check_change(c, &active))
        {
            self.set_state(id, previous);
            return Err(e);
        }
        for change in &changes {
            self.commit_change(change);
        }
        Ok(Reply::Applied)
    }

    fn set_state(&mut self, id: NodeId, state: NodeState) {
        if let Some(node) = self.nodes.get_mut(&id) {
            node.state = state;
        }
    }

    fn check_assignment(&self, assignment: &[Vec<NodeId>], replication_factor: u16) -> Outcome {
        let active = self.active_nodes();
        for replicas in assignment {
            if replicas.len() != replication_factor as usize {
                return Err(Rejection::Invalid(format!(
                    "{} replicas given for a replication factor of {replication_factor}",
                    replicas.len()
                )));
            }
            let distinct: BTreeSet<_> = replicas.iter().collect();
            if distinct.len() != replicas.len() {
                return Err(Rejection::Invalid(format!(
                    "a node appears twice in the replicas {replicas:?}"
                )));
            }
            if let Some(n) = replicas.iter().find(|n| !self.nodes.contains_key(n)) {
                return Err(Rejection::UnknownNode(*n));
            }
            if let Some(n) = replicas.iter().find(|n| !active.contains(n)) {
                return Err(Rejection::Invalid(format!(
                    "node {n} is fenced: new replicas go to active nodes"
                )));
            }
        }
        Ok(Reply::Applied)
    }

    fn create_topic(&mut self, topic: &TopicRecord, assignment: &[Vec<NodeId>]) -> Outcome {
        if self.topics.contains_key(&topic.name) {
            return Err(Rejection::TopicExists(topic.name.clone()));
        }
        if topic.partitions == 0 || assignment.len() != topic.partitions as usize {
            return Err(Rejection::Invalid(format!(
                "{} partitions with {} replica assignments",
                topic.partitions,
                assignment.len()
            )));
        }
        if topic.replication_factor == 0 {
            return Err(Rejection::Invalid("replication factor 0".into()));
        }
        self.check_assignment(assignment, topic.replication_factor)?;
        for (p, replicas) in assignment.iter().enumerate() {
            self.partitions.insert(
                PartitionKey::new(&topic.name, p as u32),
                PartitionRecord::new(replicas.clone()),
            );
        }
        self.topics.insert(topic.name.clone(), topic.clone());
        Ok(Reply::Applied)
    }

    fn delete_topic(&mut self, name: &str, id: &[u8; 16]) -> Outcome {
        match self.topics.get(name) {
            Some(t) if &t.id == id => {}
            _ => return Err(Rejection::UnknownTopic(name.to_owned())),
        }
        self.topics.remove(name);
        self.partitions.retain(|k, _| k.topic != name);
        Ok(Reply::Applied)
    }

    fn create_partitions(&mut self, name: &str, assignment: &[Vec<NodeId>]) -> Outcome {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.to_owned()))?;
        if assignment.is_empty() {
            return Err(Rejection::Invalid("no partitions to add".into()));
        }
        self.check_assignment(assignment, topic.replication_factor)?;
        let first = topic.partitions;
        for (i, replicas) in assignment.iter().enumerate() {
            self.partitions.insert(
                PartitionKey::new(name, first + i as u32),
                PartitionRecord::new(replicas.clone()),
            );
        }
        if let Some(t) = self.topics.get_mut(name) {
            t.partitions += assignment.len() as u32;
        }
        Ok(Reply::Applied)
    }

    fn alter_configs(&mut self, name: &str, configs: &BTreeMap<String, String>) -> Outcome {
        let topic = self
            .topics
            .get_mut(name)
            .ok_or_else(|| Rejection::UnknownTopic(name.to_owned()))?;
        topic.configs = configs.clone();
        Ok(Reply::Applied)
    }

    fn alter_partition(&mut self, change: &PartitionChange) -> Outcome {
        self.check_change(change, &self.active_nodes())?;
        self.commit_change(change);
        Ok(Reply::Applied)
    }

    /// Whether `change` applies to the image as it is, `active` being its active nodes.
    fn check_change(
        &self,
        change: &PartitionChange,
        active: &BTreeSet<NodeId>,
    ) -> Result<(), Rejection> {
        let key = &change.key;
        let current = self
            .partitions
            .get(key)
            .ok_or_else(|| Rejection::UnknownPartition(key.clone()))?;
        if current.partition_epoch != change.expected_partition_epoch {
            return Err(Rejection::StalePartitionEpoch {
                key: key.clone(),
                current: current.partition_epoch,
            });
        }
        if let Proposer::Leader { node, leader_epoch } = change.by {
            if current.leader != Some(node) || current.leader_epoch != leader_epoch {
                return Err(Rejection::NotLeader {
                    key: key.clone(),
                    node,
                    leader_epoch,
                });
            }
            if change.leader != current.leader {
                return Err(Rejection::Invalid(
                    "a leader changes the ISR only; the controller moves leadership".into(),
                ));
            }
        }
        check_isr(current, change, active)
    }

    /// Makes a change that [`Self::check_change`] accepted.
    fn commit_change(&mut self, change: &PartitionChange) {
        let Some(current) = self.partitions.get_mut(&change.key) else {
            return;
        };
        if change.leader != current.leader {
            current.leader_epoch += 1;
        }
        current.leader = change.leader;
        current.isr = change.isr.clone();
        current.partition_epoch += 1;
    }
}

/// The ISR and leader of a change are possible: members are replicas, each once, the leader
/// is an active member, and no node joins that is not active.
fn check_isr(
    current: &PartitionRecord,
    change: &PartitionChange,
    active: &BTreeSet<NodeId>,
) -> Result<(), Rejection> {
    let isr: BTreeSet<_> = change.isr.iter().copied().collect();
    if isr.len() != change.isr.len() || isr.is_empty() {
        return Err(Rejection::Invalid(format!(
            "ISR {:?} is empty or names a node twice",
            change.isr
        )));
    }
    if let Some(n) = isr.iter().find(|n| !current.replicas.contains(n)) {
        return Err(Rejection::Invalid(format!(
            "ISR member {n} is not a replica"
        )));
    }
    if let Some(n) = isr
        .iter()
        .find(|n| !current.isr.contains(n) && !active.contains(n))
    {
        return Err(Rejection::Invalid(format!(
            "node {n} is fenced and cannot join the ISR"
        )));
    }
    if let Some(leader) = change.leader
        && (!isr.contains(&leader) || !active.contains(&leader))
    {
        return Err(Rejection::Invalid(format!(
            "leader {leader} is not an active ISR member"
        )));
    }
    Ok(())
}
