//! The journal writer: every shard's records appended to one sequence of files.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use super::format::{Kind, MAX_JOURNAL_FILE, RECORD_HEADER, journal_path, record_header};
use crate::file::io::write_all_at;
use crate::util::fsync_dir;
use crate::{Result, ShardNo};

/// The file being appended to.
#[derive(Debug)]
pub(super) struct Writer {
    pub seq: u32,
    pub file: Arc<File>,
    pub pos: u64,
    /// Roll to a new file past this size.
    pub file_bytes: u64,
    /// Writeback has been started for the file up to here.
    pub writeback: u64,
}

/// Start writeback of the journal every this many bytes, so that the fsync at a checkpoint
/// (or a roll) finds little left to do instead of stalling appends behind a large flush.
const WRITEBACK_EVERY: u64 = 8 << 20;

/// Where a record's body landed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Written {
    pub seq: u32,
    /// Position of the body (after the record header).
    pub body_pos: u64,
}

pub(super) fn open_journal_file(root: &Path, seq: u32, create: bool) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(journal_path(root, seq))
}

impl Writer {
    /// Appends one record whose body is `parts` (concatenated); `covered` are the body bytes
    /// the header checksum covers. Rolls to a new file first if this one is full.
    pub(super) fn append(
        &mut self,
        root: &Path,
        kind: Kind,
        shard: ShardNo,
        parts: &[&[u8]],
        covered: &[&[u8]],
    ) -> Result<Written> {
        let body_len: usize = parts.iter().map(|p| p.len()).sum();
        let total = (RECORD_HEADER + body_len) as u64;
        if self.pos > 0 && self.pos + total > self.file_bytes.min(MAX_JOURNAL_FILE) {
            self.roll(root)?;
        }
        let header = record_header(kind, shard, body_len, covered);
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(&header);
        all.extend_from_slice(parts);
        if let Err(e) = write_all_at(&self.file, &all, self.pos) {
            let _ = self.file.set_len(self.pos);
            return Err(e.into());
        }
        let written = Written {
            seq: self.seq,
            body_pos: self.pos + RECORD_HEADER as u64,
        };
        self.pos += total;
        if self.pos - self.writeback >= WRITEBACK_EVERY {
            start_writeback(&self.file, self.writeback, self.pos - self.writeback);
            self.writeback = self.pos;
        }
        Ok(written)
    }

    /// Starts the next journal file.
    pub(super) fn roll(&mut self, root: &Path) -> Result<()> {
        let seq = self.seq + 1;
        let file = open_journal_file(root, seq, true)?;
        fsync_dir(&root.join(super::format::JOURNAL_DIR))?;
        self.seq = seq;
        self.file = Arc::new(file);
        self.pos = 0;
        self.writeback = 0;
        Ok(())
    }
}

/// Asks the kernel to start writing a range back without waiting for it (a hint: errors
/// surface at the next fsync).
fn start_writeback(file: &File, from: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// Journal files present, by sequence number.
pub(super) fn list(root: &Path) -> std::io::Result<Vec<u32>> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(root.join(super::format::JOURNAL_DIR))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(seq) = super::format::parse_seq(&name, "jnl") {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}
