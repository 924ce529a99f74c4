//! Three Raft nodes in one process over real TCP: they elect a leader, agree on the image,
//! go on without a stopped node, and the node catches up when it starts again.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{register, topic};
use strata_cluster::net::{AddressBook, Network, server};
use strata_cluster::store::ImageReader;
use strata_cluster::{ClusterImage, Command, NodeId, Raft, Reply, store};
use strata_net::Drain;
use tokio::net::TcpListener;

struct Node {
    raft: Raft,
    image: ImageReader,
    applied: tokio::sync::watch::Receiver<Option<strata_cluster::types::typ::LogId>>,
    drain: Drain,
}

fn config() -> Arc<openraft::Config> {
    Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    )
}

async fn start(id: NodeId, dir: &Path, listener: TcpListener, book: &AddressBook) -> Node {
    let (log, machine) = store::open(dir).await.unwrap();
    let image = machine.reader();
    let applied = machine.subscribe();
    let raft = Raft::new(id, config(), Network::new(book.clone()), log, machine)
        .await
        .unwrap();
    let drain = Drain::new();
    tokio::spawn(server::serve(listener, raft.clone(), drain.clone()));
    Node {
        raft,
        image,
        applied,
        drain,
    }
}

async fn leader(nodes: &BTreeMap<NodeId, Node>) -> NodeId {
    let any = nodes.values().next().unwrap();
    let m = any
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(
            |m| m.current_leader.is_some_and(|l| nodes.contains_key(&l)),
            "a leader among the running nodes",
        )
        .await
        .unwrap();
    m.current_leader.unwrap()
}

async fn write(nodes: &BTreeMap<NodeId, Node>, command: Command) -> (u64, Reply) {
    let l = leader(nodes).await;
    let r = nodes[&l].raft.client_write(command).await.unwrap();
    (r.log_id.index, r.data)
}

async fn applied(node: &Node, index: u64) -> ClusterImage {
    node.raft
        .wait(Some(Duration::from_secs(10)))
        .applied_index_at_least(Some(index), "applied")
        .await
        .unwrap();
    let seen = node.applied.borrow().map(|id| id.index);
    assert!(
        seen >= Some(index),
        "the watch tells of the apply: {seen:?}"
    );
    node.image.read(ClusterImage::clone)
}

async fn stop(node: Node) {
    node.raft.shutdown().await.unwrap();
    node.drain.token().cancel();
    node.drain.drain(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_agree_survive_a_stopped_node_and_catch_it_up() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let book = AddressBook::default();
    let mut listeners = BTreeMap::new();
    for id in 0..3u64 {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        book.set(id, l.local_addr().unwrap().to_string());
        listeners.insert(id, l);
    }
    let mut nodes = BTreeMap::new();
    for (id, l) in listeners {
        nodes.insert(id, start(id, dirs[id as usize].path(), l, &book).await);
    }
    let voters: BTreeSet<NodeId> = (0..3).collect();
    nodes[&0].raft.initialize(voters).await.unwrap();

    let (_, reply) = write(
        &nodes,
        Command::Bootstrap {
            cluster_id: "c1".into(),
        },
    )
    .await;
    assert_eq!(reply, Reply::Applied);
    let mut last = 0;
    for id in 0..3 {
        let (index, reply) = write(&nodes, register(id, 1)).await;
        assert_eq!(
            reply,
            Reply::Registered {
                broker_epoch: index
            }
        );
        let (index, _) = write(
            &nodes,
            Command::UnfenceBroker {
                id,
                broker_epoch: index,
            },
        )
        .await;
        last = index;
    }
    let images: Vec<_> = all_applied(&nodes, last).await;
    assert!(
        images.windows(2).all(|w| w[0] == w[1]),
        "every node holds the same image"
    );
    assert_eq!(images[0].cluster_id.as_deref(), Some("c1"));
    assert_eq!(images[0].active_nodes().len(), 3);

    // Stop the leader: the other two elect one and go on.
    let old = leader(&nodes).await;
    stop(nodes.remove(&old).unwrap()).await;
    let create = Command::CreateTopic {
        topic: topic("t", 1, 1),
        assignment: vec![vec![(old + 1) % 3]],
    };
    let (index, reply) = write(&nodes, create).await;
    assert_eq!(reply, Reply::Applied);
    for node in nodes.values() {
        assert!(applied(node, index).await.topics.contains_key("t"));
    }

    // It comes back from its own directory and catches up.
    let l = TcpListener::bind(book.get(old).unwrap()).await.unwrap();
    let back = start(old, dirs[old as usize].path(), l, &book).await;
    let image = applied(&back, index).await;
    assert!(image.topics.contains_key("t"));
    assert_eq!(
        image,
        nodes
            .values()
            .next()
            .unwrap()
            .image
            .read(ClusterImage::clone)
    );
    nodes.insert(old, back);
    for node in std::mem::take(&mut nodes).into_values() {
        stop(node).await;
    }
}

async fn all_applied(nodes: &BTreeMap<NodeId, Node>, index: u64) -> Vec<ClusterImage> {
    let mut out = Vec::new();
    for node in nodes.values() {
        out.push(applied(node, index).await);
    }
    out
}
