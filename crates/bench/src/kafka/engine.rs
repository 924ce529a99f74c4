//! The physical reference of a Kafka run: the storage engine itself, opened directly in a
//! temporary directory with the topic's own spec, appending the same records packed in batches
//! the size the client formed (and, for consume runs, reading them back).
//!
//! The broker appends a produce request's partitions concurrently and one request of a
//! connection at a time, so the reference runs one task per partition, each appending its
//! share of the batches in turn. Everything the network, the protocol and the broker add to
//! the engine is the gap between the two figures.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use strata_record::{Batch, BatchBuilder, BatchHeader, Compression, HEADER_LEN};
use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::memory::MemoryEngine;
use strata_storage::{Engine, EngineKind, Model, Piece, ShardId, StorageSpec};
use tokio::sync::Barrier;

use super::values::fill_pseudo_random;
use crate::latency::Latencies;

/// Distinct batches appended in turn.
const POOL: usize = 16;
/// Bytes asked for per read: librdkafka's default `max.partition.fetch.bytes`.
const READ_BUDGET: usize = 1 << 20;

/// What to append: `records` records of `record_len` bytes, `per_batch` to a batch.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub records: u64,
    pub record_len: usize,
    pub per_batch: u32,
    pub compression: Compression,
    pub partitions: u32,
}

/// One timed phase of the reference.
#[derive(Debug, Default)]
pub struct EnginePhase {
    pub secs: f64,
    pub records: u64,
    /// Bytes of record values (the figure a Kafka run's MB/s counts).
    pub value_bytes: u64,
    /// Appends or reads.
    pub ops: u64,
    /// Latency of each append or read.
    pub latencies: Latencies,
    /// fsyncs the engine made during the phase.
    pub fsyncs: u64,
}

impl EnginePhase {
    /// MB/s of record values, MB = 10^6 bytes.
    pub fn mb_per_s(&self) -> f64 {
        self.value_bytes as f64 / 1e6 / self.secs
    }

    /// Records per second.
    pub fn msgs_per_s(&self) -> f64 {
        self.records as f64 / self.secs
    }
}

/// The reference's appends, optionally followed by reads of everything appended.
#[derive(Debug)]
pub struct Reference {
    /// Average encoded size of the appended batches.
    pub batch_bytes: f64,
    /// Records in each appended batch.
    pub per_batch: u32,
    pub append: EnginePhase,
    pub read: Option<EnginePhase>,
}

fn open(spec: &StorageSpec, dir: &Path) -> Result<Arc<dyn Engine>> {
    let options = FileOptions::default();
    let engine: Arc<dyn Engine> = match (spec.engine, spec.model) {
        (EngineKind::Memory, _) => Arc::new(MemoryEngine::new()),
        (EngineKind::File, Model::Dedicated) => Arc::new(DedicatedEngine::open(dir, options)?),
        (EngineKind::File, Model::Shared) => Arc::new(SharedEngine::open(dir, options)?),
        (other, _) => bail!("the {other} engine is not built, so it cannot be a reference"),
    };
    Ok(engine)
}

/// Builds the batches: `POOL` distinct ones, each `per_batch` pseudo-random records.
fn pool(load: &Load) -> Result<Vec<Batch>> {
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    let mut value = vec![0u8; load.record_len];
    let now = strata_storage::now_ms();
    (0..POOL)
        .map(|_| {
            let mut b = BatchBuilder::new(load.compression);
            for _ in 0..load.per_batch {
                fill_pseudo_random(&mut value, &mut seed);
                b.push(None, Some(&value), &[], now);
            }
            Batch::validate(b.build().context("building a reference batch")?)
                .context("validating a reference batch")
        })
        .collect()
}

/// Runs the reference in `dir` with `spec`; reads back if `read`.
pub async fn measure(spec: StorageSpec, load: Load, read: bool, dir: &Path) -> Result<Reference> {
    let engine = open(&spec, dir)
        .with_context(|| format!("opening the {} engine in {}", spec.engine, dir.display()))?;
    let topic: Arc<str> = "bench".into();
    let ids: Vec<ShardId> = (0..load.partitions)
        .map(|p| ShardId::with_topic(topic.clone(), p).context("naming a reference shard"))
        .collect::<Result<_>>()?;
    for id in &ids {
        engine
            .create_shard(id, &spec)
            .await
            .with_context(|| format!("creating shard {id}"))?;
    }
    let batches = Arc::new(pool(&load)?);
    let batch_bytes = batches.iter().map(|b| b.len() as f64).sum::<f64>() / POOL as f64;
    let total = load.records.div_ceil(u64::from(load.per_batch));
    let shards = ids.len() as u64;
    let append = phase(&engine, &ids, |engine, id, s| {
        let batches = batches.clone();
        async move {
            let mut p = EnginePhase::default();
            // Batch i goes to shard i % shards, as a round robin would.
            for i in (s as u64..total).step_by(shards as usize) {
                let batch = batches[i as usize % POOL].clone();
                let t0 = Instant::now();
                engine.append(&id, batch).await.context("appending")?;
                p.latencies.record(t0.elapsed());
                p.ops += 1;
                p.records += u64::from(load.per_batch);
            }
            Ok(p)
        }
    })
    .await?;
    let read = if read {
        Some(phase(&engine, &ids, |engine, id, _| read_all(engine, id)).await?)
    } else {
        None
    };
    let finish = |mut p: EnginePhase| {
        p.value_bytes = p.records * load.record_len as u64;
        p
    };
    Ok(Reference {
        batch_bytes,
        per_batch: load.per_batch,
        append: finish(append),
        read: read.map(finish),
    })
}

/// Reads a shard from offset 0 to its end, copying every piece into memory once, as a
/// consumer receives it.
async fn read_all(engine: Arc<dyn Engine>, id: ShardId) -> Result<EnginePhase> {
    let mut p = EnginePhase::default();
    let mut buf = Vec::with_capacity(READ_BUDGET * 2);
    let mut from = engine.bounds(&id).await?.log_start;
    loop {
        let t0 = Instant::now();
        let chunk = engine
            .read(&id, from, READ_BUDGET)
            .await
            .with_context(|| format!("reading {id} at {from}"))?;
        if chunk.is_empty() {
            break;
        }
        buf.clear();
        for piece in &chunk.pieces {
            match piece {
                Piece::Bytes(b) => buf.extend_from_slice(b),
                Piece::File(r) => {
                    let at = buf.len();
                    buf.resize(at + r.len, 0);
                    r.file
                        .read_exact_at(&mut buf[at..], r.offset)
                        .context("reading a file region")?;
                }
            }
        }
        p.latencies.record(t0.elapsed());
        p.ops += 1;
        let mut rest = &buf[..];
        while rest.len() >= HEADER_LEN {
            let h = BatchHeader::parse(rest).context("parsing a batch read back")?;
            p.records += u64::from(h.record_count());
            from = h.last_offset() as u64 + 1;
            rest = &rest[h.total_len().min(rest.len())..];
        }
        if from >= chunk.bounds.next_offset {
            break;
        }
    }
    Ok(p)
}

/// Runs `work` for every shard at once, released together; the phase lasts from the first
/// task's start to the last task's end.
async fn phase<F, Fut>(engine: &Arc<dyn Engine>, ids: &[ShardId], work: F) -> Result<EnginePhase>
where
    F: Fn(Arc<dyn Engine>, ShardId, usize) -> Fut,
    Fut: Future<Output = Result<EnginePhase>> + Send + 'static,
{
    let fsyncs = engine.stats().fsyncs;
    let barrier = Arc::new(Barrier::new(ids.len()));
    let mut handles = Vec::with_capacity(ids.len());
    for (s, id) in ids.iter().enumerate() {
        let job = work(engine.clone(), id.clone(), s);
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let start = Instant::now();
            let p = job.await?;
            anyhow::Ok((p, start, Instant::now()))
        }));
    }
    let mut total = EnginePhase::default();
    let mut span: Option<(Instant, Instant)> = None;
    for h in handles {
        let (p, start, end) = h.await.context("a reference task panicked")??;
        total.records += p.records;
        total.ops += p.ops;
        total.latencies.merge(&p.latencies);
        span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
    }
    let elapsed = span.map_or(Duration::ZERO, |(s, e)| e - s);
    total.secs = elapsed.as_secs_f64().max(1e-9);
    total.fsyncs = engine.stats().fsyncs.saturating_sub(fsyncs);
    Ok(total)
}

/// Records of `record_len` bytes that fit in a batch of `batch_bytes` before compression (at
/// least one), by encoding a probe batch rather than by formula.
pub fn records_fitting(batch_bytes: u64, record_len: usize) -> u32 {
    let value = vec![0u8; record_len];
    let mut probe = BatchBuilder::new(Compression::None);
    probe.push(None, Some(&value), &[], 0);
    let first = probe.uncompressed_len() as u64;
    probe.push(None, Some(&value), &[], 0);
    let per_record = (probe.uncompressed_len() as u64 - first).max(1);
    let n = 1 + batch_bytes.saturating_sub(first) / per_record;
    u32::try_from(n).unwrap_or(u32::MAX)
}
