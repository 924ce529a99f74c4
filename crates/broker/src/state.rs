//! The broker's own durable state — topics, committed offsets, group metadata, producer ids
//! and producer sequences — kept as keyed records in one internal shard of the file engine.
//!
//! Each change is one record batch appended with fsync durability, so it is atomic (the batch
//! has one CRC) and durable when `put` returns. On open the shard is read from its start, the
//! last value of each key winning. When the shard holds much more than the live state, it is
//! compacted: every live key is written again and the log start is moved past the old records.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use strata_record::{Batch, BatchBuilder, Compression, split_batches};
use strata_storage::{Durability, Engine, Model, Retention, ShardId, StorageError, StorageSpec};
use tokio::sync::Mutex;

use crate::Result;

/// Name of the internal shard (topic names starting with `__` are reserved).
pub const STATE_TOPIC: &str = "__strata_state";

/// Topic names of shards that belong to the node itself rather than to a topic: the state log
/// and the front ends' internal shards (MQTT session queues). Recovery keeps them.
pub const INTERNAL_PREFIX: &str = "__strata";

/// Compact once the log holds this much more than twice the live state.
const COMPACT_SLACK: u64 = 16 << 20;
/// Records per batch when writing many keys.
const KEYS_PER_BATCH: usize = 500;

/// The keyed, durable state log.
#[derive(Debug)]
pub struct StateLog {
    engine: Arc<dyn Engine>,
    shard: ShardId,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    live: BTreeMap<String, Bytes>,
    live_bytes: u64,
    /// Bytes appended since the last compaction (or open).
    appended: u64,
}

fn spec() -> StorageSpec {
    StorageSpec {
        model: Model::Dedicated,
        durability: Durability::Fsync,
        retention: Retention::default(),
        segment_bytes: 8 << 20,
        segment_ms: None,
        ..StorageSpec::default()
    }
}

impl StateLog {
    /// Opens the log in `engine` (creating its shard) and returns it with every live key.
    pub async fn open(engine: Arc<dyn Engine>) -> Result<(Self, BTreeMap<String, Bytes>)> {
        let shard = ShardId::new(STATE_TOPIC, 0)?;
        match engine.create_shard(&shard, &spec()).await {
            Ok(()) | Err(StorageError::ShardExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let bounds = engine.bounds(&shard).await?;
        let mut live = BTreeMap::new();
        let mut at = bounds.log_start;
        while at < bounds.next_offset {
            let chunk = engine.read(&shard, at, 4 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            for raw in split_batches(chunk.to_bytes().map_err(StorageError::from)?) {
                let batch = Batch::validate(raw?)?;
                for record in batch.records()? {
                    let record = record?;
                    let offset = record.offset as u64;
                    if offset < at {
                        continue;
                    }
                    at = offset + 1;
                    let Some(key) = record.key.and_then(|k| String::from_utf8(k.to_vec()).ok())
                    else {
                        continue;
                    };
                    match record.value {
                        Some(v) => live.insert(key, v),
                        None => live.remove(&key),
                    };
                }
            }
        }
        let live_bytes = live.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
        let log = StateLog {
            engine,
            shard,
            inner: Mutex::new(Inner {
                live: live.clone(),
                live_bytes,
                appended: bounds.size_bytes,
            }),
        };
        Ok((log, live))
    }

    /// The current value of a key.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        self.inner.lock().await.live.get(key).cloned()
    }

    /// Every live key starting with `prefix`, with its value, in key order.
    pub async fn scan(&self, prefix: &str) -> Vec<(String, Bytes)> {
        let inner = self.inner.lock().await;
        inner
            .live
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Durably sets (`Some`) or deletes (`None`) keys, all in one atomic batch.
    pub async fn put(&self, changes: Vec<(String, Option<Bytes>)>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut inner = self.inner.lock().await;
        let batch = encode(&changes)?;
        inner.appended += batch.len() as u64;
        self.engine.append(&self.shard, batch).await?;
        for (k, v) in changes {
            if let Some(old) = inner.live.remove(&k) {
                inner.live_bytes -= (k.len() + old.len()) as u64;
            }
            if let Some(v) = v {
                inner.live_bytes += (k.len() + v.len()) as u64;
                inner.live.insert(k, v);
            }
        }
        if inner.appended > 2 * inner.live_bytes + COMPACT_SLACK {
            self.compact(&inner).await?;
            inner.appended = inner.live_bytes;
        }
        Ok(())
    }

    /// Rewrites every live key at the end of the log and drops everything before it.
    async fn compact(&self, inner: &Inner) -> Result<()> {
        let start = self.engine.bounds(&self.shard).await?.next_offset;
        let entries: Vec<(String, Option<Bytes>)> = inner
            .live
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        for chunk in entries.chunks(KEYS_PER_BATCH) {
            self.engine.append(&self.shard, encode(chunk)?).await?;
        }
        // A crash before this trim only leaves old records in front of the copies, which the
        // last-value-wins replay reads the same way.
        // The segments below it are deleted by the broker's next maintenance pass.
        self.engine.trim(&self.shard, start).await?;
        tracing::debug!(keys = inner.live.len(), "state log compacted");
        Ok(())
    }
}

fn encode(changes: &[(String, Option<Bytes>)]) -> Result<Batch> {
    let mut b = BatchBuilder::new(Compression::None);
    let now = strata_storage::now_ms();
    for (k, v) in changes {
        b.push(Some(k.as_bytes()), v.as_deref(), &[], now);
    }
    Ok(Batch::validate(b.build()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_storage::file::{DedicatedEngine, FileOptions};

    #[tokio::test]
    async fn last_value_wins_across_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let open = || -> Arc<dyn Engine> {
            Arc::new(DedicatedEngine::open(dir.path(), FileOptions::default()).unwrap())
        };
        let (log, live) = StateLog::open(open()).await.unwrap();
        assert!(live.is_empty());
        log.put(vec![
            ("a".into(), Some(Bytes::from_static(b"1"))),
            ("b".into(), Some(Bytes::from_static(b"2"))),
        ])
        .await
        .unwrap();
        log.put(vec![
            ("a".into(), Some(Bytes::from_static(b"3"))),
            ("b".into(), None),
        ])
        .await
        .unwrap();
        drop(log);
        let (log, live) = StateLog::open(open()).await.unwrap();
        assert_eq!(live.get("a").unwrap().as_ref(), b"3");
        assert!(!live.contains_key("b"));
        // Enough churn on one key to force compactions.
        let big = Bytes::from(vec![7u8; 64 << 10]);
        for i in 0..600 {
            log.put(vec![
                ("big".into(), Some(big.clone())),
                (format!("k{i}"), None),
            ])
            .await
            .unwrap();
        }
        drop(log);
        let engine = open();
        engine.maintain(strata_storage::now_ms()).await.unwrap();
        let (_, live) = StateLog::open(engine.clone()).await.unwrap();
        assert_eq!(live.len(), 2);
        assert_eq!(live.get("big").unwrap(), &big);
        let size = engine
            .bounds(&ShardId::new(STATE_TOPIC, 0).unwrap())
            .await
            .unwrap()
            .size_bytes;
        assert!(
            size < 32 << 20,
            "compaction kept the log small: {size} bytes"
        );
    }
}
