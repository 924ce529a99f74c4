//! One segment of a shard's log, and its sparse indexes.

use super::format::{
    INDEX_INTERVAL, OFFSET_MAGIC, SegmentSummary, TIME_MAGIC, decode_index, encode_index,
};
use crate::file::ranges::RangeSet;

/// Offset index entry: the batch at `pos` starts at offset `base + rel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OffsetEntry {
    pub rel: u32,
    pub pos: u32,
}

/// Time index entry: every batch up to and including the one at `pos` has a timestamp ≤ `ts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimeEntry {
    pub ts: i64,
    pub rel: u32,
    pub pos: u32,
}

/// The last entry at or before relative offset `rel` (or the segment start).
pub(super) fn floor(entries: &[OffsetEntry], rel: u32) -> OffsetEntry {
    let i = entries.partition_point(|e| e.rel <= rel);
    i.checked_sub(1)
        .map_or(OffsetEntry { rel: 0, pos: 0 }, |i| entries[i])
}

/// The last entry at or before byte position `pos`.
pub(super) fn floor_position(entries: &[OffsetEntry], pos: u64) -> Option<OffsetEntry> {
    let i = entries.partition_point(|e| u64::from(e.pos) <= pos);
    i.checked_sub(1).map(|i| entries[i])
}

/// The sparse indexes of one segment.
#[derive(Debug, Clone, Default)]
pub(super) struct IndexData {
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
}

impl IndexData {
    /// Where to start looking for the first batch with a timestamp ≥ `ts`: every batch before
    /// the returned one is older.
    pub(super) fn time_start(&self, ts: i64) -> OffsetEntry {
        let i = self.times.partition_point(|e| e.ts < ts);
        i.checked_sub(1)
            .map_or(OffsetEntry { rel: 0, pos: 0 }, |i| OffsetEntry {
                rel: self.times[i].rel,
                pos: self.times[i].pos,
            })
    }

    /// Bytes of memory held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * 8 + self.times.capacity() * 16
    }

    /// Encodes the `.index` and `.timeindex` files.
    pub(super) fn encode(&self, summary: SegmentSummary) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = Vec::with_capacity(self.offsets.len() * 8);
        for e in &self.offsets {
            offsets.extend_from_slice(&e.rel.to_le_bytes());
            offsets.extend_from_slice(&e.pos.to_le_bytes());
        }
        let mut times = Vec::with_capacity(self.times.len() * 16);
        for e in &self.times {
            times.extend_from_slice(&e.ts.to_le_bytes());
            times.extend_from_slice(&e.rel.to_le_bytes());
            times.extend_from_slice(&e.pos.to_le_bytes());
        }
        (
            encode_index(OFFSET_MAGIC, summary, &offsets, 8),
            encode_index(TIME_MAGIC, summary, &times, 16),
        )
    }

    /// Decodes both files; `None` if either is damaged or they disagree.
    pub(super) fn decode(offsets: &[u8], times: &[u8]) -> Option<(SegmentSummary, IndexData)> {
        let (summary, o) = decode_index(OFFSET_MAGIC, offsets, 8)?;
        let (summary_t, t) = decode_index(TIME_MAGIC, times, 16)?;
        if summary != summary_t {
            return None;
        }
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4"));
        let data = IndexData {
            offsets: o
                .chunks_exact(8)
                .map(|c| OffsetEntry {
                    rel: u32_at(c, 0),
                    pos: u32_at(c, 4),
                })
                .collect(),
            times: t
                .chunks_exact(16)
                .map(|c| TimeEntry {
                    ts: i64::from_le_bytes(c[..8].try_into().expect("8")),
                    rel: u32_at(c, 8),
                    pos: u32_at(c, 12),
                })
                .collect(),
        };
        Some((summary, data))
    }
}

/// Builds a segment's indexes as batches are appended or recovered.
#[derive(Debug, Clone, Default)]
pub(super) struct Indexer {
    pub data: IndexData,
    since_offset_entry: u64,
    since_time_entry: u64,
    ts_mark: Option<i64>,
}

impl Indexer {
    /// Continues indexing a segment whose entries were loaded from its files.
    pub(super) fn resume(data: IndexData, max_ts: i64) -> Self {
        Indexer {
            data,
            // The byte counters restart, which only makes the next entries come a little early.
            since_offset_entry: 0,
            since_time_entry: 0,
            ts_mark: (max_ts != i64::MIN).then_some(max_ts),
        }
    }

    /// Makes the next batch get an offset index entry (after damage, so that reads of the
    /// batches after it need not walk through it).
    pub(super) fn force_entry(&mut self) {
        self.since_offset_entry = INDEX_INTERVAL;
    }

    /// Records the batch at `pos` (relative offset `rel`, `len` bytes, newest timestamp `max_ts`).
    pub(super) fn add(&mut self, rel: u32, pos: u64, len: u64, max_ts: i64) {
        let pos32 = pos as u32;
        if self.data.offsets.is_empty() || self.since_offset_entry >= INDEX_INTERVAL {
            self.data.offsets.push(OffsetEntry { rel, pos: pos32 });
            self.since_offset_entry = 0;
        }
        self.since_offset_entry += len;
        let mark = self.ts_mark.map_or(max_ts, |m| m.max(max_ts));
        self.ts_mark = Some(mark);
        let grew = self.data.times.last().is_none_or(|e| mark > e.ts);
        if grew && (self.data.times.is_empty() || self.since_time_entry >= INDEX_INTERVAL) {
            self.data.times.push(TimeEntry {
                ts: mark,
                rel,
                pos: pos32,
            });
            self.since_time_entry = 0;
        }
        self.since_time_entry += len;
    }
}

/// A segment: a file of batches with offsets `[base, next)`.
#[derive(Debug)]
pub(super) struct Segment {
    pub base: u64,
    pub next: u64,
    pub size: u64,
    /// Newest timestamp in the segment (`i64::MIN` when empty).
    pub max_ts: i64,
    /// Timestamp of the first batch, which starts the `segment.ms` clock.
    pub first_ts: Option<i64>,
    /// The indexes, kept in memory while the segment is active; closed segments load theirs
    /// through the engine's index cache.
    pub active: Option<Indexer>,
    /// Byte ranges whose checksums are known good (written or checked by this process).
    pub verified: RangeSet,
}

impl Segment {
    /// A new, empty, active segment.
    pub(super) fn empty(base: u64) -> Self {
        Segment {
            base,
            next: base,
            size: 0,
            max_ts: i64::MIN,
            first_ts: None,
            active: Some(Indexer::default()),
            verified: RangeSet::default(),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub(super) fn summary(&self) -> SegmentSummary {
        SegmentSummary {
            log_len: self.size,
            next_offset: self.next,
            max_ts: self.max_ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexer_is_sparse_and_floors_work() {
        let mut ix = Indexer::default();
        // 100 batches of 1000 bytes, 10 records each, timestamps rising by 5.
        for i in 0..100u32 {
            ix.add(i * 10, u64::from(i) * 1000, 1000, 1000 + i64::from(i) * 5);
        }
        let d = &ix.data;
        assert_eq!(d.offsets.len(), 20, "one entry per ~4 KiB");
        assert_eq!(floor(&d.offsets, 0), OffsetEntry { rel: 0, pos: 0 });
        let e = floor(&d.offsets, 455);
        assert_eq!(
            e,
            OffsetEntry {
                rel: 450,
                pos: 45_000
            }
        );
        assert_eq!(floor_position(&d.offsets, 9_999).unwrap().pos, 5_000);
        assert_eq!(d.time_start(0), OffsetEntry { rel: 0, pos: 0 });
        let start = d.time_start(1000 + 50 * 5);
        assert!(start.pos <= 50 * 1000 && 50 * 1000 - start.pos <= 5000);
        assert_eq!(start.rel, start.pos / 100);
        let (a, b) = d.encode(SegmentSummary {
            log_len: 100_000,
            next_offset: 1000,
            max_ts: 1495,
        });
        let (_, back) = IndexData::decode(&a, &b).unwrap();
        assert_eq!(back.offsets, d.offsets);
        assert_eq!(back.times, d.times);
    }
}
