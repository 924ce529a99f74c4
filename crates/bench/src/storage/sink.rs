//! Consuming what a read returns the way a server would hand it to a socket.
//!
//! File regions go through `sendfile` into `/dev/null` (the kernel reads the pages, from disk
//! when they are cold, and copies nothing to user space) or, with `--read-path pread`, are read
//! into a reusable buffer. In-memory pieces are copied into that buffer, standing in for the
//! copy a socket write makes. Either way the bytes are really fetched, and nothing is allocated
//! per read once the buffer has grown to the largest piece.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use anyhow::{Context, Result};
use strata_storage::{FileRegion, Piece, ReadChunk};

use super::args::ReadPath;
use super::measure::Tally;

/// Where read bytes go.
#[derive(Debug)]
pub struct Sink {
    path: ReadPath,
    devnull: File,
    buf: Vec<u8>,
}

impl Sink {
    /// A sink with a buffer of `capacity` bytes, grown if a larger piece arrives.
    pub fn new(path: ReadPath, capacity: usize) -> Result<Sink> {
        let devnull = OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .context("opening /dev/null")?;
        Ok(Sink {
            path,
            devnull,
            buf: vec![0; capacity],
        })
    }

    /// Consumes every piece of a chunk and counts them.
    pub fn consume(&mut self, chunk: &ReadChunk, tally: &mut Tally) -> Result<()> {
        for piece in &chunk.pieces {
            match piece {
                Piece::Bytes(b) => {
                    self.copy(b);
                    tally.bytes_pieces += 1;
                }
                Piece::File(region) => {
                    self.region(region)
                        .with_context(|| format!("consuming a {}-byte file region", region.len))?;
                    tally.file_pieces += 1;
                }
            }
        }
        Ok(())
    }

    /// Copies in-memory bytes into the buffer.
    pub fn copy(&mut self, bytes: &[u8]) {
        if self.buf.len() < bytes.len() {
            self.buf.resize(bytes.len(), 0);
        }
        self.buf[..bytes.len()].copy_from_slice(bytes);
        std::hint::black_box(&self.buf);
    }

    fn region(&mut self, r: &FileRegion) -> io::Result<()> {
        self.file_range(&r.file, r.offset, r.len)
    }

    /// Consumes `len` bytes of `file` at `offset` the configured way.
    pub fn file_range(&mut self, file: &File, offset: u64, len: usize) -> io::Result<()> {
        match self.path {
            ReadPath::Sendfile => sendfile_all(&self.devnull, file, offset, len),
            ReadPath::Pread => {
                if self.buf.len() < len {
                    self.buf.resize(len, 0);
                }
                file.read_exact_at(&mut self.buf[..len], offset)?;
                std::hint::black_box(&self.buf);
                Ok(())
            }
        }
    }
}

/// `sendfile` of a whole range, looping over partial transfers.
fn sendfile_all(out: &File, file: &File, offset: u64, len: usize) -> io::Result<()> {
    let mut off = offset as libc::off_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open for the call; `off` is a valid pointer.
        let n = unsafe { libc::sendfile(out.as_raw_fd(), file.as_raw_fd(), &mut off, left) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "sendfile reached the end of the file before the region did",
            ));
        }
        left -= n as usize;
    }
    Ok(())
}
