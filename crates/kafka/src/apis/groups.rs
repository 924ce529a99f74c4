//! FindCoordinator and the consumer-group APIs, answered by the broker's group coordinator.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use strata_broker::groups::{GroupError, JoinRequest, SyncRequest};

use super::{Client, str_bytes};
use crate::Kafka;
use crate::errors::{broker_code, code, group_code};

/// Kafka's FindCoordinator key type for transactions.
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(super) fn find_coordinator(
    kafka: &Kafka,
    version: i16,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let node = BrokerId(kafka.broker.node_id());
    let host = str_bytes(kafka.config.advertised_host.clone());
    let port = kafka.config.advertised_port;
    let error = if req.key_type == KEY_TYPE_TRANSACTION {
        code::COORDINATOR_NOT_AVAILABLE
    } else {
        code::NONE
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(node)
                    .with_host(host.clone())
                    .with_port(port)
                    .with_error_code(error)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(error)
        .with_node_id(node)
        .with_host(host)
        .with_port(port)
}

pub(super) async fn join(
    kafka: &Kafka,
    version: i16,
    client: &Client,
    req: JoinGroupRequest,
) -> JoinGroupResponse {
    let request = JoinRequest {
        group_id: req.group_id.0.as_str().to_owned(),
        member_id: req.member_id.as_str().to_owned(),
        group_instance_id: req.group_instance_id.map(|s| s.as_str().to_owned()),
        client_id: client.id.clone(),
        client_host: format!("/{}", client.host),
        session_timeout_ms: req.session_timeout_ms,
        // Before v1 there was no separate rebalance timeout.
        rebalance_timeout_ms: if version >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: req.protocol_type.as_str().to_owned(),
        protocols: req
            .protocols
            .into_iter()
            .map(|p| (p.name.as_str().to_owned(), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
        reason: req.reason.map(|s| s.as_str().to_owned()),
    };
    let resp = JoinGroupResponse::default().with_generation_id(-1);
    match kafka.broker.groups().join(request).await {
        Ok(j) => resp
            .with_generation_id(j.generation_id)
            .with_protocol_type(j.protocol_type.map(str_bytes).filter(|_| version >= 7))
            .with_protocol_name(j.protocol_name.map(str_bytes))
            .with_leader(str_bytes(j.leader))
            .with_skip_assignment(version >= 9 && j.skip_assignment)
            .with_member_id(str_bytes(j.member_id))
            .with_members(
                j.members
                    .into_iter()
                    .map(|m| {
                        JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(m.member_id))
                            .with_group_instance_id(
                                m.group_instance_id.map(str_bytes).filter(|_| version >= 5),
                            )
                            .with_metadata(m.metadata)
                    })
                    .collect(),
            ),
        Err(GroupError::MemberIdRequired(id)) => resp
            .with_error_code(code::MEMBER_ID_REQUIRED)
            .with_member_id(str_bytes(id)),
        Err(e) => resp.with_error_code(group_code(&e)),
    }
}

pub(super) async fn sync(kafka: &Kafka, version: i16, req: SyncGroupRequest) -> SyncGroupResponse {
    // The protocol fields exist from v5.
    let protocol_type = req.protocol_type.clone().filter(|_| version >= 5);
    let protocol_name = req.protocol_name.clone().filter(|_| version >= 5);
    let request = SyncRequest {
        group_id: req.group_id.0.as_str().to_owned(),
        generation_id: req.generation_id,
        member_id: req.member_id.as_str().to_owned(),
        group_instance_id: req.group_instance_id.map(|s| s.as_str().to_owned()),
        protocol_type: req.protocol_type.map(|s| s.as_str().to_owned()),
        protocol_name: req.protocol_name.map(|s| s.as_str().to_owned()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.as_str().to_owned(), a.assignment))
            .collect(),
    };
    match kafka.broker.groups().sync(request).await {
        Ok(assignment) => SyncGroupResponse::default()
            .with_protocol_type(protocol_type)
            .with_protocol_name(protocol_name)
            .with_assignment(assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(group_code(&e)),
    }
}

pub(super) async fn heartbeat(kafka: &Kafka, req: HeartbeatRequest) -> HeartbeatResponse {
    let r = kafka
        .broker
        .groups()
        .heartbeat(
            req.group_id.0.as_str(),
            req.generation_id,
            req.member_id.as_str(),
            req.group_instance_id.as_ref().map(|s| s.as_str()),
        )
        .await;
    HeartbeatResponse::default().with_error_code(r.err().map_or(code::NONE, |e| group_code(&e)))
}

pub(super) async fn leave(
    kafka: &Kafka,
    version: i16,
    req: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        req.members
            .into_iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_owned(),
                    m.group_instance_id.map(|s| s.as_str().to_owned()),
                )
            })
            .collect()
    } else {
        vec![(req.member_id.as_str().to_owned(), None)]
    };
    let results = kafka
        .broker
        .groups()
        .leave(req.group_id.0.as_str(), members)
        .await;
    if version >= 3 {
        let members = results
            .into_iter()
            .map(|(id, instance, r)| {
                MemberResponse::default()
                    .with_member_id(str_bytes(id))
                    .with_group_instance_id(instance.map(str_bytes))
                    .with_error_code(r.err().map_or(code::NONE, |e| group_code(&e)))
            })
            .collect();
        return LeaveGroupResponse::default().with_members(members);
    }
    let error = results
        .into_iter()
        .find_map(|(_, _, r)| r.err())
        .map_or(code::NONE, |e| group_code(&e));
    LeaveGroupResponse::default().with_error_code(error)
}

pub(super) fn list(kafka: &Kafka, version: i16, req: ListGroupsRequest) -> ListGroupsResponse {
    let wanted: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let mut groups: Vec<ListedGroup> = kafka
        .broker
        .groups()
        .list()
        .into_iter()
        .filter(|g| wanted.is_empty() || wanted.contains(&g.state.to_lowercase()))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id)))
                .with_protocol_type(str_bytes(g.protocol_type))
                .with_group_state(if version >= 4 {
                    str_bytes(g.state)
                } else {
                    Default::default()
                })
        })
        .collect();
    // Groups known only by their committed offsets (simple consumers) are listed as Empty.
    for name in kafka.broker.groups_with_offsets() {
        if !groups.iter().any(|g| g.group_id.0.as_str() == name)
            && (wanted.is_empty() || wanted.iter().any(|s| s == "empty"))
        {
            groups.push(
                ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(name)))
                    .with_group_state(if version >= 4 {
                        str_bytes("Empty")
                    } else {
                        Default::default()
                    }),
            );
        }
    }
    ListGroupsResponse::default().with_groups(groups)
}

pub(super) fn describe(
    kafka: &Kafka,
    version: i16,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .into_iter()
        .map(|id| {
            let d = kafka.broker.groups().describe(id.0.as_str());
            DescribedGroup::default()
                .with_group_id(id)
                .with_group_state(str_bytes(d.state))
                .with_protocol_type(str_bytes(d.protocol_type))
                .with_protocol_data(str_bytes(d.protocol))
                .with_authorized_operations(i32::MIN)
                .with_members(
                    d.members
                        .into_iter()
                        .map(|m| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(m.member_id))
                                .with_group_instance_id(
                                    m.group_instance_id.map(str_bytes).filter(|_| version >= 4),
                                )
                                .with_client_id(str_bytes(m.client_id))
                                .with_client_host(str_bytes(m.client_host))
                                .with_member_metadata(m.metadata)
                                .with_member_assignment(m.assignment)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub(super) async fn delete(kafka: &Kafka, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in req.groups_names {
        let name = id.0.as_str().to_owned();
        let known = kafka.broker.groups_with_offsets().contains(&name)
            || kafka
                .broker
                .groups()
                .list()
                .iter()
                .any(|g| g.group_id == name);
        let error = if !known {
            code::GROUP_ID_NOT_FOUND
        } else {
            match kafka.broker.groups().delete(&name).await {
                Ok(()) | Err(GroupError::GroupIdNotFound) => {
                    match kafka.broker.delete_group_offsets(&name).await {
                        Ok(()) => code::NONE,
                        Err(e) => broker_code(&e),
                    }
                }
                Err(e) => group_code(&e),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(error),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
