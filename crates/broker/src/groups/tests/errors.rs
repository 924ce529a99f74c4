//! Refusals: member ids, protocols, generations, session timeouts, commits and deletes.

use std::time::Duration;

use bytes::Bytes;

use super::*;

#[tokio::test]
async fn a_new_member_gets_an_id_to_rejoin_with() {
    let c = coordinator(0);
    let mut req = join_req("g", "", "client-1", "m");
    req.require_known_member_id = true;
    let id = match c.join(req.clone()).await {
        Err(GroupError::MemberIdRequired(id)) => id,
        other => panic!("expected MemberIdRequired, got {other:?}"),
    };
    assert!(
        id.starts_with("client-1-") && id.len() > "client-1-".len() + 30,
        "{id}"
    );
    assert_eq!(
        c.describe("g").members.len(),
        0,
        "pending, not yet a member"
    );
    req.member_id = id.clone();
    let joined = c.join(req).await.unwrap();
    assert_eq!(joined.member_id, id);
    assert_eq!(
        (joined.generation_id, joined.leader.as_str()),
        (1, id.as_str())
    );
    assert_eq!(joined.members.len(), 1);

    // An id the group never handed out is refused.
    let mut stranger = join_req("g", "made-up", "x", "m");
    stranger.require_known_member_id = true;
    assert_eq!(c.join(stranger).await, Err(GroupError::UnknownMemberId));
    let unknown_group = c.join(join_req("nope", "made-up", "x", "m")).await;
    assert_eq!(unknown_group, Err(GroupError::UnknownMemberId));
}

#[tokio::test]
async fn an_unused_member_id_stops_holding_up_the_rebalance() {
    let c = coordinator(0);
    let a = c.join(join_req("g", "", "a", "ma")).await.unwrap();
    let _ = c.sync(sync_req("g", &a, &[])).await.unwrap();
    // A second client gets an id and never comes back (session 200 ms).
    let mut b = join_req("g", "", "b", "mb");
    b.require_known_member_id = true;
    b.session_timeout_ms = 200;
    assert!(matches!(
        c.join(b).await,
        Err(GroupError::MemberIdRequired(_))
    ));
    // The leader's rejoin alone cannot complete the rebalance while the id is pending...
    let started = std::time::Instant::now();
    let again = c.join(rejoin_req("g", &a, "a", "ma")).await.unwrap();
    // ...until the id expires.
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!((again.generation_id, again.members.len()), (2, 1));

    // An id handed out for a new group and never used leaves no group behind.
    let mut lone = join_req("lone", "", "x", "m");
    lone.require_known_member_id = true;
    lone.session_timeout_ms = 100;
    assert!(matches!(
        c.join(lone).await,
        Err(GroupError::MemberIdRequired(_))
    ));
    assert_eq!(c.describe("lone").state, "Empty");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(c.describe("lone").state, "Dead");
}

#[tokio::test]
async fn protocols_must_fit_the_group() {
    let c = coordinator(100);
    let mut a = join_req("g", "", "a", "ma");
    a.protocols = vec![
        ("range".into(), Bytes::new()),
        ("roundrobin".into(), Bytes::new()),
    ];
    let a = spawn_join(&c, a);
    tokio::time::sleep(Duration::from_millis(20)).await;

    let mut other_type = join_req("g", "", "b", "mb");
    other_type.protocol_type = "connect".into();
    assert_eq!(
        c.join(other_type).await,
        Err(GroupError::InconsistentGroupProtocol)
    );
    let mut no_common = join_req("g", "", "b", "mb");
    no_common.protocols = vec![("sticky".into(), Bytes::new())];
    assert_eq!(
        c.join(no_common).await,
        Err(GroupError::InconsistentGroupProtocol)
    );
    let mut none = join_req("h", "", "b", "mb");
    none.protocols.clear();
    assert_eq!(
        c.join(none).await,
        Err(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        c.describe("h").state,
        "Dead",
        "a refused join leaves no group behind"
    );

    // Votes: a prefers range, b and d prefer roundrobin; roundrobin wins.
    let mut b = join_req("g", "", "b", "mb");
    b.protocols = vec![
        ("roundrobin".into(), Bytes::from_static(b"rb")),
        ("range".into(), Bytes::new()),
    ];
    let b = spawn_join(&c, b);
    let mut d = join_req("g", "", "d", "md");
    d.protocols = vec![
        ("sticky".into(), Bytes::new()),
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    let d = c.join(d).await.unwrap();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    for j in [&a, &b, &d] {
        assert_eq!(j.protocol_name.as_deref(), Some("roundrobin"));
    }
    let leader = [&a, &b, &d]
        .into_iter()
        .find(|j| j.leader == j.member_id)
        .unwrap();
    let meta_b = leader
        .members
        .iter()
        .find(|m| m.member_id == b.member_id)
        .unwrap();
    assert_eq!(
        meta_b.metadata,
        Bytes::from_static(b"rb"),
        "metadata of the chosen protocol"
    );
}

#[tokio::test]
async fn stale_generations_and_unknown_members_are_refused() {
    let c = coordinator(100);
    let (leader, follower) = stable_pair(&c, "g").await;
    let mut stale = sync_req("g", &follower, &[]);
    stale.generation_id = 0;
    assert_eq!(c.sync(stale).await, Err(GroupError::IllegalGeneration));
    let mut wrong = sync_req("g", &follower, &[]);
    wrong.protocol_name = Some("roundrobin".into());
    assert_eq!(
        c.sync(wrong).await,
        Err(GroupError::InconsistentGroupProtocol)
    );
    assert_eq!(
        c.heartbeat("g", 7, &leader.member_id, None).await,
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        c.heartbeat("g", 1, "ghost", None).await,
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("none", 1, "ghost", None).await,
        Err(GroupError::UnknownMemberId)
    );
    let mut ghost = sync_req("g", &follower, &[]);
    ghost.member_id = "ghost".into();
    assert_eq!(c.sync(ghost).await, Err(GroupError::UnknownMemberId));
    // A Stable group's follower can sync again and gets its assignment.
    assert_eq!(
        c.sync(sync_req("g", &follower, &[])).await,
        Ok(Bytes::from_static(b"A:follower"))
    );
}

#[tokio::test]
async fn bad_session_timeouts_and_group_ids_are_refused() {
    let c = GroupCoordinator::new(0);
    let mut short = join_req("g", "", "a", "m");
    short.session_timeout_ms = 5_999;
    assert_eq!(c.join(short).await, Err(GroupError::InvalidSessionTimeout));
    let mut long = join_req("g", "", "a", "m");
    long.session_timeout_ms = 1_800_001;
    assert_eq!(c.join(long).await, Err(GroupError::InvalidSessionTimeout));
    assert_eq!(
        c.join(join_req("", "", "a", "m")).await,
        Err(GroupError::InvalidGroupId)
    );
    assert_eq!(
        c.heartbeat("", 1, "m", None).await,
        Err(GroupError::InvalidGroupId)
    );
    assert_eq!(c.describe("g").state, "Dead");
}

#[tokio::test]
async fn commits_follow_kafkas_rules() {
    let c = coordinator(100);
    // No group: a standalone consumer commits; a generation names a group that is not there.
    assert_eq!(c.validate_commit("solo", -1, "", None), Ok(()));
    assert_eq!(
        c.validate_commit("solo", 3, "m", None),
        Err(GroupError::IllegalGeneration)
    );

    let (leader, follower) = stable_pair(&c, "g").await;
    assert_eq!(
        c.validate_commit("g", -1, "", None),
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(c.validate_commit("g", 1, &follower.member_id, None), Ok(()));
    assert_eq!(
        c.validate_commit("g", 0, &follower.member_id, None),
        Err(GroupError::IllegalGeneration)
    );
    assert_eq!(
        c.validate_commit("g", 1, "ghost", None),
        Err(GroupError::UnknownMemberId)
    );

    // PreparingRebalance: members of the current generation may still commit.
    let third = spawn_join(&c, join_req("g", "", "c", "mc"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(c.validate_commit("g", 1, &leader.member_id, None), Ok(()));
    // CompletingRebalance: they must finish the rebalance first.
    let l = spawn_join(&c, rejoin_req("g", &leader, "a", "ma"));
    let f = c.join(rejoin_req("g", &follower, "b", "mb")).await.unwrap();
    let (l, _t) = (l.await.unwrap().unwrap(), third.await.unwrap().unwrap());
    assert_eq!(c.describe("g").state, "CompletingRebalance");
    assert_eq!(
        c.validate_commit("g", 2, &f.member_id, None),
        Err(GroupError::RebalanceInProgress)
    );

    // Empty: anyone may commit again.
    let everyone: Vec<_> = c
        .describe("g")
        .members
        .into_iter()
        .map(|m| (m.member_id, None))
        .collect();
    let _ = c.leave("g", everyone).await;
    assert_eq!(c.describe("g").state, "Empty");
    assert_eq!(c.validate_commit("g", -1, "", None), Ok(()));
    assert_eq!(
        c.validate_commit("g", 2, &l.member_id, None),
        Err(GroupError::UnknownMemberId)
    );
}

#[tokio::test]
async fn only_empty_groups_can_be_deleted() {
    let c = coordinator(100);
    assert_eq!(c.delete("none").await, Err(GroupError::GroupIdNotFound));
    let (leader, follower) = stable_pair(&c, "g").await;
    assert_eq!(c.delete("g").await, Err(GroupError::NonEmptyGroup));
    let members = vec![
        (leader.member_id.clone(), None),
        (follower.member_id.clone(), None),
    ];
    let _ = c.leave("g", members).await;
    assert_eq!(c.delete("g").await, Ok(()));
    assert_eq!(c.describe("g").state, "Dead");
    assert!(c.list().is_empty());
    // A fresh group of the same name starts over.
    let again = c.join(join_req("g", "", "a", "ma")).await.unwrap();
    assert_eq!(again.generation_id, 1);
}
