//! The storage contract suite against the s3 engine: both models, with and without the local
//! write-ahead log, on a throwaway s3s-fs server.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use strata_s3::{S3Engine, S3Options};
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Durability, Engine, EngineKind, Model, Result, StorageSpec};

struct S3 {
    options: S3Options,
    model: Model,
    wal: bool,
    wal_dir: tempfile::TempDir,
}

impl S3 {
    fn new(model: Model, wal: bool) -> Self {
        let mut options = support::fresh_bucket();
        // Without the log every append waits for its flush, so flush quickly. With it, nothing
        // is uploaded before a commit of metadata or a close, so the crash images damage the
        // log's only copy.
        options.tuning.flush_interval = if wal {
            Duration::from_secs(3600)
        } else {
            Duration::from_millis(2)
        };
        options.tuning.flush_bytes = if wal { 1 << 30 } else { 64 << 10 };
        options.tuning.checkpoint_every = 4;
        options.tuning.cache_bytes = 16 << 10;
        S3 {
            options,
            model,
            wal,
            wal_dir: tempfile::tempdir().unwrap(),
        }
    }
}

impl Harness for S3 {
    fn spec(&self) -> StorageSpec {
        StorageSpec {
            engine: EngineKind::S3,
            model: self.model,
            durability: Durability::Fsync,
            wal: self.wal,
            ..StorageSpec::default()
        }
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        Box::pin(async move {
            let store = self.options.connect()?;
            let engine = S3Engine::open(
                store,
                &self.options,
                self.model,
                Some(self.wal_dir.path().to_owned()),
            )
            .await?;
            Ok(Arc::new(engine) as Arc<dyn Engine>)
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn data_files(&self) -> Vec<PathBuf> {
        if self.wal {
            S3Engine::wal_files(self.wal_dir.path())
        } else {
            Vec::new()
        }
    }

    fn keeps_local_files(&self) -> bool {
        self.wal
    }
}

mod shared {
    strata_storage::contract_suite!(super::S3::new(strata_storage::Model::Shared, false));
}

mod dedicated {
    strata_storage::contract_suite!(super::S3::new(strata_storage::Model::Dedicated, false));
}

mod shared_wal {
    strata_storage::contract_suite!(super::S3::new(strata_storage::Model::Shared, true));
}

mod dedicated_wal {
    strata_storage::contract_suite!(super::S3::new(strata_storage::Model::Dedicated, true));
}
