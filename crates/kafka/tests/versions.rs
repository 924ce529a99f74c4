//! Every advertised version of every API gets a response that the `kafka-protocol` crate's
//! client side decodes: a request of each (API, version) is sent to a real listener.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use strata_broker::{Broker, BrokerConfig};
use strata_kafka::{Kafka, KafkaConfig, KafkaMetrics, supported_versions};
use strata_record::{BatchBuilder, Compression};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

fn batch() -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    b.push(Some(b"k"), Some(b"v"), &[], 1_000);
    b.build().unwrap()
}

/// A request of `api` at `version` that exercises the handler against topic `t`.
fn request(api: ApiKey, version: i16, topic_id: uuid::Uuid, n: usize) -> RequestKind {
    let t = TopicName(s("t"));
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
                .with_group_id(GroupId(s(&format!("join-{version}"))))
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
                        .with_name(TopicName(s(&format!("created-{version}-{n}"))))
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
                    .with_resource_name(s("t")),
            ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s("t"))
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
                    .with_resource_name(s("t"))
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
                    .with_name(TopicName(s("grow")))
                    .with_count(n as i32 + 2),
            ]))
        }
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default().with_groups_names(vec![GroupId(s("nobody"))]),
        ),
        other => panic!("no request for {other:?}"),
    }
}

async fn call(
    stream: &mut TcpStream,
    api: ApiKey,
    version: i16,
    corr: i32,
    req: &RequestKind,
) -> ResponseKind {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(s("versions-test")))
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    stream.write_all(&buf).await.unwrap();
    let read = async {
        let size = stream.read_i32().await?;
        let mut body = BytesMut::zeroed(size as usize);
        stream.read_exact(&mut body).await?;
        std::io::Result::Ok(body.freeze())
    };
    let mut body = tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .unwrap_or_else(|_| panic!("{api:?} v{version}: no response"))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: connection closed: {e}"));
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
    assert_eq!(header.correlation_id, corr, "{api:?} v{version}");
    let resp = ResponseKind::decode(api, &mut body, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version}: undecodable response: {e}"));
    assert!(
        !body.has_remaining(),
        "{api:?} v{version}: {} trailing bytes",
        body.remaining()
    );
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_is_answered() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.group_initial_rebalance_delay_ms = 10;
    let broker = Broker::open(config).await.unwrap();
    let topic = broker
        .create_topic("t", 2, Default::default(), false)
        .await
        .unwrap();
    broker
        .create_topic("grow", 1, Default::default(), false)
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let kafka = Kafka::new(
        broker.clone(),
        KafkaConfig {
            advertised_host: "127.0.0.1".into(),
            advertised_port: i32::from(addr.port()),
            max_request_bytes: 1 << 20,
        },
        KafkaMetrics::unregistered(),
    );
    tokio::spawn(kafka.serve(listener));
    let topic_id = uuid::Uuid::from_bytes(topic.id);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut corr = 0;
    let mut n = 0;
    for (api, min, max) in supported_versions() {
        let min = if api == ApiKey::Produce { 3 } else { min };
        for version in min..=max {
            corr += 1;
            n += 1;
            let resp = call(
                &mut stream,
                api,
                version,
                corr,
                &request(api, version, topic_id, n),
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
}
