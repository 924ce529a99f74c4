//! Shared-model behaviour beyond the contract: index runs merging across many checkpoints,
//! and journal garbage collection with relocation keeping disk use bounded.

use std::path::Path;

use strata_storage::file::{FileOptions, SharedEngine};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Durability, Engine, Model, Retention, StorageSpec};

fn options() -> FileOptions {
    FileOptions {
        open_files: 16,
        index_cache_bytes: 1 << 20,
        journal_file_bytes: 64 << 10,
        checkpoint_bytes: 8 << 10,
        tier: None,
    }
}

fn spec(retention: Retention) -> StorageSpec {
    StorageSpec {
        model: Model::Shared,
        durability: Durability::OsCache,
        retention,
        ..StorageSpec::default()
    }
}

fn journal_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[tokio::test]
async fn many_checkpoints_keep_few_runs_and_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let id = shard("runs", 0);
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    e.create_shard(&id, &spec(Retention::default()))
        .await
        .unwrap();
    // ~300 batches of ~500 bytes: dozens of checkpoints, each adding a run for this shard.
    for i in 0..300u64 {
        e.append(&id, batch(i, 1, 450, 1000 + i as i64))
            .await
            .unwrap();
    }
    let check = |got: Vec<(u64, bytes::Bytes)>| {
        assert_eq!(got.len(), 300);
        for (i, (offset, v)) in got.iter().enumerate() {
            assert_eq!(*offset, i as u64);
            assert_eq!(v.as_ref(), &value(i as u64, 0, 450)[..]);
        }
    };
    check(read_all(&e, &id, 0).await.unwrap());
    let runs = std::fs::read_dir(dir.path().join("index")).unwrap().count();
    assert!(
        runs <= 10,
        "{runs} run files: merged runs should have replaced old ones"
    );
    let hit = e.offset_for_timestamp(&id, 1_150).await.unwrap().unwrap();
    assert_eq!(hit.offset, 150);
    drop(e);
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    check(read_all(&e, &id, 0).await.unwrap());
    assert_eq!(e.trim(&id, 123).await.unwrap().log_start, 123);
    e.close().await.unwrap();
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    let got = read_all(&e, &id, 123).await.unwrap();
    assert_eq!(got.len(), 177);
    assert_eq!(got[0].1.as_ref(), &value(123, 0, 450)[..]);
}

#[tokio::test]
async fn relocation_bounds_disk_use_under_a_pinning_shard() {
    let dir = tempfile::tempdir().unwrap();
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    let keep = shard("keep", 0);
    let churn = shard("churn", 0);
    e.create_shard(&keep, &spec(Retention::default()))
        .await
        .unwrap();
    let small = Retention {
        ms: None,
        bytes: Some(16 << 10),
    };
    e.create_shard(&churn, &spec(small)).await.unwrap();
    let now = strata_storage::now_ms();
    let mut relocated = 0;
    let mut max_disk = 0;
    for round in 0..40u64 {
        e.append(&keep, batch(round, 1, 100, now)).await.unwrap();
        for i in 0..50u64 {
            e.append(&churn, batch(round * 100 + i, 2, 500, now))
                .await
                .unwrap();
        }
        let m = e.maintain(now).await.unwrap();
        relocated += m.bytes_relocated;
        max_disk = max_disk.max(journal_bytes(dir.path()));
    }
    // ~2.3 MB went through the journal; live data is ~20 KB.
    assert!(relocated > 0, "the pinning shard's batches were relocated");
    let bound = 2 * (64 << 10) + 4 * (64 << 10);
    assert!(
        journal_bytes(dir.path()) <= bound,
        "journal holds {} bytes after maintenance",
        journal_bytes(dir.path())
    );
    assert!(
        max_disk <= bound + (128 << 10),
        "journal peaked at {max_disk} bytes"
    );
    let check = |got: Vec<(u64, bytes::Bytes)>| {
        assert_eq!(got.len(), 40);
        for (i, (offset, v)) in got.iter().enumerate() {
            assert_eq!(*offset, i as u64);
            assert_eq!(v.as_ref(), &value(i as u64, 0, 100)[..]);
        }
    };
    check(read_all(&e, &keep, 0).await.unwrap());
    let b = e.bounds(&churn).await.unwrap();
    assert!(b.size_bytes <= (16 << 10) + 2000);
    drop(e);
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    check(read_all(&e, &keep, 0).await.unwrap());
    let got = read_all(&e, &churn, b.log_start).await.unwrap();
    assert_eq!(got.len() as u64, b.next_offset - b.log_start);
}

#[tokio::test]
async fn a_flipped_bit_in_a_batch_header_does_not_hide_later_batches() {
    let dir = tempfile::tempdir().unwrap();
    let id = shard("hdrbit", 0);
    let opts = || FileOptions {
        checkpoint_bytes: 1 << 30,
        ..options()
    };
    {
        let e = SharedEngine::open(dir.path(), opts()).unwrap();
        e.create_shard(&id, &spec(Retention::default()))
            .await
            .unwrap();
        for i in 0..20u64 {
            e.append(&id, batch(i, 1, 200, 0)).await.unwrap();
        }
    }
    // Batch 9's lastOffsetDelta (batch bytes 23..27): find the batch by its value.
    let journal = dir.path().join("journal").join(format!("{:020}.jnl", 0));
    let mut bytes = std::fs::read(&journal).unwrap();
    let needle = value(9, 0, 200);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    // The record's batch starts before the record's value; walk back to its magic byte.
    let batch_start = (0..at)
        .rev()
        .find(|&p| bytes[p + 16] == 2 && bytes[p..p + 8] == 9u64.to_be_bytes())
        .unwrap();
    bytes[batch_start + 25] ^= 0x01;
    std::fs::write(&journal, bytes).unwrap();
    let e = SharedEngine::open(dir.path(), opts()).unwrap();
    let b = e.bounds(&id).await.unwrap();
    assert_eq!(b.next_offset, 20, "offsets did not jump");
    assert!(matches!(
        e.read(&id, 9, 1).await,
        Err(strata_storage::StorageError::Corruption { .. })
    ));
    let got = read_all(&e, &id, 10).await.unwrap();
    assert_eq!(got.len(), 10, "batches after the damage stay readable");
    assert_eq!(
        e.append(&id, batch(99, 1, 5, 0)).await.unwrap().base_offset,
        20
    );
}

#[tokio::test]
async fn damage_in_a_pinning_shard_does_not_stop_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let e = SharedEngine::open(dir.path(), options()).unwrap();
    let keep = shard("keep", 0);
    let churn = shard("churn", 0);
    e.create_shard(&keep, &spec(Retention::default()))
        .await
        .unwrap();
    let small = Retention {
        ms: None,
        bytes: Some(16 << 10),
    };
    e.create_shard(&churn, &spec(small)).await.unwrap();
    let now = strata_storage::now_ms();
    e.append(&keep, batch(0, 1, 300, now)).await.unwrap();
    // Damage the pinning batch's payload in the first journal file.
    let journal = dir.path().join("journal").join(format!("{:020}.jnl", 0));
    let mut bytes = std::fs::read(&journal).unwrap();
    let needle = value(0, 0, 300);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .unwrap();
    bytes[at + 100] ^= 0xff;
    std::fs::write(&journal, bytes).unwrap();
    for round in 0..40u64 {
        for i in 0..50u64 {
            e.append(&churn, batch(round * 100 + i, 2, 500, now))
                .await
                .unwrap();
        }
        e.maintain(now)
            .await
            .expect("maintenance goes on despite the damage");
    }
    let bound = 2 * (64 << 10) + 4 * (64 << 10);
    assert!(
        journal_bytes(dir.path()) <= bound,
        "journal holds {} bytes",
        journal_bytes(dir.path())
    );
    assert!(matches!(
        e.read(&keep, 0, 1).await,
        Err(strata_storage::StorageError::Corruption { .. })
    ));
}
