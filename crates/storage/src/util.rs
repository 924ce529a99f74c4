//! Small helpers shared by engines.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;
use strata_record::{Batch, TimestampType};

use crate::{Result, TimestampHit};

/// The first record in `batch` at or after `min_offset` whose timestamp is at or after
/// `timestamp`.
///
/// Kafka answers timestamp lookups at record granularity (skipping records below the log
/// start), so this decompresses one batch.
pub fn first_record_at_or_after(
    batch: Bytes,
    timestamp: i64,
    min_offset: u64,
) -> Result<Option<TimestampHit>> {
    let batch = Batch::validate(batch)?;
    let header = *batch.header();
    if header.max_timestamp < timestamp || (header.last_offset() as u64) < min_offset {
        return Ok(None);
    }
    if header.timestamp_type() == TimestampType::LogAppendTime {
        return Ok(Some(TimestampHit {
            offset: (header.base_offset as u64).max(min_offset),
            timestamp: header.max_timestamp,
        }));
    }
    for record in batch.records()? {
        let record = record?;
        if record.timestamp >= timestamp && record.offset as u64 >= min_offset {
            return Ok(Some(TimestampHit {
                offset: record.offset as u64,
                timestamp: record.timestamp,
            }));
        }
    }
    Ok(None)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// fsyncs a directory so that entries created or renamed in it survive power loss.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` atomically: write a temporary file, fsync it, rename, fsync the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    write_replace(path, contents, true)
}

/// Replaces `path` through a temporary file and a rename; fsyncs file and directory only if
/// `durable` (otherwise a crash leaves the old or the new contents, a power loss maybe neither).
pub fn write_replace(path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(contents)?;
        if durable {
            f.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable {
        fsync_dir(dir)?;
    }
    Ok(())
}
