//! Fetch: whole stored batches, long-polling until `min_bytes` arrive or `max_wait_ms` passes.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use kafka_protocol::messages::FetchRequest;
use strata_broker::{BrokerError, Partition, Topic};
use strata_storage::ReadChunk;
use tokio::sync::futures::Notified;
use tokio::time::Instant;

use crate::Kafka;
use crate::errors::{broker_code, code};
use crate::fetch_encode::{FetchedPartition, FetchedTopic, encode};
use crate::write::Frame;

/// Longest a Fetch is held, whatever the client asks.
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Wanted {
    index: i32,
    target: Option<(Arc<Topic>, Arc<Partition>)>,
    offset: i64,
    max_bytes: usize,
}

struct WantedTopic {
    /// Named by id (v13+).
    by_id: bool,
    name: String,
    id: [u8; 16],
    partitions: Vec<Wanted>,
}

pub(super) async fn handle(
    kafka: &Kafka,
    version: i16,
    correlation_id: i32,
    req: FetchRequest,
) -> Frame {
    if req.session_id != 0 {
        // Fetch sessions are not kept; a client holding one must start over with a full fetch.
        return encode(
            version,
            correlation_id,
            0,
            code::FETCH_SESSION_ID_NOT_FOUND,
            &[],
        );
    }
    let broker = &kafka.broker;
    let topics: Vec<WantedTopic> = req
        .topics
        .iter()
        .map(|t| {
            let topic = if version >= 13 {
                broker.topic_by_id(t.topic_id.as_bytes())
            } else {
                broker.topic(t.topic.0.as_str())
            }
            .filter(|t| !t.is_internal());
            WantedTopic {
                by_id: version >= 13,
                name: topic
                    .as_ref()
                    .map_or_else(|| t.topic.0.as_str().to_owned(), |t| t.name.to_string()),
                id: *t.topic_id.as_bytes(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| Wanted {
                        index: p.partition,
                        target: topic
                            .as_ref()
                            .and_then(|t| t.partition(p.partition).map(|part| (t.clone(), part))),
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                    })
                    .collect(),
            }
        })
        .collect();
    let deadline =
        Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT);
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_bytes = if req.max_bytes <= 0 {
        usize::MAX
    } else {
        req.max_bytes as usize
    };
    loop {
        // Register for wake-ups before reading, so that an append in between is not missed.
        let mut waits: Vec<Pin<Box<Notified<'_>>>> = topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.target.as_ref())
            .map(|(_, part)| Box::pin(part.appended.notified()))
            .collect();
        for w in &mut waits {
            w.as_mut().enable();
        }
        let (fetched, total, failed) = read_all(kafka, &topics, max_bytes).await;
        // min_bytes 0 answers at once, even with nothing to return.
        if total >= min_bytes.max(1)
            || min_bytes == 0
            || failed
            || Instant::now() >= deadline
            || waits.is_empty()
        {
            return encode(version, correlation_id, 0, code::NONE, &fetched);
        }
        tokio::select! {
            _ = select_all(waits) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    }
}

async fn read_all(
    kafka: &Kafka,
    topics: &[WantedTopic],
    max_bytes: usize,
) -> (Vec<FetchedTopic>, usize, bool) {
    let broker = &kafka.broker;
    let mut total = 0usize;
    let mut failed = false;
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for w in &t.partitions {
            let mut p = FetchedPartition {
                index: w.index,
                error_code: code::NONE,
                high_watermark: -1,
                log_start_offset: -1,
                records: ReadChunk::default(),
            };
            let Some((topic, part)) = &w.target else {
                p.error_code = if t.by_id {
                    code::UNKNOWN_TOPIC_ID
                } else {
                    code::UNKNOWN_TOPIC_OR_PARTITION
                };
                failed = true;
                partitions.push(p);
                continue;
            };
            let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
            let result = if budget == 0 && total > 0 {
                broker.bounds(topic, part).await.map(|bounds| ReadChunk {
                    bounds,
                    ..ReadChunk::default()
                })
            } else {
                broker.read(topic, part, w.offset, budget.max(1)).await
            };
            match result {
                Ok(chunk) => {
                    p.high_watermark = chunk.bounds.next_offset as i64;
                    p.log_start_offset = chunk.bounds.log_start as i64;
                    // Only the first partition with data may exceed the budget (KIP-74), with
                    // its first batch; later ones that do not fit return nothing this time.
                    if total == 0 || total + chunk.len <= max_bytes {
                        total += chunk.len;
                        p.records = chunk;
                    }
                }
                Err(e) => {
                    p.error_code = broker_code(&e);
                    if let BrokerError::OffsetOutOfRange {
                        log_start,
                        high_watermark,
                        ..
                    } = e
                    {
                        p.log_start_offset = log_start as i64;
                        p.high_watermark = high_watermark as i64;
                    } else if matches!(
                        e,
                        BrokerError::Storage(strata_storage::StorageError::ShardNotFound(_))
                    ) {
                        // The topic was deleted while the fetch waited: the client is told
                        // UNKNOWN_TOPIC_OR_PARTITION; nothing is wrong with the node.
                        tracing::debug!(topic = %topic.name, partition = w.index, "fetch of a deleted partition");
                    } else {
                        tracing::warn!(topic = %topic.name, partition = w.index, error = %e, "fetch failed");
                    }
                    failed = true;
                }
            }
            partitions.push(p);
        }
        out.push(FetchedTopic {
            name: t.name.clone(),
            id: t.id,
            partitions,
        });
    }
    (out, total, failed)
}
