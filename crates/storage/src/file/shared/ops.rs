//! Changes to the shard table, shared by live operations and journal replay.

use strata_record::Batch;

use super::checkpoint::encode_spec;
use super::format::{Kind, RECORD_HEADER};
use super::journal::Written;
use super::state::{Entry, ShardState};
use super::{Ctx, Inner};
use crate::{Appended, LEADER_EPOCH, Result, ShardId, ShardNo, StorageSpec};

/// `create := partition(u32) topic_len(u16) topic spec_properties`
pub(super) fn encode_create(id: &ShardId, spec: &StorageSpec) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&id.partition().to_le_bytes());
    body.extend_from_slice(&(id.topic().len() as u16).to_le_bytes());
    body.extend_from_slice(id.topic().as_bytes());
    body.extend_from_slice(&encode_spec(spec));
    body
}

impl Inner {
    /// Writes a control record.
    pub(super) fn record(
        &mut self,
        ctx: &Ctx,
        kind: Kind,
        no: ShardNo,
        body: &[u8],
    ) -> Result<Written> {
        let w = self.writer.append(&ctx.root, kind, no, &[body], &[body])?;
        self.since_checkpoint += (RECORD_HEADER + body.len()) as u64;
        Ok(w)
    }

    pub(super) fn create(
        &mut self,
        ctx: &Ctx,
        id: &ShardId,
        spec: &StorageSpec,
    ) -> Result<ShardNo> {
        let no = self.table.next_no();
        self.record(ctx, Kind::Create, no, &encode_create(id, spec))?;
        let idx = self.table.intern(*spec);
        self.table.insert(no, ShardState::new(id.clone(), idx, 0));
        Ok(no)
    }

    /// Appends a batch record for shard `no` and indexes it.
    pub(super) fn append(&mut self, ctx: &Ctx, no: ShardNo, batch: &Batch) -> Result<Appended> {
        let base = self.table.get(no).expect("live shard").next;
        let bytes = batch.as_bytes();
        let prefix = batch.rewritten_prefix(base as i64, LEADER_EPOCH);
        let w = self.writer.append(
            &ctx.root,
            Kind::Batch,
            no,
            &[&prefix, &bytes[16..]],
            &[&prefix, &bytes[16..super::format::BATCH_COVERED]],
        )?;
        self.since_checkpoint += (RECORD_HEADER + bytes.len()) as u64;
        let entry = Entry {
            base,
            max_ts: batch.max_timestamp(),
            last_delta: batch.record_count() - 1,
            file: w.seq,
            pos: w.body_pos as u32,
            len: bytes.len() as u32,
        };
        self.push_entry(no, entry);
        let s = self.table.get(no).expect("live shard");
        Ok(Appended {
            base_offset: base,
            last_offset: entry.last(),
            log_start: s.log_start,
        })
    }

    /// Indexes a batch at the shard's end. Replay passes every batch record it finds: copies
    /// of batches already indexed (relocations) are skipped, and a gap (records lost to damage)
    /// becomes a hole that reads report.
    pub(super) fn push_entry(&mut self, no: ShardNo, entry: Entry) {
        let Some(s) = self.table.get_mut(no) else {
            return;
        };
        if entry.base < s.next {
            return;
        }
        if entry.base > s.next {
            tracing::error!(
                shard = %s.id, from = s.next, to = entry.base,
                "offsets missing from the journal; reads of them will report the damage"
            );
            s.tail.push(Entry {
                base: s.next,
                max_ts: i64::MIN,
                last_delta: (entry.base - s.next - 1) as u32,
                len: 0,
                ..entry
            });
        }
        s.tail.push(entry);
        s.next = entry.last() + 1;
        s.size += u64::from(entry.len);
    }

    /// Moves the log start of shard `no` forward to `before` (≤ next offset).
    pub(super) fn apply_trim(&mut self, ctx: &Ctx, no: ShardNo, before: u64) -> Result<()> {
        let Some(s) = self.table.get_mut(no) else {
            return Ok(());
        };
        let old = s.log_start;
        if before <= old {
            return Ok(());
        }
        s.log_start = before;
        let live_dropped = |e: &Entry| e.last() >= old && e.last() < before;
        let mut released = Vec::new();
        while s.runs.first().is_some_and(|r| r.last < before) {
            let r = s.runs.remove(0);
            s.size -= r.bytes;
            released.push(r.run);
        }
        if let Some(r) = s.runs.first_mut()
            && r.first < before
        {
            let dropped: u64 = ctx
                .load_block(r)?
                .iter()
                .filter(|e| live_dropped(e))
                .map(|e| u64::from(e.len))
                .sum();
            r.bytes -= dropped;
            s.size -= dropped;
        }
        let dropped: u64 = s
            .tail
            .iter()
            .filter(|e| live_dropped(e))
            .map(|e| u64::from(e.len))
            .sum();
        s.size -= dropped;
        s.tail.retain(|e| e.last() >= before);
        for run in released {
            self.table.release_run(run);
        }
        Ok(())
    }

    /// Removes every batch of shard `no` holding an offset at or after `to`.
    pub(super) fn apply_truncate(&mut self, ctx: &Ctx, no: ShardNo, to: u64) -> Result<()> {
        let Some(s) = self.table.get_mut(no) else {
            return Ok(());
        };
        if to >= s.next {
            return Ok(());
        }
        let in_runs = s.runs.last().is_some_and(|r| r.last >= to);
        let mut released = Vec::new();
        let new_next;
        if in_runs {
            let j = s
                .runs
                .iter()
                .position(|r| r.last >= to)
                .expect("a run holds it");
            let entries = ctx.load_block(&s.runs[j])?;
            let k = entries
                .iter()
                .position(|e| e.last() >= to)
                .unwrap_or(entries.len());
            new_next = entries.get(k).map_or(to, |e| e.base.min(to));
            let log_start = s.log_start;
            s.tail = entries[..k]
                .iter()
                .filter(|e| e.last() >= log_start)
                .copied()
                .collect();
            released.extend(s.runs.drain(j..).map(|r| r.run));
        } else {
            let k = s
                .tail
                .iter()
                .position(|e| e.last() >= to)
                .unwrap_or(s.tail.len());
            new_next = s.tail.get(k).map_or(to, |e| e.base.min(to));
            s.tail.truncate(k);
        }
        let log_start = s.log_start;
        s.size = s.runs.iter().map(|r| r.bytes).sum::<u64>()
            + s.tail
                .iter()
                .filter(|e| e.last() >= log_start)
                .map(|e| u64::from(e.len))
                .sum::<u64>();
        s.next = new_next;
        s.log_start = s.log_start.min(new_next);
        for run in released {
            self.table.release_run(run);
        }
        Ok(())
    }
}
