//! Shard identity: one partition of one topic.

use std::fmt;
use std::sync::Arc;

use crate::{Result, StorageError};

/// Longest topic name accepted, as in Kafka (so that `<topic>-<partition>` fits a file name).
pub const MAX_TOPIC_LEN: usize = 249;

/// One partition's log: the unit that engines store.
///
/// Topic names follow Kafka's rule (ASCII letters, digits, `.`, `_`, `-`; 1 to 249 characters;
/// not `.` or `..`) so that `<topic>-<partition>` is a safe directory or key name everywhere.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardId {
    topic: Arc<str>,
    partition: u32,
}

impl ShardId {
    /// Checks the topic name and builds the id.
    pub fn new(topic: &str, partition: u32) -> Result<Self> {
        validate_topic(topic)?;
        Ok(ShardId {
            topic: Arc::from(topic),
            partition,
        })
    }

    /// Builds an id reusing an already validated topic name (no allocation).
    pub fn with_topic(topic: Arc<str>, partition: u32) -> Result<Self> {
        validate_topic(&topic)?;
        Ok(ShardId { topic, partition })
    }

    /// The topic name.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The shared topic name.
    pub fn topic_arc(&self) -> &Arc<str> {
        &self.topic
    }

    /// The partition number.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Parses the `<topic>-<partition>` form produced by `Display`.
    pub fn parse(name: &str) -> Result<Self> {
        let bad = |reason| StorageError::InvalidShardName {
            name: name.to_owned(),
            reason,
        };
        let (topic, partition) = name
            .rsplit_once('-')
            .ok_or_else(|| bad("expected <topic>-<partition>"))?;
        let partition = partition
            .parse::<u32>()
            .map_err(|_| bad("partition is not a number"))?;
        ShardId::new(topic, partition)
    }
}

/// A shard's number inside one engine: the short name its files, keys, rows or objects use
/// instead of `<topic>-<partition>`. Numbers are handed out by the engine when a shard is
/// created and mean nothing outside that engine's storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardNo(pub u64);

impl ShardNo {
    /// The number as stored.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number after this one.
    pub const fn next(self) -> ShardNo {
        ShardNo(self.0 + 1)
    }
}

impl fmt::Display for ShardNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn validate_topic(topic: &str) -> Result<()> {
    let bad = |reason| {
        Err(StorageError::InvalidShardName {
            name: topic.to_owned(),
            reason,
        })
    };
    if topic.is_empty() {
        return bad("topic name is empty");
    }
    if topic.len() > MAX_TOPIC_LEN {
        return bad("topic name is longer than 249 characters");
    }
    if topic == "." || topic == ".." {
        return bad("topic name cannot be '.' or '..'");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("topic name may only contain ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl fmt::Debug for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_round_trips_through_parse() {
        let id = ShardId::new("orders-eu.v2", 17).unwrap();
        assert_eq!(id.to_string(), "orders-eu.v2-17");
        assert_eq!(ShardId::parse("orders-eu.v2-17").unwrap(), id);
    }

    #[test]
    fn rejects_unsafe_names() {
        for name in ["", ".", "..", "a/b", "a b", "ü", &"x".repeat(250)] {
            assert!(ShardId::new(name, 0).is_err(), "{name:?} accepted");
        }
        assert!(ShardId::parse("nopartition").is_err());
        assert!(ShardId::parse("t-x").is_err());
    }
}
