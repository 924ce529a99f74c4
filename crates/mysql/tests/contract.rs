//! The storage contract suite against the MySQL engine, both models, on a throwaway MariaDB.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use strata_mysql::{MysqlDb, MysqlOptions};
use strata_storage::testkit::{BoxFut, Harness};
use strata_storage::{Durability, Engine, EngineKind, Model, Result, StorageSpec};

struct Mysql {
    url: String,
    model: Model,
}

impl Mysql {
    fn new(model: Model) -> Self {
        Mysql {
            url: support::fresh_database(),
            model,
        }
    }
}

impl Harness for Mysql {
    fn spec(&self) -> StorageSpec {
        StorageSpec {
            engine: EngineKind::Mysql,
            model: self.model,
            durability: Durability::Fsync,
            ..StorageSpec::default()
        }
    }

    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>> {
        Box::pin(async move {
            let db = MysqlDb::connect(MysqlOptions::new(&self.url)).await?;
            Ok(Arc::new(db.engine(self.model)) as Arc<dyn Engine>)
        })
    }

    fn persistent(&self) -> bool {
        true
    }

    fn data_files(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    fn keeps_local_files(&self) -> bool {
        false
    }
}

mod shared {
    strata_storage::contract_suite!(super::Mysql::new(strata_storage::Model::Shared));
}

mod dedicated {
    strata_storage::contract_suite!(super::Mysql::new(strata_storage::Model::Dedicated));
}
