//! Cross-checks against kafka-python, an independent RecordBatch v2 implementation.
//!
//! Kafka-python → us: `tests/fixtures/*.bin` were written by kafka-python
//! (`scripts/gen-record-fixtures.py`) and must validate and decode to `*.json`.
//!
//! Us → kafka-python: `builder_output_decodes_with_kafka_python` writes batches built here, in
//! the same layout, and runs the script's `--check` mode on them when a Python with
//! kafka-python is available (`STRATA_KAFKA_PYTHON`, default `python3`).

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use serde_json::{Value, json};
use strata_record::{Batch, BatchBuilder, Compression, Record, TimestampType, split_batches};

/// Must match INLINE_MAX in the script: longer values are described by length and CRC-32C.
const INLINE_MAX: usize = 1024;

/// The crate's directory as cargo gives it when running the test (a build reused from another
/// checkout would carry that checkout's compile-time path).
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn fixtures_dir() -> PathBuf {
    crate_dir().join("tests/fixtures")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn describe(b: Option<&[u8]>) -> Value {
    match b {
        None => Value::Null,
        Some(b) if b.len() > INLINE_MAX => json!({"len": b.len(), "crc32c": crc32c::crc32c(b)}),
        Some(b) => Value::String(hex(b)),
    }
}

fn assert_bytes(what: &str, want: &Value, got: Option<&[u8]>) {
    match (want, got) {
        (Value::Null, None) => {}
        (Value::String(h), Some(g)) => assert_eq!(g, unhex(h), "{what}"),
        (Value::Object(o), Some(g)) => {
            assert_eq!(g.len() as u64, o["len"].as_u64().unwrap(), "{what} length");
            assert_eq!(
                u64::from(crc32c::crc32c(g)),
                o["crc32c"].as_u64().unwrap(),
                "{what} crc32c"
            );
        }
        _ => panic!("{what}: expected {want}, got {got:?}"),
    }
}

fn assert_record(what: &str, want: &Value, got: &Record) {
    assert_eq!(
        got.offset,
        want["offset"].as_i64().unwrap(),
        "{what} offset"
    );
    assert_eq!(
        got.timestamp,
        want["timestamp"].as_i64().unwrap(),
        "{what} timestamp"
    );
    assert_bytes(&format!("{what} key"), &want["key"], got.key.as_deref());
    assert_bytes(
        &format!("{what} value"),
        &want["value"],
        got.value.as_deref(),
    );
    let headers = want["headers"].as_array().unwrap();
    assert_eq!(got.headers.len(), headers.len(), "{what} header count");
    for (i, (h, w)) in got.headers.iter().zip(headers).enumerate() {
        assert_bytes(&format!("{what} header {i} key"), &w[0], Some(&h.key));
        assert_bytes(
            &format!("{what} header {i} value"),
            &w[1],
            h.value.as_deref(),
        );
    }
}

/// Validates and decodes `name.bin` and compares every field with `name.json`.
fn check_file(dir: &Path, name: &str) {
    let data = Bytes::from(std::fs::read(dir.join(format!("{name}.bin"))).unwrap());
    let doc: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let want = doc["batches"].as_array().unwrap();
    let parts: Vec<Bytes> = split_batches(data).collect::<Result<_, _>>().unwrap();
    assert_eq!(parts.len(), want.len(), "{name}: batch count");
    for (i, (part, w)) in parts.into_iter().zip(want).enumerate() {
        let what = format!("{name} batch {i}");
        let batch = Batch::validate(part).unwrap_or_else(|e| panic!("{what}: {e}"));
        let h = batch.header();
        let int = |k: &str| {
            w[k].as_i64()
                .unwrap_or_else(|| panic!("{what}: {k} missing"))
        };
        assert_eq!(h.base_offset, int("base_offset"), "{what}");
        assert_eq!(
            i64::from(h.partition_leader_epoch),
            int("partition_leader_epoch"),
            "{what}"
        );
        assert_eq!(
            h.compression().unwrap().to_string(),
            w["compression"],
            "{what}"
        );
        let ts_type = match h.timestamp_type() {
            TimestampType::CreateTime => "create_time",
            TimestampType::LogAppendTime => "log_append_time",
        };
        assert_eq!(ts_type, w["timestamp_type"], "{what}");
        assert_eq!(
            h.is_transactional(),
            w["is_transactional"].as_bool().unwrap(),
            "{what}"
        );
        assert_eq!(h.producer_id, int("producer_id"), "{what}");
        assert_eq!(i64::from(h.producer_epoch), int("producer_epoch"), "{what}");
        assert_eq!(i64::from(h.base_sequence), int("base_sequence"), "{what}");
        assert_eq!(h.base_timestamp, int("base_timestamp"), "{what}");
        assert_eq!(h.max_timestamp, int("max_timestamp"), "{what}");
        assert_eq!(
            i64::from(h.last_offset_delta),
            int("last_offset_delta"),
            "{what}"
        );
        assert_eq!(i64::from(h.records_count), int("records_count"), "{what}");

        let records: Vec<Record> = batch
            .records()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let want_records = w["records"].as_array().unwrap();
        assert_eq!(records.len(), want_records.len(), "{what}: record count");
        for (j, (r, wr)) in records.iter().zip(want_records).enumerate() {
            assert_record(&format!("{what} record {j}"), wr, r);
        }
    }
}

fn fixture_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            (p.extension()? == "json")
                .then(|| p.file_stem().unwrap().to_string_lossy().into_owned())
        })
        .collect();
    names.sort();
    names
}

#[test]
fn kafka_python_batches_decode_identically() {
    let names = fixture_names();
    // Guards against an empty or half-generated fixture directory passing vacuously.
    for expected in [
        "varied_none",
        "varied_gzip",
        "varied_snappy",
        "varied_lz4",
        "varied_zstd",
        "raw_snappy",
        "multi_batch",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "fixture {expected} missing"
        );
    }
    for name in names {
        check_file(&fixtures_dir(), &name);
    }
}

#[test]
fn fixtures_cover_both_snappy_framings() {
    let read = |n: &str| std::fs::read(fixtures_dir().join(n)).unwrap();
    let xerial = b"\x82SNAPPY\x00";
    assert!(
        read("varied_snappy.bin")[61..].starts_with(xerial),
        "kafka-python default is xerial"
    );
    assert!(
        !read("raw_snappy.bin")[61..].starts_with(xerial),
        "raw snappy fixture is framed"
    );
}

#[test]
fn kafka_python_batches_survive_offset_rewrite() {
    for name in fixture_names() {
        let data = Bytes::from(std::fs::read(fixtures_dir().join(format!("{name}.bin"))).unwrap());
        for part in split_batches(data) {
            let batch = Batch::validate(part.unwrap()).unwrap();
            let n = batch.record_count();
            let stored = batch.into_stored(1 << 40, 99);
            let again = Batch::validate(stored).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(again.header().last_offset(), (1 << 40) + i64::from(n) - 1);
            let first = again.records().unwrap().next().unwrap().unwrap();
            assert_eq!(first.offset, 1 << 40, "{name}");
        }
    }
}

/// One record as pushed into our builder, kept to write the expected JSON independently of
/// our reader.
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn varied_inputs() -> Vec<Input> {
    let base = 1_700_000_000_000;
    let big: Vec<u8> = (0..5500)
        .flat_map(|i| format!("strata-{i:06};").into_bytes())
        .collect();
    let r = |k: Option<&[u8]>, v: Option<&[u8]>, h: &[(&str, Option<&[u8]>)], ts| Input {
        key: k.map(<[u8]>::to_vec),
        value: v.map(<[u8]>::to_vec),
        headers: h
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec)))
            .collect(),
        timestamp: ts,
    };
    vec![
        r(
            Some(b"key-0"),
            Some(&b"value-0".repeat(20)),
            &[
                ("trace", Some(b"abc")),
                ("empty", Some(b"")),
                ("null", None),
            ],
            base,
        ),
        r(None, Some(&b"null key".repeat(20)), &[], base + 5),
        r(Some(b"tombstone"), None, &[], base - 1000),
        r(
            Some(b""),
            Some(b""),
            &[("ключ", Some("знач".as_bytes()))],
            base + 70_000,
        ),
        r(
            Some(b"dup"),
            Some(&[b'x'; 300]),
            &[("h", Some(b"1")), ("h", Some(b"2"))],
            base + 1,
        ),
        r(Some(b"big"), Some(&big), &[], base + 2),
    ]
}

struct Built {
    bytes: Bytes,
    json: Value,
}

fn build(
    codec: Compression,
    inputs: &[Input],
    configure: impl FnOnce(BatchBuilder) -> BatchBuilder,
) -> Built {
    let mut b = configure(BatchBuilder::new(codec));
    for r in inputs {
        let headers: Vec<(&str, Option<&[u8]>)> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
            .collect();
        b.push(r.key.as_deref(), r.value.as_deref(), &headers, r.timestamp);
    }
    let bytes = b.build().unwrap();
    let h = strata_record::BatchHeader::parse(&bytes).unwrap();
    let log_append = h.timestamp_type() == TimestampType::LogAppendTime;
    let max_ts = inputs.iter().map(|r| r.timestamp).max().unwrap();
    let records: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({
                "offset": i,
                "timestamp": if log_append { max_ts } else { r.timestamp },
                "key": describe(r.key.as_deref()),
                "value": describe(r.value.as_deref()),
                "headers": r.headers.iter().map(|(k, v)| json!([hex(k.as_bytes()), describe(v.as_deref())])).collect::<Vec<_>>(),
            })
        })
        .collect();
    let json = json!({
        "base_offset": 0,
        "partition_leader_epoch": -1,
        "compression": codec.to_string(),
        "timestamp_type": if log_append { "log_append_time" } else { "create_time" },
        "is_transactional": h.is_transactional(),
        "producer_id": h.producer_id,
        "producer_epoch": h.producer_epoch,
        "base_sequence": h.base_sequence,
        "base_timestamp": inputs[0].timestamp,
        "max_timestamp": max_ts,
        "last_offset_delta": inputs.len() - 1,
        "records_count": inputs.len(),
        "records": records,
    });
    Built { bytes, json }
}

fn rebase(b: Built, base_offset: i64, epoch: i32) -> Built {
    let bytes = Batch::validate(b.bytes)
        .unwrap()
        .into_stored(base_offset, epoch);
    let mut json = b.json;
    json["base_offset"] = json!(base_offset);
    json["partition_leader_epoch"] = json!(epoch);
    for r in json["records"].as_array_mut().unwrap() {
        r["offset"] = json!(r["offset"].as_i64().unwrap() + base_offset);
    }
    Built { bytes, json }
}

fn write(dir: &Path, name: &str, batches: Vec<Built>) {
    let data: Vec<u8> = batches.iter().flat_map(|b| b.bytes.to_vec()).collect();
    let doc = json!({"source": "strata_record::BatchBuilder", "batches": batches.into_iter().map(|b| b.json).collect::<Vec<_>>()});
    std::fs::write(dir.join(format!("{name}.bin")), data).unwrap();
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(&doc).unwrap(),
    )
    .unwrap();
}

fn write_our_batches(dir: &Path) {
    let inputs = varied_inputs();
    for codec in Compression::ALL {
        write(
            dir,
            &format!("ours_{codec}"),
            vec![build(codec, &inputs, |b| b.producer(1234, 5, 42))],
        );
    }
    write(
        dir,
        "ours_transactional",
        vec![build(Compression::Gzip, &inputs[..3], |b| {
            b.producer(99, 0, 0).transactional(true)
        })],
    );
    write(
        dir,
        "ours_log_append_time",
        vec![build(Compression::Lz4, &inputs[..4], |b| {
            b.timestamp_type(TimestampType::LogAppendTime)
        })],
    );
    let many: Vec<Input> = (0..300)
        .map(|i| Input {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(vec![b'v'; i % 7]),
            headers: vec![],
            timestamp: 1_700_000_000_000 + i as i64,
        })
        .collect();
    write(
        dir,
        "ours_many_records",
        vec![build(Compression::Zstd, &many, |b| b)],
    );
    let multi = Compression::ALL
        .iter()
        .enumerate()
        .map(|(i, &c)| rebase(build(c, &inputs[..3], |b| b), 100 + 3 * i as i64, 7))
        .collect();
    write(dir, "ours_multi_batch", multi);
}

#[test]
fn builder_output_decodes_with_kafka_python() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = match std::env::var_os("STRATA_RECORD_EXPORT_DIR") {
        Some(d) => PathBuf::from(d),
        None => tmp.path().to_path_buf(),
    };
    std::fs::create_dir_all(&dir).unwrap();
    write_our_batches(&dir);
    // The JSON must describe our batches correctly before it can judge kafka-python.
    for name in [
        "ours_none",
        "ours_snappy",
        "ours_log_append_time",
        "ours_multi_batch",
        "ours_many_records",
    ] {
        check_file(&dir, name);
    }

    let explicit = std::env::var_os("STRATA_KAFKA_PYTHON");
    let python = explicit.clone().unwrap_or_else(|| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import kafka, snappy, lz4, zstandard"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            explicit.is_none(),
            "STRATA_KAFKA_PYTHON={python:?} cannot import kafka-python and the codecs"
        );
        eprintln!(
            "skipping the kafka-python check: set STRATA_KAFKA_PYTHON to a Python with kafka-python, python-snappy, lz4 and zstandard"
        );
        return;
    }
    let script = crate_dir().join("../../scripts/gen-record-fixtures.py");
    let out = Command::new(&python)
        .arg(script)
        .arg("--check")
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka-python disagrees:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checked 9 files"), "{stdout}");
}
