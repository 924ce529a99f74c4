//! In-memory state of the shared model: per-shard index summaries kept small enough for
//! millions of shards.
//!
//! A shard's entries (one per batch) live in two places: index runs on disk, written at
//! checkpoints and referenced by a few [`RunRef`]s, and the `tail` of entries appended since the
//! last checkpoint. Both are in offset order; runs precede the tail.

use std::collections::HashMap;

use rustc_hash::FxHashMap;

use crate::{Bounds, ShardId, ShardNo, StorageSpec};

/// Where one batch lives in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub base: u64,
    pub max_ts: i64,
    pub last_delta: u32,
    /// Journal file sequence number.
    pub file: u32,
    /// Position of the batch bytes (after the record header).
    pub pos: u32,
    /// Batch length; 0 marks a hole left by a damaged record at `pos`.
    pub len: u32,
}

impl Entry {
    pub(crate) fn last(&self) -> u64 {
        self.base + u64::from(self.last_delta)
    }

    pub(crate) fn is_hole(&self) -> bool {
        self.len == 0
    }
}

/// A block of a shard's entries in an index run file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunRef {
    pub first: u64,
    pub last: u64,
    pub max_ts: i64,
    /// Bytes of the block's batches at or after the log start.
    pub bytes: u64,
    pub run: u32,
    pub pos: u32,
    pub count: u32,
    /// Lowest journal file any of the block's entries is in.
    pub min_file: u32,
    /// CRC-32C of the block's bytes.
    pub crc: u32,
}

/// One shard.
#[derive(Debug)]
pub(crate) struct ShardState {
    pub id: ShardId,
    pub spec: u32,
    pub log_start: u64,
    pub next: u64,
    pub size: u64,
    pub runs: Vec<RunRef>,
    pub tail: Vec<Entry>,
}

impl ShardState {
    pub(crate) fn new(id: ShardId, spec: u32, start: u64) -> Self {
        ShardState {
            id,
            spec,
            log_start: start,
            next: start,
            size: 0,
            runs: Vec::new(),
            tail: Vec::new(),
        }
    }

    pub(crate) fn bounds(&self) -> Bounds {
        Bounds {
            log_start: self.log_start,
            next_offset: self.next,
            size_bytes: self.size,
        }
    }

    /// Lowest journal file holding live data of this shard, if any.
    pub(crate) fn min_file(&self) -> Option<u32> {
        let runs = self
            .runs
            .iter()
            .filter(|r| r.last >= self.log_start)
            .map(|r| r.min_file);
        let tail = self
            .tail
            .iter()
            .filter(|e| e.last() >= self.log_start)
            .map(|e| e.file);
        runs.chain(tail).min()
    }
}

/// Every shard, by number and by name, with interned specs and run-file reference counts.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub slots: Vec<Option<ShardState>>,
    /// FxHash: this map is looked up on every append, and with a million shards hashing
    /// with SipHash showed up in profiles; shard names are not secrets an attacker can use
    /// to flood one bucket beyond what topic creation limits allow.
    pub names: FxHashMap<ShardId, ShardNo>,
    pub specs: Vec<StorageSpec>,
    /// Number of `RunRef`s pointing into each run file.
    pub run_refs: HashMap<u32, u64>,
}

impl Table {
    pub(crate) fn intern(&mut self, spec: StorageSpec) -> u32 {
        match self.specs.iter().position(|s| *s == spec) {
            Some(i) => i as u32,
            None => {
                self.specs.push(spec);
                (self.specs.len() - 1) as u32
            }
        }
    }

    pub(crate) fn get(&self, no: ShardNo) -> Option<&ShardState> {
        self.slots.get(no.get() as usize).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, no: ShardNo) -> Option<&mut ShardState> {
        self.slots
            .get_mut(no.get() as usize)
            .and_then(Option::as_mut)
    }

    pub(crate) fn no(&self, id: &ShardId) -> Option<ShardNo> {
        self.names.get(id).copied()
    }

    pub(crate) fn insert(&mut self, no: ShardNo, state: ShardState) {
        let i = no.get() as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        for r in &state.runs {
            *self.run_refs.entry(r.run).or_default() += 1;
        }
        self.names.insert(state.id.clone(), no);
        self.slots[i] = Some(state);
    }

    pub(crate) fn remove(&mut self, no: ShardNo) -> Option<ShardState> {
        let state = self.slots.get_mut(no.get() as usize)?.take()?;
        self.names.remove(&state.id);
        for r in &state.runs {
            self.release_run(r.run);
        }
        Some(state)
    }

    pub(crate) fn release_run(&mut self, run: u32) {
        if let Some(n) = self.run_refs.get_mut(&run) {
            *n -= 1;
            if *n == 0 {
                self.run_refs.remove(&run);
            }
        }
    }

    pub(crate) fn next_no(&self) -> ShardNo {
        ShardNo(self.slots.len() as u64)
    }

    pub(crate) fn live(&self) -> impl Iterator<Item = (ShardNo, &ShardState)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (ShardNo(i as u64), s)))
    }
}
