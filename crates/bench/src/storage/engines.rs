//! Opening the engine under test. Adding an engine to the benchmark is one match arm here.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use strata_mysql::{MysqlDb, MysqlOptions};
use strata_rocksdb::{RocksDb, RocksOptions};
use strata_s3::{S3Engine, S3Options, S3Tier};
use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::{Engine, EngineKind, Model, Retention, StorageSpec};

use super::args::Plan;

/// Whether the engine and model named on the command line can be benchmarked.
pub fn check_engine(engine: EngineKind, model: Model) -> Result<()> {
    match (engine, model) {
        (EngineKind::Memory, Model::Shared) => {
            bail!("the memory engine has one model only: use --model dedicated")
        }
        _ => Ok(()),
    }
}

/// Opens (and so recovers) the plan's engine, rooted at `dir` for engines with files.
pub async fn open(plan: &Plan, dir: &Path) -> Result<Arc<dyn Engine>> {
    let (engine, model) = (plan.args.engine, plan.args.model);
    let opened: strata_storage::Result<Arc<dyn Engine>> = match (engine, model) {
        (EngineKind::Memory, _) => Ok(Arc::new(MemoryEngine::new())),
        (EngineKind::File, Model::Dedicated) => {
            let mut options = file_options(plan);
            if plan.args.tier {
                let s3 = s3_options(plan)?;
                options.tier = Some(Arc::new(S3Tier::new(s3.connect()?, &s3)));
            }
            DedicatedEngine::open(dir, options).map(|e| Arc::new(e) as Arc<dyn Engine>)
        }
        (EngineKind::File, Model::Shared) => {
            SharedEngine::open(dir, file_options(plan)).map(|e| Arc::new(e) as Arc<dyn Engine>)
        }
        (EngineKind::Rocksdb, model) => RocksDb::open(dir, RocksOptions::default())
            .map(|db| Arc::new(db.engine(model)) as Arc<dyn Engine>),
        (EngineKind::Mysql, model) => {
            let url = plan.args.mysql_url.clone().unwrap_or_default();
            let mut options = MysqlOptions::new(url);
            options.max_connections = (plan.concurrency as u32 + 2).max(16);
            MysqlDb::connect(options)
                .await
                .map(|db| Arc::new(db.engine(model)) as Arc<dyn Engine>)
        }
        (EngineKind::S3, model) => {
            let options = s3_options(plan)?;
            match options.connect() {
                Ok(store) => S3Engine::open(store, &options, model, Some(dir.join("wal")))
                    .await
                    .map(|e| Arc::new(e) as Arc<dyn Engine>),
                Err(e) => Err(e),
            }
        }
    };
    opened.with_context(|| {
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
        wal: plan.args.s3_wal,
        remote: plan.args.tier,
        local_retention: Retention {
            ms: None,
            bytes: plan
                .args
                .tier
                .then_some(plan.args.local_retention_bytes.unwrap_or(0)),
        },
        ..StorageSpec::default()
    };
    spec.validate()
        .context("checking the benchmark's storage spec")?;
    Ok(spec)
}

/// The s3 engine's bucket and tuning from the flags, under a prefix unique to this run.
pub fn s3_options(plan: &Plan) -> Result<S3Options> {
    let a = &plan.args;
    let bucket = a
        .s3_bucket
        .clone()
        .context("--engine s3 needs --s3-bucket")?;
    let mut o = S3Options::new(bucket);
    o.endpoint = a.s3_endpoint.clone();
    o.access_key = a.s3_access_key.clone();
    o.secret_key = a.s3_secret_key.clone();
    o.prefix = plan.s3_prefix.clone();
    if let Some(ms) = a.s3_flush_ms {
        o.tuning.flush_interval = std::time::Duration::from_millis(ms.max(1));
    }
    if let Some(bytes) = a.s3_flush_bytes {
        o.tuning.flush_bytes = usize::try_from(bytes).context("--s3-flush-bytes")?;
    }
    Ok(o)
}
