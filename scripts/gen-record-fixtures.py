#!/usr/bin/env python3
"""Cross-checks strata-record against kafka-python, an independent RecordBatch v2 implementation.

Two modes:

  gen-record-fixtures.py [--out DIR]
      Builds batches with kafka-python's DefaultRecordBatchBuilder (all four codecs, plus the
      raw snappy that librdkafka writes) and writes NAME.bin (raw batch bytes, possibly several
      batches back to back) and NAME.json (the records they must decode to) into DIR, by
      default crates/record/tests/fixtures. Every file is decoded again with kafka-python
      before it is written, so the JSON is what kafka-python itself reads back.

  gen-record-fixtures.py --check DIR
      Decodes every DIR/NAME.bin with kafka-python and compares it with DIR/NAME.json. The
      strata-record test `kafka_python_fixtures` writes such a directory from batches built by
      strata_record::BatchBuilder. Exits non-zero on any mismatch.

Needs: pip install kafka-python python-snappy lz4 zstandard
"""

import argparse
import json
import pathlib
import struct
import sys

import kafka.codec
import kafka.record.default_records as default_records
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords
from kafka.record.util import calc_crc32c

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
CODEC_NAMES = {v: k for k, v in CODECS.items()}
BASE_TS = 1_700_000_000_000


# Values longer than this are described by length and CRC-32C instead of hex, to keep the
# committed fixtures small.
INLINE_MAX = 1024


def hexed(b):
    if b is None:
        return None
    b = bytes(b)
    if len(b) > INLINE_MAX:
        return {"len": len(b), "crc32c": calc_crc32c(b)}
    return b.hex()


def record(offset, ts, key, value, headers=()):
    return {"offset": offset, "timestamp": ts, "key": key, "value": value, "headers": list(headers)}


def varied_records():
    """Null and empty keys and values, headers with null values, a non-ASCII and a repeated
    header key, timestamps out of order, and one value large enough to span several
    compression blocks (xerial chunks are 32 KiB, LZ4 blocks 64 KiB)."""
    big = b"".join(b"strata-%06d;" % i for i in range(5500))
    return [
        (b"key-0", b"value-0" * 20, [("trace", b"abc"), ("empty", b""), ("null", None)]),
        (None, b"null key" * 20, []),
        (b"tombstone", None, []),
        (b"", b"", [("\u043a\u043b\u044e\u0447", "\u0437\u043d\u0430\u0447".encode())]),
        (b"dup", b"x" * 300, [("h", b"1"), ("h", b"2")]),
        (b"big", big, []),
    ], [BASE_TS, BASE_TS + 5, BASE_TS - 1000, BASE_TS + 70_000, BASE_TS + 1, BASE_TS + 2]


def build(codec, entries, timestamps, *, producer=(-1, -1, -1), transactional=False):
    pid, epoch, seq = producer
    b = DefaultRecordBatchBuilder(
        magic=2, compression_type=CODECS[codec], is_transactional=transactional,
        producer_id=pid, producer_epoch=epoch, base_sequence=seq, batch_size=1 << 30)
    for i, ((key, value, headers), ts) in enumerate(zip(entries, timestamps)):
        meta = b.append(i, timestamp=ts, key=key, value=value, headers=headers)
        assert meta is not None, "record did not fit"
    data = bytes(b.build())
    got = data[22] & 0x07
    # kafka-python silently falls back to no compression when it does not pay off.
    assert got == CODECS[codec], f"asked for {codec}, kafka-python wrote codec {got}"
    expected = {
        "base_offset": 0,
        "partition_leader_epoch": 0,
        "compression": codec,
        "timestamp_type": "create_time",
        "is_transactional": transactional,
        "producer_id": pid,
        "producer_epoch": epoch,
        "base_sequence": seq,
        "base_timestamp": timestamps[0],
        "max_timestamp": max(timestamps),
        "last_offset_delta": len(entries) - 1,
        "records_count": len(entries),
        "records": [
            record(i, ts, hexed(k), hexed(v), [[h.encode().hex(), hexed(hv)] for h, hv in hs])
            for i, ((k, v, hs), ts) in enumerate(zip(entries, timestamps))
        ],
    }
    return data, expected


def fix_crc(data):
    data = bytearray(data)
    struct.pack_into(">I", data, 17, calc_crc32c(memoryview(data)[21:]))
    return bytes(data)


def rebase(data, expected, base_offset, leader_epoch):
    """What a broker does on append: both fields sit outside the CRC."""
    data = bytearray(data)
    struct.pack_into(">q", data, 0, base_offset)
    struct.pack_into(">i", data, 12, leader_epoch)
    expected = dict(expected, base_offset=base_offset, partition_leader_epoch=leader_epoch)
    expected["records"] = [dict(r, offset=r["offset"] + base_offset) for r in expected["records"]]
    return bytes(data), expected


def fixtures():
    entries, stamps = varied_records()
    out = {}
    for codec in CODECS:
        out[f"varied_{codec}"] = [build(codec, entries, stamps, producer=(1234, 5, 42))]

    # librdkafka and sarama send raw snappy without the xerial framing.
    real_encode = default_records.snappy_encode
    default_records.snappy_encode = lambda d: kafka.codec.snappy_encode(d, xerial_compatible=False)
    try:
        out["raw_snappy"] = [build("snappy", entries, stamps)]
    finally:
        default_records.snappy_encode = real_encode
    assert not out["raw_snappy"][0][0][61:].startswith(b"\x82SNAPPY\x00")
    assert out["varied_snappy"][0][0][61:].startswith(b"\x82SNAPPY\x00")

    out["transactional_gzip"] = [build("gzip", entries[:3], stamps[:3], producer=(99, 0, 0),
                                       transactional=True)]

    # Brokers set LogAppendTime; readers must then report max_timestamp for every record.
    data, exp = build("lz4", entries[:4], stamps[:4])
    data = bytearray(data)
    data[22] |= 0x08
    data = fix_crc(data)
    append_time = exp["max_timestamp"]
    exp = dict(exp, timestamp_type="log_append_time",
               records=[dict(r, timestamp=append_time) for r in exp["records"]])
    out["log_append_time_lz4"] = [(data, exp)]

    # Offset deltas above 63 need two-byte varints.
    many = [(b"k%d" % i, b"v" * (i % 7), []) for i in range(300)]
    out["many_records_zstd"] = [build("zstd", many, [BASE_TS + i for i in range(300)])]

    # Several batches back to back, as in a produce request or a log segment.
    multi = []
    next_offset = 100
    for codec in ["none", "gzip", "snappy", "zstd"]:
        data, exp = build(codec, entries[:3], stamps[:3])
        multi.append(rebase(data, exp, next_offset, 7))
        next_offset += 3
    out["multi_batch"] = multi
    return out


def decode(data):
    """Everything kafka-python reads from a buffer of batches, in the JSON layout."""
    batches = []
    records = MemoryRecords(bytes(data))
    while records.has_next():
        batch = records.next_batch()
        assert batch.validate_crc(), "kafka-python rejects the CRC"
        batches.append({
            "base_offset": batch.base_offset,
            "partition_leader_epoch": batch.leader_epoch,
            "compression": CODEC_NAMES[batch.compression_type],
            "timestamp_type": ["create_time", "log_append_time"][batch.timestamp_type],
            "is_transactional": batch.is_transactional,
            "producer_id": batch.producer_id,
            "producer_epoch": batch.producer_epoch,
            "base_sequence": batch.base_sequence,
            "base_timestamp": batch.first_timestamp,
            "max_timestamp": batch.max_timestamp,
            "last_offset_delta": batch.last_offset_delta,
            "records_count": batch.records_count,
            "records": [
                record(r.offset, r.timestamp, hexed(r.key), hexed(r.value),
                       [[k.encode().hex(), hexed(v)] for k, v in r.headers])
                for r in batch
            ],
        })
    return batches


def compare(name, got, want):
    problems = []
    if len(got) != len(want):
        return [f"{name}: {len(got)} batches decoded, {len(want)} expected"]
    for i, (g, w) in enumerate(zip(got, want)):
        for field in w:
            if field == "records":
                continue
            if g.get(field) != w[field]:
                problems.append(f"{name} batch {i}: {field} is {g.get(field)!r}, expected {w[field]!r}")
        if len(g["records"]) != len(w["records"]):
            problems.append(f"{name} batch {i}: {len(g['records'])} records, expected {len(w['records'])}")
        for j, (gr, wr) in enumerate(zip(g["records"], w["records"])):
            if gr != wr:
                problems.append(f"{name} batch {i} record {j}: got {gr}, expected {wr}")
    return problems


def check(directory):
    directory = pathlib.Path(directory)
    bins = sorted(directory.glob("*.bin"))
    if not bins:
        print(f"no .bin files in {directory}", file=sys.stderr)
        return 1
    problems = []
    for path in bins:
        want = json.loads(path.with_suffix(".json").read_text())["batches"]
        try:
            got = decode(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - report every file, not just the first failure
            problems.append(f"{path.name}: kafka-python failed to decode: {e!r}")
            continue
        problems += compare(path.stem, got, want)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"checked {len(bins)} files with kafka-python: {len(problems)} problems")
    return 1 if problems else 0


def dump(source, batches):
    """JSON with one record per line: diffable without being enormous."""
    lines = ["{", f' "source": {json.dumps(source)},', ' "batches": [']
    for i, batch in enumerate(batches):
        head = json.dumps({k: v for k, v in batch.items() if k != "records"})
        lines.append(f"  {head[:-1]}, \"records\": [")
        lines.append(",\n".join(f"   {json.dumps(r)}" for r in batch["records"]))
        lines.append("  ]}" + ("," if i + 1 < len(batches) else ""))
    lines += [" ]", "}", ""]
    return "\n".join(lines)


def generate(out_dir):
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, batches in fixtures().items():
        data = b"".join(d for d, _ in batches)
        expected = [e for _, e in batches]
        problems = compare(name, decode(data), expected)
        assert not problems, "\n".join(problems)
        (out_dir / f"{name}.bin").write_bytes(data)
        (out_dir / f"{name}.json").write_text(dump("kafka-python DefaultRecordBatchBuilder", expected))
        print(f"wrote {name}: {len(batches)} batch(es), {len(data)} bytes")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent.parent
                                             / "crates/record/tests/fixtures"))
    parser.add_argument("--check", metavar="DIR", help="decode DIR/*.bin and compare with DIR/*.json")
    args = parser.parse_args()
    return check(args.check) if args.check else generate(args.out)


if __name__ == "__main__":
    sys.exit(main())
