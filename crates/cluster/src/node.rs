//! A node's place in the cluster: its Raft member, started once per process.
//!
//! [`Cluster::start`] opens the Raft group's storage, initialises a new one-voter group the
//! first time (never again: re-initialising a log that holds entries is refused by openraft
//! and would only disturb elections), waits until the group has a leader and this node has
//! applied everything committed, names the cluster if it is new, and registers this node as a
//! broker. A single node is a one-voter group on the same path: it leads at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use tokio::sync::watch;

use crate::command::{Command, Rejection, Reply};
use crate::image::{ClusterImage, Endpoint};
use crate::net::{AddressBook, Network};
use crate::store::{self, ImageReader};
use crate::types::{NodeId, Raft, typ};

/// Raft's heartbeat, unless configured, in ms.
pub const DEFAULT_RAFT_HEARTBEAT_MS: u64 = 100;
/// The shortest election timeout, unless configured, in ms (the longest is twice it).
pub const DEFAULT_RAFT_ELECTION_TIMEOUT_MS: u64 = 500;
/// How long a starting node waits for the group to have a leader.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// This node's id (Kafka's broker id).
    pub node_id: NodeId,
    /// The voters of the Raft group and their cluster addresses; empty: this node alone.
    pub voters: BTreeMap<NodeId, String>,
    /// Where Kafka clients reach this node, as other nodes will tell them.
    pub kafka: Endpoint,
    /// Raft's heartbeat in ms.
    pub raft_heartbeat_ms: u64,
    /// Raft's shortest election timeout in ms.
    pub raft_election_timeout_ms: u64,
}

impl ClusterConfig {
    /// A node alone: a one-voter group.
    pub fn single(node_id: NodeId) -> Self {
        Self {
            node_id,
            voters: BTreeMap::new(),
            kafka: Endpoint {
                host: "localhost".into(),
                port: 9092,
            },
            raft_heartbeat_ms: DEFAULT_RAFT_HEARTBEAT_MS,
            raft_election_timeout_ms: DEFAULT_RAFT_ELECTION_TIMEOUT_MS,
        }
    }

    fn voter_ids(&self) -> BTreeSet<NodeId> {
        if self.voters.is_empty() {
            BTreeSet::from([self.node_id])
        } else {
            self.voters.keys().copied().collect()
        }
    }

    fn raft_config(&self) -> Result<Arc<openraft::Config>, ClusterError> {
        let config = openraft::Config {
            cluster_name: "strata".into(),
            heartbeat_interval: self.raft_heartbeat_ms,
            election_timeout_min: self.raft_election_timeout_ms,
            election_timeout_max: self.raft_election_timeout_ms * 2,
            ..Default::default()
        };
        config
            .validate()
            .map(Arc::new)
            .map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// Why the cluster could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster settings: {0}")]
    Config(String),
    #[error("the cluster's storage: {0}")]
    Storage(String),
    #[error("the cluster's Raft group: {0}")]
    Raft(String),
    #[error("no leader of the cluster's Raft group within {0:?}")]
    NoLeader(Duration),
    #[error("this node does not lead the cluster's Raft group (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("refused by the cluster: {0}")]
    Rejected(Rejection),
}

/// A node's member of the cluster's Raft group, and its registration as a broker.
pub struct Cluster {
    id: NodeId,
    raft: Raft,
    image: ImageReader,
    applied: watch::Receiver<Option<typ::LogId>>,
    incarnation: u64,
    broker_epoch: AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("broker_epoch", &self.broker_epoch)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Starts this node's Raft member with its storage in `dir`, and registers the node.
    /// A new cluster is named `cluster_id`.
    pub async fn start(
        config: ClusterConfig,
        dir: &Path,
        cluster_id: &str,
    ) -> Result<Arc<Cluster>, ClusterError> {
        std::fs::create_dir_all(dir).map_err(|e| ClusterError::Storage(e.to_string()))?;
        let (log, machine) = store::open(dir)
            .await
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        let image = machine.reader();
        let applied = machine.subscribe();
        let book = AddressBook::default();
        for (id, addr) in &config.voters {
            book.set(*id, addr.clone());
        }
        let raft = Raft::new(
            config.node_id,
            config.raft_config()?,
            Network::new(book),
            log,
            machine,
        )
        .await
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let voters = config.voter_ids();
        if voters.len() > 1 {
            return Err(ClusterError::Config(
                "a group of more than one voter is not supported by this build yet".into(),
            ));
        }
        let cluster = Arc::new(Cluster {
            id: config.node_id,
            raft,
            image,
            applied,
            incarnation: rand::random(),
            broker_epoch: AtomicU64::new(0),
        });
        cluster.join_group(voters).await?;
        cluster.name(cluster_id).await?;
        cluster.register(&config).await?;
        Ok(cluster)
    }

    /// Initialises the group the first time, then waits for a leader and for this node to
    /// have applied what the group has committed.
    async fn join_group(&self, voters: BTreeSet<NodeId>) -> Result<(), ClusterError> {
        let initialized = self.raft.is_initialized().await.map_err(raft_error)?;
        if !initialized {
            match self.raft.initialize(voters.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_error(e)),
            }
        } else if voters.len() == 1 && voters.contains(&self.id) {
            // A restarted single voter would wait out an election timeout before leading.
            self.raft.trigger().elect().await.map_err(raft_error)?;
        }
        self.raft
            .wait(Some(START_TIMEOUT))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| ClusterError::NoLeader(START_TIMEOUT))?;
        self.raft.ensure_linearizable().await.map_err(raft_error)?;
        Ok(())
    }

    /// Names a new cluster.
    async fn name(&self, cluster_id: &str) -> Result<(), ClusterError> {
        if self.image.read(|i| i.cluster_id.is_some()) {
            return Ok(());
        }
        match self
            .write(Command::Bootstrap {
                cluster_id: cluster_id.to_owned(),
            })
            .await?
        {
            (_, Reply::Rejected(Rejection::ClusterNamed(_)) | Reply::Applied) => Ok(()),
            (_, Reply::Rejected(r)) => Err(ClusterError::Rejected(r)),
            (_, Reply::Registered { .. }) => Ok(()),
        }
    }

    /// Registers this start of the node; once it has applied its own registration it has
    /// caught up, and it becomes active.
    async fn register(&self, config: &ClusterConfig) -> Result<(), ClusterError> {
        let (index, reply) = self
            .write(Command::RegisterBroker {
                id: self.id,
                incarnation: self.incarnation,
                cluster_addr: config.voters.get(&self.id).cloned().unwrap_or_default(),
                kafka: config.kafka.clone(),
            })
            .await?;
        let broker_epoch = match reply {
            Reply::Registered { broker_epoch } => broker_epoch,
            Reply::Rejected(r) => return Err(ClusterError::Rejected(r)),
            Reply::Applied => index,
        };
        self.broker_epoch.store(broker_epoch, Ordering::Relaxed);
        self.wait_applied(broker_epoch).await?;
        match self
            .write(Command::UnfenceBroker {
                id: self.id,
                broker_epoch,
            })
            .await?
        {
            (_, Reply::Rejected(r)) => Err(ClusterError::Rejected(r)),
            _ => Ok(()),
        }
    }

    /// Commits `command` through the group and returns the index of its entry and what
    /// applying it gave, once this node has applied it.
    pub async fn write(&self, command: Command) -> Result<(u64, Reply), ClusterError> {
        let response = self.raft.client_write(command).await.map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ClusterError::NotLeader {
                leader: f.leader_id,
            },
            e => raft_error(e),
        })?;
        let index = response.log_id.index;
        self.wait_applied(index).await?;
        Ok((index, response.data))
    }

    /// Waits until this node has applied the entry at `index`.
    pub async fn wait_applied(&self, index: u64) -> Result<(), ClusterError> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|a| a.is_some_and(|a| a.index >= index))
            .await
            .map_err(|_| ClusterError::Raft("the Raft group stopped".into()))?;
        Ok(())
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// The broker epoch of this node's registration.
    pub fn broker_epoch(&self) -> u64 {
        self.broker_epoch.load(Ordering::Relaxed)
    }

    /// The cluster's id.
    pub fn cluster_id(&self) -> String {
        self.image
            .read(|i| i.cluster_id.clone())
            .unwrap_or_default()
    }

    /// Runs `f` on the image as this node last applied it.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterImage) -> R) -> R {
        self.image.read(f)
    }

    /// The last applied log id, and every later one: the image changed with it.
    pub fn subscribe(&self) -> watch::Receiver<Option<typ::LogId>> {
        self.applied.clone()
    }

    /// The Raft member, for status and metrics.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// Stops the Raft member.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "the cluster's Raft group did not stop cleanly");
        }
    }
}

fn raft_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Raft(e.to_string())
}
