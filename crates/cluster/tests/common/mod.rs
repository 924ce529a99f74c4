//! Images and commands the tests build from.

#![allow(dead_code)]

use std::collections::BTreeMap;

use strata_cluster::{ClusterImage, Command, Endpoint, NodeId, Reply, TopicRecord};

pub fn register(id: NodeId, incarnation: u64) -> Command {
    Command::RegisterBroker {
        id,
        incarnation,
        cluster_addr: format!("127.0.0.1:{}", 7000 + id),
        kafka: Endpoint {
            host: "127.0.0.1".into(),
            port: 9000 + id as u16,
        },
    }
}

pub fn topic(name: &str, partitions: u32, rf: u16) -> TopicRecord {
    TopicRecord {
        name: name.into(),
        id: [partitions as u8 + rf as u8; 16],
        partitions,
        replication_factor: rf,
        configs: BTreeMap::new(),
        base: BTreeMap::new(),
    }
}

/// An image with `n` registered, active nodes (ids 0..n), applied from index 1 on; returns
/// the next free index.
pub fn active_nodes(n: u64) -> (ClusterImage, u64) {
    let mut image = ClusterImage::default();
    let mut index = 1;
    for id in 0..n {
        let Reply::Registered { broker_epoch } = image.apply(&register(id, 1), index) else {
            panic!("registration refused");
        };
        index += 1;
        assert_eq!(
            image.apply(&Command::UnfenceBroker { id, broker_epoch }, index),
            Reply::Applied
        );
        index += 1;
    }
    (image, index)
}
