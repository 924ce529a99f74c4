//! Static members (group.instance.id): taking over an instance id, fencing, leaving by it.

use bytes::Bytes;

use super::*;

fn static_req(group: &str, member_id: &str, instance: &str, metadata: &str) -> JoinRequest {
    let mut r = join_req(group, member_id, "app", metadata);
    r.group_instance_id = Some(instance.into());
    r.require_known_member_id = true;
    r
}

/// A Stable group of static member "i-a" and dynamic member "b"; returns (static, dynamic).
async fn stable_with_static(c: &Arc<GroupCoordinator>) -> (JoinResponse, JoinResponse) {
    let mut b = join_req("g", "", "b", "mb");
    b.require_known_member_id = false;
    // A static member gets its id at once, without MemberIdRequired.
    let joined = join_all(c, vec![static_req("g", "", "i-a", "ma"), b]).await;
    let (a, b) = (joined[0].clone(), joined[1].clone());
    assert!(a.member_id.starts_with("i-a-"));
    let assignments = [(a.member_id.as_str(), "A:a"), (b.member_id.as_str(), "A:b")];
    let (leader, follower) = if a.leader == a.member_id {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let f = spawn_sync(c, sync_req("g", follower, &[]));
    let mut req = sync_req("g", leader, &assignments);
    req.group_instance_id = leader.member_id.starts_with("i-a-").then(|| "i-a".into());
    c.sync(req).await.unwrap();
    f.await.unwrap().unwrap();
    (a, b)
}

#[tokio::test]
async fn a_static_member_rejoining_unchanged_takes_over_without_a_rebalance() {
    let c = coordinator(100);
    let (a, b) = stable_with_static(&c).await;
    let old_leader = a.leader.clone();

    let again = c.join(static_req("g", "", "i-a", "ma")).await.unwrap();
    assert_ne!(again.member_id, a.member_id);
    assert_eq!(again.generation_id, 1, "same generation");
    assert_eq!(
        again.leader, old_leader,
        "the old leader id, so no one reassigns"
    );
    assert!(again.members.is_empty());
    assert_eq!(c.describe("g").state, "Stable");
    assert_eq!(
        c.heartbeat("g", 1, &b.member_id, None).await,
        Ok(()),
        "no rebalance"
    );

    // The old id is fenced; the new one syncs and gets the old assignment.
    let fenced = c.heartbeat("g", 1, &a.member_id, Some("i-a")).await;
    assert_eq!(fenced, Err(GroupError::FencedInstanceId));
    let mut old_sync = sync_req("g", &a, &[]);
    old_sync.group_instance_id = Some("i-a".into());
    assert_eq!(c.sync(old_sync).await, Err(GroupError::FencedInstanceId));
    let mut new_sync = sync_req("g", &again, &[]);
    new_sync.group_instance_id = Some("i-a".into());
    assert_eq!(c.sync(new_sync).await, Ok(Bytes::from_static(b"A:a")));
    assert_eq!(
        c.heartbeat("g", 1, &again.member_id, Some("i-a")).await,
        Ok(())
    );
    assert_eq!(
        c.validate_commit("g", 1, &a.member_id, Some("i-a")),
        Err(GroupError::FencedInstanceId)
    );
}

#[tokio::test]
async fn a_static_member_rejoining_with_new_metadata_rebalances() {
    let c = coordinator(100);
    let (_a, b) = stable_with_static(&c).await;
    let again = spawn_join(&c, static_req("g", "", "i-a", "changed"));
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    assert_eq!(c.describe("g").state, "PreparingRebalance");
    let rb = c.join(rejoin_req("g", &b, "b", "mb")).await.unwrap();
    let ra = again.await.unwrap().unwrap();
    assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
    let leader = if ra.leader == ra.member_id { &ra } else { &rb };
    let meta = leader
        .members
        .iter()
        .find(|m| m.member_id == ra.member_id)
        .unwrap();
    assert_eq!(meta.metadata, Bytes::from_static(b"changed"));
    assert_eq!(meta.group_instance_id.as_deref(), Some("i-a"));
}

#[tokio::test]
async fn a_static_member_can_be_removed_by_its_instance_id() {
    let c = coordinator(100);
    let (a, b) = stable_with_static(&c).await;
    let left = c
        .leave("g", vec![(String::new(), Some("i-a".into()))])
        .await;
    assert_eq!(left, vec![(String::new(), Some("i-a".into()), Ok(()))]);
    assert_eq!(
        c.heartbeat("g", 1, &a.member_id, None).await,
        Err(GroupError::UnknownMemberId)
    );
    assert_eq!(
        c.heartbeat("g", 1, &b.member_id, None).await,
        Err(GroupError::RebalanceInProgress)
    );
    let left = c
        .leave("g", vec![(String::new(), Some("i-zz".into()))])
        .await;
    assert_eq!(left[0].2, Err(GroupError::UnknownMemberId));
}
