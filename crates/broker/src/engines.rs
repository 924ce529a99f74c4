//! The engines a topic can choose, opened once per broker.

#[cfg(feature = "rocksdb")]
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "rocksdb")]
use std::sync::OnceLock;

#[cfg(feature = "mysql")]
use strata_mysql::{MysqlDb, MysqlEngine};
#[cfg(feature = "rocksdb")]
use strata_rocksdb::{RocksDb, RocksEngine, RocksOptions};
#[cfg(feature = "s3")]
use strata_s3::S3Engine;
use strata_storage::file::{DedicatedEngine, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::{Engine, EngineKind, Model, StorageSpec};

use crate::{BrokerConfig, BrokerError, Result};

/// One engine per (kind, model). RocksDB's database is opened on first use (or at start if it
/// exists); MySQL's pool only if a server is configured.
#[derive(Debug, Clone)]
pub struct Engines {
    memory: Arc<MemoryEngine>,
    dedicated: Arc<DedicatedEngine>,
    shared: Arc<SharedEngine>,
    #[cfg(feature = "rocksdb")]
    rocks: Arc<LazyRocks>,
    #[cfg(feature = "mysql")]
    mysql: Option<[Arc<MysqlEngine>; 2]>,
    #[cfg(feature = "s3")]
    s3: Option<[Arc<S3Engine>; 2]>,
}

#[cfg(feature = "rocksdb")]
#[derive(Debug)]
struct LazyRocks {
    path: PathBuf,
    options: RocksOptions,
    engines: OnceLock<[Arc<RocksEngine>; 2]>,
    opening: parking_lot::Mutex<()>,
}

#[cfg(feature = "rocksdb")]
impl LazyRocks {
    fn get(&self) -> Result<&[Arc<RocksEngine>; 2]> {
        if let Some(e) = self.engines.get() {
            return Ok(e);
        }
        let _one = self.opening.lock();
        if let Some(e) = self.engines.get() {
            return Ok(e);
        }
        let db = RocksDb::open(&self.path, self.options.clone())?;
        tracing::info!(path = %self.path.display(), "RocksDB engine opened");
        let engines = [
            Arc::new(db.engine(Model::Dedicated)),
            Arc::new(db.engine(Model::Shared)),
        ];
        Ok(self.engines.get_or_init(|| engines))
    }
}

#[cfg(any(feature = "rocksdb", feature = "mysql", feature = "s3"))]
fn pick<T: Engine>(pair: &[Arc<T>; 2], model: Model) -> Arc<dyn Engine> {
    match model {
        Model::Dedicated => pair[0].clone(),
        Model::Shared => pair[1].clone(),
    }
}

/// Why a topic cannot use an engine that this build of Strata leaves out, and how to build one
/// that has it.
pub fn missing_engine(kind: EngineKind) -> String {
    let needs = match kind {
        EngineKind::Rocksdb => " (RocksDB's C++ needs g++ and libclang-dev)",
        _ => "",
    };
    format!(
        "storage.engine={kind} is not in this build of Strata: it is the cargo feature \
         `{kind}` of strata-server; build with `cargo build --release -p strata-server \
         --features {kind}`{needs}, or `--features full` for every engine"
    )
}

impl Engines {
    /// Opens (and recovers) the file engines under `data_dir/file/`, the RocksDB database under
    /// `data_dir/rocksdb/` if it exists, the MySQL pool if a server is configured, and the s3
    /// engines (write-ahead logs under `data_dir/s3-wal/`) if a bucket is.
    pub async fn open(config: &BrokerConfig) -> Result<Self> {
        let file = config.data_dir.join("file");
        #[cfg_attr(not(feature = "s3"), allow(unused_mut))]
        let mut options = config.file_options.clone();
        #[cfg(feature = "rocksdb")]
        let rocks = Arc::new(LazyRocks {
            path: config.data_dir.join("rocksdb"),
            options: config.rocksdb.clone(),
            engines: OnceLock::new(),
            opening: parking_lot::Mutex::new(()),
        });
        #[cfg(feature = "rocksdb")]
        if rocks.path.join("CURRENT").exists() {
            rocks.get()?;
        }
        #[cfg(feature = "mysql")]
        let mysql = match &config.mysql {
            Some(options) => {
                let db = MysqlDb::connect(options.clone()).await?;
                tracing::info!(server = db.server(), "MySQL engine connected");
                Some([
                    Arc::new(db.engine(Model::Dedicated)),
                    Arc::new(db.engine(Model::Shared)),
                ])
            }
            None => None,
        };
        #[cfg(feature = "s3")]
        let s3 = match &config.s3 {
            Some(s3) => {
                let store = s3.connect()?;
                // Tiered file segments (remote.storage.enable) go to the same bucket.
                options.tier = Some(Arc::new(strata_s3::S3Tier::new(store.clone(), s3)));
                let wal = config.data_dir.join("s3-wal");
                let mut pair = Vec::new();
                for model in [Model::Dedicated, Model::Shared] {
                    let engine =
                        S3Engine::open(store.clone(), s3, model, Some(wal.join(model.as_str())))
                            .await?;
                    pair.push(Arc::new(engine));
                }
                tracing::info!(bucket = %s3.describe(), "s3 engine opened");
                let [d, s]: [Arc<S3Engine>; 2] = pair.try_into().expect("two models");
                Some([d, s])
            }
            None => None,
        };
        Ok(Engines {
            memory: Arc::new(MemoryEngine::new()),
            dedicated: Arc::new(DedicatedEngine::open(
                file.join("dedicated"),
                options.clone(),
            )?),
            shared: Arc::new(SharedEngine::open(file.join("shared"), options.clone())?),
            #[cfg(feature = "rocksdb")]
            rocks,
            #[cfg(feature = "mysql")]
            mysql,
            #[cfg(feature = "s3")]
            s3,
        })
    }

    /// The engine that holds shards of `spec`.
    pub fn for_spec(&self, spec: &StorageSpec) -> Result<Arc<dyn Engine>> {
        match (spec.engine, spec.model) {
            (EngineKind::Memory, _) => Ok(self.memory.clone()),
            (EngineKind::File, Model::Dedicated) => Ok(self.dedicated.clone()),
            (EngineKind::File, Model::Shared) => Ok(self.shared.clone()),
            #[cfg(feature = "rocksdb")]
            (EngineKind::Rocksdb, model) => Ok(pick(self.rocks.get()?, model)),
            #[cfg(feature = "mysql")]
            (EngineKind::Mysql, model) => match &self.mysql {
                Some(pair) => Ok(pick(pair, model)),
                None => Err(BrokerError::config(
                    "storage.engine=mysql needs a MySQL server: start strata with \
                     --mysql-url mysql://USER:PASS@HOST:PORT/DB (or mysql.url in the config file)",
                )),
            },
            #[cfg(feature = "s3")]
            (EngineKind::S3, model) => match &self.s3 {
                Some(pair) => Ok(pick(pair, model)),
                None => Err(BrokerError::config(
                    "storage.engine=s3 needs a bucket: start strata with --s3-bucket NAME \
                     (and --s3-endpoint URL for S3-compatible servers), or an [s3] table in \
                     the config file",
                )),
            },
            #[cfg_attr(
                all(feature = "rocksdb", feature = "mysql", feature = "s3"),
                allow(unreachable_patterns)
            )]
            (other, _) => Err(BrokerError::config(missing_engine(other))),
        }
    }

    /// Every opened engine, for maintenance, metrics and shutdown.
    pub fn all(&self) -> Vec<(&'static str, Arc<dyn Engine>)> {
        #[cfg_attr(
            not(any(feature = "rocksdb", feature = "mysql", feature = "s3")),
            allow(unused_mut)
        )]
        let mut all: Vec<(&'static str, Arc<dyn Engine>)> = vec![
            ("memory", self.memory.clone() as Arc<dyn Engine>),
            ("file-dedicated", self.dedicated.clone()),
            ("file-shared", self.shared.clone()),
        ];
        #[cfg(feature = "rocksdb")]
        if let Some([d, s]) = self.rocks.engines.get() {
            all.push(("rocksdb-dedicated", d.clone()));
            all.push(("rocksdb-shared", s.clone()));
        }
        #[cfg(feature = "mysql")]
        if let Some([d, s]) = &self.mysql {
            all.push(("mysql-dedicated", d.clone()));
            all.push(("mysql-shared", s.clone()));
        }
        #[cfg(feature = "s3")]
        if let Some([d, s]) = &self.s3 {
            all.push(("s3-dedicated", d.clone()));
            all.push(("s3-shared", s.clone()));
        }
        all
    }
}
