//! The small files beside the Raft log: the vote, the last purged and the last committed log
//! id, and the snapshot. Each is one frame, replaced whole through a temporary file and a
//! rename, so a reader finds the old or the new contents, never a mix.
//!
//! frame := magic:4 version:u8 len:u32le crc32c(payload):u32le payload:len   (payload: JSON)

use std::io;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

const VERSION: u8 = 1;
const HEAD: usize = 4 + 1 + 4 + 4;
/// Largest payload read back: a snapshot of a large image, with room to spare.
const MAX_PAYLOAD: usize = 1 << 30;

/// Writes `value` to `path`; `durable` fsyncs the file and the directory before returning.
pub fn write<T: Serialize>(
    path: &Path,
    magic: &[u8; 4],
    value: &T,
    durable: bool,
) -> io::Result<()> {
    let payload = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut frame = Vec::with_capacity(HEAD + payload.len());
    frame.extend_from_slice(magic);
    frame.push(VERSION);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    strata_storage::write_replace(path, &frame, durable)
}

/// Reads what [`write`] wrote: `None` if there is no file; an error naming the file if it is
/// damaged (a file replaced by rename is never torn, so damage means the disk failed).
pub fn read<T: DeserializeOwned>(path: &Path, magic: &[u8; 4]) -> io::Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |reason: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {reason}", path.display()),
        )
    };
    if bytes.len() < HEAD || &bytes[..4] != magic {
        return Err(bad(
            "not a frame of this kind (bad magic or too short)".into()
        ));
    }
    if bytes[4] != VERSION {
        return Err(bad(format!("unknown version {}", bytes[4])));
    }
    let len = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    let crc = u32::from_le_bytes([bytes[9], bytes[10], bytes[11], bytes[12]]);
    if len > MAX_PAYLOAD || bytes.len() != HEAD + len {
        return Err(bad(format!(
            "length {len} does not match the file's {} bytes",
            bytes.len()
        )));
    }
    let payload = &bytes[HEAD..];
    if crc32c::crc32c(payload) != crc {
        return Err(bad("checksum mismatch".into()));
    }
    serde_json::from_slice(payload)
        .map(Some)
        .map_err(|e| bad(format!("undecodable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_absence_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vote");
        assert_eq!(read::<u64>(&path, b"TEST").unwrap(), None);
        write(&path, b"TEST", &42u64, true).unwrap();
        assert_eq!(read::<u64>(&path, b"TEST").unwrap(), Some(42));
        assert!(read::<u64>(&path, b"OTHR").is_err());
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read::<u64>(&path, b"TEST").unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read::<u64>(&path, b"TEST").is_err());
    }
}
