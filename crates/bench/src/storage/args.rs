//! The flags of `strata-bench storage`, and the checked [`Plan`] they resolve to.

use std::path::PathBuf;

use anyhow::{Result, bail, ensure};
use clap::{Args, ValueEnum};
use strata_storage::{DEFAULT_SEGMENT_BYTES, Durability, EngineKind, MIN_SEGMENT_BYTES, Model};

use super::engines::check_engine;
use crate::size::parse_size;

/// Flags of one storage benchmark run.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Engine under test: memory, file, rocksdb, mysql (needs --mysql-url) or s3 (needs
    /// --s3-bucket).
    #[arg(long, default_value = "file", value_parser = parse_engine)]
    pub engine: EngineKind,

    /// Physical model: dedicated (a log per shard) or shared (one journal for all shards).
    #[arg(long, default_value = "dedicated", value_parser = parse_model)]
    pub model: Model,

    /// Number of shards to create and spread appends over.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,

    /// Size of each appended batch (e.g. 1024, 64KiB, 1MiB).
    #[arg(long, default_value = "1024", value_parser = parse_size)]
    pub batch_bytes: u64,

    /// Size of each record's value; a batch holds as many records as fit in --batch-bytes.
    #[arg(long, default_value = "100", value_parser = parse_size)]
    pub record_bytes: u64,

    /// Bytes appended in the run (e.g. 64MiB, 1GiB); rounded up to whole batches.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub total_bytes: u64,

    /// When an append is acknowledged: os, fsync or interval:<ms> (memory for the memory
    /// engine, which is its default and only choice; os is the file engine's default).
    #[arg(long, value_parser = parse_durability)]
    pub durability: Option<Durability>,

    /// Concurrent appending (and reading) tasks; each owns a disjoint set of shards.
    #[arg(long, default_value_t = 1)]
    pub concurrency: u32,

    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Append)]
    pub mode: Mode,

    /// Page cache state for read runs: warm (just written) or cold (dropped, engine reopened).
    #[arg(long, value_enum, default_value_t = Cache::Warm)]
    pub cache: Cache,

    /// How reads hand file regions on: sendfile into /dev/null (zero copy) or pread into a
    /// reusable buffer.
    #[arg(long, value_enum, default_value_t = ReadPath::Sendfile)]
    pub read_path: ReadPath,

    /// Folder in which the run creates its fresh data directory `strata-bench-data-<pid>`
    /// (default: the current folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,

    /// The mysql engine's server, mysql://USER:PASS@HOST:PORT/DB; the database should hold no
    /// Strata tables yet.
    #[arg(long, value_name = "URL")]
    pub mysql_url: Option<String>,

    /// The s3 engine's bucket; the run writes under a fresh prefix and deletes it afterwards.
    #[arg(long, value_name = "NAME")]
    pub s3_bucket: Option<String>,

    /// S3-compatible endpoint URL (path-style), e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,

    /// S3 access key (default: AWS_ACCESS_KEY_ID).
    #[arg(long)]
    pub s3_access_key: Option<String>,

    /// S3 secret key (default: AWS_SECRET_ACCESS_KEY).
    #[arg(long)]
    pub s3_secret_key: Option<String>,

    /// File engine, dedicated model: tier closed segments to the --s3-bucket
    /// (`remote.storage.enable=true`); read runs upload them after the fill, so that reads
    /// from offset 0 fetch them back.
    #[arg(long)]
    pub tier: bool,

    /// With --tier: `local.retention.bytes` (default 0: only the active segment stays local).
    #[arg(long, value_parser = parse_size)]
    pub local_retention_bytes: Option<u64>,

    /// s3 engine: acknowledge appends from a local write-ahead log (`storage.wal=local`),
    /// fsynced as --durability says, and upload later.
    #[arg(long)]
    pub s3_wal: bool,

    /// s3 engine: longest time an append waits for its upload, in ms (default 250).
    #[arg(long)]
    pub s3_flush_ms: Option<u64>,

    /// s3 engine: buffered bytes that start an upload at once (default 8MiB).
    #[arg(long, value_parser = parse_size)]
    pub s3_flush_bytes: Option<u64>,

    /// File engines: most files kept open at once (default: a quarter of the descriptor limit).
    #[arg(long)]
    pub open_files: Option<usize>,

    /// Segment size at which a shard's log rolls (file engine).
    #[arg(long, default_value_t = DEFAULT_SEGMENT_BYTES, value_parser = parse_size)]
    pub segment_bytes: u64,

    /// Keep at most this many bytes per shard (`retention.bytes`; default unlimited). Only
    /// for append and append-read runs, which never read back what retention may drop.
    #[arg(long, value_parser = parse_size)]
    pub retention_bytes: Option<u64>,

    /// Also time closing and reopening the engine after an append run (file engines).
    #[arg(long)]
    pub reopen: bool,

    /// With --reopen: drop the engine without closing it, as a crash would (the data stays in
    /// the page cache), so that the reopen has to recover instead of reading a clean state.
    #[arg(long, requires = "reopen")]
    pub crash: bool,

    /// Keep the data directory after the run.
    #[arg(long)]
    pub keep: bool,

    /// File that the JSON line is appended to, relative to the current folder.
    #[arg(long, default_value = "strata-bench.jsonl")]
    pub jsonl: PathBuf,

    /// Free-form label copied into the JSON line (for example the name of a matrix case).
    #[arg(long)]
    pub label: Option<String>,
}

/// What a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Append `total_bytes`, timing every append.
    Append,
    /// Append `total_bytes` untimed, then read everything back, timing every read.
    Read,
    /// Append each batch and read it straight back, on one core.
    AppendRead,
}

/// Page cache state when a read run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cache {
    /// Read right after writing: the data is in the page cache.
    Warm,
    /// Close the engine, drop the data files from the page cache, reopen, then read.
    Cold,
}

/// How file regions returned by reads are consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReadPath {
    /// `sendfile` into /dev/null: the kernel reads the pages, nothing is copied to user space.
    Sendfile,
    /// `pread` into a reusable buffer.
    Pread,
}

macro_rules! label {
    ($ty:ident { $($variant:ident = $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The name used on the command line and in the JSON line.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
    };
}
label!(Mode { Append = "append", Read = "read", AppendRead = "append-read" });
label!(Cache { Warm = "warm", Cold = "cold" });
label!(ReadPath { Sendfile = "sendfile", Pread = "pread" });

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    s.parse()
        .map_err(|e: strata_storage::StorageError| e.to_string())
}

fn parse_model(s: &str) -> Result<Model, String> {
    s.parse()
        .map_err(|e: strata_storage::StorageError| e.to_string())
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    s.parse()
        .map_err(|e: strata_storage::StorageError| e.to_string())
}

/// The run after defaults are filled in and combinations checked.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The flags as given.
    pub args: StorageArgs,
    /// Durability resolved from the engine when not given.
    pub durability: Durability,
    /// Tasks that append and read.
    pub concurrency: usize,
    /// Shards to create.
    pub shards: usize,
    /// s3 engine: the key prefix this run writes under.
    pub s3_prefix: String,
}

impl Plan {
    /// Checks the flags and fills in defaults.
    pub fn new(args: StorageArgs) -> Result<Plan> {
        let memory = args.engine == EngineKind::Memory;
        let durability = match (args.durability, memory) {
            (Some(d), _) => d,
            (None, true) => Durability::Memory,
            (None, false) => Durability::OsCache,
        };
        if memory && durability != Durability::Memory {
            bail!("the memory engine keeps no disk copy: --durability must be memory (or unset)");
        }
        if !memory && durability == Durability::Memory {
            bail!(
                "--durability memory is only for --engine memory; use os, fsync or interval:<ms>"
            );
        }
        ensure!(args.shards >= 1, "--shards must be at least 1");
        ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
        ensure!(
            args.concurrency <= args.shards,
            "--concurrency {} exceeds --shards {}: every task owns at least one shard, so that \
             each shard has one writer and a defined order",
            args.concurrency,
            args.shards
        );
        ensure!(args.record_bytes >= 1, "--record-bytes must be at least 1");
        ensure!(
            args.batch_bytes >= 128 && args.batch_bytes <= 512 << 20,
            "--batch-bytes must be between 128 bytes and 512MiB"
        );
        ensure!(args.total_bytes >= 1, "--total-bytes must be positive");
        ensure!(
            args.segment_bytes >= MIN_SEGMENT_BYTES,
            "--segment-bytes must be at least {MIN_SEGMENT_BYTES}"
        );
        if memory && args.mode == Mode::Read && args.cache == Cache::Cold {
            bail!("--cache cold needs a file engine: the memory engine has no files to drop");
        }
        if args.retention_bytes.is_some() && args.mode == Mode::Read {
            bail!(
                "--retention-bytes would drop what a read run reads back: use it with append or append-read"
            );
        }
        if memory && args.reopen {
            bail!("--reopen needs a file engine: the memory engine keeps nothing across a reopen");
        }
        check_engine(args.engine, args.model)?;
        if args.engine == EngineKind::Mysql && args.mysql_url.is_none() {
            bail!("--engine mysql needs --mysql-url mysql://USER:PASS@HOST:PORT/DB");
        }
        if args.engine == EngineKind::S3 && args.s3_bucket.is_none() {
            bail!("--engine s3 needs --s3-bucket NAME (and --s3-endpoint URL for a local server)");
        }
        if args.tier
            && (args.engine != EngineKind::File
                || args.model != Model::Dedicated
                || args.s3_bucket.is_none())
        {
            bail!("--tier needs --engine file --model dedicated and --s3-bucket");
        }
        if args.s3_wal && args.engine != EngineKind::S3 {
            bail!("--s3-wal is for --engine s3");
        }
        Ok(Plan {
            durability,
            concurrency: args.concurrency as usize,
            shards: args.shards as usize,
            s3_prefix: format!(
                "strata-bench-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis())
            ),
            args,
        })
    }

    /// True for engines that write files (so raw baselines use a file, not memcpy).
    pub fn on_disk(&self) -> bool {
        self.args.engine != EngineKind::Memory
    }

    /// Byte budget of each read: `max(1 MiB, batch)`.
    pub fn read_budget(&self, batch_len: usize) -> usize {
        batch_len.max(1 << 20)
    }

    /// Whether the run reads at all (so `cache` and `read_path` mean something).
    pub fn reads(&self) -> bool {
        self.args.mode != Mode::Append
    }
}
