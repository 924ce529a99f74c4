//! Where the bucket is, how to reach it, and how the engine buffers, caches and maintains.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::{ClientOptions, ObjectStore, RetryConfig};
use strata_storage::{Result, StorageError};

/// Where the bucket is and how to reach it.
#[derive(Clone, Default)]
pub struct S3Options {
    /// Endpoint URL for S3-compatible servers (MinIO, Ceph, …); `None` means AWS.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Region (`us-east-1` if unset and not in the environment).
    pub region: Option<String>,
    /// Access key; `None` takes `AWS_ACCESS_KEY_ID` or the instance's credentials.
    pub access_key: Option<String>,
    /// Secret key; `None` takes `AWS_SECRET_ACCESS_KEY`.
    pub secret_key: Option<String>,
    /// Key prefix for everything this node writes.
    pub prefix: String,
    /// Buffering, caching and background work.
    pub tuning: S3Tuning,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("tuning", &self.tuning)
            .finish_non_exhaustive()
    }
}

/// How the engine buffers, caches and maintains.
#[derive(Debug, Clone)]
pub struct S3Tuning {
    /// Longest time an append waits in the buffer before its flush.
    pub flush_interval: Duration,
    /// Buffered bytes that start a flush at once.
    pub flush_bytes: usize,
    /// Bytes of recent batches kept in memory for reads.
    pub cache_bytes: usize,
    /// Bytes of following batches a read fetches along (in the same GET) into the cache.
    pub read_ahead_bytes: usize,
    /// Bytes of write-ahead-logged batches not yet uploaded beyond which appends fail.
    pub wal_backlog_bytes: usize,
    /// Objects smaller than this (or less than half live) are compacted.
    pub compact_below: u64,
    /// Largest amount of live data compacted in one maintenance pass.
    pub compact_max: u64,
    /// A checkpoint is written after this many log objects.
    pub checkpoint_every: u64,
}

impl Default for S3Tuning {
    fn default() -> Self {
        S3Tuning {
            flush_interval: Duration::from_millis(250),
            flush_bytes: 8 << 20,
            cache_bytes: 64 << 20,
            read_ahead_bytes: 4 << 20,
            wal_backlog_bytes: 1 << 30,
            compact_below: 4 << 20,
            compact_max: 64 << 20,
            checkpoint_every: 64,
        }
    }
}

impl S3Options {
    /// Options for `bucket` with defaults for everything else.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: "strata".into(),
            ..S3Options::default()
        }
    }

    /// A client for the bucket. The usual `AWS_*` environment variables apply; the options
    /// override them. Custom endpoints use path-style addressing; `http://` endpoints are
    /// allowed.
    pub fn connect(&self) -> Result<Arc<dyn ObjectStore>> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(60)),
            );
        if let Some(endpoint) = &self.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into());
        b = b.with_region(region);
        if let Some(k) = &self.access_key {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &self.secret_key {
            b = b.with_secret_access_key(k);
        }
        let store = b
            .build()
            .map_err(|e| StorageError::InvalidSpec(format!("S3 bucket {}: {e}", self.bucket)))?;
        Ok(Arc::new(store))
    }

    /// Human-readable location, for errors and logs.
    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{} at {}",
            self.bucket,
            self.prefix,
            self.endpoint.as_deref().unwrap_or("AWS")
        )
    }
}
