//! The broker and how it opens.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::RwLock;
use strata_cluster::Cluster;
use strata_storage::{Durability, Engine, EngineKind, Model, ShardId, StorageError, StorageSpec};

use crate::engines::Engines;
use crate::groups::GroupCoordinator;
use crate::offsets::{CommittedOffset, ProducerIds};
use crate::state::{INTERNAL_PREFIX, StateLog};
use crate::topic::{Partition, Topic, TopicMeta, TopicMetrics, parse_id};
use crate::topic_config::TopicConfig;
use crate::{BrokerConfig, BrokerError, Result};

/// How long an empty group's committed offsets are kept (Kafka's default, 7 days).
pub const OFFSETS_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// One group's committed offsets, by (topic, partition).
pub(crate) type GroupOffsets = HashMap<(String, u32), CommittedOffset>;

/// The broker. Shared by every connection as `Arc<Broker>`.
#[derive(Debug)]
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) engines: Engines,
    pub(crate) state: StateLog,
    pub(crate) topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    /// Topic names by id.
    pub(crate) topic_ids: RwLock<HashMap<[u8; 16], String>>,
    /// Serialises topic creation, deletion and alteration.
    pub(crate) topic_ops: tokio::sync::Mutex<()>,
    pub(crate) offsets: RwLock<HashMap<String, GroupOffsets>>,
    pub(crate) producer_ids: tokio::sync::Mutex<ProducerIds>,
    pub(crate) groups: GroupCoordinator,
    cluster_id: String,
    /// This node's member of the cluster, whose image holds the topics.
    pub(crate) cluster: Arc<Cluster>,
    /// Held for the broker's life: one process per data directory.
    _lock: std::fs::File,
}

impl Broker {
    /// Opens the engines, recovers the broker's state and starts background maintenance.
    pub async fn open(config: BrokerConfig) -> Result<Arc<Broker>> {
        std::fs::create_dir_all(&config.data_dir).map_err(StorageError::from)?;
        let lock = lock_data_dir(&config.data_dir)?;
        let engines = Engines::open(&config).await?;
        let state_engine = engines.for_spec(&strata_storage::StorageSpec::default())?;
        let (state, live) = StateLog::open(state_engine).await?;
        // A data directory from before the cluster names the cluster in its state log.
        let stored_id = match live.get("cluster") {
            Some(id) => String::from_utf8_lossy(id).into_owned(),
            None => new_cluster_id(),
        };
        let cluster = Cluster::start(
            config.cluster.clone(),
            &config.data_dir.join("cluster"),
            &stored_id,
        )
        .await?;
        let cluster_id = cluster.cluster_id();
        let producer_ids = ProducerIds::restore(live.get("producer-ids"));
        let groups = GroupCoordinator::new(config.group_initial_rebalance_delay_ms);
        let broker = Arc::new(Broker {
            topics: RwLock::new(BTreeMap::new()),
            topic_ids: RwLock::new(HashMap::new()),
            topic_ops: tokio::sync::Mutex::new(()),
            offsets: RwLock::new(HashMap::new()),
            producer_ids: tokio::sync::Mutex::new(producer_ids),
            groups,
            cluster_id,
            cluster,
            engines,
            state,
            config,
            _lock: lock,
        });
        broker.restore(&live).await?;
        broker.groups.restore(&broker, &live);
        Self::follow_image(&broker);
        Self::start_maintenance(&broker);
        Ok(broker)
    }

    async fn restore(&self, live: &BTreeMap<String, Bytes>) -> Result<()> {
        let mut existing: HashMap<ShardId, StorageSpec> = HashMap::new();
        for (_, engine) in self.engines.all() {
            existing.extend(engine.shards().await?);
        }
        self.import_stored_topics(live).await?;
        // Shards in object storage that no topic owns outlived the data directory (a node that
        // lost its disk but kept the bucket): their topics come back.
        self.adopt_remote_shards(&existing).await?;
        let wanted = self.reconcile(&existing).await?;
        // Shards no topic owns were left by a creation or deletion cut short by a crash.
        for (_, engine) in self.engines.all() {
            for (shard, _) in engine.shards().await? {
                if !shard.topic().starts_with(INTERNAL_PREFIX) && !wanted.contains(&shard) {
                    tracing::warn!(%shard, "deleting a shard that belongs to no topic");
                    engine.delete_shard(&shard).await?;
                }
            }
        }
        for (key, value) in live.range("offset/".to_owned().."offset0".to_owned()) {
            if let Some((group, topic, partition, offset)) = crate::offsets::decode(key, value) {
                self.offsets
                    .write()
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), offset);
            }
        }
        tracing::info!(
            topics = self.topics.read().len(),
            cluster_id = %self.cluster_id,
            "broker state restored"
        );
        Ok(())
    }

    /// Recreates the topic records of s3 shards that no topic in the image owns.
    async fn adopt_remote_shards(&self, existing: &HashMap<ShardId, StorageSpec>) -> Result<()> {
        let mut orphans: BTreeMap<String, (u32, StorageSpec)> = BTreeMap::new();
        for (shard, spec) in existing {
            if spec.engine != strata_storage::EngineKind::S3
                || shard.topic().starts_with(INTERNAL_PREFIX)
                || self.cluster.read(|i| i.topics.contains_key(shard.topic()))
            {
                continue;
            }
            let e = orphans
                .entry(shard.topic().to_owned())
                .or_insert((0, *spec));
            e.0 = e.0.max(shard.partition() + 1);
        }
        for (name, (partitions, spec)) in orphans {
            let overrides = spec
                .to_properties()
                .into_iter()
                .filter(|(k, _)| *k != "replication.factor")
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let meta = TopicMeta {
                name: name.clone(),
                id: crate::topic::format_id(&crate::topic::new_id()),
                partitions,
                overrides,
                engine: spec.engine.to_string(),
                model: spec.model.to_string(),
                durability: Some(spec.durability.to_string()),
            };
            self.propose_topic(&meta).await?;
            tracing::warn!(topic = %name, partitions,
                "topic recreated from its shards in object storage (its record was missing)");
        }
        Ok(())
    }

    /// Builds a topic from its stored description, creating any shard its engine lacks (the
    /// memory engine loses all of them on restart) and giving any existing shard whose stored
    /// spec differs (a lost spec file) the topic's.
    pub(crate) async fn materialise(
        &self,
        meta: &TopicMeta,
        existing: &HashMap<ShardId, StorageSpec>,
    ) -> Result<Arc<Topic>> {
        let config = self.resolve_config(meta)?;
        let engine = self.engines.for_spec(&config.spec)?;
        let name: Arc<str> = Arc::from(meta.name.as_str());
        let mut partitions = Vec::new();
        for p in 0..meta.partitions {
            let shard = ShardId::with_topic(name.clone(), p)?;
            match existing.get(&shard) {
                Some(spec) if *spec == config.spec => {}
                Some(_) => engine.reconfigure(&shard, &config.spec).await?,
                None => match engine.create_shard(&shard, &config.spec).await {
                    Ok(()) | Err(StorageError::ShardExists(_)) => {}
                    Err(e) => return Err(e.into()),
                },
            }
            partitions.push(Arc::new(Partition::new(shard)));
        }
        Ok(Arc::new(Topic {
            id: parse_id(&meta.id).unwrap_or_else(crate::topic::new_id),
            name,
            config: RwLock::new(config),
            partitions: RwLock::new(partitions),
            engine,
            metrics: TopicMetrics::default(),
        }))
    }

    /// The effective configs of a stored topic: its overrides over the defaults it was
    /// created with.
    pub(crate) fn resolve_config(&self, meta: &TopicMeta) -> Result<TopicConfig> {
        let mut default = self.config.default_spec;
        default.engine = meta
            .engine
            .parse::<EngineKind>()
            .map_err(|e| BrokerError::config(e.to_string()))?;
        default.model = meta
            .model
            .parse::<Model>()
            .map_err(|e| BrokerError::config(e.to_string()))?;
        if let Some(d) = &meta.durability {
            default.durability = d
                .parse::<Durability>()
                .map_err(|e| BrokerError::config(e.to_string()))?;
        }
        TopicConfig::resolve(&default, meta.overrides.clone())
    }

    fn start_maintenance(broker: &Arc<Broker>) {
        let weak = Arc::downgrade(broker);
        let every = Duration::from_millis(broker.config.maintenance_interval_ms.max(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(broker) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = broker.maintain().await {
                    tracing::error!(error = %e, "maintenance failed");
                }
            }
        });
    }

    /// One pass of retention, garbage collection and producer-state snapshots.
    pub async fn maintain(&self) -> Result<()> {
        let now = strata_storage::now_ms();
        for (name, engine) in self.engines.all() {
            let m = engine.maintain(now).await?;
            if m.bytes_dropped > 0 || m.files_deleted > 0 {
                tracing::debug!(engine = name, ?m, "maintenance");
            }
        }
        self.snapshot_producers(now).await?;
        self.expire_groups(now).await
    }

    /// Forgets groups nobody uses: an empty group's committed offsets once the newest is older
    /// than [`OFFSETS_RETENTION_MS`] (Kafka's `offsets.retention.minutes`), and empty groups
    /// without offsets.
    async fn expire_groups(&self, now_ms: i64) -> Result<()> {
        for group in self.groups_with_offsets() {
            if !self.groups.describe(&group).members.is_empty() {
                continue;
            }
            let newest = self
                .committed_offsets(&group)
                .values()
                .map(|o| o.commit_ms)
                .max()
                .unwrap_or(0);
            if now_ms - newest > OFFSETS_RETENTION_MS {
                tracing::info!(group, "expiring the committed offsets of an empty group");
                self.delete_group_offsets(&group).await?;
                let _ = self.groups.delete(&group).await;
            }
        }
        let with_offsets = self.groups_with_offsets();
        for g in self.groups.list() {
            if g.state == "Empty" && !with_offsets.contains(&g.group_id) {
                let _ = self.groups.delete(&g.group_id).await;
            }
        }
        Ok(())
    }

    /// Makes everything durable and closes the engines.
    pub async fn shutdown(&self) -> Result<()> {
        self.snapshot_producers(strata_storage::now_ms()).await?;
        self.cluster.shutdown().await;
        for (_, engine) in self.engines.all() {
            engine.close().await?;
        }
        Ok(())
    }

    pub(crate) fn insert_topic(&self, topic: Arc<Topic>) {
        self.topic_ids
            .write()
            .insert(topic.id, topic.name.to_string());
        self.topics.write().insert(topic.name.to_string(), topic);
    }

    pub(crate) fn remove_topic(&self, name: &str) -> Option<Arc<Topic>> {
        let topic = self.topics.write().remove(name)?;
        self.topic_ids.write().remove(&topic.id);
        Some(topic)
    }

    /// This node's id.
    pub fn node_id(&self) -> i32 {
        self.cluster.node_id() as i32
    }

    /// This node's member of the cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster id, fixed when the data directory was first used.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The settings the broker runs with.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The consumer-group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// Every engine, for metrics.
    pub fn engines(&self) -> Vec<(&'static str, Arc<dyn Engine>)> {
        self.engines.all()
    }

    /// Durable keys of a front end (for example `mqtt/…`) starting with `prefix`, in order.
    /// Front ends keep their small durable state (sessions, retained messages) here; keys
    /// that the broker itself uses (`topic/`, `offset/`, `group/`, …) must not be touched.
    pub async fn state_scan(&self, prefix: &str) -> Vec<(String, Bytes)> {
        self.state.scan(prefix).await
    }

    /// Durably sets (`Some`) or deletes (`None`) front-end keys, atomically, with fsync.
    pub async fn state_put(&self, changes: Vec<(String, Option<Bytes>)>) -> Result<()> {
        self.state.put(changes).await
    }

    /// The engine for a front end's internal shards. Their topic names must start with
    /// [`INTERNAL_PREFIX`] so that recovery keeps them although no topic owns them.
    pub fn internal_engine(&self, spec: &StorageSpec) -> Result<Arc<dyn Engine>> {
        self.engines.for_spec(spec)
    }

    pub(crate) fn state(&self) -> &StateLog {
        &self.state
    }
}

/// Takes an exclusive lock on `data_dir/LOCK`: a second process on the same directory would
/// recover and clean up underneath the first (deleting shards it is creating).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    let path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StorageError::from)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(BrokerError::DataDirInUse(path)),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::from(e).into()),
    }
}

fn new_cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..22)
        .map(|_| ALPHABET[rand::random::<u8>() as usize % ALPHABET.len()] as char)
        .collect()
}
