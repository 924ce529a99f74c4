//! Framing of the inter-node channel.
//!
//! A connection opens with [`PREFACE`] (client to server), then carries frames:
//!
//! frame := len:u32be crc32c(payload):u32be payload:len      payload := JSON, len ≤ MAX_FRAME
//!
//! The length is checked before anything is allocated, and the checksum before the payload is
//! parsed, so a damaged or hostile peer costs one closed connection.

use std::io;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a client sends first: the protocol, its version and the channel (`C`: the control
/// channel of the Raft group).
pub const PREFACE: &[u8; 8] = b"STRATA\x01C";
/// Largest payload accepted: a few hundred log entries or one snapshot chunk, with room.
pub const MAX_FRAME: usize = 16 << 20;

/// Encodes one frame.
pub fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    if payload.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a frame of {} bytes exceeds {MAX_FRAME}", payload.len()),
        ));
    }
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

/// Checks a frame's header: the payload length, if the length and checksum fields allow one.
pub fn check_header(head: [u8; 8]) -> io::Result<(usize, u32)> {
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    if len > MAX_FRAME {
        return Err(invalid(format!("frame length {len} exceeds {MAX_FRAME}")));
    }
    Ok((len, crc))
}

/// Parses a payload whose header said `crc`.
pub fn decode<T: DeserializeOwned>(payload: &[u8], crc: u32) -> io::Result<T> {
    if crc32c::crc32c(payload) != crc {
        return Err(invalid("frame checksum mismatch".into()));
    }
    serde_json::from_slice(payload).map_err(|e| invalid(format!("undecodable frame: {e}")))
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

/// Writes one frame.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> io::Result<()> {
    w.write_all(&encode(value)?).await?;
    w.flush().await
}

/// Reads one frame; `None` when the peer closed the connection between frames.
pub async fn read<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> io::Result<Option<T>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let (len, crc) = check_header(head)?;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    decode(&payload, crc).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_damage_is_refused() {
        let frame = encode(&vec!["a", "b"]).unwrap();
        let got: Option<Vec<String>> = read(&mut &frame[..]).await.unwrap();
        assert_eq!(got.unwrap(), ["a", "b"]);
        let none: Option<Vec<String>> = read(&mut &[][..]).await.unwrap();
        assert!(none.is_none());
        let mut bad = frame.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(read::<_, Vec<String>>(&mut &bad[..]).await.is_err());
        let mut huge = frame;
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = read::<_, Vec<String>>(&mut &huge[..]).await.unwrap_err();
        assert!(err.to_string().contains("exceeds"), "{err}");
    }
}
