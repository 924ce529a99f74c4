//! Every advertised version of every API gets a response that the `kafka-protocol` crate's
//! client side decodes: a request of each (API, version) is sent to a real listener.

mod common;

use bytes::Bytes;
use common::{call, s, start};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use strata_kafka::{SUPPORTED_APIS, ServedApi};
use strata_record::{BatchBuilder, Compression};
use tokio::net::TcpStream;

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Some(b"k"), Some(b"v"), &[], 1_000);
    b.build().unwrap()
}

/// A request of `api` at `version` that exercises the handler against topic `t`.
fn request(api: ApiKey, version: i16, topic: &str, topic_id: uuid::Uuid, n: usize) -> RequestKind {
    let t = TopicName(s(topic));
    match api {
        ApiKey::Produce => RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(-1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    produce_request::TopicProduceData::default()
                        .with_name(t)
                        .with_partition_data(vec![
                            produce_request::PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(batch())),
                        ]),
                ]),
        ),
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
                .with_topics(vec![
                    fetch_request::FetchTopic::default()
                        .with_topic(if version < 13 {
                            t
                        } else {
                            TopicName::default()
                        })
                        .with_topic_id(if version >= 13 {
                            topic_id
                        } else {
                            uuid::Uuid::nil()
                        })
                        .with_partitions(vec![
                            fetch_request::FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20),
                        ]),
                ]),
        ),
        ApiKey::ListOffsets => RequestKind::ListOffsets(
            ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    list_offsets_request::ListOffsetsTopic::default()
                        .with_name(t)
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(-1),
                        ]),
                ]),
        ),
        ApiKey::Metadata => {
            RequestKind::Metadata(MetadataRequest::default().with_topics(if version == 0 {
                Some(vec![])
            } else {
                None
            }))
        }
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(t)
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch if version >= 8 => {
            RequestKind::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
                offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(GroupId(s("g")))
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopics::default()
                            .with_name(t)
                            .with_partition_indexes(vec![0]),
                    ])),
            ]))
        }
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(s("g")))
                .with_topics(Some(vec![
                    offset_fetch_request::OffsetFetchRequestTopic::default()
                        .with_name(t)
                        .with_partition_indexes(vec![0]),
                ])),
        ),
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(if version < 4 {
                    s("g")
                } else {
                    StrBytes::default()
                })
                .with_coordinator_keys(if version >= 4 { vec![s("g")] } else { vec![] }),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(s(&format!("join-{n}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(s("consumer"))
                .with_protocols(vec![
                    join_group_request::JoinGroupRequestProtocol::default()
                        .with_name(s("range"))
                        .with_metadata(Bytes::from_static(b"m")),
                ]),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m")),
        ),
        ApiKey::LeaveGroup if version >= 3 => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_members(vec![
                    leave_group_request::MemberIdentity::default().with_member_id(s("m")),
                ]),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_member_id(s("m")),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(s("nobody")))
                .with_generation_id(1)
                .with_member_id(s("m")),
        ),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::ApiVersions => RequestKind::ApiVersions(
            ApiVersionsRequest::default()
                .with_client_software_name(s("test"))
                .with_client_software_version(s("1")),
        ),
        ApiKey::CreateTopics => RequestKind::CreateTopics(
            CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_topics_request::CreatableTopic::default()
                        .with_name(TopicName(s(&if topic == "t" {
                            format!("created-{version}-{n}")
                        } else {
                            "t".to_owned()
                        })))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ]),
        ),
        ApiKey::DeleteTopics if version >= 6 => {
            RequestKind::DeleteTopics(DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(TopicName(s("missing")))),
            ]))
        }
        ApiKey::DeleteTopics => RequestKind::DeleteTopics(
            DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("missing"))]),
        ),
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(t)
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(0),
                    ]),
            ]))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        ),
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic)),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(vec![
                        alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_value(Some(s("100000"))),
                    ]),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(topic))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(s("retention.ms"))
                            .with_config_operation(0)
                            .with_value(Some(s("200000"))),
                    ]),
            ]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(TopicName(s(if topic == "t" { "grow" } else { topic })))
                    .with_count(n as i32 + 2),
            ]))
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("nobody"))]),
        ),
        other => panic!("no request for {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_answered() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let (broker, addr, _dir) = start().await;
    let topic = broker
        .create_topic("t", 2, Default::default(), false)
        .await
        .unwrap();
    broker
        .create_topic("grow", 1, Default::default(), false)
        .await
        .unwrap();
    let topic_id = uuid::Uuid::from_bytes(topic.id);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut corr = 0;
    let mut n = 0;
    for &ServedApi {
        key: api, min, max, ..
    } in SUPPORTED_APIS
    {
        let min = if api == ApiKey::Produce { 3 } else { min };
        for version in min..=max {
            corr += 1;
            n += 1;
            let resp = call(
                &mut stream,
                api,
                version,
                corr,
                &request(api, version, "t", topic_id, n),
            )
            .await;
            if let ResponseKind::Fetch(f) = &resp {
                let records = f.responses[0].partitions[0].records.as_ref().unwrap();
                assert!(
                    !records.is_empty(),
                    "Fetch v{version} returned the produced batch"
                );
            }
            if let ResponseKind::Produce(p) = &resp {
                assert_eq!(
                    p.responses[0].partition_responses[0].error_code, 0,
                    "Produce v{version}"
                );
            }
        }
    }
    // Error responses carry fields of their own in some versions: every version of every API
    // once more, aimed at a topic that does not exist (or, for CreateTopics, one that does).
    let missing_id = uuid::Uuid::from_u128(42);
    for &ServedApi {
        key: api, min, max, ..
    } in SUPPORTED_APIS
    {
        let min = if api == ApiKey::Produce { 3 } else { min };
        for version in min..=max {
            corr += 1;
            n += 1;
            call(
                &mut stream,
                api,
                version,
                corr,
                &request(api, version, "missing", missing_id, n),
            )
            .await;
        }
    }
}
