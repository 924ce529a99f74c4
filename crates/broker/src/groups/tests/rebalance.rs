//! Rebalances: joining, syncing, new members, expiring sessions, leaving, initial delays.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;

#[tokio::test]
async fn two_members_share_a_generation_and_the_leaders_assignment() {
    let c = coordinator(150);
    let joined = join_all(
        &c,
        vec![join_req("g", "", "a", "ma"), join_req("g", "", "b", "mb")],
    )
    .await;
    assert_eq!(joined[0].generation_id, 1);
    assert_eq!(joined[1].generation_id, 1);
    assert_eq!(joined[0].leader, joined[1].leader);
    assert_ne!(joined[0].member_id, joined[1].member_id);
    assert!(joined[0].member_id.starts_with("a-") && joined[1].member_id.starts_with("b-"));
    let (leader, mut followers) = leader_of(joined.clone());
    let follower = followers.pop().unwrap();
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    assert_eq!(leader.protocol_type.as_deref(), Some("consumer"));
    assert!(follower.members.is_empty());
    let mut metadata: Vec<(String, Bytes)> = leader
        .members
        .iter()
        .map(|m| (m.member_id.clone(), m.metadata.clone()))
        .collect();
    metadata.sort();
    let mut expected = vec![
        (joined[0].member_id.clone(), Bytes::from_static(b"ma")),
        (joined[1].member_id.clone(), Bytes::from_static(b"mb")),
    ];
    expected.sort();
    assert_eq!(metadata, expected);

    // The follower's SyncGroup waits for the leader's.
    let f = spawn_sync(&c, sync_req("g", &follower, &[]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!f.is_finished(), "follower sync waits for the leader");
    assert_eq!(c.describe("g").state, "CompletingRebalance");
    let assignments = [
        (leader.member_id.as_str(), "for-leader"),
        (follower.member_id.as_str(), "for-follower"),
    ];
    let mine = c.sync(sync_req("g", &leader, &assignments)).await;
    assert_eq!(mine, Ok(Bytes::from_static(b"for-leader")));
    assert_eq!(f.await.unwrap(), Ok(Bytes::from_static(b"for-follower")));

    for m in [&leader, &follower] {
        assert_eq!(c.heartbeat("g", 1, &m.member_id, None).await, Ok(()));
    }
    let d = c.describe("g");
    assert_eq!((d.state, d.protocol.as_str()), ("Stable", "range"));
    let f = d
        .members
        .iter()
        .find(|m| m.member_id == follower.member_id)
        .unwrap();
    assert_eq!(f.assignment, Bytes::from_static(b"for-follower"));
    assert!(follower.member_id.starts_with(&format!("{}-", f.client_id)));
    assert_eq!(f.client_host, "/127.0.0.1");
    let listed = c.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].group_id.as_str(), listed[0].state),
        ("g", "Stable")
    );
    assert_eq!(listed[0].protocol_type, "consumer");
}

#[tokio::test]
async fn a_new_member_makes_heartbeats_ask_to_rejoin_until_everyone_has() {
    let c = coordinator(100);
    let (leader, follower) = stable_pair(&c, "g").await;
    let third = spawn_join(&c, join_req("g", "", "c", "mc"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(c.describe("g").state, "PreparingRebalance");
    for m in [&leader, &follower] {
        let hb = c.heartbeat("g", 1, &m.member_id, None).await;
        assert_eq!(hb, Err(GroupError::RebalanceInProgress));
    }
    // Syncing or committing in the old generation during the rebalance.
    let stale = c.sync(sync_req("g", &follower, &[])).await;
    assert_eq!(stale, Err(GroupError::RebalanceInProgress));
    assert_eq!(c.validate_commit("g", 1, &follower.member_id, None), Ok(()));

    let l = spawn_join(&c, rejoin_req("g", &leader, "a", "ma"));
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        !third.is_finished() && !l.is_finished(),
        "waits for the follower too"
    );
    let f = c.join(rejoin_req("g", &follower, "b", "mb")).await.unwrap();
    let l = l.await.unwrap().unwrap();
    let t = third.await.unwrap().unwrap();
    for j in [&l, &f, &t] {
        assert_eq!(j.generation_id, 2);
        assert_eq!(j.leader, leader.member_id, "the leader stays leader");
    }
    assert_eq!(l.members.len(), 3);
    assert!(f.members.is_empty() && t.members.is_empty());
    let hb = c.heartbeat("g", 1, &f.member_id, None).await;
    assert_eq!(hb, Err(GroupError::IllegalGeneration));
    assert_eq!(c.heartbeat("g", 2, &f.member_id, None).await, Ok(()));
}

#[tokio::test]
async fn a_member_that_stops_heartbeating_is_removed_after_its_session() {
    let c = coordinator(100);
    let mut a = join_req("g", "", "a", "ma");
    let mut b = join_req("g", "", "b", "mb");
    a.session_timeout_ms = 400;
    b.session_timeout_ms = 400;
    let joined = join_all(&c, vec![a, b]).await;
    let (a, b) = (&joined[0], &joined[1]);
    let leader = if a.leader == a.member_id { a } else { b };
    let sa = spawn_sync(&c, sync_req("g", a, &[]));
    let sb = spawn_sync(&c, sync_req("g", b, &[]));
    let _ = c.sync(sync_req("g", leader, &[])).await;
    sa.await.unwrap().unwrap();
    sb.await.unwrap().unwrap();
    let b_silent_since = Instant::now();

    // Only `a` heartbeats; `b` must be dropped after about 400 ms.
    let dropped = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match c.heartbeat("g", 1, &a.member_id, None).await {
            Ok(()) => assert!(
                b_silent_since.elapsed() < Duration::from_secs(3),
                "b never expired"
            ),
            Err(GroupError::RebalanceInProgress) => break b_silent_since.elapsed(),
            Err(e) => panic!("unexpected heartbeat error {e}"),
        }
    };
    assert!(
        dropped >= Duration::from_millis(380),
        "expired early: {dropped:?}"
    );
    let rejoined = c.join(rejoin_req("g", a, "a", "ma")).await.unwrap();
    assert_eq!(rejoined.generation_id, 2);
    assert_eq!(rejoined.members.len(), 1);
    assert_eq!(rejoined.leader, a.member_id);
    let hb = c.heartbeat("g", 2, &b.member_id, None).await;
    assert_eq!(hb, Err(GroupError::UnknownMemberId));
}

#[tokio::test]
async fn members_that_do_not_rejoin_in_the_rebalance_timeout_are_dropped() {
    let c = coordinator(100);
    let mut a = join_req("g", "", "a", "ma");
    let mut b = join_req("g", "", "b", "mb");
    a.rebalance_timeout_ms = 300;
    b.rebalance_timeout_ms = 300;
    let joined = join_all(&c, vec![a.clone(), b]).await;
    let sa = spawn_sync(&c, sync_req("g", &joined[0], &[]));
    let sb = spawn_sync(&c, sync_req("g", &joined[1], &[]));
    let leader = if joined[0].leader == joined[0].member_id {
        &joined[0]
    } else {
        &joined[1]
    };
    let _ = c.sync(sync_req("g", leader, &[])).await;
    sa.await.unwrap().unwrap();
    sb.await.unwrap().unwrap();

    let started = Instant::now();
    let mut third = join_req("g", "", "c", "mc");
    third.rebalance_timeout_ms = 300;
    let t = spawn_join(&c, third);
    a.member_id = joined[0].member_id.clone();
    let ra = c.join(a).await.unwrap();
    let rt = t.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(280),
        "completed before the timeout: {took:?}"
    );
    assert_eq!((ra.generation_id, rt.generation_id), (2, 2));
    let leader = if ra.leader == ra.member_id { &ra } else { &rt };
    let mut ids: Vec<&str> = leader
        .members
        .iter()
        .map(|m| m.member_id.as_str())
        .collect();
    ids.sort();
    let mut expected = vec![ra.member_id.as_str(), rt.member_id.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "b was dropped");
    let hb = c.heartbeat("g", 2, &joined[1].member_id, None).await;
    assert_eq!(hb, Err(GroupError::UnknownMemberId));
}

#[tokio::test]
async fn leaving_rebalances_the_rest_and_the_last_leaves_it_empty() {
    let c = coordinator(100);
    let (leader, follower) = stable_pair(&c, "g").await;
    let left = c.leave("g", vec![(follower.member_id.clone(), None)]).await;
    assert_eq!(left, vec![(follower.member_id.clone(), None, Ok(()))]);
    let hb = c.heartbeat("g", 1, &leader.member_id, None).await;
    assert_eq!(hb, Err(GroupError::RebalanceInProgress));
    let again = c.join(rejoin_req("g", &leader, "a", "ma")).await.unwrap();
    assert_eq!((again.generation_id, again.members.len()), (2, 1));

    let left = c
        .leave(
            "g",
            vec![(leader.member_id.clone(), None), ("nobody".into(), None)],
        )
        .await;
    assert_eq!(left[0].2, Ok(()));
    assert_eq!(left[1].2, Err(GroupError::UnknownMemberId));
    let d = c.describe("g");
    assert_eq!((d.state, d.members.len()), ("Empty", 0));
    assert_eq!(d.protocol_type, "consumer");
    let hb = c.heartbeat("g", 2, &leader.member_id, None).await;
    assert_eq!(hb, Err(GroupError::UnknownMemberId));
    let unknown = c.leave("other", vec![("x".into(), None)]).await;
    assert_eq!(unknown[0].2, Err(GroupError::UnknownMemberId));
}

#[tokio::test]
async fn the_initial_delay_collects_members_started_together() {
    let c = coordinator(300);
    let started = Instant::now();
    let a = spawn_join(&c, join_req("g", "", "a", "ma"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let b = c.join(join_req("g", "", "b", "mb")).await.unwrap();
    let a = a.await.unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(290));
    assert_eq!((a.generation_id, b.generation_id), (1, 1));
    let leader = if a.leader == a.member_id { &a } else { &b };
    assert_eq!(leader.members.len(), 2);
}

#[tokio::test]
async fn the_initial_delay_is_extended_while_members_keep_arriving() {
    // Joins at 0, 200 and 400 ms with a 300 ms delay: the first delay ends at 300 with a new
    // member seen, so it runs again to 600, and again to 900 because of the third.
    let c = coordinator(300);
    let started = Instant::now();
    let a = spawn_join(&c, join_req("g", "", "a", "ma"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = spawn_join(&c, join_req("g", "", "b", "mb"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let third = c.join(join_req("g", "", "c", "mc")).await.unwrap();
    let took = started.elapsed();
    let (a, b) = (a.await.unwrap().unwrap(), b.await.unwrap().unwrap());
    for j in [&a, &b, &third] {
        assert_eq!(j.generation_id, 1, "all three in the first generation");
    }
    assert!(took >= Duration::from_millis(850), "took {took:?}");

    // The extensions stop at the rebalance timeout (here 500 ms) however many keep coming.
    let c = coordinator(200);
    let started = Instant::now();
    let mut first = join_req("h", "", "a", "ma");
    first.rebalance_timeout_ms = 500;
    let first = spawn_join(&c, first);
    for i in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if first.is_finished() {
            break;
        }
        let mut r = join_req("h", "", &format!("m{i}"), "m");
        r.rebalance_timeout_ms = 500;
        drop(spawn_join(&c, r));
    }
    first.await.unwrap().unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(1_000), "not bounded: {took:?}");
}
