//! Creating, deleting, growing and reconfiguring topics.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use strata_cluster::Command;
use strata_storage::{ShardId, StorageSpec};

use crate::topic::{Partition, Topic, TopicMeta, format_id};
use crate::topic_config::{ConfigEntry, TopicConfig};
use crate::{Broker, BrokerError, Result};

/// Most partitions one topic may have.
pub const MAX_PARTITIONS: u32 = 1_000_000;

fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(BrokerError::InvalidTopic {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if name.starts_with("__") {
        return bad("names starting with __ are reserved for Strata's own topics");
    }
    if let Err(e) = ShardId::new(name, 0) {
        return bad(&e.to_string());
    }
    Ok(())
}

impl Broker {
    /// Every topic clients can see, by name.
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics
            .read()
            .values()
            .filter(|t| !t.is_internal())
            .cloned()
            .collect()
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<Arc<Topic>> {
        let name = self.topic_ids.read().get(id).cloned()?;
        self.topic(&name)
    }

    /// The topic, created with the broker's defaults if it is unknown and auto-creation is on.
    pub async fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.topic(name) {
            return Ok(t);
        }
        if !self.config.auto_create_topics {
            return Err(BrokerError::UnknownTopic(name.to_owned()));
        }
        match self
            .create_topic(name, self.config.num_partitions, BTreeMap::new(), false)
            .await
        {
            Ok(t) => Ok(t),
            Err(BrokerError::TopicExists(_)) => self
                .topic(name)
                .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned())),
            Err(e) => Err(e),
        }
    }

    /// Checks a would-be topic's name, partition count and configs.
    pub fn validate_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: &BTreeMap<String, String>,
    ) -> Result<TopicConfig> {
        validate_name(name)?;
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitions(format!(
                "a topic needs between 1 and {MAX_PARTITIONS} partitions, not {partitions}"
            )));
        }
        let config = TopicConfig::resolve(&self.config.default_spec, configs.clone())?;
        self.engines.for_spec(&config.spec)?;
        Ok(config)
    }

    /// Creates a topic. With `validate_only`, only checks that it could be created.
    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>> {
        let _ops = self.topic_ops.lock().await;
        if self.topic(name).is_some() {
            return Err(BrokerError::TopicExists(name.to_owned()));
        }
        let config = self.validate_topic(name, partitions, &configs)?;
        let meta = TopicMeta {
            name: name.to_owned(),
            id: format_id(&crate::topic::new_id()),
            partitions,
            overrides: configs,
            engine: config.spec.engine.to_string(),
            model: config.spec.model.to_string(),
            durability: Some(self.config.default_spec.durability.to_string()),
        };
        if validate_only {
            return self.unattached(&meta, config);
        }
        // Shards first: a crash before the topic is committed leaves orphan shards, which the
        // next start deletes; the other order could leave a topic without its shards.
        let topic = self.materialise(&meta, &HashMap::new()).await?;
        if let Err(e) = self.propose_topic(&meta).await {
            for p in topic.partitions() {
                let _ = topic.engine.delete_shard(&p.shard).await;
            }
            return Err(e);
        }
        // Any producer state a deleted topic of the same name left.
        let changes = (0..partitions)
            .map(|p| (format!("producers/{name}/{p}"), None))
            .collect();
        self.state().put(changes).await?;
        self.insert_topic(topic.clone());
        tracing::info!(topic = name, partitions, spec = ?config.spec, "topic created");
        Ok(topic)
    }

    fn unattached(&self, meta: &TopicMeta, config: TopicConfig) -> Result<Arc<Topic>> {
        let engine = self.engines.for_spec(&config.spec)?;
        let name: Arc<str> = Arc::from(meta.name.as_str());
        Ok(Arc::new(Topic {
            id: crate::topic::new_id(),
            name,
            config: parking_lot::RwLock::new(config),
            partitions: parking_lot::RwLock::new(Vec::new()),
            engine,
            metrics: Default::default(),
        }))
    }

    /// Deletes a topic with all its data and committed offsets.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let _ops = self.topic_ops.lock().await;
        let topic = self
            .topic(name)
            .filter(|t| !t.is_internal())
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
        // The deletion is committed first: a crash after it leaves orphan shards, which the
        // next start deletes.
        self.propose(Command::DeleteTopic {
            name: name.to_owned(),
            id: topic.id,
        })
        .await?;
        self.drop_local(&topic).await
    }

    /// Raises a topic's partition count to `count`.
    pub async fn create_partitions(
        &self,
        name: &str,
        count: u32,
        validate_only: bool,
    ) -> Result<()> {
        let _ops = self.topic_ops.lock().await;
        let topic = self
            .topic(name)
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
        let current = topic.partition_count();
        if count <= current || count > MAX_PARTITIONS {
            return Err(BrokerError::InvalidPartitions(format!(
                "topic {name} has {current} partitions; the new count must be larger (and at most {MAX_PARTITIONS}), not {count}"
            )));
        }
        if validate_only {
            return Ok(());
        }
        let spec = topic.config().spec;
        let mut added: Vec<Arc<Partition>> = Vec::new();
        for p in current..count {
            let created = match ShardId::with_topic(topic.name.clone(), p) {
                Ok(shard) => topic
                    .engine
                    .create_shard(&shard, &spec)
                    .await
                    .map(|()| shard),
                Err(e) => Err(e),
            };
            match created {
                Ok(shard) => added.push(Arc::new(Partition::new(shard))),
                Err(e) => {
                    // Leave nothing behind that a retry would trip over.
                    for p in &added {
                        let _ = topic.engine.delete_shard(&p.shard).await;
                    }
                    return Err(e.into());
                }
            }
        }
        let committed = self
            .propose(Command::CreatePartitions {
                name: name.to_owned(),
                assignment: self.assignment(count - current),
            })
            .await;
        if let Err(e) = committed {
            for p in &added {
                let _ = topic.engine.delete_shard(&p.shard).await;
            }
            return Err(e);
        }
        topic.partitions.write().extend(added);
        Ok(())
    }

    /// Changes topic configs: `Some` sets a value, `None` restores the default. With
    /// `replace`, every config not named returns to its default (Kafka's AlterConfigs).
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, Option<String>)>,
        replace: bool,
        validate_only: bool,
    ) -> Result<()> {
        let _ops = self.topic_ops.lock().await;
        let topic = self
            .topic(name)
            .filter(|t| !t.is_internal())
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
        let current = topic.config();
        let mut changes = changes;
        if replace {
            for key in current.overrides.keys() {
                if !changes.iter().any(|(k, _)| k == key)
                    && !["storage.engine", "storage.model", "storage.wal"].contains(&key.as_str())
                {
                    changes.push((key.clone(), None));
                }
            }
        }
        let mut default = self.config.default_spec;
        default.engine = current.spec.engine;
        default.model = current.spec.model;
        default.wal = current.spec.wal;
        let altered = current.altered(&default, &changes)?;
        if validate_only {
            return Ok(());
        }
        self.propose(Command::AlterTopicConfig {
            name: name.to_owned(),
            configs: altered.overrides.clone(),
        })
        .await?;
        for p in topic.partitions() {
            topic.engine.reconfigure(&p.shard, &altered.spec).await?;
        }
        *topic.config.write() = altered;
        Ok(())
    }

    /// Every effective config of a topic and where it came from.
    pub fn describe_topic_configs(&self, name: &str) -> Result<Vec<ConfigEntry>> {
        let topic = self
            .topic(name)
            .filter(|t| !t.is_internal())
            .ok_or_else(|| BrokerError::UnknownTopic(name.to_owned()))?;
        Ok(topic.config().describe())
    }

    /// The storage spec new topics get.
    pub fn default_spec(&self) -> StorageSpec {
        self.config.default_spec
    }
}
