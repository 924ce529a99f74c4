//! Topic configs: Kafka's names where Kafka has one, `storage.engine` and `storage.model` for
//! what Kafka lacks. An unknown name or an invalid value is an error that names the config.

use std::collections::BTreeMap;

use strata_storage::{EngineKind, StorageSpec};

use crate::{BrokerError, Result};

/// Kafka's default `max.message.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1_048_588;
/// A memory topic without `retention.bytes` keeps at most this much per partition, so that it
/// cannot grow until the process runs out of memory.
pub const MEMORY_DEFAULT_RETENTION_BYTES: u64 = 64 << 20;

/// Where a config's effective value comes from (Kafka's `ConfigSource` numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic = 1,
    /// The broker's configured default.
    Broker = 4,
    /// Strata's built-in default.
    Default = 5,
}

/// One effective config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Config name.
    pub name: String,
    /// Effective value.
    pub value: String,
    /// Where it came from.
    pub source: ConfigSource,
    /// True if it cannot be changed after creation.
    pub read_only: bool,
}

/// Names that only apply at creation.
const CREATE_ONLY: &[&str] = &["storage.engine", "storage.model"];

/// The effective configs of a topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    /// Values set on the topic.
    pub overrides: BTreeMap<String, String>,
    /// The storage they describe.
    pub spec: StorageSpec,
    /// Largest record batch accepted.
    pub max_message_bytes: u64,
    /// The defaults the overrides were applied to (the broker's at the topic's creation, with
    /// its engine, model and durability fixed then).
    pub base: StorageSpec,
}

impl TopicConfig {
    /// Resolves `overrides` on top of the broker's default spec.
    pub fn resolve(default: &StorageSpec, overrides: BTreeMap<String, String>) -> Result<Self> {
        let mut storage: Vec<(&str, &str)> = Vec::new();
        let mut max_message_bytes = DEFAULT_MAX_MESSAGE_BYTES;
        for (name, value) in &overrides {
            let v = value.trim();
            let bad =
                |why: &str| BrokerError::config(format!("invalid value {v:?} for {name}: {why}"));
            match name.as_str() {
                "storage.engine"
                | "storage.model"
                | "storage.wal"
                | "retention.ms"
                | "retention.bytes"
                | "remote.storage.enable"
                | "local.retention.ms"
                | "local.retention.bytes"
                | "segment.bytes"
                | "segment.ms"
                | "flush.messages"
                | "flush.ms" => storage.push((name, v)),
                "max.message.bytes" => {
                    max_message_bytes = v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n > 0 && *n <= i32::MAX as u64)
                        .ok_or_else(|| bad("expected a positive number"))?
                }
                "cleanup.policy" => {
                    if v != "delete" {
                        return Err(bad("only delete is supported; compaction is not"));
                    }
                }
                "compression.type" => {
                    if v != "producer" {
                        return Err(bad(
                            "only producer is supported: batches are stored as produced",
                        ));
                    }
                }
                "message.timestamp.type" => {
                    if v != "CreateTime" {
                        return Err(bad("only CreateTime is supported"));
                    }
                }
                "min.insync.replicas" => {
                    if v != "1" {
                        return Err(bad("this node keeps one replica, so only 1 applies"));
                    }
                }
                other => {
                    return Err(BrokerError::config(format!(
                        "unknown topic config {other}; supported: {}",
                        SUPPORTED.join(", ")
                    )));
                }
            }
        }
        let mut spec = StorageSpec::from_properties(*default, storage.iter().copied())
            .map_err(|e| BrokerError::config(e.to_string()))?;
        if spec.engine == EngineKind::Memory && !overrides.contains_key("retention.bytes") {
            spec.retention.bytes = Some(MEMORY_DEFAULT_RETENTION_BYTES);
        }
        Ok(TopicConfig {
            overrides,
            spec,
            max_message_bytes,
            base: *default,
        })
    }

    /// Applies changes (set or delete a name) on top of the current overrides. Engine and
    /// model cannot change after creation.
    pub fn altered(
        &self,
        default: &StorageSpec,
        changes: &[(String, Option<String>)],
    ) -> Result<Self> {
        let mut overrides = self.overrides.clone();
        for (name, value) in changes {
            if CREATE_ONLY.contains(&name.as_str()) {
                let current = self.entry_value(name);
                if value.as_deref() != Some(current.as_str()) {
                    return Err(BrokerError::config(format!(
                        "{name} is fixed when a topic is created and cannot be altered"
                    )));
                }
            }
            match value {
                Some(v) => overrides.insert(name.clone(), v.clone()),
                None => overrides.remove(name),
            };
        }
        // Keep the storage choice even if the broker default changed.
        for name in CREATE_ONLY {
            overrides
                .entry((*name).to_owned())
                .or_insert_with(|| self.entry_value(name));
        }
        TopicConfig::resolve(default, overrides)
    }

    fn entry_value(&self, name: &str) -> String {
        self.describe()
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| e.value)
            .unwrap_or_default()
    }

    /// Every effective config with its source: set on the topic, a broker-configured default
    /// (differing from the built-in one), or the built-in default.
    pub fn describe(&self) -> Vec<ConfigEntry> {
        let builtin = StorageSpec::default().to_properties();
        let broker = self.base.to_properties();
        let mut out: Vec<ConfigEntry> = self
            .spec
            .to_properties()
            .into_iter()
            .filter(|(k, _)| *k != "replication.factor")
            .map(|(name, value)| {
                let source = if self.overrides.contains_key(name) {
                    ConfigSource::Topic
                } else if broker.iter().find(|(k, _)| *k == name)
                    != builtin.iter().find(|(k, _)| *k == name)
                {
                    ConfigSource::Broker
                } else {
                    ConfigSource::Default
                };
                ConfigEntry {
                    name: name.to_owned(),
                    value,
                    source,
                    read_only: CREATE_ONLY.contains(&name),
                }
            })
            .collect();
        let fixed = [
            ("max.message.bytes", self.max_message_bytes.to_string()),
            ("cleanup.policy", "delete".to_owned()),
            ("compression.type", "producer".to_owned()),
            ("message.timestamp.type", "CreateTime".to_owned()),
            ("min.insync.replicas", "1".to_owned()),
        ];
        for (name, value) in fixed {
            out.push(ConfigEntry {
                name: name.to_owned(),
                value,
                source: if self.overrides.contains_key(name) {
                    ConfigSource::Topic
                } else {
                    ConfigSource::Default
                },
                read_only: false,
            });
        }
        out
    }
}

/// Every topic config name accepted.
pub const SUPPORTED: &[&str] = &[
    "storage.engine",
    "storage.model",
    "storage.wal",
    "remote.storage.enable",
    "local.retention.ms",
    "local.retention.bytes",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "flush.messages",
    "flush.ms",
    "max.message.bytes",
    "cleanup.policy",
    "compression.type",
    "message.timestamp.type",
    "min.insync.replicas",
];

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::{Durability, Model};

    fn resolve(pairs: &[(&str, &str)]) -> Result<TopicConfig> {
        let o = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TopicConfig::resolve(&StorageSpec::default(), o)
    }

    #[test]
    fn storage_and_kafka_names() {
        let c = resolve(&[
            ("storage.model", "shared"),
            ("flush.messages", "1"),
            ("retention.ms", "1000"),
            ("cleanup.policy", "delete"),
        ])
        .unwrap();
        assert_eq!(c.spec.model, Model::Shared);
        assert_eq!(c.spec.durability, Durability::Fsync);
        assert_eq!(c.spec.retention.ms, Some(1000));
        let d = c.describe();
        let get = |n: &str| d.iter().find(|e| e.name == n).unwrap().clone();
        assert_eq!(get("storage.model").source, ConfigSource::Topic);
        assert_eq!(get("segment.bytes").source, ConfigSource::Default);
        assert_eq!(get("flush.messages").value, "1");
    }

    #[test]
    fn errors_name_the_config() {
        for (k, v) in [
            ("cleanup.policy", "compact"),
            ("storage.engine", "floppy"),
            ("max.message.bytes", "-1"),
            ("no.such.config", "1"),
            ("flush.messages", "7"),
        ] {
            let e = resolve(&[(k, v)]).unwrap_err().to_string();
            assert!(e.contains(k), "{e} does not name {k}");
        }
    }

    #[test]
    fn memory_topics_are_bounded_by_default() {
        let c = resolve(&[("storage.engine", "memory")]).unwrap();
        assert_eq!(c.spec.retention.bytes, Some(MEMORY_DEFAULT_RETENTION_BYTES));
        assert_eq!(c.spec.durability, Durability::Memory);
    }

    #[test]
    fn engine_cannot_be_altered() {
        let c = resolve(&[]).unwrap();
        let d = StorageSpec::default();
        assert!(
            c.altered(&d, &[("storage.engine".into(), Some("memory".into()))])
                .is_err()
        );
        let a = c
            .altered(&d, &[("retention.ms".into(), Some("5".into()))])
            .unwrap();
        assert_eq!(a.spec.retention.ms, Some(5));
    }
}
