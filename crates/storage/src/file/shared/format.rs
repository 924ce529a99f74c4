//! On-disk layout of the shared model (see `docs/format/file.md`).
//!
//! ```text
//! <root>/journal/<seq:020>.jnl   every shard's records, appended in arrival order
//! <root>/index/<seq:020>.run     index runs written at checkpoints: per-shard entry blocks
//! <root>/checkpoint              the shard table and where replay starts
//! ```
//!
//! Journal record (little-endian):
//! `record := len(u32) crc(u32) kind(u8) shard(u32) body`, `len` counting kind..end.
//! For `BATCH`, body is a Kafka record batch and `crc` is CRC-32C over kind, shard and the
//! batch's 61-byte header (offsets, length, epoch, counts, timestamps, producer fields and the
//! batch's own CRC, which covers the rest). For every other kind `crc` covers kind, shard and
//! the whole body.
//!
//! Index entry: `base(u64) max_ts(i64) last_delta(u32) file(u32) pos(u32) len(u32)`, 32 bytes;
//! `pos` is where the batch bytes start in journal file `file`; `len == 0` marks a hole left
//! by a damaged record at `pos`.

use std::path::{Path, PathBuf};

use super::state::Entry;
use crate::ShardNo;

pub(super) const JOURNAL_DIR: &str = "journal";
pub(super) const INDEX_DIR: &str = "index";
pub(super) const CHECKPOINT: &str = "checkpoint";

/// Bytes before a record's body.
pub(super) const RECORD_HEADER: usize = 13;
/// Largest record body accepted: a batch of the largest size any engine stores.
pub(super) const MAX_BODY: usize = crate::MAX_BATCH_BYTES;
/// Journal files hold positions in a u32.
pub(super) const MAX_JOURNAL_FILE: u64 = u32::MAX as u64 - MAX_BODY as u64;

pub(super) const ENTRY_LEN: usize = 32;

/// What a journal record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    Batch = 1,
    Create = 2,
    Delete = 3,
    Trim = 4,
    Truncate = 5,
    Spec = 6,
}

impl Kind {
    pub(super) fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Batch,
            2 => Kind::Create,
            3 => Kind::Delete,
            4 => Kind::Trim,
            5 => Kind::Truncate,
            6 => Kind::Spec,
            _ => return None,
        })
    }
}

pub(super) fn journal_path(root: &Path, seq: u32) -> PathBuf {
    root.join(JOURNAL_DIR).join(format!("{seq:020}.jnl"))
}

pub(super) fn run_path(root: &Path, seq: u32) -> PathBuf {
    root.join(INDEX_DIR).join(format!("{seq:020}.run"))
}

/// A shard number as the journal and checkpoints store it: four bytes. The shared model's
/// numbers are slots of its shard table (its length at creation), so they fit.
pub(super) fn wire(no: ShardNo) -> u32 {
    u32::try_from(no.get()).expect("shared-model shard numbers fit four bytes")
}

/// Parses `<seq:020>.<ext>`.
pub(super) fn parse_seq(name: &str, ext: &str) -> Option<u32> {
    let seq = name.strip_suffix(ext)?.strip_suffix('.')?;
    (seq.len() == 20).then(|| seq.parse().ok()).flatten()
}

/// The 13-byte header of a record whose checksummed body bytes are `covered` (in pieces).
pub(super) fn record_header(
    kind: Kind,
    shard: ShardNo,
    body_len: usize,
    covered: &[&[u8]],
) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    h[0..4].copy_from_slice(&((body_len + 5) as u32).to_le_bytes());
    h[8] = kind as u8;
    h[9..13].copy_from_slice(&wire(shard).to_le_bytes());
    let crc = covered.iter().fold(crc32c::crc32c(&h[8..13]), |c, p| {
        crc32c::crc32c_append(c, p)
    });
    h[4..8].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A parsed record header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub kind: Kind,
    pub shard: ShardNo,
    pub body_len: usize,
    pub crc: u32,
}

/// Parses a record header without checking its CRC (which needs the body).
pub(super) fn parse_header(h: &[u8]) -> Option<Header> {
    let len = u32::from_le_bytes(h[0..4].try_into().ok()?) as usize;
    let body_len = len.checked_sub(5)?;
    if body_len > MAX_BODY {
        return None;
    }
    Some(Header {
        kind: Kind::from_u8(h[8])?,
        shard: ShardNo(u64::from(u32::from_le_bytes(h[9..13].try_into().ok()?))),
        body_len,
        crc: u32::from_le_bytes(h[4..8].try_into().ok()?),
    })
}

/// Checks a header's CRC against the start of its body (`covered` is the first 21 bytes for
/// batches, the whole body otherwise).
pub(super) fn header_crc_ok(h: &[u8], header: &Header, covered: &[u8]) -> bool {
    crc32c::crc32c_append(crc32c::crc32c(&h[8..13]), covered) == header.crc
}

/// How many body bytes the header CRC covers: a batch's whole 61-byte header (offsets, counts,
/// timestamps, producer fields, and the batch's own CRC over the rest), or a whole control
/// body.
pub(super) fn covered_len(header: &Header) -> usize {
    match header.kind {
        Kind::Batch => BATCH_COVERED.min(header.body_len),
        _ => header.body_len,
    }
}

/// Bytes of a batch that its record header's CRC covers.
pub(super) const BATCH_COVERED: usize = strata_record::HEADER_LEN;

pub(super) fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    out.extend_from_slice(&e.base.to_le_bytes());
    out.extend_from_slice(&e.max_ts.to_le_bytes());
    out.extend_from_slice(&e.last_delta.to_le_bytes());
    out.extend_from_slice(&e.file.to_le_bytes());
    out.extend_from_slice(&e.pos.to_le_bytes());
    out.extend_from_slice(&e.len.to_le_bytes());
}

pub(super) fn decode_entry(b: &[u8]) -> Entry {
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
    Entry {
        base: u64_at(0),
        max_ts: u64_at(8) as i64,
        last_delta: u32_at(16),
        file: u32_at(20),
        pos: u32_at(24),
        len: u32_at(28),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let body = b"0123456789012345678901234567890";
        let h = record_header(
            Kind::Batch,
            ShardNo(7),
            body.len(),
            &[&body[..10], &body[10..21]],
        );
        let p = parse_header(&h).unwrap();
        assert_eq!(
            (p.kind, p.shard, p.body_len),
            (Kind::Batch, ShardNo(7), body.len())
        );
        assert!(header_crc_ok(&h, &p, &body[..21]));
        let mut bad = h;
        bad[10] ^= 1;
        let p = parse_header(&bad).unwrap();
        assert!(!header_crc_ok(&bad, &p, &body[..21]));
    }

    #[test]
    fn entry_round_trip() {
        let e = Entry {
            base: 1 << 40,
            max_ts: -3,
            last_delta: 9,
            file: 4,
            pos: 77,
            len: 1000,
        };
        let mut v = Vec::new();
        encode_entry(&e, &mut v);
        assert_eq!(v.len(), ENTRY_LEN);
        assert_eq!(decode_entry(&v), e);
    }

    #[test]
    fn names() {
        assert_eq!(parse_seq("00000000000000000003.jnl", "jnl"), Some(3));
        assert_eq!(parse_seq("00000000000000000003.run", "jnl"), None);
    }
}
