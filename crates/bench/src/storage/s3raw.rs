//! The s3 engine's physical reference: the same bytes PUT straight to the bucket by one writer
//! in objects of the engine's flush size, and read back with GETs of the read budget, with no
//! engine in between. Also measures what the engine left in the bucket, and removes it.

use std::time::Instant;

use anyhow::{Context, Result};
use bytes::BytesMut;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::args::Plan;
use super::engines::s3_options;
use super::measure::{Phase, Tally};
use super::workload::BatchPool;

/// PUTs `appends` batches' bytes in objects of the flush size; then, if `read_budget` is set,
/// GETs them back in ranges of that size. Returns (PUT phase, GET phase).
pub fn put_get(
    plan: &Plan,
    pool: &BatchPool,
    appends: u64,
    read_budget: Option<usize>,
) -> Result<(Phase, Option<Phase>)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the S3 baseline")?;
    rt.block_on(async {
        let options = s3_options(plan)?;
        let store = options.connect().context("connecting to the bucket")?;
        let object_bytes = options.tuning.flush_bytes.max(pool.batch_len);
        let prefix = format!("{}-raw", plan.s3_prefix);
        let mut put = Phase::default();
        let mut tally = Tally::default();
        let mut keys = Vec::new();
        let start = Instant::now();
        let mut buf = BytesMut::with_capacity(object_bytes);
        for i in 0..appends {
            buf.extend_from_slice(pool.get(i as usize).as_bytes());
            if buf.len() >= object_bytes || i + 1 == appends {
                let key = Path::from(format!("{prefix}/{}", keys.len()));
                let len = buf.len();
                let t = Instant::now();
                store
                    .put(&key, PutPayload::from(buf.split().freeze()))
                    .await
                    .context("baseline PUT")?;
                tally.latencies.record(t.elapsed());
                tally.ops += 1;
                tally.bytes += len as u64;
                keys.push((key, len));
            }
        }
        put.elapsed = start.elapsed();
        put.tally = tally;
        let get = match read_budget {
            None => None,
            Some(budget) => {
                let mut tally = Tally::default();
                let start = Instant::now();
                for (key, len) in &keys {
                    let mut at = 0;
                    while at < *len {
                        let end = (at + budget.max(1)).min(*len);
                        let t = Instant::now();
                        let got = store
                            .get_range(key, at as u64..end as u64)
                            .await
                            .context("baseline GET")?;
                        tally.latencies.record(t.elapsed());
                        tally.ops += 1;
                        tally.bytes += got.len() as u64;
                        at = end;
                    }
                }
                Some(Phase {
                    tally,
                    elapsed: start.elapsed(),
                    fsyncs: 0,
                })
            }
        };
        delete_prefix(&*store, &prefix).await?;
        Ok((put, get))
    })
}

/// Bytes stored under the run's prefix.
pub async fn stored_bytes(plan: &Plan) -> Result<u64> {
    let options = s3_options(plan)?;
    let store = options.connect().context("connecting to the bucket")?;
    let metas: Vec<_> = store
        .list(Some(&Path::from(plan.s3_prefix.clone())))
        .try_collect()
        .await
        .context("listing the run's objects")?;
    Ok(metas.iter().map(|m| m.size).sum())
}

/// Deletes the run's objects.
pub async fn cleanup(plan: &Plan) -> Result<()> {
    let options = s3_options(plan)?;
    let store = options.connect().context("connecting to the bucket")?;
    delete_prefix(&*store, &plan.s3_prefix).await
}

async fn delete_prefix(store: &dyn ObjectStore, prefix: &str) -> Result<()> {
    let metas: Vec<_> = store
        .list(Some(&Path::from(prefix)))
        .try_collect()
        .await
        .context("listing objects to delete")?;
    for m in metas {
        store
            .delete(&m.location)
            .await
            .with_context(|| format!("deleting {}", m.location))?;
    }
    Ok(())
}
