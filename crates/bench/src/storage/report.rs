//! The one JSON line a run prints, and where it goes.
//!
//! Field meanings are listed in the crate README. Rates use MB = 10^6 bytes; latencies are in
//! microseconds. Fields that do not apply to a run are `null`, never left out, so every line of
//! a results file has the same columns.

use serde::Serialize;

use crate::host::Host;

/// Everything one run measured, with the configuration and host it was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Always "storage".
    pub bench: &'static str,
    /// The `--label` given, if any.
    pub label: Option<String>,
    /// When the run ended, seconds since the Unix epoch.
    pub unix_time: u64,

    // Configuration.
    pub engine: String,
    pub model: String,
    pub shards: usize,
    /// Requested batch size.
    pub batch_bytes: u64,
    /// Size of the batches actually built (at most `batch_bytes` unless one record exceeds it).
    pub batch_bytes_actual: usize,
    pub record_bytes: u64,
    pub records_per_batch: u32,
    pub durability: String,
    pub concurrency: usize,
    pub mode: &'static str,
    /// `warm` or `cold` for runs that read, else null.
    pub cache: Option<&'static str>,
    /// `sendfile` or `pread` for runs that read, else null.
    pub read_path: Option<&'static str>,
    pub segment_bytes: u64,
    /// `retention.bytes` of every shard, if bounded.
    pub retention_bytes: Option<u64>,
    /// `--open-files` if given.
    pub open_files_limit: Option<usize>,
    /// Tokio runtime flavour the engine was driven on.
    pub runtime: &'static str,

    // Volume.
    /// Bytes appended (whole batches, so at least `--total-bytes`).
    pub total_bytes: u64,
    pub appends: u64,
    pub records: u64,

    // The measured phase: appends, reads, or append+read pairs, per `mode`.
    pub secs: f64,
    pub mb_per_s: f64,
    /// Appends per second (in read runs: of the untimed fill, see `fill_secs`).
    pub appends_per_s: f64,
    /// Read calls per second (runs that read).
    pub reads_per_s: Option<f64>,
    pub records_per_s: f64,
    /// What the latency fields time: `append`, `read` or `append+read`.
    pub latency_of: &'static str,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub p999_us: Option<f64>,
    pub max_us: Option<f64>,
    /// fsyncs the engine issued while appending.
    pub fsyncs: u64,
    /// Read runs: duration and rate of the appends that filled the engine.
    pub fill_secs: Option<f64>,
    pub fill_mb_per_s: Option<f64>,
    /// Read pieces served as file regions / as bytes in memory.
    pub file_pieces: Option<u64>,
    pub bytes_pieces: Option<u64>,

    // Baselines measured in the same run.
    /// `pwrite`, `pread`, `sendfile`, `pwrite+pread`, `pwrite+sendfile`, `memcpy`, or for the
    /// s3 engine `s3-put`, `s3-get`, `s3-put+get` (the bucket without the engine).
    pub raw_kind: String,
    pub raw_mb_per_s: f64,
    /// Baseline operations per second (writes; reads of one budget in read runs).
    pub raw_appends_per_s: f64,
    pub raw_fsyncs: u64,
    /// `mb_per_s / raw_mb_per_s`.
    pub ratio: f64,
    /// Copying the same bytes in memory, batch by batch.
    pub memcpy_mb_per_s: f64,
    /// Share of the baseline file still in the page cache after dropping it (cold runs).
    pub cold_resident_pct: Option<f64>,

    // Costs.
    /// (RSS after creating shards and appending − RSS before opening the engine) / shards.
    pub rss_bytes_per_shard: i64,
    pub rss_before_bytes: u64,
    pub rss_after_bytes: u64,
    /// Time to create every shard.
    pub create_secs: f64,
    /// Time to close the engine / to reopen (recover) it, when the run does (file engines).
    pub close_ms: Option<f64>,
    pub open_ms: Option<f64>,
    /// What preceded the timed open: "close" (a clean shutdown) or "crash" (the engine was
    /// dropped without closing, so the open recovered).
    pub reopen_after: Option<&'static str>,
    /// Files the engine held open at the end of the measured phase.
    pub engine_open_files: u64,
    /// Object storage (s3 engine): objects PUT from shard creation to the close after the
    /// run, their bytes, PUTs per GiB appended, bytes left in the bucket, and those bytes over
    /// the bytes appended.
    pub objects_written: Option<u64>,
    pub object_bytes_written: Option<u64>,
    pub puts_per_gib: Option<f64>,
    pub stored_bytes: Option<u64>,
    pub stored_to_ingested: Option<f64>,

    /// Facts about the machine.
    #[serde(flatten)]
    pub host: Host,
}
