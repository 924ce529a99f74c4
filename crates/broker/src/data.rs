//! Appending and reading record batches.

use bytes::Bytes;
use strata_record::{Batch, BatchHeader, split_batches};
use strata_storage::{ReadChunk, StorageError};

use crate::producer::{ProducerStates, Verdict};
use crate::topic::{Partition, ProducerSlot, Topic, TopicMetrics};
use crate::{Broker, BrokerError, Result};

/// The result of a produce to one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceOutcome {
    /// Offset of the first record of the first batch.
    pub base_offset: u64,
    /// The partition's log start after the append.
    pub log_start: u64,
}

/// What a timestamp lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampQuery {
    /// The log start.
    Earliest,
    /// The next offset (high watermark).
    Latest,
    /// The first offset whose record timestamp is at or after this.
    At(i64),
}

fn out_of_range(e: StorageError) -> BrokerError {
    match e {
        StorageError::OffsetOutOfRange {
            offset,
            log_start,
            next_offset,
            ..
        } => BrokerError::OffsetOutOfRange {
            offset: offset as i64,
            log_start,
            high_watermark: next_offset,
        },
        e => e.into(),
    }
}

impl Broker {
    /// Appends the record batches in `records` (one produce request's data for one partition)
    /// and returns once they are as durable as the topic's storage spec says.
    pub async fn produce(
        &self,
        topic: &Topic,
        partition: &Partition,
        records: Bytes,
    ) -> Result<ProduceOutcome> {
        let max = topic.config.read().max_message_bytes as usize;
        let mut batches = Vec::new();
        for raw in split_batches(records) {
            let batch = Batch::validate(raw?)?;
            if batch.len() > max {
                return Err(BrokerError::RecordTooLarge {
                    size: batch.len(),
                    max,
                });
            }
            let h = batch.header();
            // Compressed records are not decompressed on the way in, but a claimed count must
            // be possible: a record takes at least 7 bytes before compression, and no codec
            // shrinks data more than about 5,000 times.
            let payload = batch.len().saturating_sub(strata_record::HEADER_LEN) as u64;
            if h.compression()
                .is_ok_and(|c| c != strata_record::Compression::None)
                && u64::from(h.record_count()) > payload.max(1) * 5000
            {
                return Err(BrokerError::InvalidRecord(format!(
                    "batch claims {} records in {payload} compressed bytes",
                    h.record_count()
                )));
            }
            if h.is_transactional() || h.is_control() {
                return Err(BrokerError::InvalidRecord(
                    "transactional and control batches are not supported".into(),
                ));
            }
            batches.push(batch);
        }
        let Some(first) = batches.first() else {
            return Err(BrokerError::InvalidRecord(
                "the produce request holds no record batch".into(),
            ));
        };
        let outcome = if first.header().producer_id >= 0 {
            self.produce_idempotent(topic, partition, batches).await?
        } else {
            let mut base = None;
            let mut log_start = 0;
            for batch in batches {
                let (records, len) = (u64::from(batch.record_count()), batch.len() as u64);
                let a = topic.engine.append(&partition.shard, batch).await?;
                base.get_or_insert(a.base_offset);
                log_start = a.log_start;
                TopicMetrics::add(&topic.metrics.bytes_in, len);
                TopicMetrics::add(&topic.metrics.messages_in, records);
            }
            ProduceOutcome {
                base_offset: base.unwrap_or_default(),
                log_start,
            }
        };
        partition.appended.notify_waiters();
        Ok(outcome)
    }

    async fn produce_idempotent(
        &self,
        topic: &Topic,
        partition: &Partition,
        batches: Vec<Batch>,
    ) -> Result<ProduceOutcome> {
        // One producer's batches to one partition are checked and appended in order.
        let mut slot = partition.producers.lock().await;
        self.load_producers(topic, partition, &mut slot).await?;
        let mut base = None;
        let mut log_start = 0;
        for batch in batches {
            let header = *batch.header();
            match slot.state.check(&header)? {
                Verdict::Duplicate { base_offset } => {
                    tracing::debug!(
                        producer = header.producer_id,
                        seq = header.base_sequence,
                        "duplicate batch acknowledged again"
                    );
                    base.get_or_insert(base_offset);
                }
                Verdict::Append => {
                    if slot.state.is_empty() && !slot.dirty {
                        // The partition's first snapshot: from here on its producer state can be
                        // rebuilt by reading from this offset.
                        let next = topic.engine.bounds(&partition.shard).await?.next_offset;
                        slot.state.covered = next;
                        self.save_producers(topic, partition, &slot.state).await?;
                    }
                    let (records, len) = (u64::from(batch.record_count()), batch.len() as u64);
                    let a = topic.engine.append(&partition.shard, batch).await?;
                    slot.state
                        .record(&header, a.base_offset, strata_storage::now_ms());
                    slot.dirty = true;
                    base.get_or_insert(a.base_offset);
                    log_start = a.log_start;
                    TopicMetrics::add(&topic.metrics.bytes_in, len);
                    TopicMetrics::add(&topic.metrics.messages_in, records);
                }
            }
        }
        if log_start == 0 {
            log_start = topic.engine.bounds(&partition.shard).await?.log_start;
        }
        Ok(ProduceOutcome {
            base_offset: base.unwrap_or_default(),
            log_start,
        })
    }

    /// Loads a partition's producer state: its snapshot, then the batches written after it.
    async fn load_producers(
        &self,
        topic: &Topic,
        partition: &Partition,
        slot: &mut ProducerSlot,
    ) -> Result<()> {
        if slot.loaded {
            return Ok(());
        }
        let key = producer_key(topic, partition);
        let Some(saved) = self.state().get(&key).await else {
            slot.loaded = true;
            return Ok(());
        };
        let mut state: ProducerStates = serde_json::from_slice(&saved).map_err(|e| {
            BrokerError::config(format!("stored producer state {key} is unreadable: {e}"))
        })?;
        let bounds = topic.engine.bounds(&partition.shard).await?;
        let mut at = state.covered.max(bounds.log_start);
        while at < bounds.next_offset {
            let chunk = topic.engine.read(&partition.shard, at, 4 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            for raw in split_batches(chunk.to_bytes().map_err(StorageError::from)?) {
                let raw = raw?;
                let h = BatchHeader::parse(&raw)?;
                let next = h.last_offset() as u64 + 1;
                if next <= at {
                    continue;
                }
                if h.producer_id >= 0 {
                    state.record(&h, h.base_offset as u64, strata_storage::now_ms());
                }
                at = next;
            }
        }
        tracing::debug!(topic = %topic.name, partition = partition.index, from = state.covered, to = at, "producer state rebuilt");
        state.covered = at;
        slot.state = state;
        slot.loaded = true;
        slot.dirty = true;
        Ok(())
    }

    async fn save_producers(
        &self,
        topic: &Topic,
        partition: &Partition,
        state: &ProducerStates,
    ) -> Result<()> {
        let json = serde_json::to_vec(state).expect("producer state serialises");
        self.state()
            .put(vec![(
                producer_key(topic, partition),
                Some(Bytes::from(json)),
            )])
            .await
    }

    /// Snapshots the producer state of every partition that changed since its last one, all
    /// in one state-log write. Holds the topic lock, so that a topic deleted meanwhile does not
    /// get its keys written back.
    pub(crate) async fn snapshot_producers(&self, now_ms: i64) -> Result<()> {
        let _ops = self.topic_ops.lock().await;
        let topics: Vec<_> = self.topics.read().values().cloned().collect();
        let mut changes = Vec::new();
        let mut written = Vec::new();
        for topic in topics {
            for p in topic.partitions() {
                let mut slot = p.producers.lock().await;
                if !slot.dirty {
                    continue;
                }
                slot.state.expire(now_ms);
                slot.state.covered = topic.engine.bounds(&p.shard).await?.next_offset;
                let json = serde_json::to_vec(&slot.state).expect("producer state serialises");
                changes.push((producer_key(&topic, &p), Some(Bytes::from(json))));
                slot.dirty = false;
                written.push(p.clone());
            }
        }
        if let Err(e) = self.state().put(changes).await {
            for p in written {
                p.producers.lock().await.dirty = true;
            }
            return Err(e);
        }
        Ok(())
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (at least one batch).
    pub async fn read(
        &self,
        topic: &Topic,
        partition: &Partition,
        offset: i64,
        max_bytes: usize,
    ) -> Result<ReadChunk> {
        let offset = u64::try_from(offset).map_err(|_| BrokerError::OffsetOutOfRange {
            offset,
            log_start: 0,
            high_watermark: 0,
        })?;
        let chunk = topic
            .engine
            .read(&partition.shard, offset, max_bytes)
            .await
            .map_err(out_of_range)?;
        if !chunk.is_empty() {
            TopicMetrics::add(&topic.metrics.bytes_out, chunk.len as u64);
            TopicMetrics::add(&topic.metrics.reads, 1);
        }
        Ok(chunk)
    }

    /// Log start and high watermark of a partition.
    pub async fn bounds(
        &self,
        topic: &Topic,
        partition: &Partition,
    ) -> Result<strata_storage::Bounds> {
        Ok(topic.engine.bounds(&partition.shard).await?)
    }

    /// Answers a ListOffsets query: (offset, timestamp), or `None` when no record is that new.
    pub async fn list_offset(
        &self,
        topic: &Topic,
        partition: &Partition,
        query: TimestampQuery,
    ) -> Result<Option<(u64, i64)>> {
        let b = topic.engine.bounds(&partition.shard).await?;
        Ok(match query {
            TimestampQuery::Earliest => Some((b.log_start, -1)),
            TimestampQuery::Latest => Some((b.next_offset, -1)),
            TimestampQuery::At(ts) => topic
                .engine
                .offset_for_timestamp(&partition.shard, ts)
                .await?
                .map(|hit| (hit.offset, hit.timestamp)),
        })
    }

    /// Moves a partition's log start to `before` (`-1` means the high watermark); returns the
    /// new log start.
    pub async fn delete_records(
        &self,
        topic: &Topic,
        partition: &Partition,
        before: i64,
    ) -> Result<u64> {
        let b = topic.engine.bounds(&partition.shard).await?;
        let before = if before == -1 {
            b.next_offset
        } else {
            u64::try_from(before).unwrap_or(u64::MAX)
        };
        if before > b.next_offset {
            return Err(BrokerError::OffsetOutOfRange {
                offset: before as i64,
                log_start: b.log_start,
                high_watermark: b.next_offset,
            });
        }
        Ok(topic
            .engine
            .trim(&partition.shard, before)
            .await
            .map_err(out_of_range)?
            .log_start)
    }
}

fn producer_key(topic: &Topic, partition: &Partition) -> String {
    format!("producers/{}/{}", topic.name, partition.index)
}
