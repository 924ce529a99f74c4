//! MQTT topic filters mapped to storage topics, in both directions.
//!
//! A publish whose topic matches a rule's filter is stored in the rule's storage topic as one
//! record (key = MQTT topic; see [`crate::message`]), in the partition chosen by a hash of the
//! MQTT topic, so one MQTT topic keeps its order. Records that Kafka producers append to a
//! mapped topic are read back as they arrive and delivered to matching MQTT subscribers;
//! records that came from MQTT (they carry `mqtt.origin`) were delivered when published and
//! are skipped. The readers hand those messages over a channel (see [`Bridge::start`]) and know
//! nothing of the hub, which owns the bridge.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mqtt_proto::QoS;
use strata_broker::{Broker, BrokerError, Partition, Topic};
use strata_record::{Batch, split_batches};
use tokio::sync::mpsc;

use crate::config::MapRule;
use crate::error::{MqttError, Result};
use crate::message::{Message, header};
use crate::topic::matches;

/// Largest read per partition per round.
const READ_BUDGET: usize = 1 << 20;
/// Messages a reader hands over before it waits for them to be delivered.
const TAIL_CHANNEL: usize = 256;

#[derive(Debug)]
struct Rule {
    filter: String,
    topic: Arc<Topic>,
}

/// The mapping rules with their storage topics.
#[derive(Debug, Default)]
pub struct Bridge {
    rules: Vec<Rule>,
}

/// FNV-1a: a stable hash of the MQTT topic for the partition choice.
fn fnv1a(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

impl Bridge {
    /// Resolves each rule's storage topic, creating it (with the node's default partition
    /// count and storage) when missing.
    pub async fn open(broker: &Arc<Broker>, rules: &[MapRule]) -> Result<Self> {
        let mut out = Vec::new();
        for r in rules {
            let topic = match broker.topic(&r.topic) {
                Some(t) => t,
                None => match broker
                    .create_topic(
                        &r.topic,
                        broker.config().num_partitions,
                        BTreeMap::new(),
                        false,
                    )
                    .await
                {
                    Ok(t) => t,
                    // Created meanwhile by another caller.
                    Err(BrokerError::TopicExists(_)) => broker
                        .topic(&r.topic)
                        .ok_or_else(|| BrokerError::UnknownTopic(r.topic.clone()))?,
                    Err(source) => {
                        return Err(MqttError::MapTopic {
                            topic: r.topic.clone(),
                            filter: r.filter.clone(),
                            source,
                        });
                    }
                },
            };
            tracing::info!(filter = %r.filter, topic = %r.topic, partitions = topic.partition_count(), "MQTT filter mapped to a storage topic");
            out.push(Rule {
                filter: r.filter.clone(),
                topic,
            });
        }
        Ok(Bridge { rules: out })
    }

    /// Stores a published message in the first rule's topic whose filter matches it.
    pub async fn persist(&self, broker: &Broker, msg: &Message) -> Result<()> {
        let Some(rule) = self.rules.iter().find(|r| matches(&r.filter, &msg.topic)) else {
            return Ok(());
        };
        let n = rule.topic.partition_count().max(1);
        let index = (fnv1a(&msg.topic) % n) as i32;
        let partition =
            rule.topic
                .partition(index)
                .ok_or_else(|| BrokerError::UnknownPartition {
                    topic: rule.topic.name.to_string(),
                    partition: index,
                })?;
        broker
            .produce(&rule.topic, &partition, msg.to_batch()?)
            .await?;
        Ok(())
    }

    /// Starts one reader per partition of every mapped topic, from its end when this is
    /// called (read before the reader is spawned, so that nothing appended after `start`
    /// is missed). Each reader sends what Kafka producers append, in offset order, to its own
    /// channel, and stops once the receiver is dropped.
    pub async fn start(&self, broker: &Arc<Broker>) -> Result<Vec<mpsc::Receiver<Arc<Message>>>> {
        let mut out = Vec::new();
        for rule in &self.rules {
            for p in rule.topic.partitions() {
                let from = broker.bounds(&rule.topic, &p).await?.next_offset;
                let (tx, rx) = mpsc::channel(TAIL_CHANNEL);
                let broker = broker.clone();
                let topic = rule.topic.clone();
                tokio::spawn(async move {
                    if let Err(e) = tail(&broker, &topic, &p, from, &tx).await {
                        tracing::error!(topic = %topic.name, partition = p.index, error = %e, "storage-to-MQTT reader stopped");
                    }
                });
                out.push(rx);
            }
        }
        Ok(out)
    }
}

/// Reads `partition` from offset `from` on and sends each record that did not come from MQTT.
async fn tail(
    broker: &Broker,
    topic: &Topic,
    partition: &Partition,
    from: u64,
    tx: &mpsc::Sender<Arc<Message>>,
) -> Result<()> {
    let mut offset = from;
    loop {
        let notified = partition.appended.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let bounds = broker.bounds(topic, partition).await?;
        if offset < bounds.log_start {
            offset = bounds.log_start;
        }
        if offset >= bounds.next_offset {
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = tx.closed() => return Ok(()),
            }
            continue;
        }
        let chunk = broker
            .read(topic, partition, offset as i64, READ_BUDGET)
            .await?;
        let bytes = chunk.to_bytes()?;
        for raw in split_batches(bytes) {
            let batch = Batch::validate(raw?)?;
            let next =
                batch.header().base_offset as u64 + batch.header().last_offset_delta as u64 + 1;
            for r in batch.records()? {
                let r = r?;
                if (r.offset as u64) < offset {
                    continue;
                }
                if r.headers
                    .iter()
                    .any(|h| h.key.as_ref() == header::ORIGIN.as_bytes())
                {
                    continue;
                }
                if let Some(m) = Message::from_record(&r, &topic.name, QoS::Level1)
                    && tx.send(Arc::new(m)).await.is_err()
                {
                    return Ok(());
                }
            }
            offset = offset.max(next);
        }
    }
}
