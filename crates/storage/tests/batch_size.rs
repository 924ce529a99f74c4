//! Every engine refuses a batch larger than the largest any engine stores, before writing.

use std::sync::Arc;

use strata_record::{Batch, BatchBuilder, Compression};
use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::testkit::shard;
use strata_storage::{Engine, MAX_BATCH_BYTES, Model, StorageError, StorageSpec};

#[tokio::test]
async fn oversized_batches_are_refused_by_every_engine() {
    let mut b = BatchBuilder::new(Compression::None);
    let chunk = vec![7u8; 1 << 20];
    for _ in 0..=(MAX_BATCH_BYTES >> 20) {
        b.push(None, Some(&chunk), &[], 0);
    }
    let big = Batch::validate(b.build().unwrap()).unwrap();
    assert!(big.len() > MAX_BATCH_BYTES);
    let dir = tempfile::tempdir().unwrap();
    let engines: Vec<(Arc<dyn Engine>, StorageSpec)> = vec![
        (Arc::new(MemoryEngine::new()), StorageSpec::memory(None)),
        (
            Arc::new(DedicatedEngine::open(dir.path().join("d"), FileOptions::default()).unwrap()),
            StorageSpec::default(),
        ),
        (
            Arc::new(SharedEngine::open(dir.path().join("s"), FileOptions::default()).unwrap()),
            StorageSpec {
                model: Model::Shared,
                ..StorageSpec::default()
            },
        ),
    ];
    for (e, spec) in engines {
        let id = shard("big", 0);
        e.create_shard(&id, &spec).await.unwrap();
        let r = e.append(&id, big.clone()).await;
        assert!(
            matches!(r, Err(StorageError::BatchTooLarge { .. })),
            "{r:?}"
        );
        assert_eq!(e.bounds(&id).await.unwrap().next_offset, 0);
    }
}
