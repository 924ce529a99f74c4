//! Tiny benchmark runs against the memory and dedicated file engines: every run must produce a
//! JSON line with every field present and the measured numbers positive.

use clap::Parser;
use serde_json::Value;
use strata_bench::storage::{self, StorageArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: StorageArgs,
}

/// Fields that every line carries, whatever the mode (null allowed where noted in the README).
const FIELDS: &[&str] = &[
    "engine",
    "model",
    "shards",
    "batch_bytes",
    "record_bytes",
    "durability",
    "concurrency",
    "mode",
    "cache",
    "total_bytes",
    "secs",
    "mb_per_s",
    "appends_per_s",
    "records_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "raw_mb_per_s",
    "raw_appends_per_s",
    "ratio",
    "rss_bytes_per_shard",
    "open_ms",
    "fsyncs",
    "read_path",
    "cores",
    "kernel",
];

/// Fields that must be positive numbers in every successful run.
const POSITIVE: &[&str] = &[
    "shards",
    "total_bytes",
    "secs",
    "mb_per_s",
    "appends_per_s",
    "records_per_s",
    "p50_us",
    "p99_us",
    "p999_us",
    "raw_mb_per_s",
    "raw_appends_per_s",
    "ratio",
    "memcpy_mb_per_s",
    "cores",
];

/// Runs the bench with `flags` in a fresh temporary folder; returns the JSON line it wrote.
fn run(flags: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("out.jsonl");
    let argv = format!(
        "bench --dir {} --jsonl {} --total-bytes 256KiB {flags}",
        dir.path().display(),
        jsonl.display()
    );
    let args = Cli::parse_from(argv.split_whitespace()).args;
    let report = storage::run(args).unwrap_or_else(|e| panic!("{flags}: {e:#}"));
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "{flags}: one line per run");
    let line: Value = serde_json::from_str(lines[0]).unwrap();
    // Same line as the returned report (floats aside: parsing may round the last digit).
    assert_eq!(line["total_bytes"].as_u64(), Some(report.total_bytes));
    assert_eq!(line["mode"], report.mode);
    for field in FIELDS {
        assert!(line.get(field).is_some(), "{flags}: no field {field}");
    }
    for field in POSITIVE {
        let v = line[field].as_f64();
        assert!(
            v.is_some_and(|v| v > 0.0),
            "{flags}: {field} = {:?}",
            line[field]
        );
    }
    // The data directory is gone; only the results file is left.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{flags}: data directory not removed");
    line
}

#[test]
fn memory_engine_modes() {
    let append = run("--engine memory --shards 3");
    assert_eq!(append["durability"], "memory");
    assert_eq!(append["raw_kind"], "memcpy");
    assert!(append["read_path"].is_null());
    let read = run("--engine memory --mode read --shards 2 --concurrency 2");
    assert!(read["reads_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(read["cache"], "warm");
    let pairs = run("--engine memory --mode append-read --record-bytes 100");
    assert_eq!(pairs["runtime"], "current_thread");
    assert_eq!(pairs["latency_of"], "append+read");
}

#[test]
fn dedicated_file_engine_modes() {
    let append = run(
        "--engine file --durability fsync --batch-bytes 4KiB --shards 4 --concurrency 2 --reopen",
    );
    assert_eq!(append["raw_kind"], "pwrite");
    assert!(append["fsyncs"].as_u64().unwrap() > 0);
    assert!(append["open_ms"].as_f64().unwrap() > 0.0);
    let cold = run("--engine file --mode read --cache cold --read-path pread");
    assert_eq!(cold["read_path"], "pread");
    assert!(cold["open_ms"].as_f64().unwrap() > 0.0);
    let warm = run("--engine file --mode read --shards 2");
    assert!(warm["file_pieces"].as_u64().unwrap() > 0, "{warm}");
    run("--engine file --mode append-read --durability interval:5");
}

#[test]
fn impossible_runs_fail_with_a_reason() {
    let err = |flags: &str| {
        let argv = format!("bench --jsonl /dev/null {flags}");
        storage::run(Cli::parse_from(argv.split_whitespace()).args)
            .map(drop)
            .unwrap_err()
            .to_string()
    };
    assert!(err("--engine memory --durability fsync").contains("memory"));
    assert!(err("--shards 2 --concurrency 3").contains("--concurrency"));
    assert!(err("--engine s3").contains("--s3-bucket"));
    assert!(err("--tier").contains("--tier needs"));
    assert!(err("--engine mysql").contains("--mysql-url"));
}

#[test]
fn rocksdb_engine_modes() {
    let append = run("--engine rocksdb --durability fsync --shards 4 --concurrency 2 --reopen");
    assert_eq!(append["engine"], "rocksdb");
    assert!(append["fsyncs"].as_u64().unwrap() > 0);
    assert!(append["open_ms"].as_f64().unwrap() > 0.0);
    let read = run("--engine rocksdb --model shared --mode read --shards 2");
    assert!(read["reads_per_s"].as_f64().unwrap() > 0.0);
}
