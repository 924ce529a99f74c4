//! Driving the engine: creating shards, then timed appends, reads or both, by concurrent tasks
//! that each own a disjoint set of shards.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use strata_storage::{Engine, ShardId, StorageSpec};
use tokio::sync::Barrier;

use super::args::ReadPath;
use super::measure::{Phase, Tally};
use super::sink::Sink;
use super::workload::{BatchPool, appends_for, owned_shards};

/// Tasks that create shards: enough that fsyncing engines can batch directory syncs.
const CREATORS: usize = 64;

/// What the tasks of a phase share.
#[derive(Debug, Clone)]
pub struct Target {
    /// The engine under test.
    pub engine: Arc<dyn Engine>,
    /// Every shard of the run, shard `i` at index `i`.
    pub ids: Arc<Vec<ShardId>>,
    /// The batches to append.
    pub pool: Arc<BatchPool>,
    /// Tasks that append and read.
    pub tasks: usize,
}

/// One task's share of a phase.
#[derive(Debug)]
struct Share {
    /// Task number, also the task's starting point in the batch pool.
    task: usize,
    /// The shards it owns, ascending.
    ids: Vec<ShardId>,
    /// Appends it makes (round robin over `ids`).
    appends: u64,
}

impl Target {
    /// Creates every shard with `spec`, from several tasks at once; returns the time it took.
    pub async fn create_shards(&self, spec: StorageSpec) -> Result<Duration> {
        let start = Instant::now();
        let creators = CREATORS.min(self.ids.len());
        let mut handles = Vec::with_capacity(creators);
        for c in 0..creators {
            let (engine, ids) = (self.engine.clone(), self.ids.clone());
            handles.push(tokio::spawn(async move {
                for id in ids.iter().skip(c).step_by(creators) {
                    engine
                        .create_shard(id, &spec)
                        .await
                        .with_context(|| format!("creating shard {id}"))?;
                }
                anyhow::Ok(())
            }));
        }
        for h in handles {
            h.await.context("a shard-creating task panicked")??;
        }
        Ok(start.elapsed())
    }

    /// Appends `appends` batches, round robin over the shards.
    pub async fn append(&self, appends: u64) -> Result<Phase> {
        self.phase(appends, |t, share| async move {
            let mut tally = Tally::default();
            for j in 0..share.appends as usize {
                let id = &share.ids[j % share.ids.len()];
                let batch = t.pool.get(share.task + j).clone();
                let t0 = Instant::now();
                t.engine
                    .append(id, batch)
                    .await
                    .with_context(|| format!("appending to {id}"))?;
                tally.latencies.record_since(t0);
                count_batch(&mut tally, &t.pool);
            }
            Ok(tally)
        })
        .await
    }

    /// Reads every shard from offset 0 to its end, `budget` bytes per read.
    pub async fn read(&self, budget: usize, path: ReadPath) -> Result<Phase> {
        self.phase(0, move |t, share| async move {
            let mut tally = Tally::default();
            let mut sink = Sink::new(path, budget)?;
            let (batch_len, per_batch) = (t.pool.batch_len, u64::from(t.pool.records_per_batch));
            for id in &share.ids {
                let mut from = 0u64;
                loop {
                    let t0 = Instant::now();
                    let chunk = t
                        .engine
                        .read(id, from, budget)
                        .await
                        .with_context(|| format!("reading {id} from offset {from}"))?;
                    sink.consume(&chunk, &mut tally)?;
                    tally.latencies.record_since(t0);
                    if chunk.is_empty() {
                        break;
                    }
                    // Every stored batch has the pool's size and record count.
                    ensure!(
                        chunk.len % batch_len == 0,
                        "read of {id} at {from} returned {} bytes, not whole {batch_len}-byte batches",
                        chunk.len
                    );
                    let batches = (chunk.len / batch_len) as u64;
                    from += batches * per_batch;
                    tally.ops += 1;
                    tally.bytes += chunk.len as u64;
                    tally.records += batches * per_batch;
                    if from >= chunk.bounds.next_offset {
                        break;
                    }
                }
            }
            Ok(tally)
        })
        .await
    }

    /// Appends each batch and reads it straight back.
    pub async fn append_read(&self, appends: u64, path: ReadPath) -> Result<Phase> {
        self.phase(appends, move |t, share| async move {
            let mut tally = Tally::default();
            let mut sink = Sink::new(path, t.pool.batch_len)?;
            for j in 0..share.appends as usize {
                let id = &share.ids[j % share.ids.len()];
                let batch = t.pool.get(share.task + j).clone();
                let t0 = Instant::now();
                let appended = t
                    .engine
                    .append(id, batch)
                    .await
                    .with_context(|| format!("appending to {id}"))?;
                let chunk = t
                    .engine
                    .read(id, appended.base_offset, t.pool.batch_len)
                    .await
                    .with_context(|| format!("reading {id} at {}", appended.base_offset))?;
                ensure!(
                    chunk.len == t.pool.batch_len,
                    "reading back {id} at {} gave {} bytes, not the {}-byte batch just appended",
                    appended.base_offset,
                    chunk.len,
                    t.pool.batch_len
                );
                sink.consume(&chunk, &mut tally)?;
                tally.latencies.record_since(t0);
                count_batch(&mut tally, &t.pool);
            }
            Ok(tally)
        })
        .await
    }

    /// Runs one task per share, released together, and adds up what they did. The phase lasts
    /// from the first task's start to the last task's end, each taken inside the task: on a
    /// current-thread runtime a task that never yields runs to completion before anyone else
    /// (this function included) is polled again. The fsync count is the engine's counter over
    /// the phase.
    async fn phase<F, Fut>(&self, appends: u64, work: F) -> Result<Phase>
    where
        F: Fn(Target, Share) -> Fut,
        Fut: Future<Output = Result<Tally>> + Send + 'static,
    {
        let fsyncs = self.engine.stats().fsyncs;
        let barrier = Arc::new(Barrier::new(self.tasks));
        let mut handles = Vec::with_capacity(self.tasks);
        for task in 0..self.tasks {
            let owned = owned_shards(self.ids.len(), self.tasks, task);
            let share = Share {
                task,
                appends: appends_for(appends, self.ids.len(), &owned),
                ids: owned.iter().map(|&s| self.ids[s].clone()).collect(),
            };
            let job = work(self.clone(), share);
            let barrier = barrier.clone();
            handles.push(tokio::spawn(async move {
                barrier.wait().await;
                let start = Instant::now();
                let tally = job.await?;
                anyhow::Ok((tally, start, Instant::now()))
            }));
        }
        let mut phase = Phase::default();
        let mut span: Option<(Instant, Instant)> = None;
        let mut failure = None;
        for h in handles {
            match h
                .await
                .map_err(|e| anyhow!("a benchmark task panicked: {e}"))
            {
                Ok(Ok((tally, start, end))) => {
                    phase.tally.merge(&tally);
                    span = Some(span.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
                }
                Ok(Err(e)) | Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        phase.elapsed = span.map_or(Duration::ZERO, |(s, e)| e - s);
        phase.fsyncs = self.engine.stats().fsyncs.saturating_sub(fsyncs);
        Ok(phase)
    }
}

fn count_batch(tally: &mut Tally, pool: &BatchPool) {
    tally.ops += 1;
    tally.bytes += pool.batch_len as u64;
    tally.records += u64::from(pool.records_per_batch);
}
