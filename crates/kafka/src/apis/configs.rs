//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics.

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use strata_broker::{BrokerError, ConfigEntry, ConfigSource};

use super::str_bytes;
use crate::Kafka;
use crate::errors::{broker_code, code};

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's ConfigType codes.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_LONG: i8 = 5;

fn source_code(s: ConfigSource) -> i8 {
    match s {
        ConfigSource::Topic => 1,
        ConfigSource::Broker => 4,
        ConfigSource::Default => 5,
    }
}

fn config_type(name: &str) -> i8 {
    match name {
        "storage.engine"
        | "storage.model"
        | "storage.wal"
        | "cleanup.policy"
        | "compression.type"
        | "message.timestamp.type" => TYPE_STRING,
        "remote.storage.enable" => TYPE_BOOLEAN,
        _ => TYPE_LONG,
    }
}

fn broker_entries(kafka: &Kafka) -> Vec<ConfigEntry> {
    let c = kafka.broker.config();
    let mut out = vec![
        (
            "auto.create.topics.enable",
            c.auto_create_topics.to_string(),
        ),
        ("num.partitions", c.num_partitions.to_string()),
        ("broker.id", c.cluster.node_id.to_string()),
        ("default.replication.factor", "1".to_owned()),
    ];
    for (k, v) in c.default_spec.to_properties() {
        if k.starts_with("storage.") {
            out.push((k, v));
        }
    }
    out.into_iter()
        .map(|(name, value)| ConfigEntry {
            name: name.to_owned(),
            value,
            source: ConfigSource::Broker,
            read_only: true,
        })
        .collect()
}

pub(super) fn describe(
    kafka: &Kafka,
    version: i16,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let name = r.resource_name.as_str().to_owned();
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            let entries = match r.resource_type {
                TOPIC => kafka.broker.describe_topic_configs(&name),
                BROKER => Ok(broker_entries(kafka)),
                other => Err(BrokerError::InvalidConfig(format!(
                    "resource type {other} is not supported"
                ))),
            };
            match entries {
                Ok(entries) => {
                    out.configs = entries
                        .into_iter()
                        .filter(|e| {
                            r.configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| {
                            let mut c = DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(e.name.clone()))
                                .with_value(Some(str_bytes(e.value)))
                                .with_read_only(e.read_only)
                                .with_config_source(source_code(e.source));
                            if version >= 3 {
                                c.config_type = config_type(&e.name);
                            }
                            c
                        })
                        .collect();
                }
                Err(e) => {
                    out.error_code = if matches!(e, BrokerError::UnknownTopic(_)) {
                        code::UNKNOWN_TOPIC_OR_PARTITION
                    } else {
                        broker_code(&e)
                    };
                    out.error_message = Some(str_bytes(e.to_string()));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

async fn apply(
    kafka: &Kafka,
    resource_type: i8,
    name: &str,
    changes: Result<Vec<(String, Option<String>)>, BrokerError>,
    replace: bool,
    validate_only: bool,
) -> Result<(), BrokerError> {
    if resource_type != TOPIC {
        return Err(BrokerError::InvalidConfig(
            "only topic configs can be altered; broker settings come from the server's config file"
                .into(),
        ));
    }
    kafka
        .broker
        .alter_topic_configs(name, changes?, replace, validate_only)
        .await
}

pub(super) async fn alter(kafka: &Kafka, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let changes = Ok(r
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_owned(),
                    c.value.as_ref().map(|v| v.as_str().to_owned()),
                )
            })
            .collect());
        let result = apply(
            kafka,
            r.resource_type,
            r.resource_name.as_str(),
            changes,
            true,
            req.validate_only,
        )
        .await;
        let mut out = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err(e) = result {
            out.error_code = broker_code(&e);
            out.error_message = Some(str_bytes(e.to_string()));
        }
        responses.push(out);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(super) async fn incremental_alter(
    kafka: &Kafka,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::new();
    for r in req.resources {
        let changes: Result<Vec<_>, BrokerError> = r
            .configs
            .iter()
            .map(|c| {
                let name = c.name.as_str().to_owned();
                match c.config_operation {
                    0 => Ok((name, c.value.as_ref().map(|v| v.as_str().to_owned()))),
                    1 => Ok((name, None)),
                    op => Err(BrokerError::InvalidConfig(format!(
                        "operation {op} (append/subtract) does not apply to {name}, which is not a list"
                    ))),
                }
            })
            .collect();
        let result = apply(
            kafka,
            r.resource_type,
            r.resource_name.as_str(),
            changes,
            false,
            req.validate_only,
        )
        .await;
        let mut out = IncrementalResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name);
        if let Err(e) = result {
            out.error_code = broker_code(&e);
            out.error_message = Some(str_bytes(e.to_string()));
        }
        responses.push(out);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
