//! Tests of the group coordinator, with real timers and small timeouts.

mod clients;
mod errors;
mod persistence;
mod rebalance;
mod statics;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{Config, GroupCoordinator, GroupError, JoinRequest, JoinResponse, SyncRequest};

/// A coordinator with the given initial delay that accepts session timeouts from 50 ms.
fn coordinator(initial_delay_ms: u64) -> Arc<GroupCoordinator> {
    Arc::new(GroupCoordinator::with_config(Config {
        initial_rebalance_delay: Duration::from_millis(initial_delay_ms),
        min_session_timeout_ms: 50,
        max_session_timeout_ms: 1_800_000,
    }))
}

/// A consumer's JoinGroup offering `range` with `metadata`: session 10 s, rebalance 2 s.
fn join_req(group: &str, member_id: &str, client: &str, metadata: &str) -> JoinRequest {
    JoinRequest {
        group_id: group.into(),
        member_id: member_id.into(),
        group_instance_id: None,
        client_id: client.into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 2_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::copy_from_slice(metadata.as_bytes()))],
        require_known_member_id: false,
        reason: None,
    }
}

fn sync_req(group: &str, joined: &JoinResponse, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: group.into(),
        generation_id: joined.generation_id,
        member_id: joined.member_id.clone(),
        group_instance_id: None,
        protocol_type: Some("consumer".into()),
        protocol_name: joined.protocol_name.clone(),
        assignments: assignments
            .iter()
            .map(|(m, a)| ((*m).to_owned(), Bytes::copy_from_slice(a.as_bytes())))
            .collect(),
    }
}

/// Starts a JoinGroup in its own task.
fn spawn_join(
    c: &Arc<GroupCoordinator>,
    req: JoinRequest,
) -> tokio::task::JoinHandle<Result<JoinResponse, GroupError>> {
    let c = Arc::clone(c);
    tokio::spawn(async move { c.join(req).await })
}

/// Starts a SyncGroup in its own task.
fn spawn_sync(
    c: &Arc<GroupCoordinator>,
    req: SyncRequest,
) -> tokio::task::JoinHandle<Result<Bytes, GroupError>> {
    let c = Arc::clone(c);
    tokio::spawn(async move { c.sync(req).await })
}

/// Joins `reqs` together (the coordinator's initial delay must cover them) and returns the
/// answers in request order.
async fn join_all(c: &Arc<GroupCoordinator>, reqs: Vec<JoinRequest>) -> Vec<JoinResponse> {
    let tasks: Vec<_> = reqs.into_iter().map(|r| spawn_join(c, r)).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap().expect("join succeeds"));
    }
    out
}

/// Splits join answers into (leader, followers).
fn leader_of(joined: Vec<JoinResponse>) -> (JoinResponse, Vec<JoinResponse>) {
    let (leaders, followers): (Vec<_>, Vec<_>) =
        joined.into_iter().partition(|j| j.leader == j.member_id);
    assert_eq!(leaders.len(), 1, "exactly one leader");
    (leaders.into_iter().next().unwrap(), followers)
}

/// Group `group` with members "a" and "b" (metadata "ma", "mb") made Stable, assignments
/// "A:<client>"; returns (leader, follower).
async fn stable_pair(c: &Arc<GroupCoordinator>, group: &str) -> (JoinResponse, JoinResponse) {
    let joined = join_all(
        c,
        vec![
            join_req(group, "", "a", "ma"),
            join_req(group, "", "b", "mb"),
        ],
    )
    .await;
    let (leader, mut followers) = leader_of(joined);
    let follower = followers.pop().unwrap();
    let assignments = [
        (leader.member_id.as_str(), "A:leader"),
        (follower.member_id.as_str(), "A:follower"),
    ];
    let f = spawn_sync(c, sync_req(group, &follower, &[]));
    let mine = c
        .sync(sync_req(group, &leader, &assignments))
        .await
        .unwrap();
    assert_eq!(mine, Bytes::from_static(b"A:leader"));
    assert_eq!(f.await.unwrap().unwrap(), Bytes::from_static(b"A:follower"));
    assert_eq!(c.describe(group).state, "Stable");
    (leader, follower)
}

/// Rejoin request for an existing member, same metadata as in `join_req`.
fn rejoin_req(group: &str, joined: &JoinResponse, client: &str, metadata: &str) -> JoinRequest {
    join_req(group, &joined.member_id, client, metadata)
}
