//! After a failed fsync an engine refuses writes until it is reopened, and what was
//! acknowledged before is still there after the reopen. Fault points are process-wide, so this
//! file holds one test that runs the engines one after another.

use std::sync::Arc;

use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Durability, Engine, Model, StorageError, StorageSpec};

async fn check(open: &dyn Fn() -> Arc<dyn Engine>, model: Model) {
    let spec = StorageSpec {
        model,
        durability: Durability::Fsync,
        ..StorageSpec::default()
    };
    let id = shard("poison", 0);
    let e = open();
    e.create_shard(&id, &spec).await.unwrap();
    for i in 0..5 {
        e.append(&id, batch(i, 1, 50, 0)).await.unwrap();
    }
    fail::cfg("storage::fsync", "return").unwrap();
    let failed = e.append(&id, batch(5, 1, 50, 0)).await;
    assert!(
        matches!(failed, Err(StorageError::Poisoned(_))),
        "{model:?}: an append whose fsync failed is not acknowledged: {failed:?}"
    );
    fail::remove("storage::fsync");
    let refused = e.append(&id, batch(6, 1, 50, 0)).await;
    assert!(
        matches!(refused, Err(StorageError::Poisoned(_))),
        "{model:?}: writes stay refused after the fault clears: {refused:?}"
    );
    // Reads still work; every other change is refused too.
    assert!(read_all(&*e, &id, 0).await.unwrap().len() >= 5);
    assert!(matches!(
        e.trim(&id, 1).await,
        Err(StorageError::Poisoned(_))
    ));
    assert!(matches!(
        e.create_shard(&shard("poison", 1), &spec).await,
        Err(StorageError::Poisoned(_))
    ));
    drop(e);
    let e = open();
    let got = read_all(&*e, &id, 0).await.unwrap();
    for (i, (offset, v)) in got.iter().take(5).enumerate() {
        assert_eq!(*offset, i as u64);
        assert_eq!(v.as_ref(), &value(i as u64, 0, 50)[..]);
    }
    let a = e.append(&id, batch(7, 1, 50, 0)).await.unwrap();
    assert_eq!(
        a.base_offset,
        got.len() as u64,
        "{model:?}: writes work after reopening"
    );
}

/// Many appenders on many shards while fsyncs fail: not one append may be acknowledged, even
/// those whose round came after the failing one.
async fn concurrent(open: &dyn Fn() -> Arc<dyn Engine>, model: Model) {
    let spec = StorageSpec {
        model,
        durability: Durability::Fsync,
        ..StorageSpec::default()
    };
    let e = open();
    for p in 0..8 {
        e.create_shard(&shard("many", p), &spec).await.unwrap();
    }
    // Slow failing fsyncs, so that other appenders' requests queue into later rounds.
    fail::cfg("storage::before_fsync", "sleep(30)").unwrap();
    fail::cfg("storage::fsync", "return").unwrap();
    let mut tasks = Vec::new();
    for p in 0..8u32 {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = 0;
            for i in 0..20 {
                if e.append(&shard("many", p), batch(i, 1, 50, 0))
                    .await
                    .is_ok()
                {
                    acked += 1;
                }
            }
            acked
        }));
    }
    let mut acked = 0;
    for t in tasks {
        acked += t.await.unwrap();
    }
    fail::remove("storage::fsync");
    fail::remove("storage::before_fsync");
    assert_eq!(
        acked, 0,
        "{model:?}: appends were acknowledged although every fsync failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_fsync_poisons_until_reopen() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("dedicated");
    let open_d = move || -> Arc<dyn Engine> {
        Arc::new(DedicatedEngine::open(&d, FileOptions::default()).unwrap())
    };
    check(&open_d, Model::Dedicated).await;
    let s = dir.path().join("shared");
    let open_s = move || -> Arc<dyn Engine> {
        Arc::new(SharedEngine::open(&s, FileOptions::default()).unwrap())
    };
    check(&open_s, Model::Shared).await;
    let d2 = dir.path().join("dedicated-many");
    let open_d2 = move || -> Arc<dyn Engine> {
        Arc::new(DedicatedEngine::open(&d2, FileOptions::default()).unwrap())
    };
    concurrent(&open_d2, Model::Dedicated).await;
    let s2 = dir.path().join("shared-many");
    let open_s2 = move || -> Arc<dyn Engine> {
        Arc::new(SharedEngine::open(&s2, FileOptions::default()).unwrap())
    };
    concurrent(&open_s2, Model::Shared).await;
    scenario.teardown();
}
