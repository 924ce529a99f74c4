//! What MQTT keeps durably, all through the storage layer:
//!
//! - each persistent session's description (expiry, subscriptions, queue shard) as one key
//!   `mqtt/session/<client id>` of the broker's state log;
//! - each retained message as one key `mqtt/retain/<topic>` whose value is the message as a
//!   record batch;
//! - each persistent session's queue of messages that arrived while it was offline, as one shard
//!   `__strata_mqtt_queue-<n>` of the file engine's shared model: one journal for all of them,
//!   so a million sessions cost a small index entry each. Appends are fsynced before the
//!   publisher is acknowledged; delivered messages are trimmed off the front.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use mqtt_proto::QoS;
use serde::{Deserialize, Serialize};
use strata_broker::Broker;
use strata_record::{Batch, BatchBuilder, Compression, split_batches};
use strata_storage::{
    Durability, Engine, EngineKind, Model, Retention, ShardId, StorageError, StorageSpec,
};

use crate::error::Result;
use crate::message::Message;
use crate::topic::SubOptions;

/// Topic name of the session queue shards.
pub const QUEUE_TOPIC: &str = "__strata_mqtt_queue";
const SESSION_PREFIX: &str = "mqtt/session/";
const RETAIN_PREFIX: &str = "mqtt/retain/";
/// Largest read while draining a queue.
const READ_BUDGET: usize = 1 << 20;

/// A persistent session as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Session expiry interval in seconds; `u32::MAX` never expires.
    pub expiry: u32,
    /// Subscriptions by full filter (with any `$share/<group>/` prefix).
    pub subs: BTreeMap<String, SubOptions>,
    /// Queue shard, once one was needed.
    pub queue: Option<u32>,
    /// Outbound QoS 2 packet ids whose PUBREL awaits PUBCOMP.
    #[serde(default)]
    pub pubrel: Vec<u16>,
}

/// Durable session descriptions and retained messages in the state log, and session queues.
#[derive(Debug)]
pub struct Store {
    broker: Arc<Broker>,
    engine: Arc<dyn Engine>,
    next_queue: AtomicU32,
}

fn queue_spec() -> StorageSpec {
    StorageSpec {
        engine: EngineKind::File,
        model: Model::Shared,
        durability: Durability::Fsync,
        retention: Retention::default(),
        ..StorageSpec::default()
    }
}

fn shard(n: u32) -> ShardId {
    ShardId::new(QUEUE_TOPIC, n).expect("valid internal topic name")
}

impl Store {
    /// Opens the store and returns it with every stored session and retained message.
    /// Queue shards that no session names (left by a crash mid-deletion) are deleted.
    pub async fn open(
        broker: Arc<Broker>,
    ) -> Result<(Self, Vec<(Arc<str>, SessionMeta)>, Vec<Message>)> {
        let engine = broker.internal_engine(&queue_spec())?;
        let mut sessions = Vec::new();
        for (key, value) in broker.state_scan(SESSION_PREFIX).await {
            let id = &key[SESSION_PREFIX.len()..];
            match serde_json::from_slice::<SessionMeta>(&value) {
                Ok(meta) => sessions.push((Arc::from(id), meta)),
                Err(e) => {
                    tracing::error!(client_id = id, error = %e, "stored MQTT session is unreadable; skipped")
                }
            }
        }
        let mut retained = Vec::new();
        for (key, value) in broker.state_scan(RETAIN_PREFIX).await {
            match decode_messages(value) {
                Ok(mut m) if !m.is_empty() => retained.push(m.remove(0)),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(key, error = %e, "stored retained message is unreadable; skipped")
                }
            }
        }
        let used: std::collections::HashSet<u32> =
            sessions.iter().filter_map(|(_, m)| m.queue).collect();
        let mut max = 0;
        for (s, _) in engine.shards().await? {
            if s.topic() != QUEUE_TOPIC {
                continue;
            }
            max = max.max(s.partition() + 1);
            if !used.contains(&s.partition()) {
                tracing::warn!(shard = %s, "deleting an MQTT queue no session owns");
                engine.delete_shard(&s).await?;
            }
        }
        let max = used.iter().map(|n| n + 1).max().unwrap_or(0).max(max);
        Ok((
            Store {
                broker,
                engine,
                next_queue: AtomicU32::new(max),
            },
            sessions,
            retained,
        ))
    }

    /// Durably records a session's description.
    pub async fn save_session(&self, client_id: &str, meta: &SessionMeta) -> Result<()> {
        let value = serde_json::to_vec(meta)?;
        self.broker
            .state_put(vec![(
                format!("{SESSION_PREFIX}{client_id}"),
                Some(Bytes::from(value)),
            )])
            .await?;
        Ok(())
    }

    /// Forgets a session and deletes its queue.
    pub async fn delete_session(&self, client_id: &str, queue: Option<u32>) -> Result<()> {
        self.broker
            .state_put(vec![(format!("{SESSION_PREFIX}{client_id}"), None)])
            .await?;
        if let Some(q) = queue {
            match self.engine.delete_shard(&shard(q)).await {
                Ok(()) | Err(StorageError::ShardNotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Durably stores (`Some`) or deletes (`None`) the retained message of a topic.
    pub async fn set_retained(&self, topic: &str, message: Option<&Message>) -> Result<()> {
        let value = message.map(|m| m.to_batch()).transpose()?;
        self.broker
            .state_put(vec![(format!("{RETAIN_PREFIX}{topic}"), value)])
            .await?;
        Ok(())
    }

    /// A new, empty queue shard.
    pub async fn create_queue(&self) -> Result<u32> {
        loop {
            let n = self.next_queue.fetch_add(1, Ordering::Relaxed);
            match self.engine.create_shard(&shard(n), &queue_spec()).await {
                Ok(()) => return Ok(n),
                Err(StorageError::ShardExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Appends messages to a queue in one batch, fsynced when this returns. A packet id goes
    /// with a message that was sent once and is to be sent again with it.
    pub async fn append(&self, queue: u32, messages: &[(Arc<Message>, Option<u16>)]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut b = BatchBuilder::new(Compression::None);
        for (m, pid) in messages {
            m.push_record_with_pid(&mut b, *pid);
        }
        let batch = Batch::validate(b.build()?)?;
        self.engine.append(&shard(queue), batch).await?;
        Ok(())
    }

    /// Every message in a queue with its offset and any earlier packet id, and the offset
    /// after the last.
    #[allow(clippy::type_complexity)]
    pub async fn read_queue(&self, queue: u32) -> Result<(Vec<(u64, Message, Option<u16>)>, u64)> {
        let id = shard(queue);
        let bounds = self.engine.bounds(&id).await?;
        let mut out = Vec::new();
        let mut at = bounds.log_start;
        while at < bounds.next_offset {
            let chunk = self.engine.read(&id, at, READ_BUDGET).await?;
            if chunk.is_empty() {
                break;
            }
            let bytes = chunk.to_bytes()?;
            for raw in split_batches(bytes) {
                let batch = Batch::validate(raw?)?;
                for r in batch.records()? {
                    let r = r?;
                    let offset = r.offset as u64;
                    at = offset + 1;
                    if offset < bounds.log_start {
                        continue;
                    }
                    let pid = r
                        .headers
                        .iter()
                        .find(|h| h.key.as_ref() == crate::message::header::PID.as_bytes())
                        .and_then(|h| h.value.as_ref())
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse::<u16>().ok())
                        .filter(|p| *p != 0);
                    if let Some(m) = Message::from_record(&r, "", QoS::Level1) {
                        out.push((offset, m, pid));
                    }
                }
            }
        }
        Ok((out, bounds.next_offset))
    }

    /// Drops every message before `offset` from a queue.
    pub async fn trim(&self, queue: u32, offset: u64) -> Result<()> {
        self.engine.trim(&shard(queue), offset).await?;
        Ok(())
    }
}

fn decode_messages(bytes: Bytes) -> Result<Vec<Message>> {
    let mut out = Vec::new();
    for raw in split_batches(bytes) {
        let batch = Batch::validate(raw?)?;
        for r in batch.records()? {
            if let Some(m) = Message::from_record(&r?, "", QoS::Level0) {
                out.push(m);
            }
        }
    }
    Ok(out)
}
