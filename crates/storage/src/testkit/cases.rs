//! The contract cases. Each takes a fresh harness; see [`super::Harness`].

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

use strata_record::Compression;

use super::{BoxFut, Harness, batch, batch_with, decode, read_all, shard, value};
use crate::now_ms;
use crate::{Engine, Retention, StorageError, StorageSpec};

const KIB: usize = 1024;

fn spec_with(h: &dyn Harness, f: impl FnOnce(&mut StorageSpec)) -> StorageSpec {
    let mut s = h.spec();
    s.retention = Retention::default();
    f(&mut s);
    s
}

async fn open(h: &dyn Harness) -> Arc<dyn Engine> {
    h.open().await.expect("engine opens")
}

/// Appends `n` batches of `records` records; returns each batch's (base, last).
async fn fill(
    e: &dyn Engine,
    id: &crate::ShardId,
    tag: u64,
    n: usize,
    records: usize,
    size: usize,
    ts: i64,
) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for i in 0..n {
        let a = e
            .append(id, batch(tag * 1000 + i as u64, records, size, ts))
            .await
            .expect("append");
        out.push((a.base_offset, a.last_offset));
    }
    out
}

/// The values `fill` wrote, in offset order.
fn expected(tag: u64, n: usize, records: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n)
        .flat_map(|i| (0..records).map(move |r| value(tag * 1000 + i as u64, r, size)))
        .collect()
}

fn assert_values(got: &[(u64, bytes::Bytes)], first_offset: u64, want: &[Vec<u8>]) {
    assert_eq!(got.len(), want.len(), "record count");
    for (i, ((offset, v), w)) in got.iter().zip(want).enumerate() {
        assert_eq!(*offset, first_offset + i as u64, "offsets are dense");
        assert_eq!(v.as_ref(), w.as_slice(), "value at offset {offset}");
    }
}

fn skip(h: &dyn Harness, what: &str) -> bool {
    let missing = match what {
        "persistence" => !h.persistent(),
        _ => !h.keeps_local_files(),
    };
    if missing {
        eprintln!("skipped: the engine has no {what}");
    }
    missing
}

/// Offsets are dense from 0, assigned in append order, independent per shard.
pub fn ordering_and_offsets(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let (a, b) = (shard("order", 0), shard("order", 1));
        let spec = spec_with(h, |_| {});
        e.create_shard(&a, &spec).await.unwrap();
        e.create_shard(&b, &spec).await.unwrap();
        let mut next = 0;
        let mut want = Vec::new();
        for i in 0..20u64 {
            let n = 1 + (i as usize % 5);
            let got = e
                .append(&a, batch(i, n, 50, 1_000 + i as i64))
                .await
                .unwrap();
            assert_eq!(got.base_offset, next);
            assert_eq!(got.last_offset, next + n as u64 - 1);
            next += n as u64;
            want.extend((0..n).map(|r| value(i, r, 50)));
        }
        let other = e.append(&b, batch(99, 3, 10, 0)).await.unwrap();
        assert_eq!((other.base_offset, other.last_offset), (0, 2));
        let bounds = e.bounds(&a).await.unwrap();
        assert_eq!((bounds.log_start, bounds.next_offset), (0, next));
        assert!(bounds.size_bytes > 0);
        assert_values(&read_all(&*e, &a, 0).await.unwrap(), 0, &want);
        let mut ids: Vec<_> = e.shards().await.unwrap().into_iter().map(|s| s.0).collect();
        ids.sort();
        assert_eq!(ids, vec![a, b]);
    })
}

/// A read from inside a batch starts with that batch.
pub fn read_from_middle(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("middle", 0);
        e.create_shard(&id, &spec_with(h, |_| {})).await.unwrap();
        fill(&*e, &id, 1, 10, 5, 40, 0).await;
        let chunk = e.read(&id, 12, 1 << 20).await.unwrap();
        let batches = decode(&chunk);
        assert_eq!(batches[0].0, 10, "first batch is the one holding offset 12");
        assert_eq!(batches.len(), 8);
        let want = expected(1, 10, 5, 40);
        assert_values(&read_all(&*e, &id, 12).await.unwrap(), 12, &want[12..]);
        assert_values(&read_all(&*e, &id, 49).await.unwrap(), 49, &want[49..]);
    })
}

/// A read returns at least one whole batch and otherwise stays within the budget.
pub fn byte_budget(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("budget", 0);
        e.create_shard(&id, &spec_with(h, |_| {})).await.unwrap();
        fill(&*e, &id, 2, 10, 4, 200, 0).await;
        let one = e.read(&id, 0, 1).await.unwrap();
        assert_eq!(
            decode(&one).len(),
            1,
            "a tiny budget still returns one batch"
        );
        let batch_len = one.len;
        let two = e.read(&id, 0, batch_len * 5 / 2).await.unwrap();
        assert_eq!(decode(&two).len(), 2);
        assert!(two.len <= batch_len * 5 / 2);
        let all = e.read(&id, 0, 1 << 20).await.unwrap();
        assert_eq!(decode(&all).len(), 10);
        // One batch far larger than the budget comes back whole.
        let big = e.append(&id, batch(3, 4, 64 * KIB, 0)).await.unwrap();
        let chunk = e.read(&id, big.base_offset, KIB).await.unwrap();
        let got = decode(&chunk);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.len(), 4);
        assert_eq!(
            got[0].1[3].value.as_deref(),
            Some(&value(3, 3, 64 * KIB)[..])
        );
    })
}

/// Reads at the end are empty; outside the bounds they fail; unknown shards fail.
pub fn empty_and_out_of_range(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("range", 0);
        let spec = spec_with(h, |_| {});
        e.create_shard(&id, &spec).await.unwrap();
        assert!(matches!(
            e.create_shard(&id, &spec).await,
            Err(StorageError::ShardExists(_))
        ));
        assert!(e.read(&id, 0, 100).await.unwrap().is_empty());
        assert!(matches!(
            e.read(&id, 1, 100).await,
            Err(StorageError::OffsetOutOfRange { offset: 1, .. })
        ));
        fill(&*e, &id, 1, 2, 2, 10, 0).await;
        assert!(e.read(&id, 4, 100).await.unwrap().is_empty());
        assert!(matches!(
            e.read(&id, 5, 100).await,
            Err(StorageError::OffsetOutOfRange { next_offset: 4, .. })
        ));
        let ghost = shard("ghost", 0);
        assert!(matches!(
            e.read(&ghost, 0, 100).await,
            Err(StorageError::ShardNotFound(_))
        ));
        assert!(matches!(
            e.append(&ghost, batch(1, 1, 1, 0)).await,
            Err(StorageError::ShardNotFound(_))
        ));
        assert!(matches!(
            e.bounds(&ghost).await,
            Err(StorageError::ShardNotFound(_))
        ));
    })
}

/// Timestamp lookup answers at record granularity, before and after a reopen.
pub fn timestamp_lookup(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut e = open(h).await;
        let id = shard("times", 0);
        e.create_shard(&id, &spec_with(h, |s| s.segment_bytes = 4096))
            .await
            .unwrap();
        // Batch i holds 3 records stamped 1000*(i+1), +1, +2; each batch is about 1 KiB.
        for i in 0..20u64 {
            e.append(&id, batch(i, 3, 300, 1000 * (i as i64 + 1)))
                .await
                .unwrap();
        }
        for round in 0..2 {
            let at = |ts| {
                let e = e.clone();
                let id = id.clone();
                async move { e.offset_for_timestamp(&id, ts).await.unwrap() }
            };
            let hit = at(0).await.unwrap();
            assert_eq!((hit.offset, hit.timestamp), (0, 1000));
            let hit = at(2001).await.unwrap();
            assert_eq!((hit.offset, hit.timestamp), (4, 2001));
            let hit = at(2003).await.unwrap();
            assert_eq!((hit.offset, hit.timestamp), (6, 3000));
            let hit = at(15_002).await.unwrap();
            assert_eq!((hit.offset, hit.timestamp), (44, 15_002));
            assert!(at(20_003).await.is_none(), "round {round}");
            if !h.persistent() {
                break;
            }
            e.close().await.unwrap();
            drop(e);
            e = open(h).await;
        }
    })
}

/// Retention by bytes drops the oldest data and keeps the newest readable.
pub fn retention_by_bytes(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("retbytes", 0);
        let limit = 16 * KIB as u64;
        let spec = spec_with(h, |s| {
            s.retention.bytes = Some(limit);
            s.segment_bytes = 4096;
        });
        e.create_shard(&id, &spec).await.unwrap();
        let now = now_ms();
        fill(&*e, &id, 5, 100, 2, 400, now).await;
        let one_batch = e.read(&id, 198, 1).await.unwrap().len as u64;
        e.maintain(now).await.unwrap();
        let b = e.bounds(&id).await.unwrap();
        assert_eq!(b.next_offset, 200);
        assert!(b.log_start > 0, "something was dropped");
        assert!(
            b.size_bytes <= limit + 4096 + one_batch,
            "size {} exceeds retention {limit} by more than a segment",
            b.size_bytes
        );
        assert!(
            b.size_bytes + 4096 + one_batch >= limit,
            "size {} dropped far more than needed",
            b.size_bytes
        );
        let want = expected(5, 100, 2, 400);
        let got = read_all(&*e, &id, b.log_start).await.unwrap();
        assert_values(&got, b.log_start, &want[b.log_start as usize..]);
        assert!(matches!(
            e.read(&id, 0, 100).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    })
}

/// Retention by time drops data older than `retention.ms`, and everything once all expire.
pub fn retention_by_time(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("rettime", 0);
        let hour = 3_600_000;
        let spec = spec_with(h, |s| {
            s.retention.ms = Some(hour as u64);
            s.segment_bytes = 4096;
        });
        e.create_shard(&id, &spec).await.unwrap();
        let now = now_ms();
        fill(&*e, &id, 1, 20, 2, 400, now - 2 * hour).await;
        fill(&*e, &id, 2, 20, 2, 400, now).await;
        e.maintain(now).await.unwrap();
        let b = e.bounds(&id).await.unwrap();
        assert!(b.log_start > 0, "expired data was dropped");
        assert!(b.log_start <= 40, "fresh data was kept");
        let got = read_all(&*e, &id, 40).await.unwrap();
        assert_values(&got, 40, &expected(2, 20, 2, 400));
        // Much later, everything has expired; offsets still continue.
        e.maintain(now + 3 * hour).await.unwrap();
        let b = e.bounds(&id).await.unwrap();
        assert_eq!((b.log_start, b.next_offset), (80, 80));
        assert!(e.read(&id, 80, 100).await.unwrap().is_empty());
        let a = e.append(&id, batch(3, 1, 10, now)).await.unwrap();
        assert_eq!(a.base_offset, 80);
        assert_values(
            &read_all(&*e, &id, 80).await.unwrap(),
            80,
            &[value(3, 0, 10)],
        );
    })
}

/// Trim moves the log start; reads below it fail; it survives a reopen.
pub fn trim(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut e = open(h).await;
        let id = shard("trim", 0);
        e.create_shard(&id, &spec_with(h, |s| s.segment_bytes = 4096))
            .await
            .unwrap();
        fill(&*e, &id, 1, 10, 5, 100, 0).await;
        let b = e.trim(&id, 23).await.unwrap();
        assert_eq!((b.log_start, b.next_offset), (23, 50));
        assert!(matches!(
            e.read(&id, 22, 100).await,
            Err(StorageError::OffsetOutOfRange { log_start: 23, .. })
        ));
        let chunk = e.read(&id, 23, 1).await.unwrap();
        assert_eq!(
            decode(&chunk)[0].0,
            20,
            "the batch holding the log start comes whole"
        );
        let want = expected(1, 10, 5, 100);
        assert_values(&read_all(&*e, &id, 23).await.unwrap(), 23, &want[23..]);
        assert!(matches!(
            e.trim(&id, 51).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            e.trim(&id, 10).await.unwrap().log_start,
            23,
            "never goes back"
        );
        if h.persistent() {
            e.close().await.unwrap();
            drop(e);
            e = open(h).await;
            assert_eq!(e.bounds(&id).await.unwrap().log_start, 23);
        }
        let b = e.trim(&id, 50).await.unwrap();
        assert_eq!((b.log_start, b.next_offset), (50, 50));
        assert!(e.read(&id, 50, 100).await.unwrap().is_empty());
        assert_eq!(
            e.append(&id, batch(9, 1, 5, 0)).await.unwrap().base_offset,
            50
        );
        if h.persistent() {
            drop(e);
            e = open(h).await;
            let b = e.bounds(&id).await.unwrap();
            assert_eq!((b.log_start, b.next_offset), (50, 51));
        }
        assert_values(
            &read_all(&*e, &id, 50).await.unwrap(),
            50,
            &[value(9, 0, 5)],
        );
    })
}

/// Truncate removes the batch holding the offset and everything after it.
pub fn truncate(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut e = open(h).await;
        let id = shard("truncate", 0);
        e.create_shard(&id, &spec_with(h, |s| s.segment_bytes = 4096))
            .await
            .unwrap();
        fill(&*e, &id, 1, 10, 5, 100, 0).await;
        assert_eq!(e.truncate(&id, 60).await.unwrap().next_offset, 50, "no-op");
        assert_eq!(e.truncate(&id, 30).await.unwrap().next_offset, 30);
        assert_eq!(e.truncate(&id, 27).await.unwrap().next_offset, 25);
        let a = e.append(&id, batch(7, 2, 100, 0)).await.unwrap();
        assert_eq!((a.base_offset, a.last_offset), (25, 26));
        let mut want = expected(1, 10, 5, 100)[..25].to_vec();
        want.extend((0..2).map(|r| value(7, r, 100)));
        assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &want);
        if h.persistent() {
            drop(e);
            e = open(h).await;
            assert_eq!(e.bounds(&id).await.unwrap().next_offset, 27);
            assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &want);
        }
        assert_eq!(e.truncate(&id, 0).await.unwrap().next_offset, 0);
        assert!(e.read(&id, 0, 100).await.unwrap().is_empty());
    })
}

/// A deleted shard is gone, stays gone after a reopen, and its name can be reused.
pub fn delete_shard(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut e = open(h).await;
        let (id, keep) = (shard("delete", 0), shard("delete", 1));
        let spec = spec_with(h, |_| {});
        e.create_shard(&id, &spec).await.unwrap();
        e.create_shard(&keep, &spec).await.unwrap();
        fill(&*e, &id, 1, 5, 2, 100, 0).await;
        fill(&*e, &keep, 2, 5, 2, 100, 0).await;
        e.delete_shard(&id).await.unwrap();
        assert!(matches!(
            e.bounds(&id).await,
            Err(StorageError::ShardNotFound(_))
        ));
        assert!(matches!(
            e.delete_shard(&id).await,
            Err(StorageError::ShardNotFound(_))
        ));
        if h.persistent() {
            drop(e);
            e = open(h).await;
        }
        let listed: Vec<_> = e.shards().await.unwrap().into_iter().map(|s| s.0).collect();
        assert_eq!(listed, vec![keep.clone()]);
        e.create_shard(&id, &spec).await.unwrap();
        assert_eq!(e.bounds(&id).await.unwrap().next_offset, 0);
        assert_eq!(
            e.append(&id, batch(3, 1, 5, 0)).await.unwrap().base_offset,
            0
        );
        assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &[value(3, 0, 5)]);
        assert_values(
            &read_all(&*e, &keep, 0).await.unwrap(),
            0,
            &expected(2, 5, 2, 100),
        );
    })
}

/// A new spec takes effect and is remembered.
pub fn reconfigure(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut e = open(h).await;
        let id = shard("reconf", 0);
        let spec = spec_with(h, |s| s.segment_bytes = 4096);
        e.create_shard(&id, &spec).await.unwrap();
        let now = now_ms();
        fill(&*e, &id, 1, 40, 2, 400, now).await;
        let smaller = StorageSpec {
            retention: Retention {
                ms: None,
                bytes: Some(8192),
            },
            ..spec
        };
        e.reconfigure(&id, &smaller).await.unwrap();
        e.maintain(now).await.unwrap();
        let b = e.bounds(&id).await.unwrap();
        assert!(b.log_start > 0 && b.size_bytes <= 8192 + 4096 + 1024);
        if h.persistent() {
            e.close().await.unwrap();
            drop(e);
            e = open(h).await;
        }
        let specs = e.shards().await.unwrap();
        assert_eq!(specs, vec![(id, smaller)]);
    })
}

/// Many shards appended at once keep their own order and contents.
pub fn many_shards_concurrently(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let spec = spec_with(h, |s| s.segment_bytes = 16 * KIB as u64);
        let mut tasks = Vec::new();
        for p in 0..64u32 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let id = shard("many", p);
                e.create_shard(&id, &spec).await.unwrap();
                fill(&*e, &id, u64::from(p), 30, 3, 64, 0).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        for p in 0..64u32 {
            let got = read_all(&*e, &shard("many", p), 0).await.unwrap();
            assert_values(&got, 0, &expected(u64::from(p), 30, 3, 64));
        }
        assert_eq!(e.stats().shards, 64);
    })
}

/// Concurrent appends to one shard get disjoint, dense offset ranges.
pub fn one_shard_concurrently(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("contended", 0);
        e.create_shard(&id, &spec_with(h, |_| {})).await.unwrap();
        let mut tasks = Vec::new();
        for t in 0..16u64 {
            let (e, id) = (e.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..20u64 {
                    let tag = t * 100 + i;
                    let a = e.append(&id, batch(tag, 2, 30, 0)).await.unwrap();
                    got.push((a.base_offset, tag));
                }
                got
            }));
        }
        let mut bases = Vec::new();
        for t in tasks {
            bases.extend(t.await.unwrap());
        }
        bases.sort();
        let all = read_all(&*e, &id, 0).await.unwrap();
        assert_eq!(all.len(), 16 * 20 * 2);
        for (k, (base, tag)) in bases.iter().enumerate() {
            assert_eq!(*base, 2 * k as u64, "ranges are dense and disjoint");
            assert_eq!(all[*base as usize].1.as_ref(), &value(*tag, 0, 30)[..]);
            assert_eq!(all[*base as usize + 1].1.as_ref(), &value(*tag, 1, 30)[..]);
        }
    })
}

/// Everything survives a clean close: data, bounds, specs, timestamps, next offsets.
pub fn reopen_after_clean_close(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        if skip(h, "persistence") {
            return;
        }
        let e = open(h).await;
        let spec = spec_with(h, |s| s.segment_bytes = 4096);
        let ids: Vec<_> = (0..3).map(|p| shard("reopen", p)).collect();
        for (i, id) in ids.iter().enumerate() {
            e.create_shard(id, &spec).await.unwrap();
            fill(&*e, id, i as u64, 10 + 5 * i, 3, 300, 5_000).await;
        }
        let before: Vec<_> = {
            let mut v = Vec::new();
            for id in &ids {
                v.push(e.bounds(id).await.unwrap());
            }
            v
        };
        e.close().await.unwrap();
        assert!(matches!(e.bounds(&ids[0]).await, Err(StorageError::Closed)));
        drop(e);
        let e = open(h).await;
        let mut listed = e.shards().await.unwrap();
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            listed,
            ids.iter().map(|i| (i.clone(), spec)).collect::<Vec<_>>()
        );
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(e.bounds(id).await.unwrap(), before[i]);
            let got = read_all(&*e, id, 0).await.unwrap();
            assert_values(&got, 0, &expected(i as u64, 10 + 5 * i, 3, 300));
            let a = e.append(id, batch(77, 1, 5, 0)).await.unwrap();
            assert_eq!(a.base_offset, before[i].next_offset);
        }
        let hit = e
            .offset_for_timestamp(&ids[2], 5_001)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(hit.offset, 1);
    })
}

/// Dropping the engine without closing it (a process crash) loses nothing acknowledged.
pub fn crash_keeps_acknowledged(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        if skip(h, "persistence") {
            return;
        }
        let e = open(h).await;
        let id = shard("crash", 0);
        e.create_shard(&id, &spec_with(h, |s| s.segment_bytes = 8192))
            .await
            .unwrap();
        fill(&*e, &id, 1, 50, 2, 300, 0).await;
        e.trim(&id, 7).await.unwrap();
        drop(e);
        let e = open(h).await;
        let b = e.bounds(&id).await.unwrap();
        assert_eq!((b.log_start, b.next_offset), (7, 100));
        let want = expected(1, 50, 2, 300);
        assert_values(&read_all(&*e, &id, 7).await.unwrap(), 7, &want[7..]);
    })
}

/// Writes `n` batches of ~1 KiB to one shard, crashes, and damages the newest data file with
/// `damage(file_len, last_batch_len, previous_batch_len)`.
async fn crash_image(
    h: &dyn Harness,
    damage: impl FnOnce(&std::path::Path, u64, u64, u64),
) -> Option<(crate::ShardId, Vec<Vec<u8>>)> {
    if skip(h, "data files") {
        return None;
    }
    let e = open(h).await;
    let id = shard("damaged", 0);
    e.create_shard(&id, &spec_with(h, |s| s.segment_bytes = 1 << 20))
        .await
        .unwrap();
    fill(&*e, &id, 1, 10, 4, 250, 0).await;
    let last = e.read(&id, 36, 1).await.unwrap().len as u64;
    let prev = e.read(&id, 32, 1).await.unwrap().len as u64;
    drop(e);
    let files = h.data_files();
    let newest = files.last().expect("the engine wrote a data file");
    let len = std::fs::metadata(newest).unwrap().len();
    damage(newest, len, last, prev);
    Some((id, expected(1, 10, 4, 250)))
}

/// A torn last batch is cut; the shard goes on from the last whole batch.
pub fn crash_cut_tail(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let Some((id, want)) = crash_image(h, |file, len, last, _| {
            let f = OpenOptions::new().write(true).open(file).unwrap();
            f.set_len(len - last / 2).unwrap();
        })
        .await
        else {
            return;
        };
        let e = open(h).await;
        assert_eq!(e.bounds(&id).await.unwrap().next_offset, 36);
        assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &want[..36]);
        assert_eq!(
            e.append(&id, batch(5, 1, 9, 0)).await.unwrap().base_offset,
            36
        );
        let got = read_all(&*e, &id, 36).await.unwrap();
        assert_values(&got, 36, &[value(5, 0, 9)]);
    })
}

/// Garbage after the last batch (random bytes, then zeros) is cut; nothing is lost.
pub fn crash_garbage_tail(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        for zeros in [false, true] {
            let Some((id, want)) = crash_image(h, |file, _, _, _| {
                let mut f = OpenOptions::new().append(true).open(file).unwrap();
                let junk: Vec<u8> = (0..3000u32)
                    .map(|i| {
                        if zeros {
                            0
                        } else {
                            (i.wrapping_mul(2_654_435_761) >> 13) as u8
                        }
                    })
                    .collect();
                f.write_all(&junk).unwrap();
            })
            .await
            else {
                return;
            };
            let e = open(h).await;
            assert_eq!(e.bounds(&id).await.unwrap().next_offset, 40);
            assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &want);
            assert_eq!(
                e.append(&id, batch(5, 1, 9, 0)).await.unwrap().base_offset,
                40
            );
            assert_values(
                &read_all(&*e, &id, 40).await.unwrap(),
                40,
                &[value(5, 0, 9)],
            );
            e.delete_shard(&id).await.unwrap();
            e.close().await.unwrap();
        }
    })
}

/// A flipped bit before the tail is reported with file and position, and never served.
pub fn crash_flipped_bits(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let mut damaged_file = None;
        let Some((id, want)) = crash_image(h, |file, len, last, prev| {
            // The middle of the second-to-last batch (offsets 32..=35).
            let pos = len - last - prev / 2;
            let mut bytes = std::fs::read(file).unwrap();
            bytes[pos as usize] ^= 0x20;
            std::fs::write(file, bytes).unwrap();
            damaged_file = Some(file.to_path_buf());
        })
        .await
        else {
            return;
        };
        let damaged_file = damaged_file.unwrap();
        let name = damaged_file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let e = match h.open().await {
            Ok(e) => e,
            Err(StorageError::Corruption { file, .. }) => {
                assert!(file.ends_with(&name), "error names the damaged file");
                return;
            }
            Err(other) => panic!("unexpected error opening a damaged engine: {other}"),
        };
        match e.read(&id, 33, 1).await {
            Err(StorageError::Corruption {
                file,
                position,
                reason,
            }) => {
                assert!(
                    file.to_string_lossy().contains(&name),
                    "error names the damaged file: {} ({reason} at {position})",
                    file.display()
                );
            }
            Ok(chunk) => panic!("damaged batch was served: {:?}", decode(&chunk)),
            Err(other) => panic!("unexpected error: {other}"),
        }
        let chunk = e.read(&id, 0, 1).await.unwrap();
        assert_eq!(decode(&chunk)[0].1[0].value.as_deref(), Some(&want[0][..]));
        let chunk = e.read(&id, 36, 1 << 20).await.unwrap();
        let got = decode(&chunk);
        assert_eq!(got[0].0, 36, "the batch after the damage is intact");
        assert_eq!(got[0].1[3].value.as_deref(), Some(&want[39][..]));
    })
}

/// Compressed batches are stored as they came and read back intact.
pub fn compressed_batches(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("codecs", 0);
        e.create_shard(&id, &spec_with(h, |_| {})).await.unwrap();
        let codecs = [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        let mut want = Vec::new();
        for (i, codec) in codecs.into_iter().enumerate() {
            let b = batch_with(codec, i as u64, 20, 500, 0);
            let raw = b.as_bytes().clone();
            let a = e.append(&id, b).await.unwrap();
            let chunk = e.read(&id, a.base_offset, 1).await.unwrap();
            let stored = chunk.to_bytes().unwrap();
            assert_eq!(stored.len(), raw.len(), "{codec:?} stored as received");
            assert_eq!(&stored[16..], &raw[16..], "only offset and epoch rewritten");
            want.extend((0..20).map(|r| value(i as u64, r, 500)));
        }
        assert_values(&read_all(&*e, &id, 0).await.unwrap(), 0, &want);
    })
}

/// Random operations, including reopen and crash, checked against a simple model.
pub fn model_based(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        super::model::run(h).await;
    })
}

/// Reads racing retention return data or `OffsetOutOfRange`, never a missing file.
pub fn reads_during_retention(h: &dyn Harness) -> BoxFut<'_, ()> {
    Box::pin(async move {
        let e = open(h).await;
        let id = shard("racing", 0);
        let spec = spec_with(h, |s| {
            s.retention.bytes = Some(16 * KIB as u64);
            s.segment_bytes = 4096;
        });
        e.create_shard(&id, &spec).await.unwrap();
        let now = now_ms();
        let writer = {
            let (e, id) = (e.clone(), id.clone());
            tokio::spawn(async move {
                for i in 0..400u64 {
                    e.append(&id, batch(i, 1, 900, now)).await.unwrap();
                    if i % 10 == 0 {
                        e.maintain(now).await.unwrap();
                    }
                }
            })
        };
        let mut reads = 0;
        while !writer.is_finished() {
            let start = e.bounds(&id).await.unwrap().log_start;
            for from in [0, start] {
                match e.read(&id, from, 4 * KIB).await {
                    Ok(chunk) => {
                        decode(&chunk);
                    }
                    Err(StorageError::OffsetOutOfRange { .. }) => {}
                    Err(other) => panic!("read from {from} during retention failed: {other}"),
                }
                reads += 1;
            }
            tokio::task::yield_now().await;
        }
        writer.await.unwrap();
        assert!(reads > 0);
    })
}
