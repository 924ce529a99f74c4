//! Responses on the wire: in-memory bytes written with `write_all`, file regions sent with
//! `sendfile` so that stored batches go from the page cache to the socket without a copy.

use std::io;
use std::os::fd::AsRawFd;

use bytes::Bytes;
use strata_storage::FileRegion;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// One part of a response.
#[derive(Debug, Clone)]
pub enum Part {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A region of a file.
    File(FileRegion),
}

impl Part {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File(r) => r.len,
        }
    }
}

/// A complete response frame (size prefix included), as parts.
#[derive(Debug, Default)]
pub struct Frame {
    /// The parts, in order.
    pub parts: Vec<Part>,
}

impl Frame {
    /// A frame of one buffer that already holds the size prefix.
    pub fn bytes(b: Bytes) -> Self {
        Frame {
            parts: vec![Part::Bytes(b)],
        }
    }

    /// Total length on the wire.
    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    /// True if the frame is empty (acks=0 produce: nothing is sent).
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Writes the frame. A file region that cannot be sent whole is an error: the size prefix
    /// has promised its bytes, so the caller must close the connection.
    pub async fn write_to(&self, stream: &mut TcpStream) -> io::Result<()> {
        let mut i = 0;
        while i < self.parts.len() {
            // Consecutive in-memory parts go out in one vectored write where possible.
            let mut j = i;
            while j < self.parts.len() && matches!(self.parts[j], Part::Bytes(_)) {
                j += 1;
            }
            if j > i {
                let mut slices: Vec<io::IoSlice<'_>> = self.parts[i..j]
                    .iter()
                    .filter_map(|p| match p {
                        Part::Bytes(b) if !b.is_empty() => Some(io::IoSlice::new(b)),
                        _ => None,
                    })
                    .collect();
                write_all_vectored(stream, &mut slices).await?;
                i = j;
                continue;
            }
            if let Part::File(r) = &self.parts[i] {
                sendfile(stream, r).await?;
            }
            i += 1;
        }
        Ok(())
    }
}

async fn write_all_vectored(
    stream: &mut TcpStream,
    mut slices: &mut [io::IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let n = stream.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Sends a file region with `sendfile(2)`, waiting for the socket to be writable.
async fn sendfile(stream: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let mut offset = region.offset as libc::off_t;
    let end = offset + region.len as libc::off_t;
    let file_fd = region.file.as_raw_fd();
    let sock_fd = stream.as_raw_fd();
    while offset < end {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            let want = (end - offset) as usize;
            // SAFETY: both descriptors stay open for the call (the region holds its file, the
            // caller its stream), and `offset` is a valid pointer.
            let n = unsafe { libc::sendfile(sock_fd, file_fd, &mut offset, want) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(n as usize)
            }
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file region shorter than promised",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
