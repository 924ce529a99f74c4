//! Broker state across restarts: idempotent producers after a topic is deleted and
//! recreated, durability fixed at creation, one process per data directory.

use std::collections::BTreeMap;

use bytes::Bytes;
use strata_broker::{Broker, BrokerConfig, BrokerError};
use strata_record::{BatchBuilder, Compression};
use strata_storage::{Durability, StorageSpec};

fn idempotent_batch(producer_id: i64, seq: i32, value: &str) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).producer(producer_id, 0, seq);
    b.push(None, Some(value.as_bytes()), &[], 1);
    b.build().unwrap()
}

#[tokio::test]
async fn a_recreated_topic_does_not_inherit_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let t = broker
        .create_topic("d", 1, BTreeMap::new(), false)
        .await
        .unwrap();
    let p = t.partition(0).unwrap();
    for seq in 0..100 {
        broker
            .produce(&t, &p, idempotent_batch(7, seq, &format!("old{seq}")))
            .await
            .unwrap();
    }
    broker.maintain().await.unwrap(); // snapshots the producer state at offset 100
    broker.delete_topic("d").await.unwrap();
    let t = broker
        .create_topic("d", 1, BTreeMap::new(), false)
        .await
        .unwrap();
    let p = t.partition(0).unwrap();
    let first = broker
        .produce(&t, &p, idempotent_batch(9, 0, "new0"))
        .await
        .unwrap();
    assert_eq!(first.base_offset, 0);
    // Crash: no shutdown, no further snapshot.
    drop((t, p));
    drop(broker);
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let t = broker.topic("d").unwrap();
    let p = t.partition(0).unwrap();
    let retry = broker
        .produce(&t, &p, idempotent_batch(9, 0, "new0"))
        .await
        .unwrap();
    assert_eq!(
        retry.base_offset, 0,
        "the retry is recognised as a duplicate"
    );
    assert_eq!(broker.bounds(&t, &p).await.unwrap().next_offset, 1);
}

#[tokio::test]
async fn durability_is_fixed_when_a_topic_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path());
    config.default_spec.durability = Durability::OsCache;
    let broker = Broker::open(config.clone()).await.unwrap();
    broker
        .create_topic("before", 1, BTreeMap::new(), false)
        .await
        .unwrap();
    broker.shutdown().await.unwrap();
    drop(broker);
    config.default_spec = StorageSpec {
        durability: Durability::Fsync,
        ..config.default_spec
    };
    let broker = Broker::open(config).await.unwrap();
    assert_eq!(
        broker.topic("before").unwrap().config().spec.durability,
        Durability::OsCache
    );
    let after = broker
        .create_topic("after", 1, BTreeMap::new(), false)
        .await
        .unwrap();
    assert_eq!(after.config().spec.durability, Durability::Fsync);
    let entries = broker.describe_topic_configs("before").unwrap();
    let flush = entries.iter().find(|e| e.name == "flush.messages").unwrap();
    assert_ne!(flush.value, "1");
}

#[tokio::test]
async fn a_second_broker_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let second = Broker::open(BrokerConfig::new(dir.path())).await;
    assert!(
        matches!(second, Err(BrokerError::DataDirInUse(_))),
        "{second:?}"
    );
    drop(first);
}

#[tokio::test]
async fn impossible_record_counts_in_compressed_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::open(BrokerConfig::new(dir.path())).await.unwrap();
    let t = broker
        .create_topic("c", 1, BTreeMap::new(), false)
        .await
        .unwrap();
    let p = t.partition(0).unwrap();
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(None, Some(b"x"), &[], 1);
    let mut bytes = b.build().unwrap().to_vec();
    // Claim 2^31 - 1 records (lastOffsetDelta and recordsCount) and fix the CRC.
    bytes[23..27].copy_from_slice(&(i32::MAX - 1).to_be_bytes());
    bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    let r = broker.produce(&t, &p, Bytes::from(bytes)).await;
    assert!(matches!(r, Err(BrokerError::InvalidRecord(_))), "{r:?}");
    assert_eq!(broker.bounds(&t, &p).await.unwrap().next_offset, 0);
}
