#!/usr/bin/env python3
"""Prints the benchmark results in a JSONL file as Markdown tables: one table for the storage
benchmark's lines, one for `strata-bench kafka`'s and one for `strata-bench mqtt`'s, for those
the file holds.

    scripts/bench-report.py RESULTS.jsonl            one row per line, in file order
    scripts/bench-report.py --median RESULTS.jsonl   one row per label: the median of each column
"""
import json
import statistics
import sys


def fmt(v, digits=0):
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


COLUMNS = [
    ("case", lambda d: d["label"]),
    ("MB/s", lambda d: fmt(d["mb_per_s"], 1)),
    ("ops/s", lambda d: fmt(d["reads_per_s"] if d["mode"] == "read" else d["appends_per_s"])),
    ("records/s", lambda d: fmt(d["records_per_s"])),
    ("p50 µs", lambda d: fmt(d["p50_us"], 1)),
    ("p99 µs", lambda d: fmt(d["p99_us"], 1)),
    ("raw MB/s", lambda d: fmt(d["raw_mb_per_s"], 1)),
    ("ratio", lambda d: fmt(d["ratio"], 2)),
    ("RSS/shard", lambda d: fmt(d["rss_bytes_per_shard"]) if d["shards"] > 1 else "—"),
    ("reopen ms", lambda d: fmt(d["open_ms"]) + (" (crash)" if d.get("reopen_after") == "crash" else "")),
]

NUMERIC = ["mb_per_s", "appends_per_s", "reads_per_s", "records_per_s", "p50_us", "p99_us",
           "raw_mb_per_s", "ratio", "rss_bytes_per_shard", "open_ms"]


def ms(v):
    return fmt(None if v is None else v / 1000.0, 2)


KAFKA_COLUMNS = [
    ("case", lambda d: d["label"]),
    ("msgs/s", lambda d: fmt(d["msgs_per_s"])),
    ("MB/s", lambda d: fmt(d["mb_per_s"], 1)),
    ("rate asked", lambda d: fmt(d["rate_target"])),
    ("latency of", lambda d: d["latency_of"] or "—"),
    ("p50 ms", lambda d: ms(d["p50_us"])),
    ("p99 ms", lambda d: ms(d["p99_us"])),
    ("p999 ms", lambda d: ms(d["p999_us"])),
    ("engine MB/s", lambda d: fmt(d["engine_mb_per_s"], 1)),
    ("ratio", lambda d: fmt(d["ratio"], 2)),
]

KAFKA_NUMERIC = ["msgs_per_s", "mb_per_s", "rate_target", "p50_us", "p99_us", "p999_us",
                 "engine_mb_per_s", "ratio"]


MQTT_COLUMNS = [
    ("case", lambda d: d["label"]),
    ("server", lambda d: d["server"]),
    ("msgs/s", lambda d: fmt(d["msgs_per_s"])),
    ("lost", lambda d: fmt(d["lost"])),
    ("p50 ms", lambda d: ms(d["p50_us"])),
    ("p99 ms", lambda d: ms(d["p99_us"])),
    ("p999 ms", lambda d: ms(d["p999_us"])),
    ("KiB/conn", lambda d: fmt(d["kib_per_connection"], 2)),
    ("÷ mosquitto", lambda d: fmt(d["vs_mosquitto"], 2)),
]

MQTT_NUMERIC = ["msgs_per_s", "lost", "p50_us", "p99_us", "p999_us", "kib_per_connection",
                "vs_mosquitto"]


def median_rows(rows, numeric):
    by_label = {}
    for d in rows:
        by_label.setdefault((d["label"], d.get("server")), []).append(d)
    out = []
    for (label, _), group in by_label.items():
        m = dict(group[0])
        for k in numeric:
            vals = [g[k] for g in group if g.get(k) is not None]
            m[k] = statistics.median(vals) if vals else None
        m["label"] = f"{label} (median of {len(group)})"
        out.append(m)
    return out


def main():
    args = sys.argv[1:]
    median = "--median" in args
    path = [a for a in args if not a.startswith("--")][0]
    rows = [json.loads(line) for line in open(path) if line.strip()]
    tables = [
        ([d for d in rows if d.get("bench") not in ("kafka", "mqtt")], COLUMNS, NUMERIC),
        ([d for d in rows if d.get("bench") == "kafka"], KAFKA_COLUMNS, KAFKA_NUMERIC),
        ([d for d in rows if d.get("bench") == "mqtt"], MQTT_COLUMNS, MQTT_NUMERIC),
    ]
    first = True
    for some, columns, numeric in tables:
        if not some:
            continue
        if median:
            some = median_rows(some, numeric)
        if not first:
            print()
        first = False
        print("| " + " | ".join(c for c, _ in columns) + " |")
        print("|" + "---|" * len(columns))
        for d in some:
            print("| " + " | ".join(f(d) for _, f in columns) + " |")


if __name__ == "__main__":
    main()
