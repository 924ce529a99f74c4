//! Opening the shared engine: load the checkpoint, then replay the journal written after it.
//!
//! A record is valid when its header parses, its header CRC matches, and (for batches) the
//! batch's length matches and its own CRC holds. At the first invalid record the scan looks for
//! any valid record further on: if there is none, the rest of the file is a torn or garbage
//! tail and is cut; if there is one, the bytes in between are damage in the middle, logged with
//! file and position. A batch whose record header is intact but whose payload is damaged is
//! indexed anyway so that a read of it reports the damage instead of silently missing offsets;
//! offsets lost with an unreadable header become a hole that reads report the same way.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::Path;
use std::sync::Arc;

use strata_record::{BatchHeader, verify_crc};

use super::checkpoint::{self, parse_spec};
use super::format::{
    self, Header, INDEX_DIR, JOURNAL_DIR, Kind, RECORD_HEADER, covered_len, header_crc_ok,
    parse_header,
};
use super::journal::{self, Writer, open_journal_file};
use super::state::{Entry, ShardState};
use super::{Ctx, Inner, SharedEngine};
use crate::file::FileOptions;
use crate::file::fdcache::FdCache;
use crate::file::index_cache::IndexCache;
use crate::file::sync::Syncer;
use crate::file::window::Window;
use crate::util::fsync_dir;
use crate::{Result, ShardId, StorageError};

pub(super) fn open(root: &Path, options: FileOptions) -> Result<SharedEngine> {
    fs::create_dir_all(root.join(JOURNAL_DIR))?;
    fs::create_dir_all(root.join(INDEX_DIR))?;
    let started = std::time::Instant::now();
    let restored = checkpoint::load(root)?.unwrap_or_default();
    let mut runs_on_disk = BTreeSet::new();
    for entry in fs::read_dir(root.join(INDEX_DIR))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match format::parse_seq(&name, "run") {
            Some(r) if restored.table.run_refs.contains_key(&r) => {
                runs_on_disk.insert(r);
            }
            // Left by a checkpoint that never completed, or no longer referenced.
            _ => fs::remove_file(entry.path())?,
        }
    }
    let mut seqs = journal::list(root)?;
    let (replay_seq, replay_pos) = restored.replay_from;
    if seqs.last().is_none_or(|&last| last < replay_seq) {
        open_journal_file(root, replay_seq, true)?;
        fsync_dir(&root.join(JOURNAL_DIR))?;
        seqs.push(replay_seq);
    }
    let first_needed = restored
        .table
        .live()
        .filter_map(|(_, s)| s.min_file())
        .min();
    if let Some(needed) = first_needed
        && seqs.first().is_none_or(|&first| first > needed)
    {
        return Err(StorageError::corruption(
            super::format::journal_path(root, needed),
            0,
            "journal file referenced by the checkpoint is missing",
        ));
    }
    let last = *seqs.last().expect("at least one journal file");
    let ctx = Ctx {
        root: root.to_path_buf(),
        files: FdCache::new(options.open_files),
        blocks: IndexCache::new(options.index_cache_bytes),
        syncer: Syncer::start("shared"),
        options,
    };
    let durable_runs: BTreeSet<u32> = restored.table.run_refs.keys().copied().collect();
    let mut inner = Inner {
        table: restored.table,
        writer: Writer {
            seq: last,
            file: Arc::new(open_journal_file(root, last, false)?),
            pos: 0,
            file_bytes: ctx.options.journal_file_bytes,
            writeback: 0,
        },
        since_checkpoint: 0,
        replay_from: restored.replay_from,
        durable_runs: durable_runs.clone(),
        spare: Vec::new(),
        in_flight: false,
        last_checkpoint_bytes: std::fs::metadata(root.join(format::CHECKPOINT))
            .map_or(0, |m| m.len()),
        next_run: restored.next_run,
        runs_on_disk,
        closed: false,
    };
    let mut replayed = 0u64;
    for &seq in seqs.iter().filter(|&&s| s >= replay_seq) {
        let start = if seq == replay_seq { replay_pos } else { 0 };
        let file = open_journal_file(root, seq, false)?;
        let end = replay_file(&ctx, &mut inner, root, seq, &file, start)?;
        replayed += end - start.min(end);
        if seq == last {
            inner.writer.pos = end;
            inner.writer.writeback = end;
        }
    }
    inner.since_checkpoint = replayed;
    tracing::info!(
        root = %root.display(),
        shards = inner.table.names.len(),
        replayed_bytes = replayed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "shared file engine open"
    );
    Ok(SharedEngine::new(ctx, inner))
}

/// Why the record at a position cannot be used.
enum Bad {
    /// Structure or header checksum: its length cannot be trusted.
    Header(String),
    /// Header fine, batch payload damaged.
    Payload(Header, String),
}

/// Checks the record at `pos`; returns its header and total length. The header and the bytes
/// its CRC covers are checked before the rest of the body is read, so scanning garbage for
/// the next valid record costs a few dozen bytes per position, not a whole claimed body.
fn check_record(w: &mut Window<'_>, pos: u64) -> Result<Result<(Header, u64), Bad>> {
    let room = w.len() - pos;
    if room < RECORD_HEADER as u64 {
        return Ok(Err(Bad::Header(format!("{room} trailing bytes"))));
    }
    let mut h = [0u8; RECORD_HEADER];
    h.copy_from_slice(w.get(pos, RECORD_HEADER)?);
    let Some(header) = parse_header(&h) else {
        return Ok(Err(Bad::Header("malformed record header".into())));
    };
    let total = (RECORD_HEADER + header.body_len) as u64;
    if total > room {
        return Ok(Err(Bad::Header(
            "record runs past the end of the file".into(),
        )));
    }
    let body_pos = pos + RECORD_HEADER as u64;
    let covered = w.get(body_pos, covered_len(&header))?;
    if !header_crc_ok(&h, &header, covered) {
        return Ok(Err(Bad::Header("record header checksum mismatch".into())));
    }
    if header.kind == Kind::Batch {
        let body = w.get(body_pos, header.body_len)?;
        let parsed = BatchHeader::parse(body).map_err(|e| e.to_string());
        let checked = parsed.and_then(|b| {
            if b.total_len() != body.len() {
                return Err("batch length does not match its record".to_owned());
            }
            verify_crc(body).map_err(|e| e.to_string())
        });
        if let Err(why) = checked {
            return Ok(Err(Bad::Payload(header, why)));
        }
    }
    Ok(Ok((header, total)))
}

/// The next position after `pos` where a fully valid record starts.
fn next_valid(w: &mut Window<'_>, pos: u64) -> Result<Option<u64>> {
    let mut p = pos + 1;
    while p + RECORD_HEADER as u64 <= w.len() {
        let h = w.get(p, RECORD_HEADER)?;
        if Kind::from_u8(h[8]).is_some()
            && parse_header(h).is_some_and(|hd| (RECORD_HEADER + hd.body_len) as u64 <= w.len() - p)
            && check_record(w, p)?.is_ok()
        {
            return Ok(Some(p));
        }
        p += 1;
    }
    Ok(None)
}

/// Replays one journal file from `start`; cuts a torn tail; returns the valid end.
fn replay_file(
    ctx: &Ctx,
    inner: &mut Inner,
    root: &Path,
    seq: u32,
    file: &File,
    start: u64,
) -> Result<u64> {
    let path = super::format::journal_path(root, seq);
    let len = file.metadata()?.len();
    let mut w = Window::new(file, len);
    let mut pos = start.min(len);
    while pos < len {
        let (header, total) = match check_record(&mut w, pos)? {
            Ok(ok) => ok,
            Err(bad) => {
                let next = next_valid(&mut w, pos)?;
                let (reason, payload) = match bad {
                    Bad::Header(r) => (r, None),
                    Bad::Payload(h, r) => (r, Some(h)),
                };
                match (next, payload) {
                    (None, _) => {
                        tracing::warn!(file = %path.display(), position = pos, %reason, "cutting torn journal tail");
                        file.set_len(pos)?;
                        file.sync_all()?;
                        return Ok(pos);
                    }
                    (Some(_), Some(h)) => {
                        tracing::error!(file = %path.display(), position = pos, %reason, "damaged batch in the journal; reads of it will fail");
                        (h, (RECORD_HEADER + h.body_len) as u64)
                    }
                    (Some(at), None) => {
                        tracing::error!(file = %path.display(), position = pos, %reason, "damaged journal record skipped");
                        pos = at;
                        continue;
                    }
                }
            }
        };
        let body_pos = pos + RECORD_HEADER as u64;
        let body = w.get(body_pos, header.body_len)?;
        apply(ctx, inner, header, seq, body_pos, body, &path)?;
        pos += total;
    }
    Ok(pos)
}

fn apply(
    ctx: &Ctx,
    inner: &mut Inner,
    h: Header,
    seq: u32,
    body_pos: u64,
    body: &[u8],
    path: &Path,
) -> Result<()> {
    let u64_at = |i: usize| {
        body.get(i..i + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
    };
    let bad = |why: &str| StorageError::corruption(path, body_pos, why);
    match h.kind {
        Kind::Batch => {
            let b = BatchHeader::parse(body).map_err(|e| bad(&e.to_string()))?;
            inner.push_entry(
                h.shard,
                Entry {
                    base: b.base_offset as u64,
                    max_ts: b.max_timestamp,
                    last_delta: b.last_offset_delta as u32,
                    file: seq,
                    pos: body_pos as u32,
                    len: body.len() as u32,
                },
            );
        }
        Kind::Create => {
            let (head, rest) = body
                .split_at_checked(6)
                .ok_or_else(|| bad("short create"))?;
            let partition = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let tlen = usize::from(u16::from_le_bytes([head[4], head[5]]));
            let topic = rest
                .get(..tlen)
                .and_then(|t| std::str::from_utf8(t).ok())
                .ok_or_else(|| bad("bad topic"))?;
            let text = std::str::from_utf8(&body[6 + tlen..]).map_err(|_| bad("bad spec"))?;
            let spec = parse_spec(text)?;
            let id = ShardId::new(topic, partition)?;
            let idx = inner.table.intern(spec);
            if let Some(old) = inner.table.no(&id) {
                inner.table.remove(old);
            }
            inner.table.insert(h.shard, ShardState::new(id, idx, 0));
        }
        Kind::Delete => {
            inner.table.remove(h.shard);
        }
        Kind::Trim => {
            let before = u64_at(0).ok_or_else(|| bad("short trim"))?;
            let next = inner.table.get(h.shard).map_or(0, |s| s.next);
            inner.apply_trim(ctx, h.shard, before.min(next))?;
        }
        Kind::Truncate => {
            let to = u64_at(0).ok_or_else(|| bad("short truncate"))?;
            inner.apply_truncate(ctx, h.shard, to)?;
        }
        Kind::Spec => {
            let spec = parse_spec(std::str::from_utf8(body).map_err(|_| bad("bad spec"))?)?;
            let idx = inner.table.intern(spec);
            if let Some(s) = inner.table.get_mut(h.shard) {
                s.spec = idx;
            }
        }
    }
    Ok(())
}
