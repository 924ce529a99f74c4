//! The file engine's remote tier (`remote.storage.enable`) over the same bucket: segments go
//! under `<prefix>/tier/<topic>-<partition>/`.

use std::ops::Range;
use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use strata_storage::file::RemoteTier;
use strata_storage::{Result, StorageError};
use tokio::io::AsyncWriteExt;

use crate::S3Options;
use crate::engine::unavailable;

/// Tiered segments in a bucket.
#[derive(Debug)]
pub struct S3Tier {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    where_: String,
}

impl S3Tier {
    /// The tier under `options.prefix` of `store`'s bucket.
    pub fn new(store: Arc<dyn ObjectStore>, options: &S3Options) -> S3Tier {
        S3Tier {
            store,
            prefix: options.prefix.trim_matches('/').to_owned(),
            where_: format!("{} (tiered segments)", options.describe()),
        }
    }

    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}/{key}", self.prefix))
    }
}

#[async_trait]
impl RemoteTier for S3Tier {
    async fn upload(&self, key: &str, path: &FsPath) -> Result<()> {
        let mut file = tokio::fs::File::open(path).await.map_err(|e| {
            StorageError::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
        // Multipart above 10 MiB, one PUT below.
        let mut out = BufWriter::new(self.store.clone(), self.path(key));
        let copied = tokio::io::copy(&mut file, &mut out).await;
        match copied {
            Ok(_) => out
                .shutdown()
                .await
                .map_err(|e| unavailable(&self.where_, e)),
            Err(e) => {
                let _ = out.abort().await;
                Err(unavailable(&self.where_, e))
            }
        }
    }

    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(|e| unavailable(&self.where_, e))?;
        got.bytes().await.map_err(|e| unavailable(&self.where_, e))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(unavailable(&self.where_, e)),
        }
    }
}
