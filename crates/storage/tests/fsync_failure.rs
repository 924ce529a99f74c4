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
    // Reads still work.
    assert!(read_all(&*e, &id, 0).await.unwrap().len() >= 5);
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
    scenario.teardown();
}
