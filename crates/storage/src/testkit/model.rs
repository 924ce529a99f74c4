//! Model-based property test: random operations, including reopen and crash, against a model.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::{Harness, batch, decode, shard, value};
use crate::{Engine, Retention, ShardId, StorageError};

#[derive(Debug, Clone)]
enum Op {
    Append {
        shard: usize,
        records: usize,
        size: usize,
    },
    Read {
        shard: usize,
        at: u16,
        budget: usize,
    },
    Lookup {
        shard: usize,
        at: u16,
    },
    Trim {
        shard: usize,
        at: u16,
    },
    Truncate {
        shard: usize,
        at: u16,
    },
    Maintain,
    Reopen,
    Crash,
}

const SHARDS: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SHARDS;
    prop_oneof![
        10 => (s.clone(), 1..6usize, prop_oneof![1..64usize, 500..3000usize])
            .prop_map(|(shard, records, size)| Op::Append { shard, records, size }),
        4 => (s.clone(), 0..=1000u16, 1..8192usize)
            .prop_map(|(shard, at, budget)| Op::Read { shard, at, budget }),
        1 => (s.clone(), 0..=1000u16).prop_map(|(shard, at)| Op::Lookup { shard, at }),
        1 => (s.clone(), 0..=1000u16).prop_map(|(shard, at)| Op::Trim { shard, at }),
        1 => (s, 0..=1000u16).prop_map(|(shard, at)| Op::Truncate { shard, at }),
        1 => Just(Op::Maintain),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// One batch as the model sees it.
#[derive(Debug, Clone)]
struct MBatch {
    base: u64,
    tag: u64,
    records: usize,
    size: usize,
    ts: i64,
}

impl MBatch {
    fn last(&self) -> u64 {
        self.base + self.records as u64 - 1
    }
}

#[derive(Debug, Default, Clone)]
struct MShard {
    batches: Vec<MBatch>,
    log_start: u64,
    next: u64,
}

impl MShard {
    fn pick(&self, at: u16) -> u64 {
        self.log_start + (self.next - self.log_start) * u64::from(at) / 1000
    }

    /// What a truncation to `to` leaves: the batches wholly before the one holding `to`.
    fn truncate(&mut self, to: u64) {
        if to >= self.next {
            return;
        }
        match self.batches.iter().position(|b| b.last() >= to) {
            Some(k) => {
                self.next = self.batches[k].base.min(to);
                self.batches.truncate(k);
            }
            None => self.next = to,
        }
        self.log_start = self.log_start.min(self.next);
    }
}

static CASE: AtomicU64 = AtomicU64::new(0);

pub(super) async fn run(h: &dyn Harness) {
    let cases = if h.persistent() { 24 } else { 48 };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
            handle.block_on(check(h, ops))
        })
    });
    if let Err(e) = result {
        panic!("model-based test failed: {e}");
    }
}

async fn check(h: &dyn Harness, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    let spec = {
        let mut s = h.spec();
        s.retention = Retention::default();
        s.segment_bytes = 8192;
        s
    };
    let ids: Vec<ShardId> = (0..SHARDS)
        .map(|p| shard(&format!("model{case}"), p as u32))
        .collect();
    let mut engine: Arc<dyn Engine> = h.open().await.map_err(fail)?;
    for id in &ids {
        engine.create_shard(id, &spec).await.map_err(fail)?;
    }
    let mut model = vec![MShard::default(); SHARDS];
    let mut clock = 1_000_000i64;
    for op in ops {
        match op {
            Op::Append {
                shard,
                records,
                size,
            } => {
                let m = &mut model[shard];
                let tag = case * 1_000_000 + clock as u64;
                let a = engine
                    .append(&ids[shard], batch(tag, records, size, clock))
                    .await
                    .map_err(fail)?;
                prop_assert_eq!(a.base_offset, m.next);
                m.batches.push(MBatch {
                    base: m.next,
                    tag,
                    records,
                    size,
                    ts: clock,
                });
                m.next += records as u64;
                clock += 10;
            }
            Op::Read { shard, at, budget } => {
                check_read(&*engine, &ids[shard], &model[shard], at, budget).await?;
            }
            Op::Lookup { shard, at } => {
                let m = &model[shard];
                let ts = 1_000_000 + (clock - 1_000_000) * i64::from(at) / 1000;
                let want = m
                    .batches
                    .iter()
                    .flat_map(|b| (0..b.records).map(move |r| (b.base + r as u64, b.ts + r as i64)))
                    .find(|(o, t)| *o >= m.log_start && *t >= ts);
                let got = engine
                    .offset_for_timestamp(&ids[shard], ts)
                    .await
                    .map_err(fail)?
                    .map(|hit| (hit.offset, hit.timestamp));
                prop_assert_eq!(got, want, "lookup of {}", ts);
            }
            Op::Trim { shard, at } => {
                let m = &mut model[shard];
                let to = m.pick(at);
                engine.trim(&ids[shard], to).await.map_err(fail)?;
                m.log_start = m.log_start.max(to);
                let start = m.log_start;
                m.batches.retain(|b| b.last() >= start);
            }
            Op::Truncate { shard, at } => {
                let m = &mut model[shard];
                let to = m.pick(at);
                let b = engine.truncate(&ids[shard], to).await.map_err(fail)?;
                m.truncate(to);
                prop_assert_eq!(b.next_offset, m.next);
            }
            Op::Maintain => {
                // No retention is set, so maintenance (rolling, checkpoints, garbage
                // collection) must change nothing a reader can see.
                engine.maintain(crate::now_ms()).await.map_err(fail)?;
            }
            Op::Reopen | Op::Crash => {
                if !h.persistent() {
                    continue;
                }
                if matches!(op, Op::Reopen) {
                    engine.close().await.map_err(fail)?;
                }
                drop(engine);
                engine = h.open().await.map_err(fail)?;
            }
        }
        for (id, m) in ids.iter().zip(&model) {
            let b = engine.bounds(id).await.map_err(fail)?;
            prop_assert_eq!(
                (b.log_start, b.next_offset),
                (m.log_start, m.next),
                "{}",
                id
            );
        }
    }
    for id in &ids {
        engine.delete_shard(id).await.map_err(fail)?;
    }
    if h.persistent() {
        engine.close().await.map_err(fail)?;
    }
    Ok(())
}

/// Reads a shard at the model's offset picked by `at` and checks the batches against the model.
async fn check_read(
    engine: &dyn Engine,
    id: &ShardId,
    m: &MShard,
    at: u16,
    budget: usize,
) -> Result<(), TestCaseError> {
    let from = m.pick(at);
    let chunk = engine.read(id, from, budget).await.map_err(fail)?;
    let got = decode(&chunk);
    let Some(i) = m.batches.iter().position(|b| b.last() >= from) else {
        prop_assert!(got.is_empty());
        return Ok(());
    };
    prop_assert!(!got.is_empty());
    prop_assert!(got.len() == 1 || chunk.len <= budget);
    for ((base, records), mb) in got.iter().zip(&m.batches[i..]) {
        prop_assert_eq!(*base, mb.base);
        prop_assert_eq!(records.len(), mb.records);
        for (r, rec) in records.iter().enumerate() {
            prop_assert_eq!(rec.offset as u64, mb.base + r as u64);
            prop_assert_eq!(rec.value.as_deref(), Some(&value(mb.tag, r, mb.size)[..]));
        }
    }
    Ok(())
}

fn fail(e: StorageError) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}
