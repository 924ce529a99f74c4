//! Random commands, many of them decided on stale images, keep the image's invariants.

mod common;

use std::collections::BTreeSet;

use common::{active_nodes, register, topic};
use proptest::prelude::*;
use strata_cluster::election::{assign, recovery_changes};
use strata_cluster::{ClusterImage, Command, NodeState, PartitionChange, Proposer, Reply};

const NODES: u64 = 4;

#[derive(Clone, Debug)]
enum Op {
    Fence(u64),
    Restart(u64),
    Unfence(u64),
    Recover,
    /// The partition's leader drops (or re-adds) one replica from (to) its ISR.
    Toggle {
        partition: usize,
        node: u64,
    },
    /// Apply a command decided on the image as it was this many steps ago.
    Stale(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..NODES).prop_map(Op::Fence),
        (0..NODES).prop_map(Op::Restart),
        (0..NODES).prop_map(Op::Unfence),
        Just(Op::Recover),
        (0..6usize, 0..NODES).prop_map(|(partition, node)| Op::Toggle { partition, node }),
        (1..5usize).prop_map(Op::Stale),
    ]
}

/// The command `op` stands for, decided on `image`.
fn decide(image: &ClusterImage, op: &Op, incarnation: u64) -> Option<Command> {
    match *op {
        Op::Fence(id) => image.nodes.get(&id).map(|n| Command::FenceBroker {
            id,
            broker_epoch: n.broker_epoch,
        }),
        Op::Restart(id) => Some(register(id, incarnation)),
        Op::Unfence(id) => image.nodes.get(&id).map(|n| Command::UnfenceBroker {
            id,
            broker_epoch: n.broker_epoch,
        }),
        Op::Recover => recovery_changes(image)
            .into_iter()
            .next()
            .map(Command::AlterPartition),
        Op::Toggle { partition, node } => {
            let (key, r) = image.partitions.iter().nth(partition)?;
            let leader = r.leader?;
            let mut isr = r.isr.clone();
            if let Some(at) = isr.iter().position(|n| *n == node) {
                isr.remove(at);
            } else {
                isr.push(node);
            }
            Some(Command::AlterPartition(PartitionChange {
                key: key.clone(),
                expected_partition_epoch: r.partition_epoch,
                leader: Some(leader),
                isr,
                by: Proposer::Leader {
                    node: leader,
                    leader_epoch: r.leader_epoch,
                },
            }))
        }
        Op::Stale(_) => None,
    }
}

fn check(before: &ClusterImage, after: &ClusterImage) {
    let active: BTreeSet<_> = after.active_nodes();
    for (key, r) in &after.partitions {
        let old = &before.partitions[key];
        assert!(!r.isr.is_empty(), "{key:?}: empty ISR");
        assert!(
            r.isr.iter().all(|n| r.replicas.contains(n)),
            "{key:?}: {r:?}"
        );
        let distinct: BTreeSet<_> = r.isr.iter().collect();
        assert_eq!(distinct.len(), r.isr.len(), "{key:?}: {r:?}");
        if let Some(l) = r.leader {
            assert!(r.isr.contains(&l), "{key:?}: leader outside the ISR");
            assert!(active.contains(&l), "{key:?}: leader {l} not active");
        }
        assert!(r.leader_epoch >= old.leader_epoch && r.partition_epoch >= old.partition_epoch);
        if r.leader != old.leader {
            assert!(
                r.leader_epoch > old.leader_epoch,
                "{key:?}: new leader, same epoch"
            );
        }
        if r != old {
            assert!(
                r.partition_epoch > old.partition_epoch,
                "{key:?}: changed in place"
            );
        }
        // Nobody joins an ISR while fenced.
        for n in r.isr.iter().filter(|n| !old.isr.contains(n)) {
            assert_eq!(
                after.nodes[n].state,
                NodeState::Active,
                "{key:?}: {n} joined fenced"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn invariants_hold_under_stale_and_racing_commands(ops in prop::collection::vec(op(), 1..60)) {
        let (mut image, mut index) = active_nodes(NODES);
        let all: BTreeSet<_> = (0..NODES).collect();
        let create = Command::CreateTopic {
            topic: topic("t", 6, 3),
            assignment: assign(&all, 0, 6, 3, 0).unwrap(),
        };
        assert_eq!(image.apply(&create, index), Reply::Applied);
        index += 1;
        let mut history = vec![image.clone()];
        for (i, op) in ops.iter().enumerate() {
            let decided_on = match op {
                Op::Stale(back) => history[history.len().saturating_sub(*back + 1)].clone(),
                _ => image.clone(),
            };
            let real = match op {
                Op::Stale(back) => &ops[i.saturating_sub(*back)],
                other => other,
            };
            let Some(cmd) = decide(&decided_on, real, 100 + i as u64) else { continue };
            let before = image.clone();
            if let Reply::Rejected(_) = image.apply(&cmd, index) {
                prop_assert_eq!(&image, &before);
            }
            index += 1;
            check(&before, &image);
            history.push(image.clone());
        }
    }
}
