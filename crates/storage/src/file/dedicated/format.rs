//! On-disk layout of the dedicated model (see `docs/format/file.md`).
//!
//! ```text
//! <root>/clean-shutdown                   present only between a clean close and the next open
//! <root>/<topic>-<partition>/spec         the shard's StorageSpec as topic configs (key=value)
//! <root>/<topic>-<partition>/log-start    decimal log start offset, after trims
//! <root>/<topic>-<partition>/<base:020>.log        record batches back to back, Kafka bytes
//! <root>/<topic>-<partition>/<base:020>.index      sparse offset index of a closed segment
//! <root>/<topic>-<partition>/<base:020>.timeindex  sparse time index of a closed segment
//! ```
//!
//! Index files (little-endian):
//! `index := magic(4) version(1) 0(3) log_len(u64) next_offset(u64) max_ts(i64) count(u32)
//!  entries_crc(u32) header_crc(u32) entry*`: `entries_crc` is CRC-32C over the entries and
//! `header_crc` over the 40 bytes before it, so that the header can be trusted on its own;
//! offset entries are `rel_offset(u32) position(u32)`, time entries are
//! `ts_mark(i64) rel_offset(u32) position(u32)`.

use std::path::{Path, PathBuf};

/// Marker file of a clean shutdown.
pub(super) const CLEAN_SHUTDOWN: &str = "clean-shutdown";
/// The shard's spec.
pub(super) const SPEC_FILE: &str = "spec";
/// The shard's log start offset.
pub(super) const LOG_START_FILE: &str = "log-start";
/// Suffix of a shard directory being deleted.
pub(super) const DELETED_SUFFIX: &str = ".deleted";

/// One index entry per this many bytes of log.
pub(super) const INDEX_INTERVAL: u64 = 4096;
/// Largest batch the engine accepts.
pub(super) const MAX_BATCH: usize = crate::MAX_BATCH_BYTES;

pub(super) const OFFSET_MAGIC: &[u8; 4] = b"SOIX";
pub(super) const TIME_MAGIC: &[u8; 4] = b"STIX";
pub(super) const VERSION: u8 = 2;
pub(super) const INDEX_HEADER_LEN: usize = 44;

pub(super) fn log_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub(super) fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

pub(super) fn time_index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.timeindex"))
}

/// Parses a segment file name `<base:020>.log`.
pub(super) fn parse_log_name(name: &str) -> Option<u64> {
    let base = name.strip_suffix(".log")?;
    (base.len() == 20).then(|| base.parse().ok()).flatten()
}

/// Summary of a closed segment, stored in its index header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SegmentSummary {
    pub log_len: u64,
    pub next_offset: u64,
    pub max_ts: i64,
}

/// Encodes an index file: header then fixed-size entries.
pub(super) fn encode_index(
    magic: &[u8; 4],
    summary: SegmentSummary,
    entries: &[u8],
    entry_len: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_HEADER_LEN + entries.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&[VERSION, 0, 0, 0]);
    out.extend_from_slice(&summary.log_len.to_le_bytes());
    out.extend_from_slice(&summary.next_offset.to_le_bytes());
    out.extend_from_slice(&summary.max_ts.to_le_bytes());
    out.extend_from_slice(&((entries.len() / entry_len) as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(entries).to_le_bytes());
    let header_crc = crc32c::crc32c(&out);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(entries);
    out
}

/// Decodes and checks an index file's header alone; returns the summary and the entry count.
pub(super) fn decode_header(magic: &[u8; 4], head: &[u8]) -> Option<(SegmentSummary, usize, u32)> {
    if head.len() < INDEX_HEADER_LEN || &head[..4] != magic || head[4] != VERSION {
        return None;
    }
    let u64_at = |i: usize| u64::from_le_bytes(head[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    if crc32c::crc32c(&head[..40]) != u32_at(40) {
        return None;
    }
    let summary = SegmentSummary {
        log_len: u64_at(8),
        next_offset: u64_at(16),
        max_ts: u64_at(24) as i64,
    };
    Some((summary, u32_at(32) as usize, u32_at(36)))
}

/// Decodes an index file written by [`encode_index`]; `None` if it is damaged or stale.
pub(super) fn decode_index<'a>(
    magic: &[u8; 4],
    bytes: &'a [u8],
    entry_len: usize,
) -> Option<(SegmentSummary, &'a [u8])> {
    let (summary, count, entries_crc) = decode_header(magic, bytes)?;
    let entries = &bytes[INDEX_HEADER_LEN..];
    if entries.len() != count.checked_mul(entry_len)? || crc32c::crc32c(entries) != entries_crc {
        return None;
    }
    Some((summary, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_round_trip_and_damage() {
        let s = SegmentSummary {
            log_len: 123,
            next_offset: 77,
            max_ts: -5,
        };
        let entries = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let bytes = encode_index(OFFSET_MAGIC, s, &entries, 8);
        let (got, e) = decode_index(OFFSET_MAGIC, &bytes, 8).unwrap();
        assert_eq!((got, e), (s, &entries[..]));
        assert!(decode_index(TIME_MAGIC, &bytes, 8).is_none());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode_index(OFFSET_MAGIC, &bad, 8).is_none(), "flip at {i}");
        }
        assert!(decode_index(OFFSET_MAGIC, &bytes[..bytes.len() - 1], 8).is_none());
    }

    #[test]
    fn segment_names() {
        assert_eq!(parse_log_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_name("42.log"), None);
        assert_eq!(parse_log_name("00000000000000000042.index"), None);
    }
}
