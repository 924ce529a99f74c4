//! `strata-bench storage`: one measurement of one engine configuration, reported as one JSON
//! line beside the physical reference measured in the same run.
//!
//! A run: build a pool of batches → measure the raw baseline (pwrite / read / memcpy of the
//! same bytes) → open the engine in a fresh directory → create the shards → append (timed, or
//! untimed before a read) → optionally close, drop the page cache and reopen → read (timed) →
//! report → remove the directory.

mod args;
mod datadir;
mod drive;
mod engines;
pub(crate) mod measure;
mod raw;
mod report;
mod s3raw;
mod sink;
mod workload;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

pub use args::{Cache, Mode, Plan, ReadPath, StorageArgs};
pub use report::Report;

use crate::host::{self, Host};
use datadir::DataDir;
use drive::Target;
use measure::{Phase, ms};
use workload::{BatchPool, POOL_SIZE, shard_ids};

/// Runs one benchmark, prints its JSON line and appends it to `--jsonl`.
pub fn run(args: StorageArgs) -> Result<Report> {
    let plan = Plan::new(args)?;
    let data = DataDir::create(plan.args.dir.as_deref(), plan.args.keep)?;
    let host = Host::probe(data.path());
    let pool = Arc::new(BatchPool::build(
        usize::try_from(plan.args.batch_bytes).context("--batch-bytes")?,
        usize::try_from(plan.args.record_bytes).context("--record-bytes")?,
        POOL_SIZE,
    )?);
    let appends = plan.args.total_bytes.div_ceil(pool.batch_len as u64);
    let base = baseline(&plan, &pool, appends, &data)?;

    let runtime = runtime(&plan)?;
    let ids = Arc::new(shard_ids(plan.shards)?);
    let measured = runtime.block_on(measure_engine(&plan, &pool, ids, appends, &data))?;
    drop(runtime);

    let report = build_report(&plan, &pool, appends, host, base, measured);
    crate::report::emit(&report, Some(&plan.args.jsonl))?;
    data.finish()?;
    Ok(report)
}

/// The baselines of a run.
struct Baseline {
    kind: String,
    phase: Phase,
    memcpy: Phase,
    cold_resident_pct: Option<f64>,
}

/// Measures the physical reference for the plan's mode, before the engine exists.
fn baseline(plan: &Plan, pool: &BatchPool, appends: u64, data: &DataDir) -> Result<Baseline> {
    let memcpy = raw::memcpy(pool, appends);
    let path = data.baseline_file();
    host::settle(data.path())?;
    let read_path = plan.args.read_path;
    let mut sink = sink::Sink::new(read_path, plan.read_budget(pool.batch_len))?;
    let mut cold_resident_pct = None;
    let (kind, phase) = match plan.args.mode {
        _ if !plan.on_disk() => ("memcpy".to_owned(), memcpy.clone()),
        mode if plan.args.engine == strata_storage::EngineKind::S3 => {
            let budget = (mode != Mode::Append).then(|| plan.read_budget(pool.batch_len));
            let (put, get) = s3raw::put_get(plan, pool, appends, budget)?;
            match (mode, get) {
                (Mode::Read, Some(get)) => ("s3-get".to_owned(), get),
                (Mode::AppendRead, Some(get)) => {
                    let mut both = put;
                    both.elapsed += get.elapsed;
                    ("s3-put+get".to_owned(), both)
                }
                _ => ("s3-put".to_owned(), put),
            }
        }
        Mode::Append => (
            "pwrite".to_owned(),
            raw::write(&path, pool, appends, plan.durability)?,
        ),
        Mode::Read => {
            raw::write(&path, pool, appends, plan.durability)?;
            if plan.args.cache == Cache::Cold {
                host::drop_file(&path).context("dropping the baseline file from the page cache")?;
                cold_resident_pct = Some(host::resident_pct(&path)?);
            }
            let budget = plan.read_budget(pool.batch_len);
            (
                read_path.as_str().to_owned(),
                raw::read(&path, pool, budget, &mut sink)?,
            )
        }
        Mode::AppendRead => (
            format!("pwrite+{}", read_path.as_str()),
            raw::write_read(&path, pool, appends, plan.durability, &mut sink)?,
        ),
    };
    if path.exists() {
        std::fs::remove_file(&path).context("removing the baseline file")?;
    }
    host::settle(data.path())?;
    Ok(Baseline {
        kind,
        phase,
        memcpy,
        cold_resident_pct,
    })
}

/// A current-thread runtime for one task (and for append-read, which is a one-core target);
/// otherwise one worker per core.
fn runtime(plan: &Plan) -> Result<tokio::runtime::Runtime> {
    let mut builder = if plan.concurrency == 1 || plan.args.mode == Mode::AppendRead {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

fn runtime_name(plan: &Plan) -> &'static str {
    if plan.concurrency == 1 || plan.args.mode == Mode::AppendRead {
        "current_thread"
    } else {
        "multi_thread"
    }
}

/// What the engine part of a run measured.
#[derive(Default)]
struct Measured {
    /// The timed phase.
    phase: Phase,
    /// The untimed append before reads.
    fill: Option<Phase>,
    create: Duration,
    rss_before: u64,
    rss_after: u64,
    close: Option<Duration>,
    open: Option<Duration>,
    open_files: u64,
    /// Object storage: PUTs and bytes written from shard creation to the end, objects' bytes
    /// left in the bucket.
    objects: Option<(u64, u64, u64)>,
    /// Objects and bytes written by engine instances closed by a reopen.
    objects_before_reopen: (u64, u64),
}

async fn measure_engine(
    plan: &Plan,
    pool: &Arc<BatchPool>,
    ids: Arc<Vec<strata_storage::ShardId>>,
    appends: u64,
    data: &DataDir,
) -> Result<Measured> {
    let dir = data.engine_dir();
    let mut m = Measured {
        rss_before: host::rss_bytes()?,
        ..Measured::default()
    };
    let mut target = Target {
        engine: engines::open(plan, &dir).await?,
        ids,
        pool: pool.clone(),
        tasks: plan.concurrency,
    };
    m.create = target.create_shards(engines::spec(plan)?).await?;
    let created = target.engine.stats();
    let budget = plan.read_budget(pool.batch_len);
    let read_path = plan.args.read_path;
    match plan.args.mode {
        Mode::Append => {
            m.phase = target.append(appends).await?;
            m.rss_after = host::rss_bytes()?;
            m.open_files = target.engine.stats().open_files;
            if plan.args.reopen {
                target = reopen(plan, target, &dir, &mut m, false).await?;
            }
        }
        Mode::Read => {
            m.fill = Some(target.append(appends).await?);
            m.rss_after = host::rss_bytes()?;
            if plan.args.tier {
                // Upload the closed segments and drop them locally.
                target
                    .engine
                    .maintain(strata_storage::now_ms())
                    .await
                    .context("tiering the filled segments")?;
            }
            if plan.args.cache == Cache::Cold {
                target = reopen(plan, target, &dir, &mut m, true).await?;
            }
            m.phase = target.read(budget, read_path).await?;
            m.open_files = target.engine.stats().open_files;
        }
        Mode::AppendRead => {
            m.phase = target.append_read(appends, read_path).await?;
            m.rss_after = host::rss_bytes()?;
            m.open_files = target.engine.stats().open_files;
        }
    }
    if plan.args.engine == strata_storage::EngineKind::S3 {
        // Everything acknowledged from a write-ahead log is uploaded by the close.
        target.engine.close().await.context("closing the engine")?;
        let s = target.engine.stats();
        let stored = s3raw::stored_bytes(plan).await?;
        let (carried, carried_bytes) = m.objects_before_reopen;
        m.objects = Some((
            (s.objects_written + carried).saturating_sub(created.objects_written),
            (s.object_bytes_written + carried_bytes).saturating_sub(created.object_bytes_written),
            stored,
        ));
        if !plan.args.keep {
            s3raw::cleanup(plan).await?;
        }
        return Ok(m);
    }
    if plan.args.tier && !plan.args.keep {
        s3raw::cleanup(plan).await?;
    }
    if plan.args.keep {
        // Kept data should reopen cleanly. Otherwise the directory is about to be deleted, and
        // a clean close (index files, syncfs) of 100,000 shards can take a minute.
        target.engine.close().await.context("closing the engine")?;
    }
    Ok(m)
}

/// Closes the engine, optionally drops its files from the page cache, and reopens it, timing
/// the close and the open (recovery).
async fn reopen(
    plan: &Plan,
    target: Target,
    dir: &Path,
    m: &mut Measured,
    drop_cache: bool,
) -> Result<Target> {
    let Target {
        engine,
        ids,
        pool,
        tasks,
    } = target;
    let t = Instant::now();
    if !plan.args.crash || drop_cache {
        engine.close().await.context("closing the engine")?;
        m.close = Some(t.elapsed());
    }
    let s = engine.stats();
    m.objects_before_reopen.0 += s.objects_written;
    m.objects_before_reopen.1 += s.object_bytes_written;
    // The old engine, its descriptors and its sync thread are gone before the new one opens.
    drop(engine);
    if drop_cache {
        host::drop_from_cache(dir)?;
    }
    let t = Instant::now();
    let engine = engines::open(plan, dir)
        .await
        .context("reopening the engine")?;
    m.open = Some(t.elapsed());
    Ok(Target {
        engine,
        ids,
        pool,
        tasks,
    })
}

fn build_report(
    plan: &Plan,
    pool: &BatchPool,
    appends: u64,
    host: Host,
    base: Baseline,
    m: Measured,
) -> Report {
    let a = &plan.args;
    let p = &m.phase;
    let reads = plan.reads();
    let (latency_of, appends_per_s, reads_per_s) = match a.mode {
        Mode::Append => ("append", p.ops_per_s(), None),
        Mode::Read => (
            "read",
            m.fill.as_ref().map_or(0.0, Phase::ops_per_s),
            Some(p.ops_per_s()),
        ),
        Mode::AppendRead => ("append+read", p.ops_per_s(), Some(p.ops_per_s())),
    };
    let l = &p.tally.latencies;
    Report {
        bench: "storage",
        label: a.label.clone(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        engine: a.engine.to_string(),
        model: a.model.to_string(),
        shards: plan.shards,
        batch_bytes: a.batch_bytes,
        batch_bytes_actual: pool.batch_len,
        record_bytes: a.record_bytes,
        records_per_batch: pool.records_per_batch,
        durability: plan.durability.to_string(),
        concurrency: plan.concurrency,
        mode: a.mode.as_str(),
        cache: (a.mode == Mode::Read).then(|| a.cache.as_str()),
        read_path: reads.then(|| a.read_path.as_str()),
        segment_bytes: a.segment_bytes,
        retention_bytes: a.retention_bytes,
        open_files_limit: a.open_files,
        runtime: runtime_name(plan),
        total_bytes: appends * pool.batch_len as u64,
        appends,
        records: appends * u64::from(pool.records_per_batch),
        secs: p.secs(),
        mb_per_s: p.mb_per_s(),
        appends_per_s,
        reads_per_s,
        records_per_s: p.records_per_s(),
        latency_of,
        p50_us: l.quantile_us(0.5),
        p99_us: l.quantile_us(0.99),
        p999_us: l.quantile_us(0.999),
        max_us: l.max_us(),
        fsyncs: m.fill.as_ref().unwrap_or(p).fsyncs,
        fill_secs: m.fill.as_ref().map(Phase::secs),
        fill_mb_per_s: m.fill.as_ref().map(Phase::mb_per_s),
        file_pieces: reads.then_some(p.tally.file_pieces),
        bytes_pieces: reads.then_some(p.tally.bytes_pieces),
        raw_kind: base.kind,
        raw_mb_per_s: base.phase.mb_per_s(),
        raw_appends_per_s: base.phase.ops_per_s(),
        raw_fsyncs: base.phase.fsyncs,
        ratio: p.mb_per_s() / base.phase.mb_per_s(),
        memcpy_mb_per_s: base.memcpy.mb_per_s(),
        cold_resident_pct: base.cold_resident_pct,
        rss_bytes_per_shard: (m.rss_after as i64 - m.rss_before as i64) / plan.shards as i64,
        rss_before_bytes: m.rss_before,
        rss_after_bytes: m.rss_after,
        create_secs: m.create.as_secs_f64(),
        close_ms: m.close.map(ms),
        open_ms: m.open.map(ms),
        reopen_after: m
            .open
            .map(|_| if m.close.is_some() { "close" } else { "crash" }),
        engine_open_files: m.open_files,
        objects_written: m.objects.map(|o| o.0),
        object_bytes_written: m.objects.map(|o| o.1),
        puts_per_gib: m
            .objects
            .map(|o| o.0 as f64 / ((appends * pool.batch_len as u64) as f64 / (1u64 << 30) as f64)),
        stored_bytes: m.objects.map(|o| o.2),
        stored_to_ingested: m
            .objects
            .map(|o| o.2 as f64 / (appends * pool.batch_len as u64) as f64),
        host,
    }
}
