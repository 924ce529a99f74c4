//! Under fsync durability an append is acknowledged only after its bytes were fsynced: after
//! each acknowledgement of a lone appender, every data file is synced to its full length. The
//! same check under OS durability must find unsynced bytes, which shows the check can fail.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::testkit::{batch, reset_sync_audit, shard, synced_len};
use strata_storage::{Durability, Engine, Model, StorageSpec};

fn data_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(data_files(&p));
        } else if p.extension().is_some_and(|e| e == "log" || e == "jnl") {
            out.push(p);
        }
    }
    out
}

/// The audit is process-wide and reset per run, so the tests here take turns.
static AUDIT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Appends 300 batches; returns how many acknowledgements found unsynced bytes.
async fn unsynced_acks(model: Model, durability: Durability) -> usize {
    reset_sync_audit();
    let dir = tempfile::tempdir().unwrap();
    let options = FileOptions {
        journal_file_bytes: 64 << 10,
        checkpoint_bytes: 32 << 10,
        ..FileOptions::default()
    };
    let e: Arc<dyn Engine> = match model {
        Model::Dedicated => Arc::new(DedicatedEngine::open(dir.path(), options).unwrap()),
        Model::Shared => Arc::new(SharedEngine::open(dir.path(), options).unwrap()),
    };
    let spec = StorageSpec {
        model,
        durability,
        segment_bytes: 64 << 10,
        ..StorageSpec::default()
    };
    let id = shard("audit", 0);
    e.create_shard(&id, &spec).await.unwrap();
    let mut unsynced = 0;
    for i in 0..300 {
        e.append(&id, batch(i, 2, 300, 0)).await.unwrap();
        let behind = data_files(dir.path())
            .iter()
            .any(|f| synced_len(f) < std::fs::metadata(f).unwrap().len());
        unsynced += usize::from(behind);
    }
    unsynced
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_durability_acknowledges_only_synced_bytes() {
    let _turn = AUDIT.lock().await;
    for model in [Model::Dedicated, Model::Shared] {
        assert_eq!(
            unsynced_acks(model, Durability::Fsync).await,
            0,
            "{model:?}"
        );
        assert!(
            unsynced_acks(model, Durability::OsCache).await > 0,
            "{model:?}: the audit sees unsynced bytes under OS durability"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_durability_syncs_in_the_background() {
    let _turn = AUDIT.lock().await;
    for model in [Model::Dedicated, Model::Shared] {
        reset_sync_audit();
        let dir = tempfile::tempdir().unwrap();
        let e: Arc<dyn Engine> = match model {
            Model::Dedicated => {
                Arc::new(DedicatedEngine::open(dir.path(), FileOptions::default()).unwrap())
            }
            Model::Shared => {
                Arc::new(SharedEngine::open(dir.path(), FileOptions::default()).unwrap())
            }
        };
        let spec = StorageSpec {
            model,
            durability: Durability::Interval(50),
            ..StorageSpec::default()
        };
        let id = shard("interval", 0);
        e.create_shard(&id, &spec).await.unwrap();
        for i in 0..20 {
            e.append(&id, batch(i, 2, 300, 0)).await.unwrap();
        }
        let behind = |dir: &Path| {
            data_files(dir)
                .iter()
                .any(|f| synced_len(f) < std::fs::metadata(f).unwrap().len())
        };
        // Within a few intervals the background thread has synced everything.
        let mut waited = 0;
        while behind(dir.path()) && waited < 40 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            waited += 1;
        }
        assert!(
            !behind(dir.path()),
            "{model:?}: still unsynced after {} ms",
            waited * 50
        );
    }
}
