//! Reads and timestamp lookups.
//!
//! The plan (which index blocks and tail entries to look at) is made under the engine lock;
//! blocks and batch bytes are read after it is released. A shard's batches are spread through
//! the journal, so a read gathers them with positioned reads, one per run of adjacent batches,
//! verifies each batch's CRC and offset, and hands the batches out as slices of those buffers.

use bytes::{Bytes, BytesMut};
use std::os::unix::fs::FileExt;

use strata_record::{peek_len, verify_crc};

use super::SharedEngine;
use super::format::{RECORD_HEADER, journal_path};
use super::state::{Entry, RunRef};
use crate::util::first_record_at_or_after;
use crate::{Piece, ReadChunk, Result, ShardId, StorageError, TimestampHit};

/// Longest span read in one call when gathering adjacent batches.
const MAX_SPAN: u64 = 8 << 20;

enum Source {
    Run(RunRef),
    Tail(Vec<Entry>),
}

/// Entries of the batches to return, in order: the one holding `from`, then as many as fit.
fn plan(
    engine: &SharedEngine,
    id: &ShardId,
    from: u64,
    max: usize,
) -> Result<(Vec<Entry>, ReadChunk)> {
    let sources = {
        let g = engine.lock()?;
        let no = g.no(id)?;
        let s = g.table.get(no).expect("live shard");
        let bounds = s.bounds();
        if from < s.log_start || from > s.next {
            return Err(StorageError::OffsetOutOfRange {
                shard: id.clone(),
                offset: from,
                log_start: s.log_start,
                next_offset: s.next,
            });
        }
        let chunk = ReadChunk {
            bounds,
            ..ReadChunk::default()
        };
        if from == s.next {
            return Ok((Vec::new(), chunk));
        }
        let mut sources = Vec::new();
        let mut bytes = 0u64;
        for r in s.runs.iter().filter(|r| r.last >= from) {
            sources.push(Source::Run(*r));
            bytes += r.bytes;
            if bytes > max as u64 {
                break;
            }
        }
        if bytes <= max as u64 {
            let start = s.tail.partition_point(|e| e.last() < from);
            let mut taken = Vec::new();
            for e in &s.tail[start..] {
                taken.push(*e);
                bytes += u64::from(e.len);
                if bytes > max as u64 {
                    break;
                }
            }
            sources.push(Source::Tail(taken));
        }
        (sources, chunk)
    };
    let (sources, chunk) = sources;
    let mut out = Vec::new();
    let mut total = 0usize;
    'sources: for src in sources {
        let block;
        let entries: &[Entry] = match &src {
            Source::Run(r) => {
                block = engine.ctx.load_block(r)?;
                &block
            }
            Source::Tail(v) => v,
        };
        for e in entries.iter().filter(|e| e.last() >= from) {
            if !out.is_empty() && total + e.len as usize > max {
                break 'sources;
            }
            total += e.len as usize;
            out.push(*e);
        }
    }
    Ok((out, chunk))
}

/// Reads and checks the batches of `entries`; stops before the first bad one, or fails if the
/// first is bad.
fn gather(engine: &SharedEngine, entries: &[Entry], chunk: &mut ReadChunk) -> Result<()> {
    let mut i = 0;
    while i < entries.len() {
        let first = entries[i];
        let path = || journal_path(&engine.ctx.root, first.file);
        if first.is_hole() {
            if chunk.is_empty() {
                return Err(StorageError::corruption(
                    path(),
                    u64::from(first.pos),
                    format!(
                        "offsets {}..={} were lost to a damaged journal record",
                        first.base,
                        first.last()
                    ),
                ));
            }
            return Ok(());
        }
        // Adjacent batches of this shard are read together.
        let mut j = i + 1;
        let mut end = u64::from(first.pos) + u64::from(first.len);
        while let Some(e) = entries.get(j) {
            let adjacent = e.file == first.file
                && !e.is_hole()
                && u64::from(e.pos) == end + RECORD_HEADER as u64
                && u64::from(e.pos) + u64::from(e.len) - u64::from(first.pos) <= MAX_SPAN;
            if !adjacent {
                break;
            }
            end = u64::from(e.pos) + u64::from(e.len);
            j += 1;
        }
        let start = u64::from(first.pos);
        let file = engine.ctx.journal(first.file)?;
        let mut buf = BytesMut::zeroed((end - start) as usize);
        file.read_exact_at(&mut buf, start)?;
        let buf: Bytes = buf.freeze();
        for e in &entries[i..j] {
            let at = (u64::from(e.pos) - start) as usize;
            let batch = buf.slice(at..at + e.len as usize);
            if let Err(reason) = check(&batch, e) {
                if chunk.is_empty() {
                    return Err(StorageError::corruption(path(), u64::from(e.pos), reason));
                }
                return Ok(());
            }
            chunk.push(Piece::Bytes(batch));
        }
        i = j;
    }
    Ok(())
}

fn check(batch: &[u8], e: &Entry) -> std::result::Result<(), String> {
    match peek_len(batch) {
        Some((base, len)) if base == e.base as i64 && len == batch.len() => {}
        other => {
            return Err(format!(
                "batch header does not match its index entry: {other:?}"
            ));
        }
    }
    verify_crc(batch).map_err(|err| err.to_string())
}

pub(super) fn read(
    engine: &SharedEngine,
    id: &ShardId,
    from: u64,
    max: usize,
) -> Result<ReadChunk> {
    let (entries, mut chunk) = plan(engine, id, from, max)?;
    gather(engine, &entries, &mut chunk)?;
    Ok(chunk)
}

pub(super) fn offset_for_timestamp(
    engine: &SharedEngine,
    id: &ShardId,
    ts: i64,
) -> Result<Option<TimestampHit>> {
    let (log_start, runs, tail) = {
        let g = engine.lock()?;
        let no = g.no(id)?;
        let s = g.table.get(no).expect("live shard");
        let log_start = s.log_start;
        let runs: Vec<RunRef> = s
            .runs
            .iter()
            .filter(|r| r.max_ts >= ts && r.last >= log_start)
            .copied()
            .collect();
        let tail: Vec<Entry> = s
            .tail
            .iter()
            .filter(|e| e.max_ts >= ts && e.last() >= log_start)
            .copied()
            .collect();
        (log_start, runs, tail)
    };
    let mut candidates: Vec<Entry> = Vec::new();
    for r in &runs {
        candidates.extend(
            engine
                .ctx
                .load_block(r)?
                .iter()
                .filter(|e| e.max_ts >= ts && e.last() >= log_start),
        );
    }
    candidates.extend(tail);
    for e in candidates {
        let mut chunk = ReadChunk::default();
        gather(engine, &[e], &mut chunk)?;
        if let Some(Piece::Bytes(b)) = chunk.pieces.pop()
            && let Some(hit) = first_record_at_or_after(b, ts, log_start)?
        {
            return Ok(Some(hit));
        }
    }
    Ok(None)
}
