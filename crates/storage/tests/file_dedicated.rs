//! Dedicated-model behaviour beyond the contract: failed rolls, damaged index headers,
//! damaged batch headers, rolling by time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_storage::file::{DedicatedEngine, FileOptions};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Engine, ShardId, StorageError, StorageSpec};

fn open(dir: &Path) -> Arc<dyn Engine> {
    Arc::new(DedicatedEngine::open(dir, FileOptions::default()).unwrap())
}

fn spec(segment_bytes: u64) -> StorageSpec {
    StorageSpec {
        segment_bytes,
        retention: Default::default(),
        ..StorageSpec::default()
    }
}

fn segments(dir: &Path, id: &ShardId, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(id.to_string()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_failed_roll_leaves_the_shard_usable() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let id = shard("roll", 0);
    e.create_shard(&id, &spec(4096)).await.unwrap();
    for i in 0..3 {
        e.append(&id, batch(i, 1, 1000, 0)).await.unwrap();
    }
    // A directory where the next segment file must go makes the roll fail.
    let squatter = dir
        .path()
        .join(id.to_string())
        .join(format!("{:020}.log", 3));
    std::fs::create_dir(&squatter).unwrap();
    assert!(e.append(&id, batch(3, 1, 2000, 0)).await.is_err());
    // A batch that still fits goes into the old segment; nothing panics.
    let a = e.append(&id, batch(4, 1, 10, 0)).await.unwrap();
    assert_eq!(a.base_offset, 3);
    std::fs::remove_dir(&squatter).unwrap();
    e.append(&id, batch(5, 1, 2000, 0)).await.unwrap();
    drop(e);
    let e = open(dir.path());
    let got = read_all(&*e, &id, 0).await.unwrap();
    let want = [(0, 1000), (1, 1000), (2, 1000), (4, 10), (5, 2000)];
    assert_eq!(got.len(), want.len());
    for ((offset, v), (i, (tag, size))) in got.iter().zip(want.iter().enumerate()) {
        assert_eq!(*offset, i as u64);
        assert_eq!(v.as_ref(), &value(*tag, 0, *size)[..]);
    }
}

#[tokio::test]
async fn a_damaged_index_header_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let id = shard("ixhdr", 0);
    let now = strata_storage::now_ms();
    {
        let e = open(dir.path());
        let s = StorageSpec {
            retention: strata_storage::Retention {
                ms: Some(3_600_000),
                bytes: None,
            },
            ..spec(4096)
        };
        e.create_shard(&id, &s).await.unwrap();
        for i in 0..12 {
            e.append(&id, batch(i, 1, 1000, now)).await.unwrap();
        }
        e.close().await.unwrap();
    }
    // Flip the top bit of max_ts (bytes 24..32) of the first closed segment's index.
    let index = &segments(dir.path(), &id, "index")[0];
    let mut bytes = std::fs::read(index).unwrap();
    bytes[31] ^= 0x80;
    std::fs::write(index, bytes).unwrap();
    let e = open(dir.path());
    e.maintain(now).await.unwrap();
    let b = e.bounds(&id).await.unwrap();
    assert_eq!(
        b.log_start, 0,
        "fresh data was not expired by a damaged timestamp"
    );
    assert_eq!(read_all(&*e, &id, 0).await.unwrap().len(), 12);
}

#[tokio::test]
async fn offsets_after_a_damaged_batch_header_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let id = shard("hdr", 0);
    let mut lens = Vec::new();
    {
        let e = open(dir.path());
        e.create_shard(&id, &spec(1 << 20)).await.unwrap();
        for i in 0..150 {
            e.append(&id, batch(i, 1, 100, 0)).await.unwrap();
            lens.push(e.read(&id, i, 1).await.unwrap().len as u64);
        }
    }
    // Damage the magic byte of batch 50: its header no longer parses.
    let log = &segments(dir.path(), &id, "log")[0];
    let pos: u64 = lens[..50].iter().sum();
    let mut bytes = std::fs::read(log).unwrap();
    bytes[pos as usize + 16] = 9;
    std::fs::write(log, bytes).unwrap();
    let e = open(dir.path());
    assert!(matches!(
        e.read(&id, 50, 1).await,
        Err(StorageError::Corruption { .. })
    ));
    for offset in 51..150 {
        let got = read_all(&*e, &id, offset).await.unwrap();
        assert_eq!(got.len() as u64, 150 - offset, "reading from {offset}");
        assert_eq!(got[0].1.as_ref(), &value(offset, 0, 100)[..]);
    }
}

#[tokio::test]
async fn segments_roll_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let e = open(dir.path());
    let id = shard("byms", 0);
    let s = StorageSpec {
        segment_ms: Some(1000),
        ..spec(1 << 30)
    };
    e.create_shard(&id, &s).await.unwrap();
    // Timestamps 600 ms apart: a new segment every second batch.
    for i in 0..6u64 {
        e.append(&id, batch(i, 1, 10, 1_000_000 + 600 * i as i64))
            .await
            .unwrap();
    }
    assert_eq!(segments(dir.path(), &id, "log").len(), 3);
    // An idle segment rolls in maintenance once it is old enough.
    e.maintain(1_000_000 + 600 * 5 + 1000).await.unwrap();
    assert_eq!(segments(dir.path(), &id, "log").len(), 4);
    assert_eq!(read_all(&*e, &id, 0).await.unwrap().len(), 6);
}
