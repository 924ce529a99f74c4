//! `StorageSpec`: what a topic chooses at creation about how its shards are stored.

use std::fmt;
use std::str::FromStr;

use crate::{Result, StorageError};

/// Which engine holds a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    /// Process memory only; nothing survives a restart.
    Memory,
    /// Local files.
    File,
    /// An embedded RocksDB database.
    Rocksdb,
    /// A MySQL-compatible server.
    Mysql,
    /// S3-compatible object storage.
    S3,
}

/// The physical layout an engine uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Model {
    /// One log per shard (Kafka): sequential reads, zero-copy, per-shard files.
    Dedicated,
    /// One journal for all shards (RocketMQ CommitLog): millions of shards, few files.
    Shared,
}

/// When an append is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Held in process memory only (the memory engine).
    Memory,
    /// Handed to the operating system (page cache); survives a process crash, not power loss.
    OsCache,
    /// Handed to the OS, and fsynced in the background at most this many milliseconds later.
    Interval(u32),
    /// Fsynced before the acknowledgement; concurrent appends share one fsync (group commit).
    Fsync,
}

/// How much a shard keeps. `None` means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Retention {
    /// Drop data whose newest timestamp is older than this many milliseconds.
    pub ms: Option<u64>,
    /// Drop the oldest data once a shard holds more than this many bytes.
    pub bytes: Option<u64>,
}

/// Everything a topic fixes about its storage. Engines persist it with each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StorageSpec {
    /// Which engine.
    pub engine: EngineKind,
    /// Which physical model within the engine.
    pub model: Model,
    /// Number of copies. Only 1 exists until replication does.
    pub replicas: u16,
    /// When an append counts as done.
    pub durability: Durability,
    /// How much is kept.
    pub retention: Retention,
    /// Roll a segment (or journal-local unit) once it reaches this many bytes.
    pub segment_bytes: u64,
    /// Roll a segment once its first batch is this old (milliseconds).
    pub segment_ms: Option<u64>,
    /// Keep a local write-ahead log in front of a remote store (`storage.wal=local`, the s3
    /// engine only): appends are acknowledged once the log has them, as durable as
    /// `durability` says, and uploaded later.
    pub wal: bool,
    /// Tier closed segments to object storage (`remote.storage.enable`, KIP-405; file engine,
    /// dedicated model): they are uploaded with their indexes, and deleted locally past
    /// `local_retention`; reads of older offsets fetch them back.
    pub remote: bool,
    /// How much stays on local disk when `remote` (`local.retention.ms`,
    /// `local.retention.bytes`); `retention` still bounds the whole log.
    pub local_retention: Retention,
}

/// Kafka's default `retention.ms`: seven days.
pub const DEFAULT_RETENTION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Kafka's default `segment.bytes`: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Smallest `segment.bytes` accepted.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
const KAFKA_UNSET: &str = "9223372036854775807";

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            engine: EngineKind::File,
            model: Model::Dedicated,
            replicas: 1,
            durability: Durability::OsCache,
            retention: Retention {
                ms: Some(DEFAULT_RETENTION_MS),
                bytes: None,
            },
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: Some(DEFAULT_RETENTION_MS),
            wal: false,
            remote: false,
            local_retention: Retention::default(),
        }
    }
}

impl StorageSpec {
    /// A memory-engine spec with the given byte bound.
    pub fn memory(retention_bytes: Option<u64>) -> Self {
        StorageSpec {
            engine: EngineKind::Memory,
            durability: Durability::Memory,
            retention: Retention {
                ms: None,
                bytes: retention_bytes,
            },
            ..StorageSpec::default()
        }
    }

    /// Checks that the fields make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StorageError::InvalidSpec(m));
        if self.replicas != 1 {
            return bad(format!(
                "replication factor {} is not supported: this node keeps exactly 1 replica",
                self.replicas
            ));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return bad(format!(
                "segment.bytes {} is below the minimum of {MIN_SEGMENT_BYTES}",
                self.segment_bytes
            ));
        }
        match (self.engine, self.durability) {
            (EngineKind::Memory, Durability::Memory) => {}
            (EngineKind::Memory, d) => {
                return bad(format!(
                    "the memory engine keeps no disk copy, so durability {d} cannot apply \
                     (leave flush.messages and flush.ms unset)"
                ));
            }
            (_, Durability::Memory) => {
                return bad(format!(
                    "durability memory is only for storage.engine=memory, not {}",
                    self.engine
                ));
            }
            (_, Durability::Interval(0)) => return bad("flush.ms must be positive".into()),
            _ => {}
        }
        if self.remote && (self.engine != EngineKind::File || self.model != Model::Dedicated) {
            return bad(format!(
                "remote.storage.enable=true tiers the segments of storage.engine=file \
                 storage.model=dedicated, not {} {}",
                self.engine, self.model
            ));
        }
        if self.wal && self.engine != EngineKind::S3 {
            return bad(format!(
                "storage.wal=local is only for storage.engine=s3, not {}",
                self.engine
            ));
        }
        Ok(())
    }

    /// Checks the spec and that it names `engine` and `model`: what an engine instance calls
    /// before creating or reconfiguring a shard.
    pub fn check_held_by(&self, engine: EngineKind, model: Model) -> Result<()> {
        self.validate()?;
        if self.engine != engine || self.model != model {
            return Err(StorageError::InvalidSpec(format!(
                "the {engine} {model} engine cannot hold a shard of engine {} model {}",
                self.engine, self.model
            )));
        }
        Ok(())
    }

    /// The spec as topic configs, using Kafka's names where Kafka has one.
    pub fn to_properties(&self) -> Vec<(&'static str, String)> {
        let opt = |v: Option<u64>| v.map_or_else(|| "-1".to_owned(), |v| v.to_string());
        let (flush_messages, flush_ms) = match self.durability {
            Durability::Fsync => ("1".to_owned(), KAFKA_UNSET.to_owned()),
            Durability::Interval(ms) => (KAFKA_UNSET.to_owned(), ms.to_string()),
            Durability::Memory | Durability::OsCache => {
                (KAFKA_UNSET.to_owned(), KAFKA_UNSET.to_owned())
            }
        };
        let mut props = vec![
            ("storage.engine", self.engine.to_string()),
            ("storage.model", self.model.to_string()),
            ("replication.factor", self.replicas.to_string()),
            ("retention.ms", opt(self.retention.ms)),
            ("retention.bytes", opt(self.retention.bytes)),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", opt(self.segment_ms)),
            ("flush.messages", flush_messages),
            ("flush.ms", flush_ms),
        ];
        if self.engine == EngineKind::S3 {
            let wal = if self.wal { "local" } else { "none" };
            props.push(("storage.wal", wal.to_owned()));
        }
        if self.remote {
            props.push(("remote.storage.enable", "true".to_owned()));
            props.push(("local.retention.ms", opt(self.local_retention.ms)));
            props.push(("local.retention.bytes", opt(self.local_retention.bytes)));
        }
        props
    }

    /// The spec as text, one `name=value` property per line (how non-file engines store it).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.to_properties() {
            out.push_str(k);
            out.push('=');
            out.push_str(&v);
            out.push('\n');
        }
        out
    }

    /// Parses [`StorageSpec::to_text`]'s output.
    pub fn from_text(text: &str) -> Result<Self> {
        let props = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                l.split_once('=').ok_or_else(|| {
                    StorageError::InvalidSpec(format!("stored spec line {l:?} has no '='"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::from_properties(StorageSpec::default(), props)
    }

    /// Applies topic configs on top of `base`. Unknown names and invalid values are errors that
    /// name the config. Durability follows Kafka: `flush.messages=1` fsyncs before the
    /// acknowledgement, `flush.ms=N` fsyncs at most N ms later, neither leaves it to the OS; the
    /// memory engine is always `memory`.
    pub fn from_properties<'a>(
        base: StorageSpec,
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self> {
        let mut spec = base;
        let mut flush_messages: Option<u64> = None;
        let mut flush_ms: Option<u64> = None;
        // Kafka's -2: local retention is the total retention.
        let mut local_ms: Option<Option<u64>> = None;
        let mut local_bytes: Option<Option<u64>> = None;
        for (key, value) in props {
            let value = value.trim();
            let bad = |why: &str| {
                StorageError::InvalidSpec(format!("invalid value {value:?} for {key}: {why}"))
            };
            match key {
                "storage.engine" => {
                    spec.engine = value
                        .parse::<EngineKind>()
                        .map_err(|_| bad("expected memory, file, rocksdb, mysql or s3"))?
                }
                "storage.model" => {
                    spec.model = value
                        .parse::<Model>()
                        .map_err(|_| bad("expected dedicated or shared"))?
                }
                "replication.factor" => {
                    spec.replicas = value.parse().map_err(|_| bad("not a number"))?
                }
                "retention.ms" => spec.retention.ms = parse_limit(value).map_err(bad)?,
                "retention.bytes" => spec.retention.bytes = parse_limit(value).map_err(bad)?,
                "segment.bytes" => {
                    spec.segment_bytes = value.parse().map_err(|_| bad("not a number"))?
                }
                "segment.ms" => spec.segment_ms = parse_limit(value).map_err(bad)?,
                "flush.messages" => {
                    flush_messages = Some(parse_positive(value).map_err(bad)?);
                }
                "flush.ms" => flush_ms = Some(parse_positive(value).map_err(bad)?),
                "remote.storage.enable" => {
                    spec.remote = match value {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected true or false")),
                    }
                }
                "local.retention.ms" => {
                    local_ms = (value != "-2")
                        .then(|| parse_limit(value))
                        .transpose()
                        .map_err(bad)?
                }
                "local.retention.bytes" => {
                    local_bytes = (value != "-2")
                        .then(|| parse_limit(value))
                        .transpose()
                        .map_err(bad)?
                }
                "storage.wal" => {
                    spec.wal = match value {
                        "local" => true,
                        "none" => false,
                        _ => return Err(bad("expected local or none")),
                    }
                }
                other => {
                    return Err(StorageError::InvalidSpec(format!(
                        "unknown storage config {other}"
                    )));
                }
            }
        }
        let unset = |v: Option<u64>| v.is_none_or(|v| v == i64::MAX as u64);
        spec.durability = if spec.engine == EngineKind::Memory {
            if !unset(flush_messages) || !unset(flush_ms) {
                return Err(StorageError::InvalidSpec(
                    "the memory engine keeps no disk copy: flush.messages and flush.ms cannot \
                     apply to storage.engine=memory"
                        .into(),
                ));
            }
            Durability::Memory
        } else if flush_messages == Some(1) {
            Durability::Fsync
        } else if !unset(flush_messages) {
            return Err(StorageError::InvalidSpec(format!(
                "flush.messages {} is not supported: use 1 (fsync before every acknowledgement) \
                 or flush.ms",
                flush_messages.unwrap_or_default()
            )));
        } else if !unset(flush_ms) {
            let ms = flush_ms.unwrap_or_default();
            Durability::Interval(
                u32::try_from(ms).map_err(|_| {
                    StorageError::InvalidSpec(format!("flush.ms {ms} is too large"))
                })?,
            )
        } else if flush_messages.is_some() || flush_ms.is_some() {
            Durability::OsCache
        } else if spec.durability == Durability::Memory {
            // Moving off the memory engine without saying how durable: the OS default.
            Durability::OsCache
        } else {
            spec.durability
        };
        if let Some(ms) = local_ms {
            spec.local_retention.ms = ms;
        } else if spec.remote && base.local_retention == Retention::default() {
            spec.local_retention.ms = spec.retention.ms;
        }
        if let Some(bytes) = local_bytes {
            spec.local_retention.bytes = bytes;
        } else if spec.remote && base.local_retention == Retention::default() {
            spec.local_retention.bytes = spec.retention.bytes;
        }
        spec.validate()?;
        Ok(spec)
    }
}

/// `-1` (Kafka's "unlimited") → `None`.
fn parse_limit(value: &str) -> std::result::Result<Option<u64>, &'static str> {
    match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(v) if v >= 0 => Ok(Some(v as u64)),
        _ => Err("expected -1 (unlimited) or a non-negative number"),
    }
}

fn parse_positive(value: &str) -> std::result::Result<u64, &'static str> {
    match value.parse::<u64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err("expected a positive number"),
    }
}

macro_rules! names {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The lower-case config name.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = StorageError;
            fn from_str(s: &str) -> Result<Self> {
                match s.to_ascii_lowercase().as_str() {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(StorageError::InvalidSpec(format!(
                        concat!("unknown ", stringify!($ty), " {:?}; expected one of: ", $($name, " "),+),
                        s
                    ))),
                }
            }
        }
    };
}

names!(EngineKind {
    Memory = "memory",
    File = "file",
    Rocksdb = "rocksdb",
    Mysql = "mysql",
    S3 = "s3",
});
names!(Model {
    Dedicated = "dedicated",
    Shared = "shared",
});

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Durability::Memory => f.write_str("memory"),
            Durability::OsCache => f.write_str("os"),
            Durability::Interval(ms) => write!(f, "interval:{ms}ms"),
            Durability::Fsync => f.write_str("fsync"),
        }
    }
}

impl FromStr for Durability {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "memory" => Ok(Durability::Memory),
            "os" => Ok(Durability::OsCache),
            "fsync" => Ok(Durability::Fsync),
            _ => s
                .strip_prefix("interval:")
                .map(|ms| ms.trim_end_matches("ms"))
                .and_then(|ms| ms.parse::<u32>().ok())
                .filter(|ms| *ms > 0)
                .map(Durability::Interval)
                .ok_or_else(|| {
                    StorageError::InvalidSpec(format!(
                        "unknown durability {s:?}; expected memory, os, fsync or interval:<ms>"
                    ))
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip() {
        let specs = [
            StorageSpec::default(),
            StorageSpec::memory(Some(1 << 20)),
            StorageSpec {
                model: Model::Shared,
                durability: Durability::Fsync,
                retention: Retention {
                    ms: None,
                    bytes: Some(10),
                },
                ..StorageSpec::default()
            },
            StorageSpec {
                durability: Durability::Interval(250),
                segment_ms: None,
                ..StorageSpec::default()
            },
            StorageSpec {
                engine: EngineKind::S3,
                wal: true,
                ..StorageSpec::default()
            },
            StorageSpec {
                remote: true,
                local_retention: Retention {
                    ms: Some(60_000),
                    bytes: None,
                },
                ..StorageSpec::default()
            },
        ];
        for spec in specs {
            let props = spec.to_properties();
            let back = StorageSpec::from_properties(
                StorageSpec::default(),
                props.iter().map(|(k, v)| (*k, v.as_str())),
            )
            .unwrap();
            assert_eq!(back, spec);
            assert_eq!(StorageSpec::from_text(&spec.to_text()).unwrap(), spec);
        }
    }

    #[test]
    fn errors_name_the_config() {
        let err = |k: &str, v: &str| {
            StorageSpec::from_properties(StorageSpec::default(), [(k, v)])
                .unwrap_err()
                .to_string()
        };
        assert!(err("storage.engine", "tape").contains("tape"));
        assert!(err("retention.ms", "-5").contains("retention.ms"));
        assert!(err("flush.messages", "5").contains("flush.messages"));
        assert!(err("cleanup.policy", "compact").contains("cleanup.policy"));
        assert!(err("replication.factor", "3").contains("replication factor 3"));
        assert!(err("segment.bytes", "10").contains("segment.bytes"));
        assert!(err("storage.wal", "local").contains("storage.engine=s3"));
        assert!(err("storage.wal", "disk").contains("storage.wal"));
    }

    #[test]
    fn memory_engine_refuses_fsync() {
        let r = StorageSpec::from_properties(
            StorageSpec::default(),
            [("storage.engine", "memory"), ("flush.messages", "1")],
        );
        assert!(r.unwrap_err().to_string().contains("flush.messages"));
        let direct = StorageSpec {
            durability: Durability::Fsync,
            ..StorageSpec::memory(None)
        };
        assert!(direct.validate().is_err());
    }
}
