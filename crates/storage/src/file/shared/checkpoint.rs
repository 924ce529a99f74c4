//! Checkpoints: index runs for the entries appended since the last one, and the whole shard
//! table, so that recovery replays only the journal written after the checkpoint.
//!
//! `checkpoint := magic(4) version(1) 0(3) replay_seq(u32) replay_pos(u64) next_no(u32)
//!  next_run(u32) spec_count(u32) shard_count(u32) spec* shard* crc(u32)`;
//! `spec := len(u16) properties`; `shard := no(u32) topic_len(u16) topic partition(u32)
//!  spec(u32) log_start(u64) next(u64) size(u64) run_count(u32) runref*`;
//! `runref := first(u64) last(u64) max_ts(i64) bytes(u64) run(u32) pos(u32) count(u32)
//!  min_file(u32) crc(u32)`; `crc` is CRC-32C over everything before it.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{
    CHECKPOINT, ENTRY_LEN, decode_entry, encode_entry, journal_path, run_path, wire,
};
use super::journal;
use super::state::{Entry, RunRef, ShardState, Table};
use super::{Ctx, Inner};
use crate::util::{fsync_dir, write_atomic};
use crate::{Result, ShardId, ShardNo, StorageError, StorageSpec};

const MAGIC: &[u8; 4] = b"SCKP";
const VERSION: u8 = 1;
/// A shard keeps at most this many index runs; more are merged at the next checkpoint.
pub(super) const MAX_RUNS: usize = 4;

/// What a checkpoint restores.
#[derive(Debug, Default)]
pub(super) struct Restored {
    pub table: Table,
    pub replay_from: (u32, u64),
    pub next_run: u32,
}

/// Builds a run block from entries; returns its reference (position filled in by the caller).
pub(super) fn block(entries: &[Entry], run: u32, pos: u32, out: &mut Vec<u8>) -> RunRef {
    let start = out.len();
    for e in entries {
        encode_entry(e, out);
    }
    RunRef {
        first: entries[0].base,
        last: entries[entries.len() - 1].last(),
        max_ts: entries.iter().map(|e| e.max_ts).max().unwrap_or(i64::MIN),
        bytes: entries.iter().map(|e| u64::from(e.len)).sum(),
        run,
        pos,
        count: entries.len() as u32,
        min_file: entries
            .iter()
            .filter(|e| !e.is_hole())
            .map(|e| e.file)
            .min()
            .unwrap_or(u32::MAX),
        crc: crc32c::crc32c(&out[start..]),
    }
}

/// A checkpoint settled in memory that still has to reach the disk.
#[derive(Debug)]
pub(super) struct Pending {
    /// Journal files from the previous replay position to the new one.
    journal: Vec<Arc<File>>,
    /// The new run file, written but not yet fsynced.
    run: Option<PathBuf>,
    /// The encoded checkpoint.
    bytes: Vec<u8>,
    replay_from: (u32, u64),
    /// Run files the checkpoint refers to.
    runs: BTreeSet<u32>,
    /// Journal files below this one hold nothing the checkpoint needs.
    keep_journal_from: u32,
}

impl Pending {
    /// Makes the checkpoint durable: the journal up to its replay position and its run file
    /// first, then the checkpoint file itself, atomically.
    pub(super) fn persist(&self, ctx: &Ctx) -> Result<()> {
        for file in &self.journal {
            ctx.syncer.sync_now(file)?;
        }
        if let Some(path) = &self.run {
            ctx.syncer.sync_now(&File::open(path)?)?;
            fsync_dir(path.parent().expect("index dir"))?;
        }
        write_atomic(&ctx.root.join(CHECKPOINT), &self.bytes)?;
        Ok(())
    }
}

impl Inner {
    /// Settles a checkpoint at the current end of the journal: writes each shard's tail as a
    /// block of a new run file (merging runs beyond [`MAX_RUNS`]), clears the tails and encodes
    /// the shard table. [`Pending::persist`] then makes it durable and [`Inner::finish`]
    /// records that; until then the previous checkpoint stays the one recovery uses.
    pub(super) fn begin_checkpoint(&mut self, ctx: &Ctx) -> Result<Pending> {
        let started = std::time::Instant::now();
        let run = self.next_run;
        let mut buf = Vec::new();
        let mut updates: Vec<(ShardNo, Vec<RunRef>)> = Vec::new();
        let nums: Vec<ShardNo> = self
            .table
            .live()
            .filter(|(_, s)| !s.tail.is_empty() || s.runs.len() > MAX_RUNS)
            .map(|(n, _)| n)
            .collect();
        for no in nums {
            let shard = self.table.get(no).expect("live shard");
            let mut runs = shard.runs.clone();
            let live: Vec<Entry> = shard
                .tail
                .iter()
                .filter(|e| e.last() >= shard.log_start)
                .copied()
                .collect();
            if !live.is_empty() {
                let pos = buf.len() as u32;
                runs.push(block(&live, run, pos, &mut buf));
            }
            while runs.len() > MAX_RUNS {
                let i = (0..runs.len() - 1)
                    .min_by_key(|&i| runs[i].count + runs[i + 1].count)
                    .expect("at least two runs");
                // Blocks written earlier in this checkpoint are still only in `buf`.
                let entries_of = |r: &RunRef, buf: &[u8]| -> Result<Vec<Entry>> {
                    if r.run == run {
                        let at = r.pos as usize;
                        let bytes = &buf[at..at + r.count as usize * ENTRY_LEN];
                        Ok(bytes.chunks_exact(ENTRY_LEN).map(decode_entry).collect())
                    } else {
                        Ok(ctx.load_block(r)?.to_vec())
                    }
                };
                let mut merged = entries_of(&runs[i], &buf)?;
                merged.extend(entries_of(&runs[i + 1], &buf)?);
                merged.retain(|e| e.last() >= shard.log_start);
                let pos = buf.len() as u32;
                let r = block(&merged, run, pos, &mut buf);
                runs.splice(i..=i + 1, [r]);
            }
            updates.push((no, runs));
        }
        let run_path = if buf.is_empty() {
            None
        } else {
            let path = run_path(&ctx.root, run);
            fs::write(&path, &buf)?;
            self.runs_on_disk.insert(run);
            self.next_run += 1;
            Some(path)
        };
        for (no, runs) in updates {
            for r in &runs {
                if r.run == run {
                    *self.table.run_refs.entry(run).or_default() += 1;
                }
            }
            let shard = self.table.get_mut(no).expect("live shard");
            let old = std::mem::replace(&mut shard.runs, runs);
            shard.tail = Vec::new();
            let kept: Vec<RunRef> = shard.runs.clone();
            for r in old.iter().filter(|r| !kept.contains(r)) {
                self.table.release_run(r.run);
            }
        }
        let replay_from = (self.writer.seq, self.writer.pos);
        let bytes = encode(
            &self.table,
            replay_from,
            self.next_run,
            std::mem::take(&mut self.spare),
        );
        self.since_checkpoint = 0;
        self.last_checkpoint_bytes = bytes.len() as u64;
        let mut journal = Vec::new();
        for seq in self.replay_from.0..=self.writer.seq {
            if let Ok(file) = ctx.journal(seq) {
                journal.push(file);
            }
        }
        let oldest_live = self.table.live().filter_map(|(_, s)| s.min_file()).min();
        tracing::debug!(
            shards = self.table.names.len(),
            run_bytes = buf.len(),
            checkpoint_bytes = bytes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint settled"
        );
        Ok(Pending {
            journal,
            run: run_path,
            bytes,
            replay_from,
            runs: self.table.run_refs.keys().copied().collect(),
            keep_journal_from: oldest_live.unwrap_or(u32::MAX).min(replay_from.0),
        })
    }

    /// Records that `done` is durable, and deletes the run and journal files that neither it
    /// nor the current state needs. Returns the number of files deleted.
    pub(super) fn finish(&mut self, ctx: &Ctx, done: Pending) -> u64 {
        self.replay_from = done.replay_from;
        self.durable_runs = done.runs;
        self.spare = done.bytes;
        let mut deleted = 0;
        let dead: Vec<u32> = self
            .runs_on_disk
            .iter()
            .copied()
            .filter(|r| !self.table.run_refs.contains_key(r) && !self.durable_runs.contains(r))
            .collect();
        for r in dead {
            ctx.files.forget((super::RUN_OWNER, u64::from(r)));
            match fs::remove_file(run_path(&ctx.root, r)) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(run = r, error = %e, "cannot delete index run file");
                    continue;
                }
            }
            self.runs_on_disk.remove(&r);
        }
        // Entries only move forward (trims, retention) or to newer files (relocation) after a
        // checkpoint is settled, so what it needs covers what the current state needs.
        let keep_from = done.keep_journal_from.min(self.writer.seq);
        for seq in journal::list(&ctx.root).unwrap_or_default() {
            if seq >= keep_from {
                break;
            }
            ctx.files.forget((super::JOURNAL_OWNER, u64::from(seq)));
            match fs::remove_file(journal_path(&ctx.root, seq)) {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(file = seq, error = %e, "cannot delete journal file"),
            }
        }
        deleted
    }
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn spec_text(spec: &StorageSpec) -> String {
    spec.to_properties()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

/// Parses the `key=value` lines written for a spec.
pub(super) fn parse_spec(text: &str) -> Result<StorageSpec> {
    let pairs = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_once('=').unwrap_or((l, "")));
    StorageSpec::from_properties(StorageSpec::default(), pairs)
}

pub(super) fn encode_spec(spec: &StorageSpec) -> Vec<u8> {
    spec_text(spec).into_bytes()
}

/// Encodes the checkpoint into `out` (reusing its allocation: with millions of shards it is
/// tens of megabytes, and fresh pages would be faulted in and zeroed every time).
fn encode(table: &Table, replay_from: (u32, u64), next_run: u32, mut out: Vec<u8>) -> Vec<u8> {
    let live = table.names.len();
    out.clear();
    out.reserve(64 + live * 96);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    put_u32(&mut out, replay_from.0);
    put_u64(&mut out, replay_from.1);
    put_u32(&mut out, wire(table.next_no()));
    put_u32(&mut out, next_run);
    put_u32(&mut out, table.specs.len() as u32);
    put_u32(&mut out, live as u32);
    for spec in &table.specs {
        let text = spec_text(spec);
        put_u16(&mut out, text.len() as u16);
        out.extend_from_slice(text.as_bytes());
    }
    for (no, s) in table.live() {
        put_u32(&mut out, wire(no));
        put_u16(&mut out, s.id.topic().len() as u16);
        out.extend_from_slice(s.id.topic().as_bytes());
        put_u32(&mut out, s.id.partition());
        put_u32(&mut out, s.spec);
        put_u64(&mut out, s.log_start);
        put_u64(&mut out, s.next);
        put_u64(&mut out, s.size);
        put_u32(&mut out, s.runs.len() as u32);
        for r in &s.runs {
            put_u64(&mut out, r.first);
            put_u64(&mut out, r.last);
            put_u64(&mut out, r.max_ts as u64);
            put_u64(&mut out, r.bytes);
            put_u32(&mut out, r.run);
            put_u32(&mut out, r.pos);
            put_u32(&mut out, r.count);
            put_u32(&mut out, r.min_file);
            put_u32(&mut out, r.crc);
        }
    }
    let crc = crc32c::crc32c(&out);
    put_u32(&mut out, crc);
    out
}

/// A bounds-checked little-endian reader.
struct Cursor<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Loads the checkpoint, if there is one. A damaged checkpoint is an error naming the file.
pub(super) fn load(root: &Path) -> Result<Option<Restored>> {
    let path = root.join(CHECKPOINT);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let corrupt = |at: usize, why: &str| StorageError::corruption(&path, at as u64, why);
    if bytes.len() < 40 || &bytes[..4] != MAGIC || bytes[4] != VERSION {
        return Err(corrupt(0, "not a checkpoint of a known version"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != stored {
        return Err(corrupt(body.len(), "checkpoint checksum mismatch"));
    }
    let mut c = Cursor { buf: body, at: 8 };
    match decode(&mut c) {
        Some(restored) => restored.map(Some),
        None => Err(corrupt(c.at, "malformed checkpoint")),
    }
}

fn decode(c: &mut Cursor<'_>) -> Option<Result<Restored>> {
    let replay_from = (c.u32()?, c.u64()?);
    let next_no = c.u32()?;
    let next_run = c.u32()?;
    let spec_count = c.u32()? as usize;
    let shard_count = c.u32()? as usize;
    let mut table = Table::default();
    for _ in 0..spec_count {
        let len = c.u16()? as usize;
        let text = std::str::from_utf8(c.take(len)?).ok()?;
        match parse_spec(text) {
            Ok(spec) => table.specs.push(spec),
            Err(e) => return Some(Err(e)),
        }
    }
    table.slots.resize_with(next_no as usize, || None);
    let mut topics: HashMap<String, Arc<str>> = HashMap::new();
    for _ in 0..shard_count {
        let no = ShardNo(u64::from(c.u32()?));
        let len = c.u16()? as usize;
        let topic = std::str::from_utf8(c.take(len)?).ok()?;
        let topic = topics
            .entry(topic.to_owned())
            .or_insert_with(|| Arc::from(topic))
            .clone();
        let partition = c.u32()?;
        let id = match ShardId::with_topic(topic, partition) {
            Ok(id) => id,
            Err(e) => return Some(Err(e)),
        };
        let mut s = ShardState::new(id, c.u32()?, 0);
        s.log_start = c.u64()?;
        s.next = c.u64()?;
        s.size = c.u64()?;
        let runs = c.u32()? as usize;
        if runs > MAX_RUNS + 1
            || no.get() >= u64::from(next_no)
            || s.spec as usize >= table.specs.len()
        {
            return None;
        }
        for _ in 0..runs {
            s.runs.push(RunRef {
                first: c.u64()?,
                last: c.u64()?,
                max_ts: c.u64()? as i64,
                bytes: c.u64()?,
                run: c.u32()?,
                pos: c.u32()?,
                count: c.u32()?,
                min_file: c.u32()?,
                crc: c.u32()?,
            });
        }
        table.insert(no, s);
    }
    Some(Ok(Restored {
        table,
        replay_from,
        next_run,
    }))
}
