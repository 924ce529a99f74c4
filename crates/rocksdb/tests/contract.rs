//! The storage contract suite against the RocksDB engine, both models.

use std::path::PathBuf;
use std::sync::Arc;

use strata_rocksdb::{RocksDb, RocksOptions, wal_files};
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Durability, Engine, EngineKind, Model, Result, StorageSpec};

struct Rocks {
    dir: tempfile::TempDir,
    model: Model,
}

impl Rocks {
    fn new(model: Model) -> Self {
        Rocks {
            dir: tempfile::tempdir().unwrap(),
            model,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("rocksdb")
    }
}

impl Harness for Rocks {
    fn spec(&self) -> StorageSpec {
        StorageSpec {
            engine: EngineKind::Rocksdb,
            model: self.model,
            durability: Durability::Fsync,
            ..StorageSpec::default()
        }
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        Box::pin(async move {
            let db = RocksDb::open(self.path(), RocksOptions::default())?;
            Ok(Arc::new(db.engine(self.model)) as Arc<dyn Engine>)
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn data_files(&self) -> Vec<PathBuf> {
        wal_files(&self.path())
    }
}

mod shared {
    strata_storage::contract_suite!(super::Rocks::new(strata_storage::Model::Shared));
}

mod dedicated {
    strata_storage::contract_suite!(super::Rocks::new(strata_storage::Model::Dedicated));
}
