//! The contract suite against the memory engine.

use std::path::PathBuf;
use std::sync::Arc;

use strata_storage::memory::MemoryEngine;
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Engine, Result, StorageSpec};

/// A memory engine has no persistent state: `open` returns the one instance.
struct Memory(Arc<MemoryEngine>);

impl Harness for Memory {
    fn spec(&self) -> StorageSpec {
        StorageSpec::memory(None)
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        let e: Arc<dyn Engine> = self.0.clone();
        Box::pin(async move { Ok(e) })
    }

    fn persistent(&self) -> bool {
        false
    }

    fn data_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

fn memory() -> Memory {
    Memory(Arc::new(MemoryEngine::new()))
}

strata_storage::contract_suite!(memory());
