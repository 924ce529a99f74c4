//! Tiering of the file engine's dedicated segments to object storage (`remote.storage.enable`)
//! against a throwaway S3 server: uploads, local retention, reads of old offsets from the
//! bucket, recovery, and total retention deleting remote segments.

mod support;

use std::path::Path;
use std::sync::Arc;

use strata_s3::S3Tier;
use strata_storage::file::{DedicatedEngine, FileOptions};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Durability, Engine, EngineKind, Model, Retention, StorageSpec};

fn local_log_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        if shard.path().is_dir() {
            for f in std::fs::read_dir(shard.path()).unwrap().flatten() {
                if f.path().extension().is_some_and(|x| x == "log") {
                    total += f.metadata().unwrap().len();
                }
            }
        }
    }
    total
}

fn objects(bucket: &Path) -> usize {
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |d| {
            d.flatten()
                .map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    if e.path().is_dir() {
                        count(&e.path())
                    } else {
                        usize::from(name.ends_with(".log"))
                    }
                })
                .sum()
        })
    }
    count(bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_segments_are_tiered_and_read_back_from_offset_0() {
    let o = support::fresh_bucket();
    let bucket = support::server().root.join(&o.bucket);
    let tier = Arc::new(S3Tier::new(o.connect().unwrap(), &o));
    let options = FileOptions {
        tier: Some(tier),
        ..FileOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let spec = StorageSpec {
        engine: EngineKind::File,
        model: Model::Dedicated,
        durability: Durability::OsCache,
        retention: Retention::default(),
        segment_bytes: 16 << 10,
        segment_ms: None,
        remote: true,
        local_retention: Retention {
            ms: None,
            bytes: Some(32 << 10),
        },
        ..StorageSpec::default()
    };
    let id = shard("tiered", 0);
    let want: Vec<Vec<u8>> = (0..400u64)
        .flat_map(|i| (0..2).map(move |r| value(i, r, 400)))
        .collect();
    {
        let e = DedicatedEngine::open(dir.path(), options.clone()).unwrap();
        e.create_shard(&id, &spec).await.unwrap();
        for i in 0..400u64 {
            e.append(&id, batch(i, 2, 400, 1_000 + 2 * i as i64))
                .await
                .unwrap();
        }
        let m = e.maintain(10_000).await.unwrap();
        assert!(m.files_deleted > 0, "no local segment was deleted");
        let local = local_log_bytes(dir.path());
        assert!(
            local <= (32 << 10) + 2 * (16 << 10),
            "{local} bytes still local"
        );
        assert!(
            objects(&bucket) >= 10,
            "{} segments in the bucket",
            objects(&bucket)
        );
        let b = e.bounds(&id).await.unwrap();
        assert_eq!((b.log_start, b.next_offset), (0, 800));
        let got = read_all(&e, &id, 0).await.unwrap();
        let values: Vec<_> = got.iter().map(|(_, v)| v.to_vec()).collect();
        assert_eq!(values, want, "read from offset 0 through the bucket");
        let hit = e
            .offset_for_timestamp(&id, 1_000 + 20)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hit.offset, 20);
        // Crash: no close.
    }
    let e = DedicatedEngine::open(dir.path(), options.clone()).unwrap();
    let b = e.bounds(&id).await.unwrap();
    assert_eq!((b.log_start, b.next_offset), (0, 800));
    let got = read_all(&e, &id, 0).await.unwrap();
    assert_eq!(got.len(), 800);
    assert_eq!(got[123].1.to_vec(), want[123]);
    // More appends, another pass: still bounded locally.
    for i in 400..600u64 {
        e.append(&id, batch(i, 2, 400, 1_000 + 2 * i as i64))
            .await
            .unwrap();
    }
    e.maintain(10_000).await.unwrap();
    assert!(local_log_bytes(dir.path()) <= (32 << 10) + 2 * (16 << 10));
    // Total retention deletes remote segments too.
    let before = objects(&bucket);
    let mut bounded = spec;
    bounded.retention.bytes = Some(100 << 10);
    e.reconfigure(&id, &bounded).await.unwrap();
    let m = e.maintain(10_000).await.unwrap();
    let b = e.bounds(&id).await.unwrap();
    assert!(b.log_start > 0 && m.bytes_dropped > 0, "{b:?}");
    assert!(b.size_bytes <= (100 << 10) + (16 << 10), "{b:?}");
    assert!(
        objects(&bucket) < before,
        "remote segments were not deleted"
    );
    let got = read_all(&e, &id, b.log_start).await.unwrap();
    assert_eq!(got.last().unwrap().0, 1199);
    assert!(got.len() as u64 >= 1200 - b.log_start);
    // Deleting the shard deletes its objects.
    e.delete_shard(&id).await.unwrap();
    assert_eq!(objects(&bucket), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_needs_an_object_store() {
    let dir = tempfile::tempdir().unwrap();
    let e = DedicatedEngine::open(dir.path(), FileOptions::default()).unwrap();
    let spec = StorageSpec {
        remote: true,
        ..StorageSpec::default()
    };
    let err = e.create_shard(&shard("t", 0), &spec).await.unwrap_err();
    assert!(err.to_string().contains("--s3-bucket"), "{err}");
}
