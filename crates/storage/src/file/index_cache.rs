//! A byte-bounded LRU cache of loaded index structures of closed files.

use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::fdcache::FileKey;

/// Something whose memory footprint the cache can weigh.
pub(crate) trait Weigh {
    fn weight(&self) -> usize;
}

/// The cache: at most `budget` bytes of values.
pub(crate) struct IndexCache<T> {
    inner: Mutex<(LruCache<FileKey, Arc<T>>, usize)>,
    budget: usize,
}

impl<T> std::fmt::Debug for IndexCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexCache")
            .field("bytes", &self.inner.lock().1)
            .field("budget", &self.budget)
            .finish()
    }
}

impl<T: Weigh> IndexCache<T> {
    pub(crate) fn new(budget: usize) -> Self {
        IndexCache {
            inner: Mutex::new((LruCache::unbounded(), 0)),
            budget,
        }
    }

    pub(crate) fn get(&self, key: FileKey) -> Option<Arc<T>> {
        self.inner.lock().0.get(&key).cloned()
    }

    pub(crate) fn put(&self, key: FileKey, value: Arc<T>) {
        let mut g = self.inner.lock();
        let (map, bytes) = &mut *g;
        *bytes += value.weight();
        if let Some(old) = map.put(key, value) {
            *bytes -= old.weight();
        }
        while *bytes > self.budget && map.len() > 1 {
            match map.pop_lru() {
                Some((_, old)) => *bytes -= old.weight(),
                None => break,
            }
        }
    }

    pub(crate) fn forget(&self, key: FileKey) {
        let mut g = self.inner.lock();
        let (map, bytes) = &mut *g;
        if let Some(old) = map.pop(&key) {
            *bytes -= old.weight();
        }
    }
}
