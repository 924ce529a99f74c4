#!/usr/bin/env python3
"""Prints the storage benchmark results in a JSONL file as Markdown tables.

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


def median_rows(rows):
    by_label = {}
    for d in rows:
        by_label.setdefault(d["label"], []).append(d)
    out = []
    for label, group in by_label.items():
        m = dict(group[0])
        for k in NUMERIC:
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
    if median:
        rows = median_rows(rows)
    print("| " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for d in rows:
        print("| " + " | ".join(f(d) for _, f in COLUMNS) + " |")


if __name__ == "__main__":
    main()
