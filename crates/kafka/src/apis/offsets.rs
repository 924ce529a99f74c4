//! ListOffsets, DeleteRecords, OffsetCommit and OffsetFetch.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, GroupId, ListOffsetsRequest, ListOffsetsResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use strata_broker::{CommittedOffset, TimestampQuery};

use super::str_bytes;
use crate::Kafka;
use crate::errors::{broker_code, code, group_code};

pub(super) async fn list_offsets(
    kafka: &Kafka,
    version: i16,
    req: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let broker = &kafka.broker;
    let mut topics = Vec::new();
    for t in req.topics {
        let topic = broker.topic(t.name.0.as_str()).filter(|t| !t.is_internal());
        let mut partitions = Vec::new();
        for p in t.partitions {
            let mut out = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1)
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let Some((topic, part)) = topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index).map(|part| (t, part)))
            else {
                partitions.push(out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            let query = match p.timestamp {
                -2 => TimestampQuery::Earliest,
                -1 => TimestampQuery::Latest,
                ts if ts >= 0 => TimestampQuery::At(ts),
                _ => {
                    partitions.push(out.with_error_code(code::INVALID_REQUEST));
                    continue;
                }
            };
            match broker.list_offset(topic, &part, query).await {
                Ok(Some((offset, ts))) => {
                    out.offset = offset as i64;
                    out.timestamp = ts;
                }
                Ok(None) => {}
                Err(e) => out.error_code = broker_code(&e),
            }
            partitions.push(out);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}

pub(super) async fn delete_records(
    kafka: &Kafka,
    req: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let broker = &kafka.broker;
    let mut topics = Vec::new();
    for t in req.topics {
        let topic = broker.topic(t.name.0.as_str()).filter(|t| !t.is_internal());
        let mut partitions = Vec::new();
        for p in t.partitions {
            let out = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            let Some((topic, part)) = topic
                .as_ref()
                .and_then(|t| t.partition(p.partition_index).map(|part| (t, part)))
            else {
                partitions.push(out.with_error_code(code::UNKNOWN_TOPIC_OR_PARTITION));
                continue;
            };
            partitions.push(match broker.delete_records(topic, &part, p.offset).await {
                Ok(low) => out.with_low_watermark(low as i64),
                Err(e) => out.with_error_code(broker_code(&e)),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub(super) async fn commit(kafka: &Kafka, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let broker = &kafka.broker;
    let group = req.group_id.0.as_str();
    let check = broker.groups().validate_commit(
        group,
        req.generation_id_or_member_epoch,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|s| s.as_str()),
    );
    let group_error = check.err().map(|e| group_code(&e));
    let now = strata_storage::now_ms();
    let mut accepted = Vec::new();
    let mut topics = Vec::new();
    for t in req.topics {
        let topic = broker.topic(t.name.0.as_str()).filter(|t| !t.is_internal());
        let mut partitions = Vec::new();
        for p in t.partitions {
            let known = topic
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            let error = match (group_error, known) {
                (Some(c), _) => c,
                (None, false) => code::UNKNOWN_TOPIC_OR_PARTITION,
                (None, true) => {
                    accepted.push((
                        t.name.0.as_str().to_owned(),
                        p.partition_index as u32,
                        CommittedOffset {
                            offset: p.committed_offset,
                            leader_epoch: p.committed_leader_epoch,
                            metadata: p.committed_metadata.as_ref().map(|m| m.as_str().to_owned()),
                            commit_ms: now,
                        },
                    ));
                    code::NONE
                }
            };
            partitions.push(
                OffsetCommitResponsePartition::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(error),
            );
        }
        topics.push(
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    if !accepted.is_empty()
        && let Err(e) = broker.commit_offsets(group, accepted).await
    {
        let c = broker_code(&e);
        tracing::warn!(group, error = %e, "offset commit failed");
        for t in &mut topics {
            for p in &mut t.partitions {
                if p.error_code == code::NONE {
                    p.error_code = c;
                }
            }
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// One committed offset as OffsetFetch reports it: partition, offset, leader epoch, metadata.
type Row = (i32, i64, i32, Option<String>);

/// (topic, partitions) wanted; `None` means every committed offset of the group.
type Wanted = Option<Vec<(TopicName, Vec<i32>)>>;

fn committed(kafka: &Kafka, group: &str, wanted: Wanted) -> Vec<(TopicName, Vec<Row>)> {
    let all = kafka.broker.committed_offsets(group);
    let wanted = wanted.unwrap_or_else(|| {
        let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
        for (t, p) in all.keys() {
            by_topic.entry(t.clone()).or_default().push(*p as i32);
        }
        by_topic
            .into_iter()
            .map(|(t, mut ps)| {
                ps.sort_unstable();
                (TopicName(str_bytes(t)), ps)
            })
            .collect()
    });
    wanted
        .into_iter()
        .map(|(name, ps)| {
            let rows = ps
                .into_iter()
                .map(|p| match all.get(&(name.0.as_str().to_owned(), p as u32)) {
                    Some(o) => (p, o.offset, o.leader_epoch, o.metadata.clone()),
                    None => (p, -1, -1, Some(String::new())),
                })
                .collect();
            (name, rows)
        })
        .collect()
}

pub(super) async fn fetch(
    kafka: &Kafka,
    version: i16,
    req: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect()
                });
                let topics = committed(kafka, g.group_id.0.as_str(), wanted)
                    .into_iter()
                    .map(|(name, rows)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(
                                rows.into_iter()
                                    .map(|(p, o, e, m)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(p)
                                            .with_committed_offset(o)
                                            .with_committed_leader_epoch(e)
                                            .with_metadata(m.map(str_bytes))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let GroupId(group) = req.group_id;
    let wanted = req.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let topics = committed(kafka, group.as_str(), wanted)
        .into_iter()
        .map(|(name, rows)| {
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    rows.into_iter()
                        .map(|(p, o, e, m)| {
                            OffsetFetchResponsePartition::default()
                                .with_partition_index(p)
                                .with_committed_offset(o)
                                .with_committed_leader_epoch(e)
                                .with_metadata(m.map(str_bytes))
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
