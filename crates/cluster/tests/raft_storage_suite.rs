//! openraft's own storage test suite, run against the cluster's log and state machine.

use openraft::testing::{StoreBuilder, Suite};
use strata_cluster::TypeConfig;
use strata_cluster::store::{self, LogStore, StateMachine};
use strata_cluster::types::typ;
use tempfile::TempDir;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), typ::StorageError> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (log, machine) = store::open(dir.path()).await?;
        Ok((dir, log, machine))
    }
}

/// A plain test: every case of the suite runs on a runtime of its own.
#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}
