//! Group commit: one thread fsyncs on behalf of every appender.
//!
//! An appender that needs its write durable registers the file it wrote with [`Syncer::request`]
//! and awaits the returned ticket. The thread takes every file registered so far as one round,
//! fsyncs each once, and releases all tickets of that round together, so concurrent appends —
//! to one journal or to many shards' segments — share fsyncs. Files written under an interval
//! policy are registered with a deadline instead and synced without anyone waiting.
//!
//! A failed fsync poisons the syncer: the kernel may already have dropped the dirty pages, so a
//! later successful fsync would prove nothing (fsyncgate). Every later write is refused until the
//! engine is reopened and recovers from what is really on disk.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use crate::{Result, StorageError, WriteGate};

/// A place in the queue of sync rounds; durable once that round completes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket(u64);

#[derive(Debug, Clone, Default)]
struct Done {
    round: u64,
    /// Set with the gate's poison, so that waiters wake up (the reason is in the gate).
    poisoned: bool,
}

#[derive(Default)]
struct State {
    /// Files to sync in the round now filling, keyed by address to sync each once.
    now: HashMap<usize, Arc<File>>,
    /// Files to sync by a deadline, without waiters.
    later: HashMap<usize, (Instant, Arc<File>)>,
    /// The round that requests made now will be part of.
    filling: u64,
    shutdown: bool,
}

struct Inner {
    state: Mutex<State>,
    /// Poisoned by a failed fsync; the dedicated engine also closes it.
    gate: WriteGate,
    wake: Condvar,
    done: watch::Sender<Done>,
    fsyncs: AtomicU64,
}

/// The group-commit thread of one engine.
pub(crate) struct Syncer {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("fsyncs", &self.inner.fsyncs.load(Ordering::Relaxed))
            .finish()
    }
}

/// fsyncs a file's data, with a fault point for tests.
pub(crate) fn fdatasync(file: &File) -> io::Result<()> {
    // Tests slow fsyncs down here (so that more requests queue behind one) and fail them below.
    fail::fail_point!("storage::before_fsync");
    fail::fail_point!("storage::fsync", |_| Err(io::Error::other(
        "injected fsync failure"
    )));
    #[cfg(feature = "testkit")]
    let len = file.metadata()?;
    file.sync_data()?;
    #[cfg(feature = "testkit")]
    audit::record(&len);
    Ok(())
}

/// Which length of each file the last fsync covered, so tests can check that an
/// acknowledgement under fsync durability came after the fsync of its bytes.
#[cfg(feature = "testkit")]
pub mod audit {
    use std::collections::HashMap;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::sync::{Mutex, OnceLock};

    fn synced() -> &'static Mutex<HashMap<(u64, u64), u64>> {
        static SYNCED: OnceLock<Mutex<HashMap<(u64, u64), u64>>> = OnceLock::new();
        SYNCED.get_or_init(Default::default)
    }

    pub(crate) fn record(before: &std::fs::Metadata) {
        let mut m = synced().lock().expect("audit lock");
        let e = m.entry((before.dev(), before.ino())).or_default();
        *e = (*e).max(before.len());
    }

    /// Forgets everything recorded (inode numbers are reused once files are deleted).
    pub fn reset() {
        synced().lock().expect("audit lock").clear();
    }

    /// Bytes of `path` known to be on disk: its length when it was last fsynced.
    pub fn synced_len(path: &Path) -> u64 {
        let Ok(meta) = std::fs::metadata(path) else {
            return 0;
        };
        let m = synced().lock().expect("audit lock");
        m.get(&(meta.dev(), meta.ino())).copied().unwrap_or(0)
    }
}

impl Syncer {
    /// Starts the thread.
    pub(crate) fn start(name: &str) -> Self {
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                filling: 1,
                ..State::default()
            }),
            wake: Condvar::new(),
            gate: WriteGate::new(),
            done: watch::Sender::new(Done::default()),
            fsyncs: AtomicU64::new(0),
        });
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("{name}-sync"))
                .spawn({
                    let name = name.to_owned();
                    move || run(&inner, &name)
                })
                .expect("spawn sync thread")
        };
        Syncer {
            inner,
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Fails if an earlier fsync failed.
    pub(crate) fn check(&self) -> Result<()> {
        self.inner.gate.check_poisoned()
    }

    /// The engine's write gate, which a failed fsync poisons.
    pub(crate) fn gate(&self) -> &WriteGate {
        &self.inner.gate
    }

    /// Asks for `file` to be fsynced in the next round. After `shutdown` there is no next
    /// round, so waiting on the ticket fails with `Closed`.
    pub(crate) fn request(&self, file: &Arc<File>) -> Ticket {
        let mut s = self.inner.state.lock();
        if s.shutdown {
            return Ticket(u64::MAX);
        }
        s.now.insert(Arc::as_ptr(file) as usize, file.clone());
        let ticket = Ticket(s.filling);
        drop(s);
        self.inner.wake.notify_one();
        ticket
    }

    /// Waits until the ticket's round has been fsynced.
    pub(crate) async fn wait(&self, ticket: Ticket) -> Result<()> {
        if ticket.0 == u64::MAX {
            return Err(StorageError::Closed);
        }
        let mut rx = self.inner.done.subscribe();
        let done = rx
            .wait_for(|d| d.round >= ticket.0 || d.poisoned)
            .await
            .map_err(|_| StorageError::Closed)?;
        if done.round >= ticket.0 {
            return Ok(());
        }
        drop(done);
        self.check()
    }

    /// Asks for `file` to be fsynced within `within`, without waiting for it.
    pub(crate) fn sync_within(&self, file: &Arc<File>, within: Duration) {
        let deadline = Instant::now() + within;
        let mut s = self.inner.state.lock();
        let earlier = match s.later.entry(Arc::as_ptr(file) as usize) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((deadline, file.clone()));
                true
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                let earlier = deadline < o.get().0;
                if earlier {
                    o.get_mut().0 = deadline;
                }
                earlier
            }
        };
        drop(s);
        // The thread may be asleep with no deadline at all: a new or earlier one wakes it.
        if earlier {
            self.inner.wake.notify_one();
        }
    }

    /// fsyncs now on the caller's thread (rolls, metadata); a failure poisons the syncer.
    pub(crate) fn sync_now(&self, file: &File) -> Result<()> {
        self.check()?;
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        fdatasync(file).map_err(|e| self.inner.poison(&e))
    }

    /// Flushes the whole filesystem holding `any` (one syscall instead of one fsync per file);
    /// a failure poisons the syncer.
    pub(crate) fn sync_fs(&self, any: &File) -> Result<()> {
        use std::os::fd::AsRawFd;
        self.check()?;
        self.inner.fsyncs.fetch_add(1, Ordering::Relaxed);
        // SAFETY: syncfs only reads the descriptor, which `any` keeps open.
        if unsafe { libc::syncfs(any.as_raw_fd()) } != 0 {
            return Err(self.inner.poison(&io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Records a failure that leaves the on-disk state unknown.
    pub(crate) fn poison(&self, e: &io::Error) -> StorageError {
        self.inner.poison(e)
    }

    /// Number of fsyncs issued.
    pub(crate) fn fsyncs(&self) -> u64 {
        self.inner.fsyncs.load(Ordering::Relaxed)
    }

    /// Syncs everything still pending and stops the thread.
    pub(crate) fn shutdown(&self) {
        self.inner.state.lock().shutdown = true;
        self.inner.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn poison(&self, e: &io::Error) -> StorageError {
        tracing::error!(error = %e, "fsync failed; refusing writes until reopened");
        let err = self.gate.poison(format!("fsync failed: {e}"));
        self.done.send_modify(|d| d.poisoned = true);
        err
    }
}

/// Rounds with at least this many files use one `syncfs` instead of an fsync per file. On ext4
/// here, 64 files synced by 16 threads at once reached 4.5 times the rate of one at a time, and
/// one syncfs 9 times; the price is that syncfs also writes back other dirty data of the
/// filesystem (for example topics with `os` durability), so small rounds keep per-file fsyncs.
const SYNCFS_FILES: usize = 8;

/// Makes every file in `files` durable with one `syncfs` of the filesystem holding them (all
/// of an engine's files live under one root).
fn syncfs_covering(files: &[Arc<File>]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    fail::fail_point!("storage::before_fsync");
    fail::fail_point!("storage::fsync", |_| Err(io::Error::other(
        "injected fsync failure"
    )));
    #[cfg(feature = "testkit")]
    let lens = files
        .iter()
        .map(|f| f.metadata())
        .collect::<io::Result<Vec<_>>>()?;
    // SAFETY: syncfs only reads the descriptor, which the Arc keeps open.
    if unsafe { libc::syncfs(files[0].as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[cfg(feature = "testkit")]
    lens.iter().for_each(audit::record);
    Ok(())
}

/// Threads that fsync the files of one round at the same time.
const FSYNC_WORKERS: usize = 8;

/// A round's files being fsynced by the workers.
struct RoundJob {
    files: Vec<Arc<File>>,
    next: std::sync::atomic::AtomicUsize,
    done: Mutex<(usize, Option<io::Error>)>,
    finished: Condvar,
}

impl RoundJob {
    /// Takes files off the round until none are left; returns whether this call finished it.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(file) = self.files.get(i) else {
                return;
            };
            let r = fdatasync(file);
            let mut d = self.done.lock();
            d.0 += 1;
            if let Err(e) = r {
                d.1.get_or_insert(e);
            }
            if d.0 == self.files.len() {
                self.finished.notify_all();
            }
        }
    }
}

/// A fixed pool of threads that help fsync a round's files concurrently, so the filesystem
/// can fold them into fewer journal commits (ext4 and xfs batch concurrent fsyncs).
struct FsyncPool {
    /// The current round's job and its number.
    job: Mutex<(u64, Option<Arc<RoundJob>>)>,
    wake: Condvar,
    stop: std::sync::atomic::AtomicBool,
}

impl FsyncPool {
    fn start(name: &str) -> Arc<FsyncPool> {
        let pool = Arc::new(FsyncPool {
            job: Mutex::new((0, None)),
            wake: Condvar::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        for i in 0..FSYNC_WORKERS - 1 {
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("{name}-fsync-{i}"))
                .spawn(move || pool.serve())
                .expect("spawn fsync worker");
        }
        pool
    }

    fn serve(&self) {
        let mut seen = 0;
        loop {
            let job = {
                let mut g = self.job.lock();
                loop {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    match &g.1 {
                        Some(j) if g.0 != seen => {
                            seen = g.0;
                            break j.clone();
                        }
                        _ => self.wake.wait(&mut g),
                    }
                }
            };
            job.work();
        }
    }

    /// fsyncs every file: one at a time, a few at once, or — for many files, which cannot
    /// share an fsync otherwise — with one `syncfs` of their filesystem. Returns the number of
    /// sync calls made.
    fn fsync_all(&self, files: Vec<Arc<File>>) -> io::Result<u64> {
        if files.len() <= 1 {
            files.iter().try_for_each(|f| fdatasync(f))?;
            return Ok(files.len() as u64);
        }
        if files.len() >= SYNCFS_FILES {
            syncfs_covering(&files)?;
            return Ok(1);
        }
        let job = Arc::new(RoundJob {
            files,
            next: std::sync::atomic::AtomicUsize::new(0),
            done: Mutex::new((0, None)),
            finished: Condvar::new(),
        });
        {
            let mut g = self.job.lock();
            g.0 += 1;
            g.1 = Some(job.clone());
        }
        self.wake.notify_all();
        job.work();
        let mut d = job.done.lock();
        while d.0 < job.files.len() {
            job.finished.wait(&mut d);
        }
        self.job.lock().1 = None;
        match d.1.take() {
            Some(e) => Err(e),
            None => Ok(job.files.len() as u64),
        }
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _g = self.job.lock();
        self.wake.notify_all();
    }
}

fn run(inner: &Inner, name: &str) {
    let pool = FsyncPool::start(name);
    let _stop = StopOnDrop(&pool);
    loop {
        let (round, files, shutdown) = {
            let mut s = inner.state.lock();
            loop {
                let now = Instant::now();
                let due = s.later.values().any(|(d, _)| *d <= now);
                if !s.now.is_empty() || due || s.shutdown {
                    break;
                }
                match s.later.values().map(|(d, _)| *d).min() {
                    Some(next) => {
                        inner.wake.wait_until(&mut s, next);
                    }
                    None => inner.wake.wait(&mut s),
                }
            }
            let now = Instant::now();
            let mut files: HashMap<usize, Arc<File>> = std::mem::take(&mut s.now);
            let shutdown = s.shutdown;
            s.later.retain(|key, (deadline, file)| {
                if *deadline <= now || shutdown {
                    files.insert(*key, file.clone());
                    false
                } else {
                    true
                }
            });
            let round = s.filling;
            s.filling += 1;
            (round, files, shutdown)
        };
        // A round counts as done only if its files were really synced: once poisoned, later
        // rounds are not attempted and their waiters get the error, never an acknowledgement.
        if inner.gate.poisoned().is_none() {
            let files: Vec<Arc<File>> = files.values().cloned().collect();
            match pool.fsync_all(files) {
                Ok(calls) => {
                    inner.fsyncs.fetch_add(calls, Ordering::Relaxed);
                    inner.done.send_modify(|d| d.round = d.round.max(round));
                }
                Err(e) => {
                    inner.poison(&e);
                }
            }
        }
        drop(files);
        if shutdown {
            return;
        }
    }
}

struct StopOnDrop<'a>(&'a FsyncPool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}
