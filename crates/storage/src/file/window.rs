//! Sequential reading of a file through a sliding window, for recovery scans.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const WINDOW: usize = 4 << 20;

/// Serves byte ranges of a file from a buffer refilled with large positioned reads.
pub(crate) struct Window<'a> {
    file: &'a File,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl<'a> Window<'a> {
    pub(crate) fn new(file: &'a File, len: u64) -> Self {
        Window {
            file,
            len,
            start: 0,
            buf: Vec::new(),
        }
    }

    /// Length of the file.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// `len` bytes at `pos`; the caller has checked that they lie inside the file.
    pub(crate) fn get(&mut self, pos: u64, len: usize) -> io::Result<&[u8]> {
        debug_assert!(pos + len as u64 <= self.len);
        let end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + len as u64 > end {
            let want = len.max(WINDOW).min((self.len - pos) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos)?;
            self.start = pos;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }
}
