#!/usr/bin/env bash
# Repeats the cases behind the storage targets in docs/benchmarks.md several times, because one
# run on a shared VM is one noisy sample; report medians of the lines it appends.
#
#   scripts/bench-targets.sh RESULTS.jsonl [REPEATS]
set -euo pipefail
results="${1:?usage: $0 RESULTS.jsonl [REPEATS]}"
reps="${2:-5}"
. "$(dirname "$0")/bench-common.sh"
bench_bins
data="${STRATA_BENCH_DIR:-$root/target/bench-data}"
mkdir -p "$data"
run() { "$STRATA_BENCH_BIN" storage --dir "$data" --jsonl "$results" "$@" > /dev/null; }
for i in $(seq "$reps"); do
  for m in dedicated shared; do
    run --label "target/$m/1MiB/fsync" --engine file --model $m --batch-bytes 1MiB \
      --total-bytes 512MiB --durability fsync
    run --label "target/$m/64x1KiB/fsync/64-appenders" --engine file --model $m \
      --durability fsync --shards 64 --concurrency 64 --total-bytes 16MiB
    run --label "target/$m/64x1KiB/fsync/1-appender" --engine file --model $m \
      --durability fsync --shards 64 --total-bytes 4MiB
  done
  run --label target/shared/1-shard --engine file --model shared --total-bytes 1GiB
  run --label target/shared/1000000-shards --engine file --model shared --shards 1000000 \
    --total-bytes 1GiB --reopen --crash
  run --label target/memory/append-read --engine memory --mode append-read --total-bytes 256MiB
  run --label target/memory/append-read/bounded --engine memory --mode append-read \
    --total-bytes 1GiB --retention-bytes 64MiB
done
