//! Retention, journal garbage collection and relocation.
//!
//! Retention moves each shard's log start (at batch granularity) and is made durable by the
//! checkpoint that follows. A journal file is deleted once it is older than the oldest file any
//! live entry points into and older than where replay starts. One long-retention shard can pin
//! old files full of other shards' dead data; when the journal holds more than twice the live
//! bytes (plus two files of slack), the live batches in the oldest file are copied to the head
//! of the journal with their offsets unchanged, re-indexed, checkpointed, and the file deleted.
//! So disk use stays within about twice the live data.

use std::fs;
use std::os::unix::fs::FileExt;

use super::format::{Kind, journal_path};
use super::journal;
use super::state::Entry;
use super::{Ctx, Inner};
use crate::{Result, ShardNo};

impl Inner {
    /// Moves every shard's log start forward as its retention asks; returns bytes dropped.
    /// Not journalled: the checkpoint that follows makes it durable, and after a crash the
    /// next pass drops the same batches again.
    pub(super) fn apply_retention(&mut self, ctx: &Ctx, now_ms: i64) -> Result<u64> {
        let mut dropped = 0;
        let nums: Vec<ShardNo> = self.table.live().map(|(n, _)| n).collect();
        for no in nums {
            if let Some(start) = self.retention_point(ctx, no, now_ms)? {
                let before = self.table.get(no).map_or(0, |s| s.size);
                self.apply_trim(ctx, no, start)?;
                dropped += before - self.table.get(no).map_or(0, |s| s.size);
            }
        }
        Ok(dropped)
    }

    /// The log start that retention asks for, if it is past the current one.
    fn retention_point(&self, ctx: &Ctx, no: ShardNo, now_ms: i64) -> Result<Option<u64>> {
        let s = self.table.get(no).expect("live shard");
        let retention = self.table.specs[s.spec as usize].retention;
        if retention.ms.is_none() && retention.bytes.is_none() {
            return Ok(None);
        }
        let cutoff = retention
            .ms
            .map_or(i64::MIN, |ms| now_ms.saturating_sub(ms as i64));
        let limit = retention.bytes.unwrap_or(u64::MAX);
        let mut size = s.size;
        let mut start = s.log_start;
        let expired = |e: &Entry, size: u64| {
            e.max_ts < cutoff || (size > limit && size - u64::from(e.len) >= limit)
        };
        let mut stop = false;
        for r in &s.runs {
            if r.last < start {
                continue;
            }
            if r.max_ts < cutoff || (size > limit && size - r.bytes >= limit) {
                size -= r.bytes;
                start = r.last + 1;
                continue;
            }
            let block = ctx.load_block(r)?;
            for e in block.iter() {
                if e.last() < start {
                    continue;
                }
                if !expired(e, size) {
                    stop = true;
                    break;
                }
                size -= u64::from(e.len);
                start = e.last() + 1;
            }
            if stop {
                break;
            }
        }
        if !stop {
            for e in &s.tail {
                if e.last() < start {
                    continue;
                }
                if !expired(e, size) {
                    break;
                }
                size -= u64::from(e.len);
                start = e.last() + 1;
            }
        }
        Ok((start > s.log_start).then_some(start.min(s.next)))
    }

    /// The oldest journal file, if relocating its live data would pay off.
    pub(super) fn relocation_victim(&self, ctx: &Ctx) -> Result<Option<u32>> {
        let seqs = journal::list(&ctx.root)?;
        let Some(&oldest) = seqs.first() else {
            return Ok(None);
        };
        if oldest >= self.replay_from.0 || oldest >= self.writer.seq {
            return Ok(None);
        }
        let mut disk = 0;
        for &seq in &seqs {
            disk += fs::metadata(journal_path(&ctx.root, seq))?.len();
        }
        let live: u64 = self.table.live().map(|(_, s)| s.size).sum();
        let slack = 2 * ctx.options.journal_file_bytes;
        Ok((disk > 2 * live + slack).then_some(oldest))
    }

    /// Copies every live batch in journal files up to `victim` to the journal head; returns
    /// bytes copied.
    pub(super) fn relocate(&mut self, ctx: &Ctx, victim: u32) -> Result<u64> {
        let nums: Vec<ShardNo> = self
            .table
            .live()
            .filter(|(_, s)| s.min_file().is_some_and(|f| f <= victim))
            .map(|(n, _)| n)
            .collect();
        let mut copied = 0u64;
        for no in nums {
            match self.relocate_shard(ctx, no, victim) {
                Ok(n) => copied += n,
                // One shard's unreadable index must not stop the others' relocation.
                Err(e) => {
                    tracing::error!(shard = no.get(), error = %e, "relocation of a shard failed")
                }
            }
        }
        tracing::info!(
            file = victim,
            bytes = copied,
            "relocated live batches out of old journal files"
        );
        Ok(copied)
    }

    /// Copies one shard's live batches in journal files up to `victim` to the head.
    fn relocate_shard(&mut self, ctx: &Ctx, no: ShardNo, victim: u32) -> Result<u64> {
        let s = self.table.get(no).expect("live shard");
        let log_start = s.log_start;
        let mut entries: Vec<Entry> = Vec::new();
        for r in &s.runs {
            entries.extend(ctx.load_block(r)?.iter().filter(|e| e.last() >= log_start));
        }
        entries.extend(s.tail.iter().filter(|e| e.last() >= log_start));
        let (mut copied, mut lost) = (0u64, 0u64);
        for e in entries
            .iter_mut()
            .filter(|e| e.file <= victim && !e.is_hole())
        {
            let path = journal_path(&ctx.root, e.file);
            let mut batch = vec![0u8; e.len as usize];
            let readable = ctx
                .journal(e.file)
                .and_then(|file| file.read_exact_at(&mut batch, u64::from(e.pos)))
                .map_err(|err| err.to_string())
                .and_then(|()| strata_record::verify_crc(&batch).map_err(|err| err.to_string()));
            if let Err(reason) = readable {
                // Damaged bytes cannot be copied. What is left of them is a hole, which reads
                // report and which pins no file, so the damage cannot stop garbage collection.
                tracing::error!(file = %path.display(), position = e.pos, %reason, "damaged batch left behind as a hole during relocation");
                lost += u64::from(e.len);
                e.len = 0;
                continue;
            }
            let w = self.writer.append(
                &ctx.root,
                Kind::Batch,
                no,
                &[&batch],
                &[&batch[..super::format::BATCH_COVERED]],
            )?;
            e.file = w.seq;
            e.pos = w.body_pos as u32;
            copied += u64::from(e.len);
        }
        let s = self.table.get_mut(no).expect("live shard");
        let released: Vec<u32> = s.runs.drain(..).map(|r| r.run).collect();
        s.tail = entries;
        s.size -= lost;
        for run in released {
            self.table.release_run(run);
        }
        Ok(copied)
    }
}
