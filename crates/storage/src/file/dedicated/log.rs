//! One shard's log: a chain of segments, and every operation that changes it.

use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use strata_record::{Batch, HEADER_LEN};

use super::format::{
    LOG_START_FILE, SPEC_FILE, SegmentSummary, index_path, log_path, time_index_path,
};
use super::recovery::{BatchInfo, check_header, scan};
use super::segment::{IndexData, Segment, floor};
use crate::engine::check_batch_size;
use crate::file::fdcache::FdCache;
use crate::file::index_cache::{IndexCache, Weigh};
use crate::file::io::write_all_at;
use crate::file::sync::{Syncer, Ticket};
use crate::util::{fsync_dir, write_atomic, write_replace};
use crate::{
    Appended, Bounds, Durability, LEADER_EPOCH, Result, ShardId, ShardNo, StorageError, StorageSpec,
};

impl Weigh for IndexData {
    fn weight(&self) -> usize {
        self.heap_bytes() + 64
    }
}

/// What every shard of one engine shares.
#[derive(Debug)]
pub(super) struct Ctx {
    pub files: FdCache,
    pub indexes: IndexCache<IndexData>,
    pub syncer: Syncer,
}

/// One shard.
#[derive(Debug)]
pub(super) struct ShardLog {
    pub id: ShardId,
    /// Engine-local number, the owner part of file-cache keys.
    pub no: ShardNo,
    pub dir: PathBuf,
    pub state: Mutex<LogState>,
}

/// The mutable part of a shard.
#[derive(Debug)]
pub(super) struct LogState {
    pub spec: StorageSpec,
    pub log_start: u64,
    /// Never empty; the last one is active (takes appends).
    pub segments: Vec<Segment>,
    pub deleted: bool,
    /// Segments uploaded to object storage (`remote.storage.enable`), oldest first; those
    /// below the first local segment exist only there.
    pub remote: Vec<super::tiering::RemoteSeg>,
}

impl LogState {
    pub(super) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a log always has an active segment")
    }

    pub(super) fn next_offset(&self) -> u64 {
        self.active().next
    }

    pub(super) fn size(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    pub(super) fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next_offset(),
            size_bytes: self.size() + self.remote_only_bytes(),
        }
    }

    fn durable(&self) -> bool {
        self.spec.durability != Durability::OsCache
    }
}

/// Reads and checks the header of the batch at `pos` of a segment holding `size` bytes.
pub(super) fn header_at(
    file: &fs::File,
    path: &Path,
    pos: u64,
    size: u64,
    expected: u64,
) -> Result<BatchInfo> {
    let corrupt = |reason: String| StorageError::corruption(path, pos, reason);
    if size.saturating_sub(pos) < HEADER_LEN as u64 {
        return Err(corrupt("segment ends inside a batch header".into()));
    }
    let mut head = [0u8; HEADER_LEN];
    file.read_exact_at(&mut head, pos)?;
    check_header(&head, size - pos, expected).map_err(corrupt)
}

impl ShardLog {
    pub(super) fn spec_path(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    fn not_found(&self) -> StorageError {
        StorageError::ShardNotFound(self.id.clone())
    }

    pub(super) fn lock_live(&self) -> Result<parking_lot::MutexGuard<'_, LogState>> {
        let st = self.state.lock();
        if st.deleted {
            return Err(self.not_found());
        }
        Ok(st)
    }

    pub(super) fn out_of_range(&self, st: &LogState, offset: u64) -> StorageError {
        StorageError::OffsetOutOfRange {
            shard: self.id.clone(),
            offset,
            log_start: st.log_start,
            next_offset: st.next_offset(),
        }
    }

    pub(super) fn open_segment(&self, ctx: &Ctx, base: u64, create: bool) -> Result<Arc<fs::File>> {
        Ok(ctx
            .files
            .open((self.no.get(), base), &log_path(&self.dir, base), create)?)
    }

    /// Appends a batch; returns once it is as durable as the spec says.
    pub(super) async fn append(&self, ctx: &Ctx, batch: Batch) -> Result<Appended> {
        let (appended, ticket) = self.write(ctx, &batch)?;
        if let Some(ticket) = ticket {
            ctx.syncer.wait(ticket).await?;
        }
        Ok(appended)
    }

    fn write(&self, ctx: &Ctx, batch: &Batch) -> Result<(Appended, Option<Ticket>)> {
        let mut st = self.lock_live()?;
        ctx.syncer.check()?;
        check_batch_size(batch)?;
        let len = batch.len() as u64;
        let count = u64::from(batch.record_count());
        let max_ts = batch.max_timestamp();
        if self.needs_roll(&st, len, count, max_ts) {
            self.roll(ctx, &mut st)?;
        }
        let seg = st.active();
        let (seg_base, pos, base) = (seg.base, seg.size, seg.next);
        let file = self.open_segment(ctx, seg_base, true)?;
        let prefix = batch.rewritten_prefix(base as i64, LEADER_EPOCH);
        if let Err(e) = write_all_at(&file, &[&prefix, &batch.as_bytes()[16..]], pos) {
            // Leave no partial batch behind for the next write to follow.
            let _ = file.set_len(pos);
            return Err(e.into());
        }
        let last = base + count - 1;
        let seg = st.active_mut();
        seg.active
            .as_mut()
            .expect("active segment has an indexer")
            .add((base - seg_base) as u32, pos, len, max_ts);
        seg.verified.insert(pos, pos + len);
        seg.size += len;
        seg.next = last + 1;
        seg.max_ts = seg.max_ts.max(max_ts);
        seg.first_ts.get_or_insert(max_ts);
        let ticket = match st.spec.durability {
            Durability::Fsync => Some(ctx.syncer.request(&file)),
            Durability::Interval(ms) => {
                ctx.syncer
                    .sync_within(&file, std::time::Duration::from_millis(u64::from(ms)));
                None
            }
            Durability::OsCache | Durability::Memory => None,
        };
        let appended = Appended {
            base_offset: base,
            last_offset: last,
            log_start: st.log_start,
        };
        Ok((appended, ticket))
    }

    fn needs_roll(&self, st: &LogState, len: u64, count: u64, max_ts: i64) -> bool {
        let seg = st.active();
        if seg.is_empty() {
            return false;
        }
        seg.size + len > st.spec.segment_bytes.min(u64::from(u32::MAX))
            || seg.next - seg.base + count > u64::from(u32::MAX)
            || matches!((st.spec.segment_ms, seg.first_ts),
                (Some(ms), Some(first)) if max_ts.saturating_sub(first) >= ms as i64)
    }

    /// Closes the active segment (writing its indexes) and starts a new one at the next offset.
    pub(super) fn roll(&self, ctx: &Ctx, st: &mut LogState) -> Result<()> {
        // Everything that can fail happens before the in-memory state changes, so a failed
        // roll leaves the old segment active and the shard usable.
        let durable = st.durable();
        let seg = st.active();
        let (base, next) = (seg.base, seg.next);
        let file = self.open_segment(ctx, base, false)?;
        if durable {
            ctx.syncer.sync_now(&file)?;
        }
        self.write_index(seg, durable)?;
        if let Err(e) = self.open_segment(ctx, next, true) {
            let _ = fs::remove_file(index_path(&self.dir, base));
            let _ = fs::remove_file(time_index_path(&self.dir, base));
            return Err(e);
        }
        if durable {
            fsync_dir(&self.dir).map_err(|e| ctx.syncer.poison(&e))?;
        }
        let seg = st.active_mut();
        let data = seg.active.take().map(|ix| ix.data).unwrap_or_default();
        ctx.indexes.put((self.no.get(), base), Arc::new(data));
        st.segments.push(Segment::empty(next));
        Ok(())
    }

    /// Writes the index files of a segment whose indexes are in memory.
    pub(super) fn write_index(&self, seg: &Segment, durable: bool) -> Result<()> {
        match &seg.active {
            Some(ix) => write_index_files(&self.dir, seg.base, &ix.data, seg.summary(), durable),
            None => Ok(()),
        }
    }

    /// Deletes the oldest segment (never the active one).
    fn delete_oldest(&self, ctx: &Ctx, st: &mut LogState) -> io::Result<u64> {
        let (size, next) = self.remove_oldest_files(ctx, st)?;
        st.log_start = st.log_start.max(next);
        Ok(size)
    }

    /// Deletes the oldest segment's files (never the active one) without moving the log start
    /// (tiering: the segment is in object storage); returns its size and next offset.
    pub(super) fn remove_oldest_files(
        &self,
        ctx: &Ctx,
        st: &mut LogState,
    ) -> io::Result<(u64, u64)> {
        let seg = st.segments.remove(0);
        ctx.files.forget((self.no.get(), seg.base));
        ctx.indexes.forget((self.no.get(), seg.base));
        for path in [
            log_path(&self.dir, seg.base),
            index_path(&self.dir, seg.base),
            time_index_path(&self.dir, seg.base),
        ] {
            match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok((seg.size, seg.next))
    }

    /// Drops whole segments below the log start; rolls first if the active one is all below.
    fn drop_below_log_start(&self, ctx: &Ctx, st: &mut LogState) -> Result<(u64, u64)> {
        let active = st.active();
        if !active.is_empty() && active.next <= st.log_start {
            self.roll(ctx, st)?;
        }
        let (mut bytes, mut files) = (0, 0);
        while st.segments.len() > 1 && st.segments[0].next <= st.log_start {
            bytes += self.delete_oldest(ctx, st)?;
            files += 1;
        }
        Ok((bytes, files))
    }

    /// Moves the log start forward to `before`.
    pub(super) fn trim(&self, ctx: &Ctx, before: u64) -> Result<Bounds> {
        let mut st = self.lock_live()?;
        ctx.syncer.check()?;
        if before > st.next_offset() {
            return Err(self.out_of_range(&st, before));
        }
        if before > st.log_start {
            st.log_start = before;
            write_atomic(
                &self.dir.join(LOG_START_FILE),
                before.to_string().as_bytes(),
            )?;
            self.drop_below_log_start(ctx, &mut st)?;
        }
        Ok(st.bounds())
    }

    /// Applies retention and time-based rolling as of `now_ms`; returns (bytes, files) dropped.
    pub(super) fn maintain(&self, ctx: &Ctx, now_ms: i64) -> Result<(u64, u64)> {
        let mut st = self.lock_live()?;
        ctx.syncer.check()?;
        let spec = st.spec;
        let (mut bytes, mut files) = (0, 0);
        let active = st.active();
        if let (Some(ms), Some(first)) = (spec.segment_ms, active.first_ts)
            && now_ms.saturating_sub(first) >= ms as i64
        {
            self.roll(ctx, &mut st)?;
        }
        if let Some(ms) = spec.retention.ms {
            let cutoff = now_ms.saturating_sub(ms as i64);
            loop {
                let oldest = &st.segments[0];
                if oldest.is_empty() || oldest.max_ts >= cutoff {
                    break;
                }
                if st.segments.len() == 1 {
                    self.roll(ctx, &mut st)?;
                }
                bytes += self.delete_oldest(ctx, &mut st)?;
                files += 1;
            }
        }
        if let Some(limit) = spec.retention.bytes {
            let mut total = st.size();
            while st.segments.len() > 1 && total - st.segments[0].size >= limit {
                let freed = self.delete_oldest(ctx, &mut st)?;
                total -= freed;
                bytes += freed;
                files += 1;
            }
        }
        let (b, f) = self.drop_below_log_start(ctx, &mut st)?;
        Ok((bytes + b, files + f))
    }

    /// Removes every batch holding an offset at or after `to`.
    pub(super) fn truncate(&self, ctx: &Ctx, to: u64) -> Result<Bounds> {
        let mut st = self.lock_live()?;
        ctx.syncer.check()?;
        if to >= st.next_offset() {
            return Ok(st.bounds());
        }
        let keep = st.segments.partition_point(|s| s.base <= to).max(1);
        while st.segments.len() > keep {
            let seg = st.segments.pop().expect("more than keep");
            ctx.files.forget((self.no.get(), seg.base));
            ctx.indexes.forget((self.no.get(), seg.base));
            for path in [
                log_path(&self.dir, seg.base),
                index_path(&self.dir, seg.base),
                time_index_path(&self.dir, seg.base),
            ] {
                let _ = fs::remove_file(path);
            }
        }
        let seg = st.active();
        let base = seg.base;
        let path = log_path(&self.dir, base);
        let file = self.open_segment(ctx, base, false)?;
        let cut = if to <= base {
            0
        } else {
            let entries = match &seg.active {
                Some(ix) => ix.data.offsets.clone(),
                None => self.closed_index(ctx, base, seg.summary())?.offsets.clone(),
            };
            let start = floor(&entries, (to - base) as u32);
            let (mut pos, mut expected) = (u64::from(start.pos), base + u64::from(start.rel));
            loop {
                let info = header_at(&file, &path, pos, seg.size, expected)?;
                if info.last >= to {
                    break pos;
                }
                pos += info.len;
                expected = info.last + 1;
            }
        };
        file.set_len(cut)?;
        let mut scanned = scan(&path, &file, base)?;
        if to < base {
            // Everything in this segment goes, and the log restarts below it.
            drop(file);
            ctx.files.forget((self.no.get(), base));
            fs::remove_file(&path)?;
            st.segments.pop();
            st.segments.push(Segment::empty(to));
            self.open_segment(ctx, to, true)?;
            scanned.next = to;
        } else {
            let seg = st.active_mut();
            seg.size = scanned.size;
            seg.next = scanned.next;
            seg.max_ts = scanned.max_ts;
            seg.first_ts = scanned.first_ts;
            seg.active = Some(scanned.indexer);
            seg.verified = scanned.verified;
        }
        ctx.indexes.forget((self.no.get(), base));
        let _ = fs::remove_file(index_path(&self.dir, base));
        let _ = fs::remove_file(time_index_path(&self.dir, base));
        if st.durable() {
            ctx.syncer
                .sync_now(&*self.open_segment(ctx, st.active().base, false)?)?;
            fsync_dir(&self.dir)?;
        }
        let next = st.next_offset();
        if st.log_start > next {
            st.log_start = next;
            write_atomic(&self.dir.join(LOG_START_FILE), next.to_string().as_bytes())?;
        }
        Ok(st.bounds())
    }

    /// The indexes of a closed segment, from the cache or its files (rebuilt if damaged).
    pub(super) fn closed_index(
        &self,
        ctx: &Ctx,
        base: u64,
        summary: SegmentSummary,
    ) -> Result<Arc<IndexData>> {
        let key = (self.no.get(), base);
        if let Some(ix) = ctx.indexes.get(key) {
            return Ok(ix);
        }
        let loaded = fs::read(index_path(&self.dir, base))
            .ok()
            .zip(fs::read(time_index_path(&self.dir, base)).ok())
            .and_then(|(o, t)| IndexData::decode(&o, &t))
            .filter(|(s, _)| *s == summary);
        let data = match loaded {
            Some((_, data)) => data,
            None => {
                let path = log_path(&self.dir, base);
                tracing::warn!(file = %path.display(), "index files missing or damaged; rebuilding");
                let file = self.open_segment(ctx, base, false)?;
                let data = scan(&path, &file, base)?.indexer.data;
                write_index_files(&self.dir, base, &data, summary, false)?;
                data
            }
        };
        let data = Arc::new(data);
        ctx.indexes.put(key, data.clone());
        Ok(data)
    }

    /// Writes the spec file (and fsyncs it and its directory if `durable`).
    pub(super) fn write_spec(&self, spec: &StorageSpec, durable: bool) -> Result<()> {
        let text: String = spec
            .to_properties()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        write_replace(&self.spec_path(), text.as_bytes(), durable)?;
        Ok(())
    }
}

/// Writes a segment's `.index` and `.timeindex` files.
pub(super) fn write_index_files(
    dir: &Path,
    base: u64,
    data: &IndexData,
    summary: SegmentSummary,
    durable: bool,
) -> Result<()> {
    let (offsets, times) = data.encode(summary);
    for (path, bytes) in [
        (index_path(dir, base), offsets),
        (time_index_path(dir, base), times),
    ] {
        let f = fs::File::create(&path)?;
        f.write_all_at(&bytes, 0)?;
        if durable {
            f.sync_data()?;
        }
    }
    Ok(())
}
