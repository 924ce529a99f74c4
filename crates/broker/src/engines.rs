//! The engines a topic can choose, opened once per broker.

use std::path::Path;
use std::sync::Arc;

use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::{Engine, EngineKind, Model, StorageSpec};

use crate::{BrokerError, Result};

/// One instance of every engine this build has.
#[derive(Debug, Clone)]
pub struct Engines {
    memory: Arc<MemoryEngine>,
    dedicated: Arc<DedicatedEngine>,
    shared: Arc<SharedEngine>,
}

impl Engines {
    /// Opens (and recovers) the file engines under `data_dir/file/`.
    pub fn open(data_dir: &Path, options: &FileOptions) -> Result<Self> {
        let file = data_dir.join("file");
        Ok(Engines {
            memory: Arc::new(MemoryEngine::new()),
            dedicated: Arc::new(DedicatedEngine::open(
                file.join("dedicated"),
                options.clone(),
            )?),
            shared: Arc::new(SharedEngine::open(file.join("shared"), options.clone())?),
        })
    }

    /// The engine that holds shards of `spec`.
    pub fn for_spec(&self, spec: &StorageSpec) -> Result<Arc<dyn Engine>> {
        match (spec.engine, spec.model) {
            (EngineKind::Memory, _) => Ok(self.memory.clone()),
            (EngineKind::File, Model::Dedicated) => Ok(self.dedicated.clone()),
            (EngineKind::File, Model::Shared) => Ok(self.shared.clone()),
            (other, _) => Err(BrokerError::config(format!(
                "storage.engine={other} is not available in this build of Strata (available: memory, file)"
            ))),
        }
    }

    /// Every engine, for maintenance, metrics and shutdown.
    pub fn all(&self) -> Vec<(&'static str, Arc<dyn Engine>)> {
        vec![
            ("memory", self.memory.clone() as Arc<dyn Engine>),
            ("file-dedicated", self.dedicated.clone()),
            ("file-shared", self.shared.clone()),
        ]
    }
}
