//! The benchmark topic, through rdkafka's AdminClient: created with the storage the flags ask
//! for, read back as the node describes it (so that the engine reference uses the very spec
//! the broker stores the topic with), and deleted at the end.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use strata_storage::{Durability, StorageSpec};

use super::args::{DurabilityArg, Mode, Plan};

/// How long an admin request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Topic configs that describe storage, as `StorageSpec::from_properties` reads them.
const STORAGE_CONFIGS: &[&str] = &[
    "storage.engine",
    "storage.model",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "flush.messages",
    "flush.ms",
];

/// An admin connection to the node.
pub struct Admin {
    client: AdminClient<DefaultClientContext>,
    options: AdminOptions,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Admin")
    }
}

/// The topic configs a plan asks for.
pub fn topic_configs(plan: &Plan) -> Vec<(&'static str, &'static str)> {
    let a = &plan.args;
    let mut configs = vec![
        ("storage.engine", a.engine.as_str()),
        ("storage.model", a.model.as_str()),
    ];
    if plan.durability_name() == "fsync" {
        configs.push(("flush.messages", "1"));
    }
    // A memory topic keeps 64 MiB per partition unless told otherwise; a consume run must
    // read back everything it produced.
    if plan.durability_name() == "memory" && a.mode == Mode::Consume {
        configs.push(("retention.bytes", "-1"));
    }
    configs
}

impl Admin {
    /// Connects to `--bootstrap`.
    pub fn connect(plan: &Plan) -> Result<Admin> {
        let client = ClientConfig::new()
            .set("bootstrap.servers", &plan.args.bootstrap)
            .set("client.id", "strata-bench-admin")
            .create()
            .context("creating the Kafka admin client")?;
        Ok(Admin {
            client,
            options: AdminOptions::new()
                .request_timeout(Some(TIMEOUT))
                .operation_timeout(Some(TIMEOUT)),
        })
    }

    /// Creates `topic` with the plan's partitions and storage configs.
    pub async fn create(&self, plan: &Plan, topic: &str) -> Result<()> {
        let configs = topic_configs(plan);
        let mut new = NewTopic::new(
            topic,
            plan.args.partitions as i32,
            TopicReplication::Fixed(1),
        );
        for (k, v) in &configs {
            new = new.set(k, v);
        }
        let results = self
            .client
            .create_topics([&new], &self.options)
            .await
            .with_context(|| format!("creating topic {topic} on {}", plan.args.bootstrap))?;
        for r in results {
            r.map_err(|(name, code)| {
                anyhow!("creating topic {name} with {configs:?} failed: {code}")
            })?;
        }
        Ok(())
    }

    /// The storage spec of `topic` as the node describes it, checked against the plan.
    pub async fn spec(&self, plan: &Plan, topic: &str) -> Result<StorageSpec> {
        let described = self
            .client
            .describe_configs([&ResourceSpecifier::Topic(topic)], &self.options)
            .await
            .with_context(|| format!("describing topic {topic}"))?;
        let resource = described
            .into_iter()
            .next()
            .context("the node described no resource")?
            .map_err(|code| anyhow!("describing topic {topic} failed: {code}"))?;
        let pairs: Vec<(&str, &str)> = resource
            .entries
            .iter()
            .filter(|e| STORAGE_CONFIGS.contains(&e.name.as_str()))
            .filter_map(|e| e.value.as_deref().map(|v| (e.name.as_str(), v)))
            .collect();
        let spec = StorageSpec::from_properties(StorageSpec::default(), pairs.iter().copied())
            .with_context(|| format!("reading the storage configs of {topic}: {pairs:?}"))?;
        let want = match (plan.durability_name(), plan.args.durability) {
            ("memory", _) => Durability::Memory,
            (_, DurabilityArg::Os) => Durability::OsCache,
            (_, DurabilityArg::Fsync) => Durability::Fsync,
        };
        if spec.engine != plan.engine || spec.model != plan.model || spec.durability != want {
            bail!(
                "topic {topic} came out as {} / {} / durability {} instead of {} / {} / {} \
                 (does the node set another default durability?)",
                spec.engine,
                spec.model,
                spec.durability,
                plan.engine,
                plan.model,
                want
            );
        }
        Ok(spec)
    }

    /// Deletes `topic`.
    pub async fn delete(&self, topic: &str) -> Result<()> {
        let results = self
            .client
            .delete_topics(&[topic], &self.options)
            .await
            .with_context(|| format!("deleting topic {topic}"))?;
        for r in results {
            r.map_err(|(name, code)| anyhow!("deleting topic {name} failed: {code}"))?;
        }
        Ok(())
    }
}
