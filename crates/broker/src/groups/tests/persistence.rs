//! Group metadata in the state log: the stored form, and groups surviving a broker restart.

use std::time::Instant;

use bytes::Bytes;

use super::*;
use crate::groups::group::{Group, State};
use crate::groups::persist::{decode, encode};
use crate::{Broker, BrokerConfig, CommittedOffset};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    let mut config = BrokerConfig::new(dir);
    config.group_initial_rebalance_delay_ms = 200;
    Broker::open(config).await.unwrap()
}

#[tokio::test]
async fn the_stored_form_round_trips() {
    let c = coordinator(100);
    let (leader, _) = stable_pair(&c, "team/app").await;
    let groups = c.shared.groups.lock();
    let g = groups.get("team/app").unwrap();
    let stored = encode(g);
    let text = std::str::from_utf8(&stored).unwrap();
    assert!(
        text.contains("\"generation\":1") && text.contains("\"protocol\":\"range\""),
        "{text}"
    );
    // "A:leader" in hex.
    assert!(text.contains("\"413a6c6561646572\""), "{text}");
    let back = decode("group/team/app", &stored, Instant::now()).unwrap();
    assert_eq!(back.id, "team/app");
    assert_eq!(back.state, State::Stable);
    assert_eq!(
        (back.generation, back.leader.as_deref()),
        (1, Some(leader.member_id.as_str()))
    );
    assert_eq!(back.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(back.members.len(), 2);
    for (id, m) in &g.members {
        let r = &back.members[id];
        assert_eq!(
            (&r.client_id, &r.client_host),
            (&m.client_id, &m.client_host)
        );
        assert_eq!((&r.protocols, &r.assignment), (&m.protocols, &m.assignment));
        assert_eq!(
            (r.session_timeout, r.rebalance_timeout),
            (m.session_timeout, m.rebalance_timeout)
        );
    }
    drop(groups);

    let empty = encode(&Group::new("e".into()));
    let e = decode("group/e", &empty, Instant::now()).unwrap();
    assert_eq!((e.state, e.members.len()), (State::Empty, 0));
    assert!(decode("group/x", b"{\"version\":2}", Instant::now()).is_err());
    let odd = String::from_utf8(empty.to_vec()).unwrap().replace("\"members\":[]", "\"members\":[{\"member_id\":\"m\",\"group_instance_id\":null,\"client_id\":\"c\",\"client_host\":\"h\",\"session_timeout_ms\":1,\"rebalance_timeout_ms\":1,\"protocols\":[],\"assignment\":\"abc\"}]");
    assert!(
        decode("group/e", odd.as_bytes(), Instant::now()).is_err(),
        "odd-length hex"
    );
}

#[tokio::test]
async fn a_stable_group_survives_a_restart_and_keeps_heartbeating() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let c = broker.groups();
    let a = join_req("g", "", "a", "ma");
    let b = join_req("g", "", "b", "mb");
    let (ja, jb) = tokio::join!(c.join(a), c.join(b));
    let (ja, jb) = (ja.unwrap(), jb.unwrap());
    let (leader, follower) = if ja.leader == ja.member_id {
        (ja, jb)
    } else {
        (jb, ja)
    };
    let assignments = [
        (leader.member_id.as_str(), "L"),
        (follower.member_id.as_str(), "F"),
    ];
    let (sl, sf) = tokio::join!(
        c.sync(sync_req("g", &leader, &assignments)),
        c.sync(sync_req("g", &follower, &[]))
    );
    assert_eq!(
        (sl.unwrap(), sf.unwrap()),
        (Bytes::from_static(b"L"), Bytes::from_static(b"F"))
    );
    let before = c.describe("g");
    broker.shutdown().await.unwrap();
    drop(broker);

    let broker = open(dir.path()).await;
    let c = broker.groups();
    assert_eq!(c.describe("g"), before);
    assert_eq!(c.heartbeat("g", 1, &leader.member_id, None).await, Ok(()));
    assert_eq!(c.heartbeat("g", 1, &follower.member_id, None).await, Ok(()));
    assert_eq!(
        c.sync(sync_req("g", &follower, &[])).await,
        Ok(Bytes::from_static(b"F"))
    );
    // A follower rejoining with what it offered before goes straight back to SyncGroup.
    let again = c.join(rejoin_req("g", &follower, "b", "mb")).await.unwrap();
    assert_eq!(
        (again.generation_id, again.leader.as_str()),
        (1, leader.member_id.as_str())
    );
    assert_eq!(c.describe("g").state, "Stable");

    // Empty is stored too, with its generation.
    let everyone = vec![
        (leader.member_id.clone(), None),
        (follower.member_id.clone(), None),
    ];
    let _ = c.leave("g", everyone).await;
    broker.shutdown().await.unwrap();
    drop(broker);
    let broker = open(dir.path()).await;
    let c = broker.groups();
    let d = c.describe("g");
    assert_eq!(
        (d.state, d.protocol_type.as_str(), d.members.len()),
        ("Empty", "consumer", 0)
    );
    let next = c.join(join_req("g", "", "a", "ma")).await.unwrap();
    assert_eq!(
        next.generation_id, 3,
        "generations continue after the restart"
    );
    let _ = c.leave("g", vec![(next.member_id.clone(), None)]).await;

    // Deleting forgets it.
    assert_eq!(c.delete("g").await, Ok(()));
    broker.shutdown().await.unwrap();
    drop(broker);
    let broker = open(dir.path()).await;
    assert_eq!(broker.groups().describe("g").state, "Dead");
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn groups_known_only_by_their_offsets_are_listed_empty_and_deletable() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path()).await;
    let offset = CommittedOffset {
        offset: 7,
        leader_epoch: -1,
        metadata: None,
        commit_ms: 0,
    };
    broker
        .commit_offsets("manual", vec![("t".into(), 0, offset)])
        .await
        .unwrap();
    let c = broker.groups();
    let listed = c.list();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].group_id.as_str(), listed[0].state),
        ("manual", "Empty")
    );
    assert_eq!(c.describe("manual").state, "Empty");
    assert_eq!(c.delete("manual").await, Ok(()));
    broker.delete_group_offsets("manual").await.unwrap();
    assert!(c.list().is_empty());
    assert_eq!(c.delete("manual").await, Err(GroupError::GroupIdNotFound));
    broker.shutdown().await.unwrap();
}

#[tokio::test]
async fn restored_members_that_never_come_back_expire() {
    // A stored group whose members had 300 ms sessions; only one of them heartbeats after the
    // "restart".
    let c = coordinator(0);
    let mut a = join_req("g", "", "a", "ma");
    let mut b = join_req("g", "", "b", "mb");
    a.session_timeout_ms = 300;
    b.session_timeout_ms = 300;
    let c0 = coordinator(150);
    let joined = join_all(&c0, vec![a, b]).await;
    let stored = encode(c0.shared.groups.lock().get("g").unwrap());
    drop(c0);

    let restored = decode("group/g", &stored, Instant::now()).unwrap();
    c.shared.adopt(vec![restored]);
    let d = c.describe("g");
    assert_eq!((d.state, d.members.len()), ("Stable", 2));
    let a = &joined[0];
    let started = Instant::now();
    let outcome = loop {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let hb = c.heartbeat("g", 1, &a.member_id, None).await;
        if hb.is_err() || started.elapsed() > std::time::Duration::from_secs(3) {
            break hb;
        }
    };
    assert_eq!(outcome, Err(GroupError::RebalanceInProgress), "b expired");
    assert!(started.elapsed() >= std::time::Duration::from_millis(250));
    let hb = c.heartbeat("g", 1, &joined[1].member_id, None).await;
    assert_eq!(hb, Err(GroupError::UnknownMemberId));
}
