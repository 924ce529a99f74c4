//! Where tiered segments go: an object store, seen through the three calls tiering needs.
//! The s3 crate implements it over `object_store`; the storage crate stays free of it.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// Remote storage for closed segments (`remote.storage.enable`).
#[async_trait]
pub trait RemoteTier: Send + Sync + fmt::Debug {
    /// Uploads the file at `path` as `key`, replacing any object there (uploads are retried
    /// under the same key, so a crash never leaves a second copy elsewhere).
    async fn upload(&self, key: &str, path: &Path) -> Result<()>;

    /// Reads `range` of `key`, or all of it.
    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes>;

    /// Deletes `key`; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
}
