//! Opening the engine under test. Adding an engine to the benchmark is one match arm here.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::{Engine, EngineKind, Model, Retention, StorageSpec};

use super::args::Plan;

/// Opens (and so recovers) an engine rooted at `dir`; engines without files ignore it.
pub type Opener = fn(&Path, FileOptions) -> strata_storage::Result<Arc<dyn Engine>>;

/// How to open the engine and model named on the command line, or why it cannot be.
pub fn opener(engine: EngineKind, model: Model) -> Result<Opener> {
    match (engine, model) {
        (EngineKind::Memory, Model::Dedicated) => Ok(|_, _| Ok(Arc::new(MemoryEngine::new()))),
        (EngineKind::File, Model::Dedicated) => {
            Ok(|dir, options| Ok(Arc::new(DedicatedEngine::open(dir, options)?)))
        }
        (EngineKind::File, Model::Shared) => {
            Ok(|dir, options| Ok(Arc::new(SharedEngine::open(dir, options)?)))
        }
        (EngineKind::Memory, Model::Shared) => {
            bail!("the memory engine has one model only: use --model dedicated")
        }
        (kind @ (EngineKind::Rocksdb | EngineKind::Mysql | EngineKind::S3), _) => {
            bail!("the {kind} engine is not built yet, so it cannot be benchmarked")
        }
    }
}

/// Opens (and so recovers) the plan's engine, rooted at `dir` for engines with files.
pub fn open(plan: &Plan, dir: &Path) -> Result<Arc<dyn Engine>> {
    (plan.opener)(dir, file_options(plan)).with_context(|| {
        format!(
            "opening the {} engine ({} model) in {}",
            plan.args.engine,
            plan.args.model,
            dir.display()
        )
    })
}

/// The engine's tuning from the flags: only the descriptor cache is exposed.
fn file_options(plan: &Plan) -> FileOptions {
    let mut options = FileOptions::default();
    if let Some(n) = plan.args.open_files {
        options.open_files = n;
    }
    options
}

/// The spec every benchmark shard is created with: unlimited retention unless asked, so that nothing the
/// run wrote disappears before it is read back.
pub fn spec(plan: &Plan) -> Result<StorageSpec> {
    let spec = StorageSpec {
        engine: plan.args.engine,
        model: plan.args.model,
        durability: plan.durability,
        retention: Retention {
            ms: None,
            bytes: plan.args.retention_bytes,
        },
        segment_bytes: plan.args.segment_bytes,
        segment_ms: None,
        ..StorageSpec::default()
    };
    spec.validate()
        .context("checking the benchmark's storage spec")?;
    Ok(spec)
}
