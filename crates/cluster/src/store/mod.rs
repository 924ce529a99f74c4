//! Where the Raft group keeps its state: the log and the vote ([`LogStore`], on the file
//! engine) and the state machine ([`StateMachine`], the cluster image with snapshots), in one
//! directory. See `docs/format/cluster.md` for the files.

// openraft's storage traits fix the error type (`StorageError`, over 200 bytes); the helpers
// here return what those methods return.
#![allow(clippy::result_large_err)]

mod log;
mod machine;
mod meta;

use std::path::Path;

pub use log::LogStore;
pub use machine::{ImageReader, StateMachine};

use crate::types::typ;

/// An error as openraft's storage errors carry it (they take a reference to an error).
fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Opens the log and the state machine kept in `dir`.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachine), typ::StorageError> {
    let log = LogStore::open(dir).await?;
    let machine = StateMachine::open(dir)?;
    Ok((log, machine))
}
