//! The file engine, in its two models: [`DedicatedEngine`] (one segment chain per shard) and
//! [`SharedEngine`] (one journal for every shard). Both recover on open, verify checksums
//! before serving bytes they did not write themselves, and share group commit ([`sync`]) and
//! an open-file cache ([`fdcache`]).

mod dedicated;
pub(crate) mod fdcache;
pub(crate) mod index_cache;
pub(crate) mod io;
pub(crate) mod ranges;
mod shared;
pub(crate) mod sync;
mod tier;
pub(crate) mod window;

pub use dedicated::DedicatedEngine;
pub use shared::SharedEngine;
pub use tier::RemoteTier;

/// Tuning of a file engine. The defaults suit a server; tests and benchmarks shrink them.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// Most files the engine keeps open at once (descriptors). Default: a quarter of the
    /// process's descriptor limit, between 64 and 16,384.
    pub open_files: usize,
    /// Memory for cached indexes of closed segments or journal files, in bytes.
    pub index_cache_bytes: usize,
    /// Shared model: size at which a journal file is closed and a new one started.
    pub journal_file_bytes: u64,
    /// Shared model: write an index checkpoint after this many journal bytes, which bounds
    /// how much of the journal recovery replays.
    pub checkpoint_bytes: u64,
    /// Dedicated model: object storage for shards with `remote.storage.enable=true`.
    pub tier: Option<std::sync::Arc<dyn RemoteTier>>,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            open_files: fdcache::default_capacity(),
            index_cache_bytes: 64 << 20,
            journal_file_bytes: 256 << 20,
            checkpoint_bytes: 256 << 20,
            tier: None,
        }
    }
}
