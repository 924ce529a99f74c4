//! Request framing: a 4-byte big-endian size, then the request. Checks, then reads.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection is closed while reading a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// A size below the smallest request header, or negative.
    #[error("invalid frame size {0}")]
    BadSize(i32),
    /// A size above the configured limit (Kafka's `socket.request.max.bytes`).
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size the frame announced.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Smallest request: api key, api version, correlation id.
const MIN_FRAME: i32 = 8;

/// Reads one frame. The size is checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Bytes, FrameError> {
    let mut size = [0u8; 4];
    match r.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    if size < MIN_FRAME {
        return Err(FrameError::BadSize(size));
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut buf = BytesMut::zeroed(size);
    r.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sizes_are_checked_before_reading() {
        let mut ok: &[u8] = &[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(read_frame(&mut ok, 100).await.unwrap().len(), 8);
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 100).await,
            Err(FrameError::BadSize(-1))
        ));
        let mut big: &[u8] = &[0x7f, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut big, 1 << 20).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut none: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut none, 100).await,
            Err(FrameError::Closed)
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(FrameError::Io(_))
        ));
    }
}
