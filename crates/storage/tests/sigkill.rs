//! SIGKILL in the middle of fsync-durable appends loses nothing acknowledged.
//!
//! The test re-runs its own binary as a child writer (the ignored test `child_writer`), which
//! appends from several tasks and prints each acknowledged batch; the parent kills it with
//! SIGKILL mid-stream, reopens the engine and checks every acknowledged batch.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_storage::file::{DedicatedEngine, FileOptions, SharedEngine};
use strata_storage::testkit::{batch, read_all, shard, value};
use strata_storage::{Durability, Engine, Model, StorageSpec};

const SHARDS: u32 = 4;
const TASKS: u64 = 8;

fn open(dir: &str, model: &str) -> Arc<dyn Engine> {
    let options = FileOptions {
        journal_file_bytes: 1 << 20,
        checkpoint_bytes: 256 << 10,
        ..FileOptions::default()
    };
    match model {
        "dedicated" => Arc::new(DedicatedEngine::open(dir, options).unwrap()),
        _ => Arc::new(SharedEngine::open(dir, options).unwrap()),
    }
}

fn spec(model: &str) -> StorageSpec {
    StorageSpec {
        model: if model == "dedicated" {
            Model::Dedicated
        } else {
            Model::Shared
        },
        durability: Durability::Fsync,
        segment_bytes: 256 << 10,
        ..StorageSpec::default()
    }
}

/// Run only as a child of `sigkill_loses_nothing_acknowledged`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the SIGKILL test as its child process"]
async fn child_writer() {
    let dir = std::env::var("STRATA_CHILD_DIR").unwrap();
    let model = std::env::var("STRATA_CHILD_MODEL").unwrap();
    let e = open(&dir, &model);
    for p in 0..SHARDS {
        e.create_shard(&shard("kill", p), &spec(&model))
            .await
            .unwrap();
    }
    println!("ready");
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            let id = shard("kill", (t % u64::from(SHARDS)) as u32);
            for i in 0.. {
                let tag = t * 1_000_000 + i;
                let a = e.append(&id, batch(tag, 3, 200, 0)).await.unwrap();
                println!("ack {} {} {}", id.partition(), a.base_offset, tag);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

fn run(model: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STRATA_CHILD_DIR", dir.path())
        .env("STRATA_CHILD_MODEL", model)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let started = Instant::now();
    while let Some(Ok(line)) = lines.next() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if let ["ack", p, offset, tag] = parts[..] {
            acked.insert(
                (p.parse().unwrap(), offset.parse().unwrap()),
                tag.parse().unwrap(),
            );
        }
        if acked.len() >= 600 || started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
    // SAFETY: kill(2) with a pid we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(
        acked.len() >= 100,
        "{model}: only {} acknowledgements",
        acked.len()
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let e = open(dir.path().to_str().unwrap(), model);
        for p in 0..SHARDS {
            let got: BTreeMap<u64, bytes::Bytes> = read_all(&*e, &shard("kill", p), 0)
                .await
                .unwrap()
                .into_iter()
                .collect();
            for (&(_, offset), &tag) in acked.range((p, 0)..(p + 1, 0)) {
                for r in 0..3 {
                    let v = got.get(&(offset + r)).unwrap_or_else(|| {
                        panic!(
                            "{model}: acknowledged offset {} of shard {p} lost",
                            offset + r
                        )
                    });
                    assert_eq!(v.as_ref(), &value(tag, r as usize, 200)[..]);
                }
            }
        }
    });
}

#[test]
fn sigkill_loses_nothing_acknowledged_dedicated() {
    run("dedicated");
}

#[test]
fn sigkill_loses_nothing_acknowledged_shared() {
    run("shared");
}
