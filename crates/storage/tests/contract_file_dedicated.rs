//! The contract suite against the file engine's dedicated model, under OS and fsync durability.

use std::path::PathBuf;
use std::sync::Arc;

use strata_storage::file::{DedicatedEngine, FileOptions};
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Durability, Engine, Model, Result, StorageSpec};

struct Dedicated {
    dir: tempfile::TempDir,
    durability: Durability,
}

impl Harness for Dedicated {
    fn spec(&self) -> StorageSpec {
        StorageSpec {
            model: Model::Dedicated,
            durability: self.durability,
            ..StorageSpec::default()
        }
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        Box::pin(async move {
            let options = FileOptions {
                open_files: 16,
                index_cache_bytes: 1 << 20,
                ..FileOptions::default()
            };
            let e: Arc<dyn Engine> = Arc::new(DedicatedEngine::open(self.dir.path(), options)?);
            Ok(e)
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn data_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = walk(self.dir.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        // The newest file is the last segment of the most recently written shard.
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files
    }
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn harness(durability: Durability) -> Dedicated {
    Dedicated {
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
