//! Metadata: this one node leads every partition.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use strata_broker::{BrokerError, Topic};

use super::str_bytes;
use crate::Kafka;
use crate::errors::{broker_code, code};

/// Kafka's "authorized operations not requested" marker.
const OPS_NOT_REQUESTED: i32 = i32::MIN;
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS: no ACLs.
const TOPIC_OPS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

fn describe(kafka: &Kafka, version: i16, topic: &Topic, ops: bool) -> MetadataResponseTopic {
    let node = BrokerId(kafka.broker.node_id());
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index as i32)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(str_bytes(topic.name.to_string()))))
        .with_topic_id(uuid::Uuid::from_bytes(topic.id))
        .with_partitions(partitions)
        .with_topic_authorized_operations(if ops && version >= 8 {
            TOPIC_OPS
        } else {
            OPS_NOT_REQUESTED
        })
}

fn error_topic(name: Option<TopicName>, id: uuid::Uuid, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(name)
        .with_topic_id(id)
        .with_topic_authorized_operations(OPS_NOT_REQUESTED)
}

pub(super) async fn metadata(
    kafka: &Kafka,
    version: i16,
    req: MetadataRequest,
) -> MetadataResponse {
    let broker = &kafka.broker;
    let node = BrokerId(broker.node_id());
    let ops = req.include_topic_authorized_operations;
    // Before v4 a Metadata request always allowed auto-creation.
    let auto_create = version < 4 || req.allow_auto_topic_creation;
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && version == 0,
    };
    let topics = if all {
        broker
            .topics()
            .iter()
            .map(|t| describe(kafka, version, t, ops))
            .collect()
    } else {
        let mut out = Vec::new();
        for t in req.topics.unwrap_or_default() {
            let found: Result<Arc<Topic>, BrokerError> = match &t.name {
                Some(name) if auto_create => broker.topic_or_create(name.0.as_str()).await,
                Some(name) => broker
                    .topic(name.0.as_str())
                    .ok_or_else(|| BrokerError::UnknownTopic(name.0.as_str().to_owned())),
                None => match broker.topic_by_id(t.topic_id.as_bytes()) {
                    Some(topic) => Ok(topic),
                    None => {
                        out.push(error_topic(None, t.topic_id, code::UNKNOWN_TOPIC_ID));
                        continue;
                    }
                },
            };
            out.push(match found {
                Ok(topic) if !topic.is_internal() => describe(kafka, version, &topic, ops),
                Ok(_) => error_topic(t.name, t.topic_id, code::UNKNOWN_TOPIC_OR_PARTITION),
                Err(e) => error_topic(t.name, t.topic_id, broker_code(&e)),
            });
        }
        out
    };
    MetadataResponse::default()
        .with_brokers(vec![
            MetadataResponseBroker::default()
                .with_node_id(node)
                .with_host(str_bytes(kafka.config.advertised_host.clone()))
                .with_port(kafka.config.advertised_port),
        ])
        .with_cluster_id(Some(str_bytes(broker.cluster_id().to_owned())))
        .with_controller_id(node)
        .with_topics(topics)
        .with_cluster_authorized_operations(OPS_NOT_REQUESTED)
}
