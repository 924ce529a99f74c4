//! The topics as the cluster image holds them, and this node's copy of them.
//!
//! A topic exists once its `CreateTopic` is committed through the cluster's Raft group; every
//! change of a topic (partitions, configs, deletion) is a command too. Each node keeps its
//! local topics (the shards in its engines) in step with the image: [`Broker::reconcile`]
//! compares the two and creates, grows, reconfigures or deletes what differs. It runs at
//! start, after every change this node commits, and whenever the node applies an entry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use strata_cluster::{Command, Rejection, Reply, TopicRecord};
use strata_storage::{ShardId, StorageError, StorageSpec};

use crate::topic::{Partition, Topic, TopicMeta, format_id, parse_id};
use crate::{Broker, BrokerError, Result};

/// The keys of [`TopicRecord::base`].
const BASE_ENGINE: &str = "storage.engine";
const BASE_MODEL: &str = "storage.model";
const BASE_DURABILITY: &str = "durability";

/// A stored topic as the image records it.
pub(crate) fn record_of(meta: &TopicMeta) -> TopicRecord {
    let mut base = BTreeMap::from([
        (BASE_ENGINE.to_owned(), meta.engine.clone()),
        (BASE_MODEL.to_owned(), meta.model.clone()),
    ]);
    if let Some(d) = &meta.durability {
        base.insert(BASE_DURABILITY.to_owned(), d.clone());
    }
    TopicRecord {
        name: meta.name.clone(),
        id: parse_id(&meta.id).unwrap_or_else(crate::topic::new_id),
        partitions: meta.partitions,
        replication_factor: 1,
        configs: meta.overrides.clone(),
        base,
    }
}

/// An image's topic as the broker describes it.
pub(crate) fn meta_of(record: &TopicRecord) -> TopicMeta {
    TopicMeta {
        name: record.name.clone(),
        id: format_id(&record.id),
        partitions: record.partitions,
        overrides: record.configs.clone(),
        engine: record.base.get(BASE_ENGINE).cloned().unwrap_or_default(),
        model: record.base.get(BASE_MODEL).cloned().unwrap_or_default(),
        durability: record.base.get(BASE_DURABILITY).cloned(),
    }
}

impl Broker {
    /// Commits `command` through the cluster; a refusal becomes the broker's error for it.
    pub(crate) async fn propose(&self, command: Command) -> Result<()> {
        match self.cluster.write(command).await? {
            (_, Reply::Rejected(Rejection::TopicExists(name))) => {
                Err(BrokerError::TopicExists(name))
            }
            (_, Reply::Rejected(Rejection::UnknownTopic(name))) => {
                Err(BrokerError::UnknownTopic(name))
            }
            (_, Reply::Rejected(r)) => Err(strata_cluster::ClusterError::Rejected(r).into()),
            _ => Ok(()),
        }
    }

    /// The replicas of `partitions` new partitions: this node.
    pub(crate) fn assignment(&self, partitions: u32) -> Vec<Vec<u64>> {
        vec![vec![self.cluster.node_id()]; partitions as usize]
    }

    /// Commits a new topic.
    pub(crate) async fn propose_topic(&self, meta: &TopicMeta) -> Result<()> {
        self.propose(Command::CreateTopic {
            topic: record_of(meta),
            assignment: self.assignment(meta.partitions),
        })
        .await
    }

    /// Moves the topics of a data directory from before the cluster (records in the state
    /// log) into the image, then drops the records. Both steps are safe to repeat, so a crash
    /// between them does no harm.
    pub(crate) async fn import_stored_topics(&self, live: &BTreeMap<String, Bytes>) -> Result<()> {
        let mut imported = Vec::new();
        for (key, value) in live.range("topic/".to_owned().."topic0".to_owned()) {
            let meta: TopicMeta = serde_json::from_slice(value).map_err(|e| {
                BrokerError::config(format!("stored topic {key} is unreadable: {e}"))
            })?;
            if !self.cluster.read(|i| i.topics.contains_key(&meta.name)) {
                match self.propose_topic(&meta).await {
                    Ok(()) | Err(BrokerError::TopicExists(_)) => {}
                    Err(e) => return Err(e),
                }
                tracing::info!(topic = %meta.name, "topic moved into the cluster image");
            }
            imported.push((key.clone(), None));
        }
        if !imported.is_empty() {
            self.state().put(imported).await?;
        }
        Ok(())
    }

    /// Brings this node's topics in step with the image; returns the shards they hold.
    /// `existing` are the shards the engines hold, where known (at start).
    pub(crate) async fn reconcile(
        &self,
        existing: &HashMap<ShardId, StorageSpec>,
    ) -> Result<HashSet<ShardId>> {
        let _ops = self.topic_ops.lock().await;
        self.reconcile_locked(existing).await
    }

    /// [`Broker::reconcile`] with the topic lock held.
    pub(crate) async fn reconcile_locked(
        &self,
        existing: &HashMap<ShardId, StorageSpec>,
    ) -> Result<HashSet<ShardId>> {
        let records: Vec<TopicRecord> = self.cluster.read(|i| i.topics.values().cloned().collect());
        let mut wanted = HashSet::new();
        let mut first_error = None;
        for record in &records {
            match self.reconcile_topic(record, existing).await {
                Ok(topic) => wanted.extend(topic.partitions().iter().map(|p| p.shard.clone())),
                Err(e) => {
                    tracing::error!(topic = %record.name, error = %e,
                        "cannot hold the topic as the cluster describes it");
                    first_error.get_or_insert(e);
                }
            }
        }
        let gone: Vec<Arc<Topic>> = self
            .topics()
            .into_iter()
            .filter(|t| !records.iter().any(|r| r.name == *t.name && r.id == t.id))
            .collect();
        for topic in gone {
            if self.topic(&topic.name).is_some_and(|t| t.id == topic.id) {
                self.drop_local(&topic).await?;
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(wanted),
        }
    }

    async fn reconcile_topic(
        &self,
        record: &TopicRecord,
        existing: &HashMap<ShardId, StorageSpec>,
    ) -> Result<Arc<Topic>> {
        let meta = meta_of(record);
        let topic = match self.topic(&record.name) {
            Some(t) if t.id == record.id => t,
            Some(old) => {
                self.drop_local(&old).await?;
                self.insert_new(&meta, existing).await?
            }
            None => self.insert_new(&meta, existing).await?,
        };
        let current = topic.partition_count();
        if current < record.partitions {
            let spec = topic.config().spec;
            let mut added = Vec::new();
            for p in current..record.partitions {
                let shard = ShardId::with_topic(topic.name.clone(), p)?;
                match topic.engine.create_shard(&shard, &spec).await {
                    Ok(()) | Err(StorageError::ShardExists(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                added.push(Arc::new(Partition::new(shard)));
            }
            topic.partitions.write().extend(added);
        }
        if topic.config().overrides != record.configs {
            let config = self.resolve_config(&meta)?;
            for p in topic.partitions() {
                topic.engine.reconfigure(&p.shard, &config.spec).await?;
            }
            *topic.config.write() = config;
        }
        Ok(topic)
    }

    async fn insert_new(
        &self,
        meta: &TopicMeta,
        existing: &HashMap<ShardId, StorageSpec>,
    ) -> Result<Arc<Topic>> {
        let topic = self.materialise(meta, existing).await?;
        self.insert_topic(topic.clone());
        tracing::info!(topic = %meta.name, partitions = meta.partitions, "topic opened");
        Ok(topic)
    }

    /// Forgets a topic on this node: its committed offsets and producer state, then its
    /// shards. A crash part way leaves shards no topic owns, which the next start deletes.
    pub(crate) async fn drop_local(&self, topic: &Topic) -> Result<()> {
        let name = &*topic.name;
        let mut changes: Vec<(String, Option<Bytes>)> = (0..topic.partition_count())
            .map(|p| (format!("producers/{name}/{p}"), None))
            .collect();
        changes.extend(self.forget_offsets_of_topic(name));
        self.state().put(changes).await?;
        self.remove_topic(name);
        for p in topic.partitions() {
            match topic.engine.delete_shard(&p.shard).await {
                Ok(()) | Err(StorageError::ShardNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
            p.appended.notify_waiters();
        }
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Follows the image: every entry this node applies may change a topic.
    pub(crate) fn follow_image(broker: &Arc<Broker>) {
        let weak = Arc::downgrade(broker);
        let mut applied = broker.cluster.subscribe();
        tokio::spawn(async move {
            while applied.changed().await.is_ok() {
                let Some(broker) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = broker.reconcile(&HashMap::new()).await {
                    tracing::error!(error = %e, "following the cluster image");
                }
            }
        });
    }
}
