//! The rules by which the image applies each command.

mod common;

use std::collections::BTreeSet;

use common::{active_nodes, register, topic};
use strata_cluster::election::{assign, elect, recovery_changes};
use strata_cluster::{
    ClusterImage, Command, NodeState, PartitionChange, PartitionKey, Proposer, Rejection, Reply,
};

fn rejected(reply: Reply) -> Rejection {
    match reply {
        Reply::Rejected(r) => r,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn with_topic(nodes: u64, partitions: u32, rf: u16) -> (ClusterImage, u64) {
    let (mut image, index) = active_nodes(nodes);
    let all: BTreeSet<_> = (0..nodes).collect();
    let assignment = assign(&all, 0, partitions, rf, 0).unwrap();
    let cmd = Command::CreateTopic {
        topic: topic("t", partitions, rf),
        assignment,
    };
    assert_eq!(image.apply(&cmd, index), Reply::Applied);
    (image, index + 1)
}

#[test]
fn the_cluster_is_named_once() {
    let mut image = ClusterImage::default();
    let boot = |id: &str| Command::Bootstrap {
        cluster_id: id.into(),
    };
    assert_eq!(image.apply(&boot("a"), 1), Reply::Applied);
    assert_eq!(image.apply(&boot("a"), 2), Reply::Applied);
    assert_eq!(
        rejected(image.apply(&boot("b"), 3)),
        Rejection::ClusterNamed("a".into())
    );
    assert_eq!(image.cluster_id.as_deref(), Some("a"));
}

#[test]
fn a_node_registers_fenced_and_a_restart_gets_a_new_broker_epoch() {
    let mut image = ClusterImage::default();
    assert_eq!(
        image.apply(&register(1, 10), 5),
        Reply::Registered { broker_epoch: 5 }
    );
    assert_eq!(image.nodes[&1].state, NodeState::Fenced);
    // The same start proposing again keeps its epoch.
    assert_eq!(
        image.apply(&register(1, 10), 6),
        Reply::Registered { broker_epoch: 5 }
    );
    // Unfencing names the epoch: a decision about an older start is refused.
    let unfence = |broker_epoch| Command::UnfenceBroker {
        id: 1,
        broker_epoch,
    };
    assert_eq!(image.apply(&unfence(5), 7), Reply::Applied);
    assert_eq!(image.nodes[&1].state, NodeState::Active);
    assert_eq!(
        image.apply(&register(1, 11), 8),
        Reply::Registered { broker_epoch: 8 }
    );
    assert_eq!(image.nodes[&1].state, NodeState::Fenced);
    assert_eq!(
        rejected(image.apply(&unfence(5), 9)),
        Rejection::StaleBrokerEpoch {
            id: 1,
            current: 8,
            given: 5
        }
    );
    assert!(matches!(
        rejected(image.apply(&register(1 << 40, 1), 10)),
        Rejection::Invalid(_)
    ));
}

#[test]
fn topics_are_created_with_every_replica_in_sync_and_led_by_the_first() {
    let (image, _) = with_topic(3, 3, 3);
    for p in 0..3u32 {
        let r = &image.partitions[&PartitionKey::new("t", p)];
        assert_eq!(r.isr, r.replicas);
        assert_eq!(r.leader, Some(r.replicas[0]));
        assert_eq!((r.leader_epoch, r.partition_epoch), (0, 0));
    }
    // Leaders spread: three partitions, three different first replicas.
    let leaders: BTreeSet<_> = image.partitions.values().map(|r| r.leader).collect();
    assert_eq!(leaders.len(), 3);
}

#[test]
fn bad_topics_are_refused_and_change_nothing() {
    let (mut image, index) = with_topic(3, 1, 1);
    let before = image.clone();
    let cases = [
        Command::CreateTopic {
            topic: topic("t", 1, 1),
            assignment: vec![vec![0]],
        },
        Command::CreateTopic {
            topic: topic("u", 2, 1),
            assignment: vec![vec![0]],
        },
        Command::CreateTopic {
            topic: topic("u", 1, 2),
            assignment: vec![vec![0, 0]],
        },
        Command::CreateTopic {
            topic: topic("u", 1, 2),
            assignment: vec![vec![0, 9]],
        },
        Command::DeleteTopic {
            name: "t".into(),
            id: [0; 16],
        },
        Command::CreatePartitions {
            name: "nope".into(),
            assignment: vec![vec![0]],
        },
    ];
    for (i, cmd) in cases.iter().enumerate() {
        assert!(
            matches!(image.apply(cmd, index + i as u64), Reply::Rejected(_)),
            "{cmd:?}"
        );
    }
    assert_eq!(image, before);
}

#[test]
fn partitions_are_added_and_topics_deleted_by_id() {
    let (mut image, index) = with_topic(2, 1, 2);
    let add = Command::CreatePartitions {
        name: "t".into(),
        assignment: vec![vec![1, 0], vec![0, 1]],
    };
    assert_eq!(image.apply(&add, index), Reply::Applied);
    assert_eq!(image.topics["t"].partitions, 3);
    assert_eq!(image.topic_partitions("t").count(), 3);
    let id = image.topics["t"].id;
    let delete = Command::DeleteTopic {
        name: "t".into(),
        id,
    };
    assert_eq!(image.apply(&delete, index + 1), Reply::Applied);
    assert!(image.topics.is_empty() && image.partitions.is_empty());
}

fn change(image: &ClusterImage, leader: Option<u64>, isr: &[u64], by: Proposer) -> Command {
    let key = PartitionKey::new("t", 0);
    Command::AlterPartition(PartitionChange {
        expected_partition_epoch: image.partitions[&key].partition_epoch,
        key,
        leader,
        isr: isr.to_vec(),
        by,
    })
}

#[test]
fn the_leader_shrinks_and_expands_its_isr_by_compare_and_set() {
    let (mut image, index) = with_topic(3, 1, 3);
    let key = PartitionKey::new("t", 0);
    let leader = image.partitions[&key].leader.unwrap();
    let by = Proposer::Leader {
        node: leader,
        leader_epoch: 0,
    };
    let others: Vec<_> = image.partitions[&key]
        .replicas
        .iter()
        .copied()
        .filter(|n| *n != leader)
        .collect();
    let shrink = change(&image, Some(leader), &[leader, others[0]], by);
    assert_eq!(image.apply(&shrink, index), Reply::Applied);
    assert_eq!(image.partitions[&key].isr, vec![leader, others[0]]);
    assert_eq!(image.partitions[&key].partition_epoch, 1);
    assert_eq!(image.partitions[&key].leader_epoch, 0);
    // The same proposal again is stale.
    assert!(matches!(
        rejected(image.apply(&shrink, index + 1)),
        Rejection::StalePartitionEpoch { current: 1, .. }
    ));
    // A leader cannot move leadership, and a follower cannot change the ISR.
    let moved = change(&image, Some(others[0]), &[leader, others[0]], by);
    assert!(matches!(
        rejected(image.apply(&moved, index + 2)),
        Rejection::Invalid(_)
    ));
    let follower = Proposer::Leader {
        node: others[0],
        leader_epoch: 0,
    };
    let by_follower = change(&image, Some(leader), &[leader], follower);
    assert!(matches!(
        rejected(image.apply(&by_follower, index + 3)),
        Rejection::NotLeader { .. }
    ));
    let expand = change(&image, Some(leader), &[leader, others[0], others[1]], by);
    assert_eq!(image.apply(&expand, index + 4), Reply::Applied);
    assert_eq!(image.partitions[&key].isr.len(), 3);
}

#[test]
fn a_fenced_node_does_not_join_an_isr() {
    let (mut image, index) = with_topic(3, 1, 3);
    let key = PartitionKey::new("t", 0);
    let leader = image.partitions[&key].leader.unwrap();
    let by = Proposer::Leader {
        node: leader,
        leader_epoch: 0,
    };
    let out = image.partitions[&key].replicas[2];
    let shrink = change(&image, Some(leader), &image.partitions[&key].isr[..2], by);
    assert_eq!(image.apply(&shrink, index), Reply::Applied);
    // The node restarts: registered again, fenced until it catches up.
    assert!(matches!(
        image.apply(&register(out, 2), index + 1),
        Reply::Registered { .. }
    ));
    let mut isr = image.partitions[&key].isr.clone();
    isr.push(out);
    let expand = change(&image, Some(leader), &isr, by);
    assert!(matches!(
        rejected(image.apply(&expand, index + 2)),
        Rejection::Invalid(_)
    ));
}

#[test]
fn fencing_a_leader_elects_the_next_in_sync_replica_in_the_same_entry() {
    let (mut image, index) = with_topic(3, 3, 3);
    let epoch = image.nodes[&0].broker_epoch;
    let fence = Command::FenceBroker {
        id: 0,
        broker_epoch: epoch,
    };
    assert_eq!(image.apply(&fence, index), Reply::Applied);
    assert_eq!(image.nodes[&0].state, NodeState::Fenced);
    for r in image.partitions.values() {
        assert!(!r.isr.contains(&0));
        assert!(r.leader.is_some() && r.leader != Some(0));
        let moved = r.replicas[0] == 0;
        assert_eq!(r.leader_epoch, u32::from(moved), "{r:?}");
        assert_eq!(r.partition_epoch, 1, "{r:?}");
    }
    // Fencing again changes nothing more.
    let before = image.clone();
    assert_eq!(image.apply(&fence, index + 1), Reply::Applied);
    assert_eq!(image, before);
}

#[test]
fn a_restart_takes_the_node_out_of_its_isrs_and_leaderships() {
    let (mut image, index) = with_topic(3, 3, 3);
    assert_eq!(
        image.apply(&register(1, 2), index),
        Reply::Registered {
            broker_epoch: index
        }
    );
    for r in image.partitions.values() {
        assert!(
            !r.isr.contains(&1) && r.leader.is_some() && r.leader != Some(1),
            "{r:?}"
        );
    }
    // Fenced replicas do not get new partitions.
    let create = Command::CreateTopic {
        topic: topic("u", 1, 3),
        assignment: vec![vec![0, 1, 2]],
    };
    assert!(matches!(
        rejected(image.apply(&create, index + 1)),
        Rejection::Invalid(_)
    ));
}

#[test]
fn fencing_names_the_broker_epoch() {
    let (mut image, index) = with_topic(2, 1, 2);
    let stale = Command::FenceBroker {
        id: 0,
        broker_epoch: 999,
    };
    let before = image.clone();
    assert!(matches!(
        rejected(image.apply(&stale, index)),
        Rejection::StaleBrokerEpoch { .. }
    ));
    assert_eq!(image, before);
}

#[test]
fn the_last_in_sync_replica_is_kept_and_leads_again_when_it_returns() {
    let (mut image, mut index) = with_topic(2, 1, 1);
    let key = PartitionKey::new("t", 0);
    let only = image.partitions[&key].replicas[0];
    let fence = Command::FenceBroker {
        id: only,
        broker_epoch: image.nodes[&only].broker_epoch,
    };
    assert_eq!(image.apply(&fence, index), Reply::Applied);
    index += 1;
    let r = &image.partitions[&key];
    assert_eq!(
        (r.leader, r.isr.clone(), r.leader_epoch),
        (None, vec![only], 1)
    );
    assert!(recovery_changes(&image).is_empty(), "no active ISR member");
    let Reply::Registered { broker_epoch } = image.apply(&register(only, 2), index) else {
        panic!()
    };
    index += 1;
    assert_eq!(
        image.partitions[&key].leader, None,
        "fenced until caught up"
    );
    let unfence = Command::UnfenceBroker {
        id: only,
        broker_epoch,
    };
    assert_eq!(image.apply(&unfence, index), Reply::Applied);
    let r = &image.partitions[&key];
    assert_eq!(
        (r.leader, r.leader_epoch),
        (Some(only), 2),
        "it leads again at once"
    );
}

#[test]
fn election_follows_preference_order_within_the_isr() {
    let (image, _) = with_topic(3, 1, 3);
    let mut r = image.partitions[&PartitionKey::new("t", 0)].clone();
    let active: BTreeSet<_> = [0, 1, 2].into();
    r.isr = vec![r.replicas[2], r.replicas[1]];
    assert_eq!(elect(&r, &active), Some(r.replicas[1]));
    let only_first: BTreeSet<_> = [r.replicas[0]].into();
    assert_eq!(elect(&r, &only_first), None);
}

#[test]
fn assignment_spreads_replicas_and_refuses_too_few_nodes() {
    let nodes: BTreeSet<_> = [4, 7, 9].into();
    let a = assign(&nodes, 0, 3, 2, 1).unwrap();
    assert_eq!(a, vec![vec![7, 9], vec![9, 4], vec![4, 7]]);
    assert_eq!(assign(&nodes, 3, 1, 3, 0).unwrap(), vec![vec![4, 7, 9]]);
    assert!(assign(&nodes, 0, 1, 4, 0).is_err());
    assert!(assign(&nodes, 0, 1, 0, 0).is_err());
}
