//! The contract suite every engine passes unchanged.
//!
//! An engine's test file implements [`Harness`] (how to open the engine over its persistent
//! state, which spec its shards use, where its data files are) and invokes
//! [`contract_suite!`](crate::contract_suite), which expands to one `#[test]` per case in
//! [`cases`]. Cases that need persistence or data files are skipped, with a line on stderr, for
//! engines that have neither (the memory engine); everything else runs for every engine.

pub mod cases;
mod model;

pub use crate::file::sync::audit::{reset as reset_sync_audit, synced_len};

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use strata_record::{Batch, BatchBuilder, Compression, Record, split_batches};

use crate::{Engine, ReadChunk, Result, ShardId, StorageSpec};

/// A boxed future, as the cases return.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the suite needs to know about an engine under test.
pub trait Harness: Send + Sync {
    /// The spec for shards created by the suite (engine, model, durability); the suite changes
    /// retention and segment size on top of it.
    fn spec(&self) -> StorageSpec;

    /// Opens the engine over the harness's persistent state, recovering whatever an earlier
    /// instance left (a clean close, or a drop without close, which is how a crash looks).
    fn open(&self) -> BoxFut<'_, Result<Arc<dyn Engine>>>;

    /// True if data survives a reopen.
    fn persistent(&self) -> bool;

    /// Files holding batch bytes, oldest first, for crash images. Empty if the engine keeps no
    /// local files.
    fn data_files(&self) -> Vec<PathBuf>;

    /// True if the engine keeps batches in local files that a crash can damage (false for
    /// engines whose bytes live in a server, such as a database's).
    fn keeps_local_files(&self) -> bool {
        self.persistent()
    }
}

/// Runs one case on a fresh harness inside a multi-threaded runtime.
pub fn run<H: Harness>(harness: H, case: for<'a> fn(&'a dyn Harness) -> BoxFut<'a, ()>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(case(&harness));
}

/// Expands to one `#[test]` per contract case, each on a fresh harness from `$make`.
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@cases $make;
            ordering_and_offsets, read_from_middle, byte_budget, empty_and_out_of_range,
            timestamp_lookup, retention_by_bytes, retention_by_time, trim, truncate,
            delete_shard, reconfigure, many_shards_concurrently, one_shard_concurrently,
            reopen_after_clean_close, crash_keeps_acknowledged, crash_cut_tail,
            crash_garbage_tail, crash_flipped_bits, compressed_batches, reads_during_retention,
            model_based);
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::run($make, $crate::testkit::cases::$case);
            }
        )*
    };
}

/// Spawns a test server (a database, an object store) that dies with the test binary: its
/// parent-death signal is tied to a thread that never exits, because the signal follows the
/// spawning thread and test threads end early.
pub fn spawn_outliving_tests(cmd: std::process::Command) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = cmd;
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        tx.send(cmd.spawn()).expect("the caller waits");
        loop {
            std::thread::park();
        }
    });
    rx.recv()
        .expect("the spawning thread answers")
        .expect("start the test server")
}

/// A free TCP port below the ephemeral range (so that no client's outgoing connection takes it
/// before the server binds it).
pub fn free_port() -> u16 {
    for i in 0..500u32 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let r = t.subsec_nanos() ^ std::process::id().wrapping_mul(2_654_435_761) ^ i;
        let port = 20000 + (r % 12000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for a test server");
}

/// A shard id for tests.
pub fn shard(topic: &str, partition: u32) -> ShardId {
    ShardId::new(topic, partition).expect("valid shard name")
}

/// Value of record `i` of batch `tag`, `size` bytes long: recognisable when read back.
pub fn value(tag: u64, i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{tag}:{i}:").into_bytes();
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i as u64;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v.truncate(size.max(1));
    v
}

/// A batch of `records` records of `size` bytes each, timestamps `ts`, `ts+1`, …
pub fn batch(tag: u64, records: usize, size: usize, ts: i64) -> Batch {
    batch_with(Compression::None, tag, records, size, ts)
}

/// As [`batch`], compressed.
pub fn batch_with(codec: Compression, tag: u64, records: usize, size: usize, ts: i64) -> Batch {
    let mut b = BatchBuilder::new(codec);
    for i in 0..records {
        let key = format!("k{i}");
        b.push(
            Some(key.as_bytes()),
            Some(&value(tag, i, size)),
            &[("h", Some(b"v"))],
            ts + i as i64,
        );
    }
    Batch::validate(b.build().expect("non-empty batch")).expect("builder output validates")
}

/// Decodes a read chunk into (batch base offset, records), checking every batch's CRC.
pub fn decode(chunk: &ReadChunk) -> Vec<(u64, Vec<Record>)> {
    let bytes = chunk.to_bytes().expect("read pieces");
    assert_eq!(bytes.len(), chunk.len, "chunk length matches its pieces");
    let mut out = Vec::new();
    for raw in split_batches(bytes) {
        let raw: Bytes = raw.expect("read returns whole batches");
        let batch = Batch::validate(raw).expect("read returns valid batches");
        let records = batch
            .records()
            .expect("records decode")
            .collect::<std::result::Result<Vec<_>, _>>()
            .expect("records decode");
        out.push((batch.header().base_offset as u64, records));
    }
    out
}

/// Reads every record from `from` to the shard's next offset: (offset, value).
pub async fn read_all(engine: &dyn Engine, id: &ShardId, from: u64) -> Result<Vec<(u64, Bytes)>> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let chunk = engine.read(id, at, 64 * 1024).await?;
        if chunk.is_empty() {
            return Ok(out);
        }
        for (_, records) in decode(&chunk) {
            for r in records {
                let offset = r.offset as u64;
                if offset >= at {
                    out.push((offset, r.value.unwrap_or_default()));
                    at = offset + 1;
                }
            }
        }
    }
}
