//! The contract suite against the file engine's shared model, with small journal files and
//! frequent checkpoints so that rolling, index runs, merging and replay are all exercised.

use std::path::PathBuf;
use std::sync::Arc;

use strata_storage::file::{FileOptions, SharedEngine};
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Durability, Engine, Model, Result, StorageSpec};

struct Shared {
    dir: tempfile::TempDir,
    durability: Durability,
}

impl Harness for Shared {
    fn spec(&self) -> StorageSpec {
        StorageSpec {
            model: Model::Shared,
            durability: self.durability,
            ..StorageSpec::default()
        }
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        Box::pin(async move {
            let options = FileOptions {
                open_files: 16,
                index_cache_bytes: 1 << 20,
                journal_file_bytes: 64 << 10,
                checkpoint_bytes: 24 << 10,
                tier: None,
            };
            let e: Arc<dyn Engine> = Arc::new(SharedEngine::open(self.dir.path(), options)?);
            Ok(e)
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn data_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("journal"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jnl"))
            .collect();
        files.sort();
        files
    }
}

fn harness(durability: Durability) -> Shared {
    Shared {
        dir: tempfile::tempdir().expect("tempdir"),
        durability,
    }
}

mod os_cache {
    use super::*;
    strata_storage::contract_suite!(harness(Durability::OsCache));
}

mod fsync {
    use super::*;
    strata_storage::contract_suite!(harness(Durability::Fsync));
}
