//! The optional local write-ahead log: batches are acknowledged once written here (and fsynced,
//! as the topic's durability says), and uploaded later.
//!
//! Segment files `<first-position>.wal` hold entries
//! `[payload length u32][CRC32C of payload u32][shard no u64][epoch u32][batch]`, little-endian.
//! A position is a byte count over all segments ever written. A segment is deleted once every
//! entry in it has been uploaded. On open, a torn or zeroed tail is cut; a damaged entry that
//! is followed by a valid one is corruption and fails the open, naming the file and position.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use parking_lot::Mutex;
use strata_storage::{Result, ShardNo, StorageError};

const HEADER: usize = 8;
const PREFIX: usize = 12;
const SEGMENT_BYTES: u64 = 64 << 20;

/// One recovered entry.
#[derive(Debug)]
pub struct Entry {
    /// Shard number.
    pub no: ShardNo,
    /// The shard's epoch when it was written.
    pub epoch: u32,
    /// The stored batch.
    pub batch: Bytes,
    /// Position just past the entry.
    pub end: u64,
}

#[derive(Debug)]
struct Active {
    file: Arc<File>,
    start: u64,
    len: u64,
    /// Segments before the active one: (first position, path).
    closed: Vec<(u64, PathBuf)>,
    /// Earliest pending interval-sync deadline.
    deadline: Option<Instant>,
}

/// The write-ahead log of one engine.
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    active: Mutex<Active>,
    synced: AtomicU64,
    sync_lock: tokio::sync::Mutex<()>,
    fsyncs: AtomicU64,
    wake: tokio::sync::Notify,
}

fn segment_path(dir: &Path, start: u64) -> PathBuf {
    dir.join(format!("{start:020}.wal"))
}

/// Opens (creating) a segment for appending.
fn open_segment(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, e: io::Error) -> StorageError {
    StorageError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl Wal {
    /// Opens the log in `dir`, returning it and every entry it holds, oldest first.
    pub fn open(dir: &Path) -> Result<(Wal, Vec<Entry>)> {
        fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(dir)
            .map_err(|e| io_err(dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let start = name.strip_suffix(".wal")?.parse::<u64>().ok()?;
                Some((start, e.path()))
            })
            .collect();
        segments.sort();
        let mut entries = Vec::new();
        let mut end = 0;
        let count = segments.len();
        for (i, (start, path)) in segments.iter().enumerate() {
            let bytes = fs::read(path).map_err(|e| io_err(path, e))?;
            let valid = scan(&bytes, *start, path, &mut entries)?;
            if valid < bytes.len() {
                if i + 1 < count {
                    return Err(StorageError::corruption(
                        path,
                        valid as u64,
                        "damaged entry in a write-ahead log segment that is not the newest",
                    ));
                }
                tracing::warn!(file = %path.display(), position = valid, cut = bytes.len() - valid,
                    "write-ahead log: cutting a torn tail");
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| io_err(path, e))?;
                f.set_len(valid as u64).map_err(|e| io_err(path, e))?;
                f.sync_all().map_err(|e| io_err(path, e))?;
            }
            end = start + valid as u64;
        }
        let (start, path) = match segments.pop() {
            Some(last) => last,
            None => (end, segment_path(dir, end)),
        };
        let file = open_segment(&path)?;
        let len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let wal = Wal {
            dir: dir.to_owned(),
            active: Mutex::new(Active {
                file: Arc::new(file),
                start,
                len,
                closed: segments,
                deadline: None,
            }),
            synced: AtomicU64::new(start + len),
            sync_lock: tokio::sync::Mutex::new(()),
            fsyncs: AtomicU64::new(0),
            wake: tokio::sync::Notify::new(),
        };
        Ok((wal, entries))
    }

    /// Appends one entry; returns the position just past it. Not yet synced.
    pub fn append(&self, no: ShardNo, epoch: u32, batch: &[u8]) -> Result<u64> {
        let mut buf = BytesMut::with_capacity(HEADER + PREFIX + batch.len());
        buf.put_u32_le((PREFIX + batch.len()) as u32);
        buf.put_u32_le(0);
        buf.put_u64_le(no.get());
        buf.put_u32_le(epoch);
        buf.put_slice(batch);
        let crc = crc32c::crc32c(&buf[HEADER..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut a = self.active.lock();
        if a.len >= SEGMENT_BYTES {
            self.roll(&mut a)?;
        }
        let path = segment_path(&self.dir, a.start);
        (&*a.file).write_all(&buf).map_err(|e| io_err(&path, e))?;
        a.len += buf.len() as u64;
        Ok(a.start + a.len)
    }

    fn roll(&self, a: &mut Active) -> Result<()> {
        let old = segment_path(&self.dir, a.start);
        a.file.sync_data().map_err(|e| io_err(&old, e))?;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let start = a.start + a.len;
        let file = open_segment(&segment_path(&self.dir, start))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err(&self.dir, e))?;
        a.closed.push((a.start, old));
        a.file = Arc::new(file);
        a.start = start;
        a.len = 0;
        self.synced.fetch_max(start, Ordering::AcqRel);
        Ok(())
    }

    /// Waits until everything up to `pos` is fsynced; concurrent callers share one fsync.
    pub async fn sync_to(&self, pos: u64) -> Result<()> {
        if self.synced.load(Ordering::Acquire) >= pos {
            return Ok(());
        }
        let _one = self.sync_lock.lock().await;
        if self.synced.load(Ordering::Acquire) >= pos {
            return Ok(());
        }
        let (file, end, path) = {
            let a = self.active.lock();
            (
                a.file.clone(),
                a.start + a.len,
                segment_path(&self.dir, a.start),
            )
        };
        tokio::task::spawn_blocking(move || file.sync_data().map_err(|e| io_err(&path, e)))
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))??;
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.synced.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Asks for an fsync at most `ms` milliseconds from now (durability `flush.ms`).
    pub fn sync_within(&self, ms: u32) {
        let at = Instant::now() + Duration::from_millis(u64::from(ms));
        let mut a = self.active.lock();
        if a.deadline.is_none_or(|d| d > at) {
            a.deadline = Some(at);
            drop(a);
            self.wake.notify_one();
        }
    }

    /// Runs the interval syncs until the log is dropped.
    pub async fn interval_syncs(wal: std::sync::Weak<Wal>) {
        loop {
            let Some(w) = wal.upgrade() else { return };
            let deadline = w.active.lock().deadline;
            match deadline {
                Some(at) if at <= Instant::now() => {
                    w.active.lock().deadline = None;
                    let end = w.end();
                    if let Err(e) = w.sync_to(end).await {
                        tracing::error!(error = %e, "write-ahead log interval fsync failed");
                    }
                }
                Some(at) => {
                    let sleep = tokio::time::sleep_until(at.into());
                    tokio::select! { _ = sleep => {}, _ = w.wake.notified() => {} }
                }
                None => {
                    let idle = tokio::time::sleep(Duration::from_secs(1));
                    tokio::select! { _ = idle => {}, _ = w.wake.notified() => {} }
                }
            }
        }
    }

    /// Position just past the last entry.
    pub fn end(&self) -> u64 {
        let a = self.active.lock();
        a.start + a.len
    }

    /// Deletes closed segments whose entries all lie below `uploaded`.
    pub fn release(&self, uploaded: u64) {
        let mut a = self.active.lock();
        let active_start = a.start;
        let mut keep = Vec::new();
        let closed = std::mem::take(&mut a.closed);
        for (i, (start, path)) in closed.iter().enumerate() {
            let end = closed.get(i + 1).map_or(active_start, |next| next.0);
            if end <= uploaded {
                if let Err(e) = fs::remove_file(path) {
                    tracing::warn!(file = %path.display(), error = %e, "cannot delete an uploaded write-ahead log segment");
                    keep.push((*start, path.clone()));
                }
            } else {
                keep.push((*start, path.clone()));
            }
        }
        a.closed = keep;
    }

    /// Segment files, oldest first.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "wal"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// fsyncs made.
    pub fn fsyncs(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Reads `len` bytes at `pos` of the active segment (tests).
    #[cfg(test)]
    fn read_active(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let a = self.active.lock();
        let mut out = vec![0; len];
        a.file.read_exact_at(&mut out, pos - a.start)?;
        Ok(out)
    }
}

/// Parses entries from `bytes` (a segment starting at position `start`); returns how many bytes
/// are valid. A bad entry followed by a valid one is corruption.
fn scan(bytes: &[u8], start: u64, path: &Path, out: &mut Vec<Entry>) -> Result<usize> {
    let mut at = 0usize;
    loop {
        match entry_at(bytes, at) {
            Some((no, epoch, range)) => {
                let end = range.end;
                out.push(Entry {
                    no,
                    epoch,
                    batch: Bytes::copy_from_slice(&bytes[range]),
                    end: start + end as u64,
                });
                at = end;
            }
            None => {
                if at < bytes.len() && followed_by_valid(bytes, at) {
                    return Err(StorageError::corruption(
                        path,
                        at as u64,
                        "write-ahead log entry fails its checksum but later entries are intact",
                    ));
                }
                return Ok(at);
            }
        }
    }
}

fn entry_at(bytes: &[u8], at: usize) -> Option<(ShardNo, u32, std::ops::Range<usize>)> {
    let head = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..].try_into().ok()?);
    if len < PREFIX {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    if crc32c::crc32c(payload) != crc {
        return None;
    }
    let no = ShardNo(u64::from_le_bytes(payload[..8].try_into().ok()?));
    let epoch = u32::from_le_bytes(payload[8..12].try_into().ok()?);
    Some((no, epoch, at + HEADER + PREFIX..at + HEADER + len))
}

/// True if the entry at `at` has a plausible length and a valid entry follows it.
fn followed_by_valid(bytes: &[u8], at: usize) -> bool {
    let Some(head) = bytes.get(at..at + 4) else {
        return false;
    };
    let len = u32::from_le_bytes(head.try_into().expect("4 bytes")) as usize;
    len >= PREFIX && entry_at(bytes, at + HEADER + len).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_reopen_and_torn_tails_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, found) = Wal::open(dir.path()).unwrap();
        assert!(found.is_empty());
        let a = wal.append(ShardNo(1), 0, b"first").unwrap();
        let b = wal.append(ShardNo(2), 3, b"second").unwrap();
        assert_eq!(
            wal.read_active(a, 4).unwrap(),
            ((PREFIX + 6) as u32).to_le_bytes()
        );
        drop(wal);
        let files = Wal::files(dir.path());
        let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
        f.set_len(b - 3).unwrap();
        let (wal, found) = Wal::open(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].no, &found[0].batch[..]),
            (ShardNo(1), &b"first"[..])
        );
        assert_eq!(wal.end(), a);
    }

    #[test]
    fn damage_before_the_tail_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (wal, _) = Wal::open(dir.path()).unwrap();
        wal.append(ShardNo(1), 0, b"first entry").unwrap();
        wal.append(ShardNo(1), 0, b"second entry").unwrap();
        drop(wal);
        let file = &Wal::files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        bytes[HEADER + PREFIX + 2] ^= 1;
        fs::write(file, bytes).unwrap();
        match Wal::open(dir.path()) {
            Err(StorageError::Corruption { position, .. }) => assert_eq!(position, 0),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
