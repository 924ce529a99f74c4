//! A bounded cache of open files, so that 100,000 shards do not need 100,000 descriptors.
//!
//! Entries are `Arc<File>`: evicting one only drops the cache's reference, so a reader still
//! sending from it (or the syncer still flushing it) keeps the descriptor until done. Files are
//! written with positioned writes, so a reopened file needs no seek state.

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;

/// Identifies a cached file: (owner number, file number) — for example (shard, segment base).
pub(crate) type FileKey = (u64, u64);

/// The cache.
pub(crate) struct FdCache {
    files: Mutex<LruCache<FileKey, Arc<File>>>,
    opens: AtomicU64,
}

impl std::fmt::Debug for FdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FdCache")
            .field("open", &self.len())
            .field("opens", &self.opens.load(Ordering::Relaxed))
            .finish()
    }
}

/// A sensible capacity: a quarter of the descriptor limit, between 64 and 16,384.
pub(crate) fn default_capacity() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur as usize
    } else {
        1024
    };
    (soft / 4).clamp(64, 16_384)
}

impl FdCache {
    pub(crate) fn new(capacity: usize) -> Self {
        FdCache {
            files: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity.max(1)).expect("non-zero"),
            )),
            opens: AtomicU64::new(0),
        }
    }

    /// The cached file, or `path` opened for reading and writing (created if `create`).
    pub(crate) fn open(&self, key: FileKey, path: &Path, create: bool) -> io::Result<Arc<File>> {
        if let Some(f) = self.files.lock().get(&key) {
            return Ok(f.clone());
        }
        let file = Arc::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path)?,
        );
        self.opens.fetch_add(1, Ordering::Relaxed);
        let mut files = self.files.lock();
        // Another thread may have opened it meanwhile; keep one.
        if let Some(f) = files.get(&key) {
            return Ok(f.clone());
        }
        files.put(key, file.clone());
        Ok(file)
    }

    /// Drops a cached file (before deleting or renaming it).
    pub(crate) fn forget(&self, key: FileKey) {
        self.files.lock().pop(&key);
    }

    /// Drops every cached file of one owner.
    pub(crate) fn forget_owner(&self, owner: u64) {
        let mut files = self.files.lock();
        let keys: Vec<FileKey> = files
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| k.0 == owner)
            .collect();
        for k in keys {
            files.pop(&k);
        }
    }

    /// Number of files held open by the cache.
    pub(crate) fn len(&self) -> usize {
        self.files.lock().len()
    }

    /// Drops everything.
    pub(crate) fn clear(&self) {
        self.files.lock().clear();
    }
}
