//! Tiering (KIP-405's `remote.storage.enable`): closed segments are uploaded with their index
//! files, deleted locally past `local.retention.*`, and read back from object storage.
//!
//! A shard's uploaded segments are listed in its `remote-segments` file (one line per segment:
//! `base next size max_ts`), replaced atomically after each upload, so a crash mid-upload
//! uploads the same segment again under the same keys, and the list never names a segment that
//! is not fully uploaded. Local files go only after the list names them; the log start moves
//! only through total retention, `DeleteRecords` or truncation, never through local deletion.

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use strata_record::{HEADER_LEN, peek_len};

use super::format::{LOG_START_FILE, index_path, log_path, time_index_path};
use super::log::{LogState, ShardLog};
use super::reader::start_for;
use super::recovery::check_batch;
use super::segment::{IndexData, floor};
use crate::file::RemoteTier;
use crate::util::write_atomic;
use crate::{
    Bounds, Piece, ReadChunk, Result, ShardId, StorageError, TimestampHit, first_record_at_or_after,
};

/// File listing a shard's uploaded segments.
pub(super) const REMOTE_FILE: &str = "remote-segments";
/// Bytes fetched with each remote read beyond what it asks for, kept for the next read.
const READ_AHEAD: u64 = 4 << 20;

/// One uploaded segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RemoteSeg {
    pub base: u64,
    pub next: u64,
    pub size: u64,
    pub max_ts: i64,
}

/// Object key of an uploaded segment's file (`log`, `index` or `timeindex`).
pub(super) fn key(id: &ShardId, base: u64, ext: &str) -> String {
    format!("tier/{id}/{base:020}.{ext}")
}

const EXTS: [&str; 3] = ["index", "timeindex", "log"];

pub(super) fn load(dir: &std::path::Path) -> Result<Vec<RemoteSeg>> {
    let path = dir.join(REMOTE_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let num = |j: usize| f.get(j).and_then(|v| v.parse::<i64>().ok());
            match (num(0), num(1), num(2), num(3)) {
                (Some(base), Some(next), Some(size), Some(max_ts)) if f.len() == 4 => {
                    Ok(RemoteSeg {
                        base: base as u64,
                        next: next as u64,
                        size: size as u64,
                        max_ts,
                    })
                }
                _ => Err(StorageError::corruption(
                    &path,
                    i as u64,
                    format!("line {} is not `base next size max_ts`", i + 1),
                )),
            }
        })
        .collect()
}

fn save(dir: &std::path::Path, segs: &[RemoteSeg]) -> Result<()> {
    let text: String = segs
        .iter()
        .map(|s| format!("{} {} {} {}\n", s.base, s.next, s.size, s.max_ts))
        .collect();
    write_atomic(&dir.join(REMOTE_FILE), text.as_bytes())?;
    Ok(())
}

/// Remote indexes and read-ahead chunks.
#[derive(Debug, Default)]
pub(super) struct RemoteCache {
    indexes: HashMap<(u64, u64), Arc<IndexData>>,
    /// Per shard number: (segment base, chunk start, bytes).
    chunks: HashMap<u64, (u64, u64, Bytes)>,
}

/// What one tiering pass did.
#[derive(Debug, Default)]
pub(super) struct Pass {
    pub bytes_dropped: u64,
    pub files_deleted: u64,
}

impl LogState {
    /// First offset held by a local segment.
    pub(super) fn local_start(&self) -> u64 {
        self.segments[0].base
    }

    /// Bytes of uploaded segments no longer on local disk.
    pub(super) fn remote_only_bytes(&self) -> u64 {
        let local = self.local_start();
        self.remote
            .iter()
            .filter(|r| r.base < local)
            .map(|r| r.size)
            .sum()
    }
}

impl ShardLog {
    /// The uploaded segment holding `from`, if `from` is below the local segments.
    pub(super) fn remote_segment_for(&self, from: u64) -> Result<Option<(RemoteSeg, Bounds)>> {
        let st = self.lock_live()?;
        if from < st.log_start || from >= st.local_start() {
            return Ok(None);
        }
        let bounds = st.bounds();
        match st.remote.iter().find(|r| r.base <= from && from < r.next) {
            Some(r) => Ok(Some((*r, bounds))),
            None => Err(StorageError::corruption(
                self.dir.join(super::tiering::REMOTE_FILE),
                0,
                format!("offset {from} is below the local segments but in no uploaded one"),
            )),
        }
    }

    fn persist_log_start(&self, st: &LogState) -> Result<()> {
        write_atomic(
            &self.dir.join(LOG_START_FILE),
            st.log_start.to_string().as_bytes(),
        )?;
        Ok(())
    }
}

async fn delete_remote(tier: &dyn RemoteTier, id: &ShardId, seg: &RemoteSeg) -> Result<()> {
    for ext in EXTS {
        tier.delete(&key(id, seg.base, ext)).await?;
    }
    Ok(())
}

/// One tiering pass over a shard: total retention of uploaded segments, uploads of closed
/// segments, then local retention.
pub(super) async fn pass(
    tier: &dyn RemoteTier,
    log: &ShardLog,
    ctx: &super::log::Ctx,
    now_ms: i64,
) -> Result<Pass> {
    let mut out = Pass::default();
    drop_expired(tier, log, now_ms, &mut out).await?;
    // Uploads, oldest first: closed segments past the last uploaded one.
    loop {
        let next = {
            let st = log.lock_live()?;
            let uploaded_to = st.remote.last().map_or(0, |r| r.next);
            let closed = &st.segments[..st.segments.len() - 1];
            closed
                .iter()
                .find(|s| s.next > uploaded_to.max(st.log_start) && s.next > s.base)
                .map(|s| RemoteSeg {
                    base: s.base,
                    next: s.next,
                    size: s.size,
                    max_ts: s.max_ts,
                })
        };
        let Some(seg) = next else { break };
        for ext in EXTS {
            let path = match ext {
                "index" => index_path(&log.dir, seg.base),
                "timeindex" => time_index_path(&log.dir, seg.base),
                _ => log_path(&log.dir, seg.base),
            };
            tier.upload(&key(&log.id, seg.base, ext), &path).await?;
        }
        let mut st = log.lock_live()?;
        // A truncation or deletion meanwhile may have changed the segment.
        let same = st
            .segments
            .iter()
            .any(|s| s.base == seg.base && s.next == seg.next && s.size == seg.size);
        if !same {
            continue;
        }
        st.remote.push(seg);
        save(&log.dir, &st.remote)?;
        tracing::debug!(shard = %log.id, base = seg.base, bytes = seg.size, "segment uploaded");
    }
    // Local retention: uploaded segments beyond local.retention go from the local disk.
    let mut st = log.lock_live()?;
    let local = st.spec.local_retention;
    loop {
        let uploaded_to = st.remote.last().map_or(0, |r| r.next);
        let size = st.size();
        let oldest = &st.segments[0];
        if st.segments.len() < 2 || oldest.next > uploaded_to {
            break;
        }
        let too_big = local.bytes.is_some_and(|b| size - oldest.size >= b);
        let too_old = local
            .ms
            .is_some_and(|ms| oldest.max_ts < now_ms.saturating_sub(ms as i64));
        if !too_big && !too_old {
            break;
        }
        log.remove_oldest_files(ctx, &mut st)?;
        out.files_deleted += 1;
    }
    Ok(out)
}

/// Deletes uploaded segments past total retention or below the log start.
pub(super) async fn drop_expired(
    tier: &dyn RemoteTier,
    log: &ShardLog,
    now_ms: i64,
    out: &mut Pass,
) -> Result<()> {
    let doomed: Vec<RemoteSeg> = {
        let mut st = log.lock_live()?;
        let spec = st.spec;
        let local_start = st.local_start();
        let mut total = st.size() + st.remote_only_bytes();
        let mut moved = false;
        let mut doomed = Vec::new();
        for r in st.remote.clone() {
            let remote_only = r.base < local_start;
            let below = r.next <= st.log_start;
            let expired = remote_only
                && spec
                    .retention
                    .ms
                    .is_some_and(|ms| r.max_ts < now_ms.saturating_sub(ms as i64));
            let too_big = remote_only && spec.retention.bytes.is_some_and(|b| total - r.size >= b);
            if !(below || expired || too_big) {
                break;
            }
            if remote_only {
                total -= r.size;
                if r.next > st.log_start {
                    st.log_start = r.next;
                    moved = true;
                }
                out.bytes_dropped += r.size;
            }
            doomed.push(r);
        }
        if moved {
            log.persist_log_start(&st)?;
        }
        doomed
    };
    for r in &doomed {
        delete_remote(tier, &log.id, r).await?;
        let mut st = log.lock_live()?;
        st.remote.retain(|x| x != r);
        save(&log.dir, &st.remote)?;
        out.files_deleted += 3;
    }
    Ok(())
}

/// Forgets uploaded segments at or past `next` (after a truncation) and deletes their objects.
pub(super) async fn after_truncate(tier: &dyn RemoteTier, log: &ShardLog) -> Result<()> {
    let stale: Vec<RemoteSeg> = {
        let st = log.lock_live()?;
        let next = st.next_offset();
        st.remote
            .iter()
            .filter(|r| r.next > next)
            .copied()
            .collect()
    };
    for r in &stale {
        {
            let mut st = log.lock_live()?;
            st.remote.retain(|x| x != r);
            save(&log.dir, &st.remote)?;
        }
        delete_remote(tier, &log.id, r).await?;
    }
    Ok(())
}

/// Deletes every uploaded segment of a deleted shard.
pub(super) async fn forget(tier: &dyn RemoteTier, id: &ShardId, segs: &[RemoteSeg]) {
    for r in segs {
        if let Err(e) = delete_remote(tier, id, r).await {
            tracing::warn!(shard = %id, base = r.base, error = %e,
                "cannot delete an uploaded segment of a deleted shard");
        }
    }
}

async fn remote_index(
    tier: &dyn RemoteTier,
    cache: &Mutex<RemoteCache>,
    log: &ShardLog,
    seg: &RemoteSeg,
) -> Result<Arc<IndexData>> {
    if let Some(ix) = cache.lock().indexes.get(&(log.no.get(), seg.base)) {
        return Ok(ix.clone());
    }
    let offsets = tier.read(&key(&log.id, seg.base, "index"), None).await?;
    let times = tier
        .read(&key(&log.id, seg.base, "timeindex"), None)
        .await?;
    let (_, data) = IndexData::decode(&offsets, &times).ok_or_else(|| {
        StorageError::corruption(
            key(&log.id, seg.base, "index"),
            0,
            "uploaded index is damaged",
        )
    })?;
    let data = Arc::new(data);
    let mut c = cache.lock();
    if c.indexes.len() > 4096 {
        c.indexes.clear();
    }
    c.indexes.insert((log.no.get(), seg.base), data.clone());
    Ok(data)
}

/// Bytes of the uploaded segment from `start`, at least `want` of them if the segment has
/// them, from the read-ahead chunk or a new ranged GET.
async fn bytes_at(
    tier: &dyn RemoteTier,
    cache: &Mutex<RemoteCache>,
    log: &ShardLog,
    seg: &RemoteSeg,
    start: u64,
    want: u64,
) -> Result<Bytes> {
    let end = seg.size.min(start + want);
    if let Some((base, at, bytes)) = cache.lock().chunks.get(&log.no.get())
        && *base == seg.base
        && *at <= start
        && at + bytes.len() as u64 >= end
    {
        return Ok(bytes.slice((start - at) as usize..));
    }
    let fetch_end = seg.size.min(start + want.max(READ_AHEAD));
    let bytes = tier
        .read(&key(&log.id, seg.base, "log"), Some(start..fetch_end))
        .await?;
    cache
        .lock()
        .chunks
        .insert(log.no.get(), (seg.base, start, bytes.clone()));
    Ok(bytes)
}

/// Reads whole batches from an uploaded segment, starting with the one holding `from`.
pub(super) async fn read(
    tier: &dyn RemoteTier,
    cache: &Mutex<RemoteCache>,
    log: &ShardLog,
    seg: RemoteSeg,
    from: u64,
    max_bytes: usize,
    bounds: Bounds,
) -> Result<ReadChunk> {
    let ix = remote_index(tier, cache, log, &seg).await?;
    let entry = floor(&ix.offsets, (from - seg.base) as u32);
    read_from(
        tier,
        cache,
        log,
        seg,
        u64::from(entry.pos),
        seg.base + u64::from(entry.rel),
        from,
        max_bytes,
        bounds,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn read_from(
    tier: &dyn RemoteTier,
    cache: &Mutex<RemoteCache>,
    log: &ShardLog,
    seg: RemoteSeg,
    mut pos: u64,
    mut expected: u64,
    from: u64,
    max_bytes: usize,
    bounds: Bounds,
) -> Result<ReadChunk> {
    let name = key(&log.id, seg.base, "log");
    let mut chunk = ReadChunk {
        bounds,
        ..ReadChunk::default()
    };
    let mut buf = bytes_at(tier, cache, log, &seg, pos, max_bytes as u64).await?;
    let mut at = 0usize;
    while pos < seg.size && (chunk.is_empty() || chunk.len < max_bytes) {
        if buf.len() - at < HEADER_LEN {
            if !chunk.is_empty() {
                break;
            }
            buf = bytes_at(tier, cache, log, &seg, pos, HEADER_LEN as u64).await?;
            at = 0;
            if buf.len() < HEADER_LEN {
                return Err(StorageError::corruption(
                    &name,
                    pos,
                    "segment ends inside a header",
                ));
            }
        }
        let (_, total) = peek_len(&buf[at..])
            .ok_or_else(|| StorageError::corruption(&name, pos, "unreadable batch header"))?;
        if buf.len() - at < total {
            if !chunk.is_empty() {
                break;
            }
            buf = bytes_at(tier, cache, log, &seg, pos, total as u64).await?;
            at = 0;
            if buf.len() < total {
                return Err(StorageError::corruption(
                    &name,
                    pos,
                    "segment ends inside a batch",
                ));
            }
        }
        let bytes = buf.slice(at..at + total);
        let info =
            check_batch(&bytes, expected).map_err(|r| StorageError::corruption(&name, pos, r))?;
        if info.last >= from {
            if !chunk.is_empty() && chunk.len + total > max_bytes {
                break;
            }
            chunk.push(Piece::Bytes(bytes));
        }
        at += total;
        pos += total as u64;
        expected = info.last + 1;
    }
    Ok(chunk)
}

/// The first record at or after `ts` in uploaded segments no longer local, if any.
pub(super) async fn offset_for_timestamp(
    tier: &dyn RemoteTier,
    cache: &Mutex<RemoteCache>,
    log: &ShardLog,
    ts: i64,
) -> Result<Option<TimestampHit>> {
    let (candidates, log_start, bounds) = {
        let st = log.lock_live()?;
        let local = st.local_start();
        let c: Vec<RemoteSeg> = st
            .remote
            .iter()
            .filter(|r| r.base < local && r.next > st.log_start && r.max_ts >= ts)
            .copied()
            .collect();
        (c, st.log_start, st.bounds())
    };
    for seg in candidates {
        let ix = remote_index(tier, cache, log, &seg).await?;
        let start = start_for(&ix, seg.base, ts, log_start);
        let (mut pos, mut expected) = (u64::from(start.pos), seg.base + u64::from(start.rel));
        while pos < seg.size {
            let got = read_from(tier, cache, log, seg, pos, expected, 0, 1, bounds).await?;
            let Some(Piece::Bytes(b)) = got.pieces.first().cloned() else {
                break;
            };
            let len = b.len() as u64;
            let h = strata_record::Batch::validate(b.clone())?;
            let last = h.header().last_offset() as u64;
            if let Some(hit) = first_record_at_or_after(b, ts, log_start)? {
                return Ok(Some(hit));
            }
            pos += len;
            expected = last + 1;
        }
    }
    Ok(None)
}
