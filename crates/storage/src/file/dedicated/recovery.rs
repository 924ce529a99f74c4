//! Recovery: rebuild a segment's indexes by scanning it, cutting a torn tail and reporting
//! damage in the middle.
//!
//! A batch is valid when its header parses (magic 2, plausible length inside the file), its
//! CRC-32C matches, and its base offset is the one expected after the previous batch. At the
//! first invalid batch the scanner looks for any valid batch further on: if there is one, the
//! bad bytes are damage in the middle, logged with file and position, left in place and never
//! marked verified (so a read of them fails with `Corruption`), and the scan goes on; if there
//! is none, they are a torn or garbage tail and the file is cut there.

use std::fs::File;
use std::path::Path;

use strata_record::{BatchHeader, HEADER_LEN, peek_len, verify_crc};

use super::format::MAX_BATCH;
use super::segment::Indexer;
use crate::Result;
use crate::file::ranges::RangeSet;
use crate::file::window::Window;

/// What a valid batch holds.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchInfo {
    pub base: u64,
    pub last: u64,
    pub len: u64,
    pub max_ts: i64,
}

/// Checks the header of the batch starting `buf` (at least `HEADER_LEN` bytes) against the
/// space left in the file; returns its info and total length.
pub(super) fn check_header(buf: &[u8], room: u64, expected: u64) -> Result<BatchInfo, String> {
    let (base, total) = peek_len(buf).ok_or("short header")?;
    if !(HEADER_LEN..=MAX_BATCH).contains(&total) {
        return Err(format!("implausible batch length {total}"));
    }
    if total as u64 > room {
        return Err(format!(
            "batch of {total} bytes runs past the end of the file"
        ));
    }
    let h = BatchHeader::parse(buf).map_err(|e| e.to_string())?;
    if base != expected as i64 {
        return Err(format!("base offset {base}, expected {expected}"));
    }
    if h.last_offset_delta < 0 {
        return Err(format!(
            "negative last offset delta {}",
            h.last_offset_delta
        ));
    }
    Ok(BatchInfo {
        base: expected,
        last: expected + h.last_offset_delta as u64,
        len: total as u64,
        max_ts: h.max_timestamp,
    })
}

/// Checks one whole batch.
pub(super) fn check_batch(bytes: &[u8], expected: u64) -> Result<BatchInfo, String> {
    let info = check_header(bytes, bytes.len() as u64, expected)?;
    if info.len != bytes.len() as u64 {
        return Err("batch length does not match".into());
    }
    verify_crc(bytes).map_err(|e| e.to_string())?;
    Ok(info)
}

fn batch_at(w: &mut Window<'_>, pos: u64, expected: u64) -> Result<Result<BatchInfo, String>> {
    let room = w.len() - pos;
    if room < HEADER_LEN as u64 {
        return Ok(Err(format!(
            "{room} trailing bytes, shorter than a batch header"
        )));
    }
    let head = w.get(pos, HEADER_LEN)?;
    let total = match check_header(head, room, expected) {
        Ok(info) => info.len,
        Err(e) => return Ok(Err(e)),
    };
    Ok(check_batch(w.get(pos, total as usize)?, expected))
}

/// The first valid batch after `pos` with a base offset at or after `expected`, if any.
fn next_valid(w: &mut Window<'_>, pos: u64, expected: u64) -> Result<Option<(u64, BatchInfo)>> {
    let mut p = pos + 1;
    while p + HEADER_LEN as u64 <= w.len() {
        let head = w.get(p, HEADER_LEN)?;
        // Cheap filters before a checksum: magic byte, plausible length and offset.
        if head[16] == 2
            && let Some((base, total)) = peek_len(head)
            && base >= expected as i64
            && base - (expected as i64) < (1 << 31)
            && (HEADER_LEN..=MAX_BATCH).contains(&total)
            && p + total as u64 <= w.len()
            && let Ok(info) = check_batch(w.get(p, total)?, base as u64)
        {
            return Ok(Some((p, info)));
        }
        p += 1;
    }
    Ok(None)
}

/// A scanned segment.
#[derive(Debug, Default)]
pub(super) struct Scanned {
    pub size: u64,
    pub next: u64,
    pub max_ts: i64,
    pub first_ts: Option<i64>,
    pub indexer: Indexer,
    pub verified: RangeSet,
    /// Where a torn tail was cut, and why.
    pub torn: Option<(u64, String)>,
    /// Damaged regions left in place: (position, reason).
    pub damaged: Vec<(u64, String)>,
}

/// Scans a whole segment file whose first batch has offset `base`. Does not modify the file.
pub(super) fn scan(path: &Path, file: &File, base: u64) -> Result<Scanned> {
    let len = file.metadata()?.len();
    let mut w = Window::new(file, len);
    let mut s = Scanned {
        next: base,
        max_ts: i64::MIN,
        ..Scanned::default()
    };
    let mut pos = 0u64;
    while pos < len {
        match batch_at(&mut w, pos, s.next)? {
            Ok(info) => {
                let rel = u32::try_from(info.base - base).unwrap_or(u32::MAX);
                s.indexer.add(rel, pos, info.len, info.max_ts);
                s.verified.insert(pos, pos + info.len);
                s.first_ts.get_or_insert(info.max_ts);
                s.max_ts = s.max_ts.max(info.max_ts);
                s.next = info.last + 1;
                pos += info.len;
                s.size = pos;
            }
            Err(reason) => match next_valid(&mut w, pos, s.next)? {
                None => {
                    s.torn = Some((pos, reason));
                    break;
                }
                Some((at, info)) => {
                    tracing::error!(
                        file = %path.display(), position = pos, %reason,
                        "damaged record batch in the middle of a segment; it will not be served"
                    );
                    s.damaged.push((pos, reason));
                    s.indexer.force_entry();
                    // Offsets of the damaged bytes are unknown; the next valid batch says where
                    // the log goes on.
                    s.next = info.base;
                    pos = at;
                    s.size = pos;
                }
            },
        }
    }
    Ok(s)
}
