//! One node alone is a one-voter group: it names the cluster, registers and leads at once,
//! and after a restart it finds what it committed and leads again.

mod common;

use common::topic;
use strata_cluster::{Cluster, ClusterConfig, Command, NodeState, PartitionKey, Reply};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_starts_commits_and_restarts_with_its_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster");

    let cluster = Cluster::start(ClusterConfig::single(3), &path, "first")
        .await
        .unwrap();
    assert_eq!(cluster.cluster_id(), "first");
    let first_epoch = cluster.broker_epoch();
    let node = cluster.read(|i| i.nodes[&3].clone());
    assert_eq!(node.state, NodeState::Active);
    assert_eq!(node.broker_epoch, first_epoch);
    let (_, reply) = cluster
        .write(Command::CreateTopic {
            topic: topic("t", 2, 1),
            assignment: vec![vec![3], vec![3]],
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Applied);
    let before = cluster.read(|i| i.partitions[&PartitionKey::new("t", 1)].clone());
    assert_eq!(before.leader, Some(3));
    cluster.shutdown().await;
    drop(cluster);

    // The name given at a later start does not rename the cluster.
    let cluster = Cluster::start(ClusterConfig::single(3), &path, "second")
        .await
        .unwrap();
    assert_eq!(cluster.cluster_id(), "first");
    assert!(cluster.broker_epoch() > first_epoch, "a new registration");
    let image = cluster.read(Clone::clone);
    assert_eq!(image.topics["t"].partitions, 2);
    assert_eq!(image.nodes[&3].state, NodeState::Active);
    let after = &image.partitions[&PartitionKey::new("t", 1)];
    assert_eq!(after.leader, Some(3), "the node leads its partitions again");
    assert!(
        after.leader_epoch > before.leader_epoch,
        "a new start takes a new leader epoch: {} then {}",
        before.leader_epoch,
        after.leader_epoch
    );
    cluster.shutdown().await;
}
