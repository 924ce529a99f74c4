//! Group commit for RocksDB's write-ahead log.
//!
//! Appends write with `sync = false` under their shard's lock, release it, then wait here. One
//! thread syncs the WAL (`FlushWAL(true)`) for every append queued before the sync started, so
//! concurrent appends to any shards share one fsync, and no tokio worker ever blocks on it. The
//! same thread syncs every `flush.ms` for topics with interval durability.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocksdb::{DBWithThreadMode, MultiThreaded};
use strata_storage::WriteGate;
use tokio::sync::oneshot;

type Db = DBWithThreadMode<MultiThreaded>;
type Waiter = oneshot::Sender<Result<(), String>>;

/// Handle to the sync thread.
#[derive(Debug)]
pub struct WalSync {
    tx: Mutex<Option<Sender<Waiter>>>,
    /// Shortest `flush.ms` among interval-durability shards (0: none).
    pub interval_ms: AtomicU32,
    /// Set by an unsynced write to an interval-durability shard.
    pub dirty: AtomicBool,
    /// The database's write gate: closed by `RocksDb::close`, poisoned by a failed sync (writes
    /// are then refused until the database is reopened).
    pub gate: WriteGate,
    pub fsyncs: AtomicU64,
}

impl WalSync {
    pub fn start(db: Weak<Db>) -> Arc<WalSync> {
        let (tx, rx) = channel();
        let sync = Arc::new(WalSync {
            tx: Mutex::new(Some(tx)),
            interval_ms: AtomicU32::new(0),
            dirty: AtomicBool::new(false),
            gate: WriteGate::new(),
            fsyncs: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&sync);
        std::thread::Builder::new()
            .name("strata-rocksdb-sync".into())
            .spawn(move || run(db, weak, rx))
            .expect("spawn the RocksDB sync thread");
        sync
    }

    /// Waits until every write made before this call is on stable storage.
    pub async fn sync(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        match &*self.tx.lock() {
            Some(sender) => sender
                .send(tx)
                .map_err(|_| "the WAL sync thread has stopped".to_owned())?,
            None => return Err("the engine is closed".into()),
        }
        rx.await
            .map_err(|_| "the WAL sync thread has stopped".to_owned())?
    }

    /// Stops the thread (it syncs whatever is pending first).
    pub fn stop(&self) {
        self.tx.lock().take();
    }

    fn record(&self, result: &Result<(), String>) {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = result {
            tracing::error!(error = %e, "RocksDB WAL sync failed; refusing writes until reopened");
            self.gate.poison(e.clone());
        }
    }
}

fn sync_wal(db: &Weak<Db>) -> Result<(), String> {
    match db.upgrade() {
        Some(db) => db.flush_wal(true).map_err(|e| e.to_string()),
        None => Err("the database is closed".into()),
    }
}

fn run(db: Weak<Db>, state: Weak<WalSync>, rx: Receiver<Waiter>) {
    let mut next_interval: Option<Instant> = None;
    loop {
        let Some(me) = state.upgrade() else { return };
        let interval = me.interval_ms.load(Ordering::Relaxed);
        drop(me);
        let wait = if interval == 0 {
            Duration::from_millis(200)
        } else {
            let due = *next_interval
                .get_or_insert_with(|| Instant::now() + Duration::from_millis(interval.into()));
            due.saturating_duration_since(Instant::now())
        };
        let first = match rx.recv_timeout(wait) {
            Ok(w) => Some(w),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(me) = state.upgrade() else { return };
        let mut waiters: Vec<Waiter> = first.into_iter().collect();
        waiters.extend(rx.try_iter());
        let due = next_interval.is_some_and(|t| t <= Instant::now());
        if waiters.is_empty() && !(due && me.dirty.load(Ordering::Relaxed)) {
            if due {
                next_interval = None;
            }
            continue;
        }
        if due || !waiters.is_empty() {
            next_interval = None;
        }
        me.dirty.store(false, Ordering::Relaxed);
        let result = match me.gate.poisoned() {
            Some(e) => Err(e.to_owned()),
            None => {
                let r = sync_wal(&db);
                me.record(&r);
                r
            }
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}
