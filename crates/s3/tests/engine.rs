//! The s3 engine beyond the contract: fencing of a second writer, compaction and deletion of
//! objects, recovery from the bucket alone, and an outage of the object store.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use strata_s3::{S3Engine, S3Options};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Durability, Engine, EngineKind, Model, StorageError, StorageSpec};

fn spec(model: Model, wal: bool) -> StorageSpec {
    StorageSpec {
        engine: EngineKind::S3,
        model,
        durability: Durability::Fsync,
        wal,
        retention: Default::default(),
        ..StorageSpec::default()
    }
}

fn fast(mut o: S3Options) -> S3Options {
    o.tuning.flush_interval = Duration::from_millis(1);
    o.tuning.checkpoint_every = 4;
    o
}

async fn open(o: &S3Options, model: Model, wal: &Path) -> S3Engine {
    S3Engine::open(o.connect().unwrap(), o, model, Some(wal.to_owned()))
        .await
        .unwrap()
}

/// Files under the bucket's directory on the test server (one per object), by prefix.
fn objects(o: &S3Options, under: &str) -> usize {
    let dir = support::server().root.join(&o.bucket).join(under);
    fn count(p: &Path) -> usize {
        std::fs::read_dir(p).map_or(0, |d| {
            d.flatten()
                .map(|e| {
                    let p = e.path();
                    let name = e.file_name().to_string_lossy().to_string();
                    if p.is_dir() {
                        count(&p)
                    } else {
                        usize::from(!name.starts_with('.') && !name.ends_with(".json"))
                    }
                })
                .sum()
        })
    }
    count(&dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_the_same_prefix_is_fenced() {
    let o = fast(support::fresh_bucket());
    let (wa, wb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = open(&o, Model::Shared, wa.path()).await;
    let id = shard("fence", 0);
    a.create_shard(&id, &spec(Model::Shared, false))
        .await
        .unwrap();
    a.append(&id, batch(1, 2, 10, 0)).await.unwrap();
    // A second node starts on the same prefix and commits first.
    let b = open(&o, Model::Shared, wb.path()).await;
    b.append(&id, batch(2, 2, 10, 0)).await.unwrap();
    match a.append(&id, batch(3, 2, 10, 0)).await {
        Err(StorageError::Poisoned(why)) => assert!(why.contains("another writer"), "{why}"),
        other => panic!("the stale writer committed: {other:?}"),
    }
    assert!(matches!(
        a.append(&id, batch(4, 1, 10, 0)).await,
        Err(StorageError::Poisoned(_))
    ));
    drop((a, b));
    let c = open(&o, Model::Shared, wb.path()).await;
    let got = read_all(&c, &id, 0).await.unwrap();
    let values: Vec<_> = got.iter().map(|(_, v)| v.to_vec()).collect();
    assert_eq!(
        values,
        vec![
            value(1, 0, 10),
            value(1, 1, 10),
            value(2, 0, 10),
            value(2, 1, 10)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_are_compacted_and_dead_ones_deleted() {
    for model in [Model::Shared, Model::Dedicated] {
        let o = fast(support::fresh_bucket());
        let wal = tempfile::tempdir().unwrap();
        let e = open(&o, model, wal.path()).await;
        let ids: Vec<_> = (0..3).map(|p| shard("compact", p)).collect();
        for id in &ids {
            e.create_shard(id, &spec(model, false)).await.unwrap();
        }
        // One commit per append: many small objects.
        for i in 0..12u64 {
            for id in &ids {
                e.append(id, batch(i, 3, 50, 1_000 + i as i64))
                    .await
                    .unwrap();
            }
        }
        let root = format!("strata/{model}");
        let before = objects(&o, &root);
        let m = e.maintain(i64::MAX / 2).await.unwrap();
        assert!(m.bytes_relocated > 0, "{model}: nothing compacted");
        // Once a checkpoint covers them, the old log objects go too.
        let m2 = e.maintain(i64::MAX / 2).await.unwrap();
        let after = objects(&o, &root);
        assert!(
            after < before && m.files_deleted + m2.files_deleted > 0,
            "{model}: {before} objects before, {after} after"
        );
        for (p, id) in ids.iter().enumerate() {
            let got = read_all(&e, id, 0).await.unwrap();
            assert_eq!(got.len(), 36, "{model} shard {p}");
        }
        drop(e);
        let e = open(&o, model, wal.path()).await;
        for id in &ids {
            let got = read_all(&e, id, 0).await.unwrap();
            let want: Vec<_> = (0..12u64)
                .flat_map(|i| (0..3).map(move |r| value(i, r, 50)))
                .collect();
            let values: Vec<_> = got.iter().map(|(_, v)| v.to_vec()).collect();
            assert_eq!(values, want, "{model}: data after compaction and reopen");
        }
        // Retention drops everything: every data object is deleted.
        for id in &ids {
            let mut s = spec(model, false);
            s.retention.ms = Some(1);
            e.reconfigure(id, &s).await.unwrap();
        }
        e.maintain(i64::MAX / 2).await.unwrap();
        e.maintain(i64::MAX / 2).await.unwrap();
        if model == Model::Dedicated {
            assert_eq!(
                objects(&o, &format!("{root}/data")),
                0,
                "dedicated data objects"
            );
        }
        for id in &ids {
            let b = e.bounds(id).await.unwrap();
            assert_eq!((b.log_start, b.next_offset, b.size_bytes), (36, 36, 0));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_alone_brings_back_every_acknowledged_batch() {
    let o = fast(support::fresh_bucket());
    let id = shard("diskloss", 0);
    {
        let wal = tempfile::tempdir().unwrap();
        let e = open(&o, Model::Dedicated, wal.path()).await;
        e.create_shard(&id, &spec(Model::Dedicated, false))
            .await
            .unwrap();
        for i in 0..20 {
            e.append(&id, batch(i, 2, 30, 0)).await.unwrap();
        }
        e.trim(&id, 5).await.unwrap();
        // Crash, and the local directory is gone with the machine.
    }
    let fresh = tempfile::tempdir().unwrap();
    let e = open(&o, Model::Dedicated, fresh.path()).await;
    let b = e.bounds(&id).await.unwrap();
    assert_eq!((b.log_start, b.next_offset), (5, 40));
    assert_eq!(read_all(&e, &id, 5).await.unwrap().len(), 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_direct_appends_and_logged_ones_wait_for_upload() {
    let server = support::own_server("outage");
    let o = fast(server.bucket("outage"));
    let wal = tempfile::tempdir().unwrap();
    let e = Arc::new(open(&o, Model::Shared, wal.path()).await);
    let (direct, logged) = (shard("direct", 0), shard("logged", 0));
    e.create_shard(&direct, &spec(Model::Shared, false))
        .await
        .unwrap();
    e.create_shard(&logged, &spec(Model::Shared, true))
        .await
        .unwrap();
    e.append(&direct, batch(1, 1, 10, 0)).await.unwrap();
    server.pause();
    match e.append(&direct, batch(2, 1, 10, 0)).await {
        Err(StorageError::Unavailable(why)) => assert!(why.contains("object store"), "{why}"),
        other => panic!("append without the log during an outage: {other:?}"),
    }
    for i in 0..10 {
        e.append(&logged, batch(10 + i, 1, 10, 0)).await.unwrap();
    }
    server.resume();
    let a = e.append(&direct, batch(3, 1, 10, 0)).await.unwrap();
    assert_eq!(
        a.base_offset, 1,
        "the failed append's offset is handed out again"
    );
    // The logged batches reach the bucket (the flusher retries with backoff), then survive a
    // restart without the local log.
    tokio::time::sleep(Duration::from_secs(6)).await;
    drop(e);
    let fresh = tempfile::tempdir().unwrap();
    let e = open(&o, Model::Shared, fresh.path()).await;
    assert_eq!(read_all(&e, &logged, 0).await.unwrap().len(), 10);
    assert_eq!(read_all(&e, &direct, 0).await.unwrap().len(), 2);
}

/// A batch that only the write-ahead log and the cache hold stays cached even when the cache
/// evicts an older batch that had the same base offset before a truncation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_never_drops_a_batch_not_yet_uploaded() {
    let mut o = support::fresh_bucket();
    o.tuning.flush_interval = Duration::from_secs(3600);
    o.tuning.flush_bytes = 1 << 30;
    o.tuning.cache_bytes = 16 << 10;
    let wal = tempfile::tempdir().unwrap();
    let e = open(&o, Model::Shared, wal.path()).await;
    let (a, b) = (shard("evict", 0), shard("evict", 1));
    for id in [&a, &b] {
        e.create_shard(id, &spec(Model::Shared, true))
            .await
            .unwrap();
    }
    e.append(&a, batch(1, 1, 1, 0)).await.unwrap();
    e.append(&a, batch(2, 2, 1, 0)).await.unwrap();
    // The trim uploads both batches (their cache entries become evictable), the truncation
    // drops them, and offset 0 is written again, into the log only.
    e.trim(&a, 1).await.unwrap();
    assert_eq!(e.truncate(&a, 0).await.unwrap().next_offset, 0);
    e.append(&a, batch(3, 2, 2916, 0)).await.unwrap();
    e.append(&b, batch(4, 5, 2654, 0)).await.unwrap();
    let got = read_all(&e, &a, 0).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].1.to_vec(), value(3, 0, 2916));
}
