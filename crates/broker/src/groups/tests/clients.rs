//! Many simulated consumers on several threads, each following the protocol as a Kafka client
//! does, must settle into one Stable generation in which everyone holds the assignment the
//! leader computed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::*;

/// One consumer: join (with MemberIdRequired), sync (the leader assigns every member its own
/// id), heartbeat every 20 ms, rejoin when told to, leave when `stop` is set.
async fn consumer(c: Arc<GroupCoordinator>, client: String, stop: Arc<AtomicBool>) {
    let mut member_id = String::new();
    'rejoin: loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let mut req = join_req("g", &member_id, &client, &client);
        req.require_known_member_id = true;
        req.session_timeout_ms = 1_000;
        req.rebalance_timeout_ms = 1_000;
        let joined = match c.join(req).await {
            Ok(j) => j,
            Err(GroupError::MemberIdRequired(id)) => {
                member_id = id;
                continue;
            }
            Err(GroupError::UnknownMemberId) => {
                member_id.clear();
                continue;
            }
            Err(_) => continue,
        };
        member_id = joined.member_id.clone();
        let assignments: Vec<(String, String)> = joined
            .members
            .iter()
            .map(|m| (m.member_id.clone(), format!("for {}", m.member_id)))
            .collect();
        let pairs: Vec<(&str, &str)> = assignments
            .iter()
            .map(|(m, a)| (m.as_str(), a.as_str()))
            .collect();
        match c.sync(sync_req("g", &joined, &pairs)).await {
            Ok(_) => {}
            Err(GroupError::UnknownMemberId) => {
                member_id.clear();
                continue;
            }
            Err(_) => continue,
        }
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if stop.load(Ordering::Relaxed) {
                let _ = c.leave("g", vec![(member_id.clone(), None)]).await;
                return;
            }
            match c
                .heartbeat("g", joined.generation_id, &member_id, None)
                .await
            {
                Ok(()) => {}
                Err(GroupError::UnknownMemberId) => {
                    member_id.clear();
                    continue 'rejoin;
                }
                Err(_) => continue 'rejoin,
            }
        }
    }
}

/// Waits until the group is Stable with `n` members, each holding the assignment meant for it.
async fn settled(c: &GroupCoordinator, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = c.describe("g");
        let consistent = d
            .members
            .iter()
            .all(|m| m.assignment == format!("for {}", m.member_id) && m.metadata == m.client_id);
        if d.state == "Stable" && d.members.len() == n && consistent {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never settled on {n} members: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_settle_into_one_generation() {
    let c = coordinator(100);
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let stop = Arc::new(AtomicBool::new(false));
        stops.push(stop.clone());
        tasks.push(tokio::spawn(consumer(c.clone(), format!("c{i}"), stop)));
        // Staggered starts, some within the initial delay and some after it.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    settled(&c, 8).await;
    let generation = c.describe("g").members.len();
    assert_eq!(generation, 8);

    for stop in &stops[..3] {
        stop.store(true, Ordering::Relaxed);
    }
    for t in tasks.drain(..3) {
        t.await.unwrap();
    }
    settled(&c, 5).await;

    // The rest stop without leaving: their sessions expire and the group ends Empty.
    for t in &tasks {
        t.abort();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.describe("g").state != "Empty" {
        assert!(Instant::now() < deadline, "sessions never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
