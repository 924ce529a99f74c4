//! Fetch semantics: min_bytes 0 answers at once; max_bytes holds except for the first batch
//! (KIP-74); a long poll wakes when data arrives.

mod common;

use std::time::{Duration, Instant};

use common::{call, s, start};
use kafka_protocol::messages::*;
use strata_record::{BatchBuilder, Compression};
use tokio::net::TcpStream;

fn fetch(partitions: &[i32], max_wait_ms: i32, min_bytes: i32, max_bytes: i32) -> RequestKind {
    RequestKind::Fetch(
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(max_bytes)
            .with_session_epoch(-1)
            .with_topics(vec![
                fetch_request::FetchTopic::default()
                    .with_topic(TopicName(s("f")))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                fetch_request::FetchPartition::default()
                                    .with_partition(*p)
                                    .with_partition_max_bytes(1 << 20)
                            })
                            .collect(),
                    ),
            ]),
    )
}

fn records_len(resp: &ResponseKind) -> Vec<usize> {
    let ResponseKind::Fetch(f) = resp else {
        panic!("not a fetch response")
    };
    f.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_bytes_zero_answers_at_once() {
    let (broker, addr, _dir) = start().await;
    broker
        .create_topic("f", 1, Default::default(), false)
        .await
        .unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    let resp = call(&mut c, ApiKey::Fetch, 11, 1, &fetch(&[0], 3000, 0, 1 << 20)).await;
    assert!(
        t.elapsed() < Duration::from_millis(1000),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(records_len(&resp), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_when_data_arrives() {
    let (broker, addr, _dir) = start().await;
    let topic = broker
        .create_topic("f", 1, Default::default(), false)
        .await
        .unwrap();
    let mut c = TcpStream::connect(addr).await.unwrap();
    let producer = {
        let broker = broker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut b = BatchBuilder::new(Compression::None);
            b.push(None, Some(b"late"), &[], 1);
            let p = topic.partition(0).unwrap();
            broker
                .produce(&topic, &p, b.build().unwrap())
                .await
                .unwrap();
        })
    };
    let t = Instant::now();
    let resp = call(
        &mut c,
        ApiKey::Fetch,
        11,
        1,
        &fetch(&[0], 10_000, 1, 1 << 20),
    )
    .await;
    let waited = t.elapsed();
    producer.await.unwrap();
    assert!(records_len(&resp)[0] > 0);
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_bytes_is_exceeded_only_by_the_first_batch() {
    let (broker, addr, _dir) = start().await;
    let topic = broker
        .create_topic("f", 2, Default::default(), false)
        .await
        .unwrap();
    for p in 0..2 {
        let mut b = BatchBuilder::new(Compression::None);
        b.push(None, Some(&vec![7u8; 100_000]), &[], 1);
        let part = topic.partition(p).unwrap();
        broker
            .produce(&topic, &part, b.build().unwrap())
            .await
            .unwrap();
    }
    let mut c = TcpStream::connect(addr).await.unwrap();
    // 150 KB budget: the first partition's 100 KB batch fits, the second's would not.
    let lens =
        records_len(&call(&mut c, ApiKey::Fetch, 11, 1, &fetch(&[0, 1], 0, 1, 150_000)).await);
    assert!(lens[0] > 100_000 && lens[1] == 0, "{lens:?}");
    // A budget smaller than one batch still returns the first one whole.
    let lens = records_len(&call(&mut c, ApiKey::Fetch, 11, 2, &fetch(&[0, 1], 0, 1, 1000)).await);
    assert!(lens[0] > 100_000 && lens[1] == 0, "{lens:?}");
    // Room for both.
    let lens =
        records_len(&call(&mut c, ApiKey::Fetch, 11, 3, &fetch(&[0, 1], 0, 1, 1 << 20)).await);
    assert!(lens[0] > 100_000 && lens[1] > 100_000, "{lens:?}");
}
