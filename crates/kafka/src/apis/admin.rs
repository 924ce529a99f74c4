//! CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use strata_broker::{BrokerError, ConfigSource};

use super::str_bytes;
use crate::Kafka;
use crate::errors::{broker_code, code};

fn error(e: &BrokerError) -> (i16, Option<kafka_protocol::protocol::StrBytes>) {
    (broker_code(e), Some(str_bytes(e.to_string())))
}

pub(super) async fn create_topics(
    kafka: &Kafka,
    version: i16,
    req: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let broker = &kafka.broker;
    let mut results = Vec::new();
    for t in req.topics {
        let name = t.name.0.as_str().to_owned();
        let mut out = CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let partitions = if t.num_partitions == -1 {
            Ok(broker.config().num_partitions)
        } else {
            u32::try_from(t.num_partitions).map_err(|_| {
                BrokerError::InvalidPartitions(format!(
                    "num_partitions {} is not a positive number",
                    t.num_partitions
                ))
            })
        };
        let checked = partitions.and_then(|p| {
            if !t.assignments.is_empty() {
                return Err(BrokerError::InvalidPartitions(
                    "manual replica assignments are not supported: this node holds every partition".into(),
                ));
            }
            if !matches!(t.replication_factor, -1 | 1) {
                return Err(BrokerError::InvalidReplicationFactor(format!(
                    "replication factor {} is not supported: this node keeps exactly 1 replica until replication exists",
                    t.replication_factor
                )));
            }
            let mut configs = BTreeMap::new();
            for c in &t.configs {
                let Some(v) = &c.value else {
                    return Err(BrokerError::InvalidConfig(format!(
                        "config {} has no value",
                        c.name.as_str()
                    )));
                };
                configs.insert(c.name.as_str().to_owned(), v.as_str().to_owned());
            }
            Ok((p, configs))
        });
        let created = match checked {
            Ok((p, configs)) => {
                broker
                    .create_topic(&name, p, configs, req.validate_only)
                    .await
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(topic) => {
                if version >= 7 {
                    out.topic_id = uuid::Uuid::from_bytes(topic.id);
                }
                if version >= 5 {
                    out.num_partitions = topic.partition_count().max(match &t.num_partitions {
                        -1 => broker.config().num_partitions,
                        n => *n as u32,
                    }) as i32;
                    out.replication_factor = 1;
                    let entries = topic.config().describe();
                    out.configs = Some(
                        entries
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(e.name))
                                    .with_value(Some(str_bytes(e.value)))
                                    .with_read_only(e.read_only)
                                    .with_config_source(match e.source {
                                        ConfigSource::Topic => 1,
                                        ConfigSource::Broker => 4,
                                        ConfigSource::Default => 5,
                                    })
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                tracing::debug!(topic = %name, error = %e, "create topic refused");
                (out.error_code, out.error_message) = error(&e);
            }
        }
        results.push(out);
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub(super) async fn delete_topics(
    kafka: &Kafka,
    version: i16,
    req: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let broker = &kafka.broker;
    let mut wanted: Vec<(Option<TopicName>, uuid::Uuid)> = req
        .topic_names
        .into_iter()
        .map(|n| (Some(n), uuid::Uuid::nil()))
        .collect();
    wanted.extend(req.topics.into_iter().map(|t| (t.name, t.topic_id)));
    let mut responses = Vec::new();
    for (name, id) in wanted {
        let name_given = name.is_some();
        let resolved = match &name {
            Some(n) => Some(n.0.as_str().to_owned()),
            None => broker
                .topic_by_id(id.as_bytes())
                .map(|t| t.name.to_string()),
        };
        let mut out = DeletableTopicResult::default().with_name(name);
        if version >= 6 {
            out.topic_id = id;
        }
        match resolved {
            None if name_given => out.error_code = code::UNKNOWN_TOPIC_OR_PARTITION,
            None => out.error_code = code::UNKNOWN_TOPIC_ID,
            Some(n) => {
                if let Err(e) = broker.delete_topic(&n).await {
                    out.error_code = broker_code(&e);
                    if version >= 5 {
                        out.error_message = Some(str_bytes(e.to_string()));
                    }
                }
            }
        }
        responses.push(out);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

pub(super) async fn create_partitions(
    kafka: &Kafka,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let broker = &kafka.broker;
    let mut results = Vec::new();
    for t in req.topics {
        let mut out = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        let r = if t.assignments.is_some() {
            Err(BrokerError::InvalidPartitions(
                "manual replica assignments are not supported".into(),
            ))
        } else {
            let count = u32::try_from(t.count).unwrap_or(0);
            broker
                .create_partitions(t.name.0.as_str(), count, req.validate_only)
                .await
        };
        if let Err(e) = r {
            (out.error_code, out.error_message) = error(&e);
        }
        results.push(out);
    }
    CreatePartitionsResponse::default().with_results(results)
}
