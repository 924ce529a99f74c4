//! Reads and timestamp lookups of one shard.
//!
//! Bytes this process wrote or has already checked are served as a file region (sendfile);
//! bytes not yet checked since the engine opened are read, their CRCs verified, and served from
//! memory — so damage is reported with file and position instead of being sent to a consumer.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;

use super::format::SegmentSummary;
use super::format::log_path;
use super::log::{Ctx, ShardLog, header_at};
use super::recovery::{check_batch, check_header};
use super::segment::{IndexData, OffsetEntry, floor, floor_position};
use crate::file::ranges::RangeSet;
use crate::util::first_record_at_or_after;
use crate::{Bounds, FileRegion, Piece, ReadChunk, Result, StorageError, TimestampHit};

/// Index entries to search: a copy of part of the active segment's, or a closed segment's.
enum Entries {
    Copied(Vec<OffsetEntry>),
    Closed,
}

/// How many entries past the start a read copies out of the active segment's index.
const COPY_ENTRIES: usize = 4096;

/// The segment a read starts in, as seen under the shard's lock.
struct Start {
    base: u64,
    size: u64,
    summary: SegmentSummary,
    entries: Entries,
    verified: RangeSet,
    bounds: Bounds,
    file: Arc<File>,
}

/// The byte range of whole batches a read serves from one segment.
struct Extent {
    start: u64,
    end: u64,
    /// Base offset of the first batch.
    first: u64,
}

impl ShardLog {
    /// Whole batches from the one holding `from`, within `max_bytes` (at least one batch).
    pub(super) fn read(&self, ctx: &Ctx, from: u64, max_bytes: usize) -> Result<ReadChunk> {
        let at = match self.start(ctx, from)? {
            Ok(at) => at,
            Err(end) => return Ok(end),
        };
        let closed: Arc<IndexData>;
        let entries: Cow<'_, [OffsetEntry]> = match at.entries {
            Entries::Copied(ref v) => Cow::Borrowed(v),
            Entries::Closed => {
                closed = match self.closed_index(ctx, at.base, at.summary) {
                    Ok(ix) => ix,
                    // Retention deleted the segment (and its index files) after the lock was
                    // released: the offset is gone now, or the read is planned again.
                    Err(StorageError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                        let st = self.lock_live()?;
                        if from < st.log_start {
                            return Err(self.out_of_range(&st, from));
                        }
                        drop(st);
                        return self.read(ctx, from, max_bytes);
                    }
                    Err(e) => return Err(e),
                };
                Cow::Borrowed(&closed.offsets)
            }
        };
        let path = log_path(&self.dir, at.base);
        let extent = extent(&at, &path, &entries, from, max_bytes)?;
        self.serve(&at, &path, &extent)
    }

    /// Under the lock: the segment holding `from` and what a read needs of it, or the empty
    /// chunk of a read at the end of the log.
    fn start(&self, ctx: &Ctx, from: u64) -> Result<Result<Start, ReadChunk>> {
        let st = self.lock_live()?;
        let bounds = st.bounds();
        if from < st.log_start || from > bounds.next_offset {
            return Err(self.out_of_range(&st, from));
        }
        if from == bounds.next_offset {
            return Ok(Err(ReadChunk {
                bounds,
                ..ReadChunk::default()
            }));
        }
        let mut i = st
            .segments
            .partition_point(|s| s.base <= from)
            .saturating_sub(1);
        while st.segments[i].next <= from {
            i += 1;
        }
        let seg = &st.segments[i];
        let entries = match &seg.active {
            Some(ix) => {
                let offsets = &ix.data.offsets;
                let first = offsets
                    .partition_point(|e| u64::from(e.rel) + seg.base <= from)
                    .saturating_sub(1);
                let last = (first + COPY_ENTRIES).min(offsets.len());
                Entries::Copied(offsets[first..last].to_vec())
            }
            None => Entries::Closed,
        };
        // The file is opened while the lock keeps retention from deleting it.
        let file = self.open_segment(ctx, seg.base, false)?;
        Ok(Ok(Start {
            base: seg.base,
            size: seg.size,
            summary: seg.summary(),
            entries,
            verified: seg.verified.clone(),
            bounds,
            file,
        }))
    }

    /// The bytes of an extent: a file region if they were checked before, else read, checked
    /// batch by batch (a damaged first batch is corruption; the read stops before a later one).
    fn serve(&self, at: &Start, path: &Path, extent: &Extent) -> Result<ReadChunk> {
        let mut chunk = ReadChunk {
            bounds: at.bounds,
            ..ReadChunk::default()
        };
        let (start_pos, end) = (extent.start, extent.end);
        let len = (end - start_pos) as usize;
        if at.verified.contains(start_pos, end) {
            chunk.push(Piece::File(FileRegion {
                file: at.file.clone(),
                offset: start_pos,
                len,
            }));
            return Ok(chunk);
        }
        let mut buf = BytesMut::zeroed(len);
        at.file.read_exact_at(&mut buf, start_pos)?;
        let mut pos = 0usize;
        let mut expected = extent.first;
        while pos < len {
            let checked = check_header(&buf[pos..], (len - pos) as u64, expected)
                .and_then(|h| check_batch(&buf[pos..pos + h.len as usize], expected));
            match checked {
                Ok(info) => {
                    pos += info.len as usize;
                    expected = info.last + 1;
                }
                Err(reason) if pos == 0 => {
                    return Err(StorageError::corruption(path, start_pos, reason));
                }
                Err(_) => break,
            }
        }
        self.mark_verified(at.base, start_pos, start_pos + pos as u64);
        chunk.push(Piece::Bytes(buf.freeze().slice(..pos)));
        Ok(chunk)
    }

    fn mark_verified(&self, base: u64, start: u64, end: u64) {
        let mut st = self.state.lock();
        if let Some(seg) = st.segments.iter_mut().find(|s| s.base == base) {
            seg.verified.insert(start, end.min(seg.size));
        }
    }

    /// The first record at or after `log_start` with a timestamp ≥ `ts`.
    pub(super) fn offset_for_timestamp(&self, ctx: &Ctx, ts: i64) -> Result<Option<TimestampHit>> {
        // (segment base, size, summary, start entry if the index is in memory)
        let (log_start, candidates) = {
            let st = self.lock_live()?;
            let log_start = st.log_start;
            let c: Vec<_> = st
                .segments
                .iter()
                .filter(|s| s.max_ts >= ts && s.next > log_start)
                .map(|s| {
                    let start = s
                        .active
                        .as_ref()
                        .map(|ix| start_for(&ix.data, s.base, ts, log_start));
                    (s.base, s.size, s.summary(), start)
                })
                .collect();
            (log_start, c)
        };
        for (base, size, summary, start) in candidates {
            let start = match start {
                Some(s) => s,
                None => start_for(
                    &*self.closed_index(ctx, base, summary)?,
                    base,
                    ts,
                    log_start,
                ),
            };
            let path = log_path(&self.dir, base);
            let file = self.open_segment(ctx, base, false)?;
            let (mut pos, mut expected) = (u64::from(start.pos), base + u64::from(start.rel));
            while pos < size {
                let info = header_at(&file, &path, pos, size, expected)?;
                if info.max_ts >= ts && info.last >= log_start {
                    let mut buf = BytesMut::zeroed(info.len as usize);
                    file.read_exact_at(&mut buf, pos)?;
                    check_batch(&buf, expected)
                        .map_err(|r| StorageError::corruption(&path, pos, r))?;
                    if let Some(hit) = first_record_at_or_after(buf.freeze(), ts, log_start)? {
                        return Ok(Some(hit));
                    }
                }
                pos += info.len;
                expected = info.last + 1;
            }
        }
        Ok(None)
    }
}

/// Where a read's whole batches lie: from the batch holding `from` (found by walking headers
/// from the index entry at or before it) up to the budget (jumping to the last index entry
/// inside it, then walking headers), at least one batch.
fn extent(
    at: &Start,
    path: &Path,
    entries: &[OffsetEntry],
    from: u64,
    max_bytes: usize,
) -> Result<Extent> {
    let (file, base, size) = (&*at.file, at.base, at.size);
    let start = floor(entries, (from - base) as u32);
    let (mut pos, mut expected) = (u64::from(start.pos), base + u64::from(start.rel));
    let first = loop {
        let info = header_at(file, path, pos, size, expected)?;
        if info.last >= from {
            break info;
        }
        pos += info.len;
        expected = info.last + 1;
    };
    let start_pos = pos;
    let limit = start_pos + max_bytes as u64;
    let mut end = start_pos + first.len;
    let mut expected = first.last + 1;
    if end < limit {
        if let Some(e) = floor_position(entries, limit.min(size))
            && u64::from(e.pos) > end
        {
            end = u64::from(e.pos);
            expected = base + u64::from(e.rel);
        }
        while end < size {
            match header_at(file, path, end, size, expected) {
                Ok(info) if end + info.len <= limit => {
                    end += info.len;
                    expected = info.last + 1;
                }
                _ => break,
            }
        }
    }
    Ok(Extent {
        start: start_pos,
        end,
        first: first.base,
    })
}

/// The later of: where the time index says to start, and the batch holding the log start.
pub(super) fn start_for(ix: &IndexData, base: u64, ts: i64, log_start: u64) -> OffsetEntry {
    let by_time = ix.time_start(ts);
    let by_offset = floor(
        &ix.offsets,
        log_start.saturating_sub(base).min(u64::from(u32::MAX)) as u32,
    );
    if by_offset.pos > by_time.pos {
        by_offset
    } else {
        by_time
    }
}
