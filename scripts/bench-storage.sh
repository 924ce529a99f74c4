#!/usr/bin/env bash
# Runs the storage benchmark matrix the project reports and appends every JSON line to one
# results file. Each case is one `strata-bench storage` run; sizes are chosen so that a case
# takes seconds to a minute on a 2-core VM and the whole matrix well under 30 minutes.
#
#   scripts/bench-storage.sh [--quick] RESULTS.jsonl
#
#   --quick           a smoke run of a few seconds: every mode and engine, tiny sizes
#   STRATA_BIN, STRATA_BENCH_BIN  the strata and strata-bench binaries (default: built here)
#   STRATA_BENCH_DIR  folder for the runs' data directories (default: target/bench-data);
#                     put it on the disk you mean to measure, never on tmpfs
#   STRATA_BENCH_ONLY a regular expression: run only the cases whose label matches
#
# A failing case is reported and the matrix goes on; the last line counts passed and failed
# cases, and the exit status is non-zero if any failed. Do not run anything heavy meanwhile.
set -euo pipefail

. "$(dirname "$0")/bench-common.sh"
bench_args "[--quick] RESULTS.jsonl" 2,15 "$@"

bench_bins
data="${STRATA_BENCH_DIR:-$root/target/bench-data}"
mkdir -p "$data" "$(dirname "$results")"

# case LABEL FLAGS...: one run, its line appended to the results file.
case_() {
  local label="$1"
  shift
  bench_run "$label" "$STRATA_BENCH_BIN" storage --label "$label" --dir "$data" \
    --jsonl "$results" "$@"
}

# low_fd_case LIMIT LABEL FLAGS...: a case under `ulimit -n LIMIT`.
low_fd_case() {
  local limit="$1" label="$2"
  shift 2
  bench_run "$label" low_fd "$limit" "$STRATA_BENCH_BIN" storage \
    --label "$label" --dir "$data" --jsonl "$results" "$@"
}
low_fd() { echo "   (ulimit -n $1)" >&2; (ulimit -n "$1" && shift && exec "$@"); }

file_models=(dedicated shared)

# A throwaway MariaDB for the mysql cases, stopped when the script exits.
mariadb_dir="$data/mariadb-$$"
start_mariadb() {
  if [ -n "${STRATA_BENCH_ONLY:-}" ] && [[ $STRATA_BENCH_ONLY != *mysql* ]]; then
    return 0
  fi
  "$root/scripts/mariadb.py" start "$mariadb_dir" >/dev/null
  cleanups+=('"$root/scripts/mariadb.py" stop "$mariadb_dir" || true')
}
fresh_db() { if [ -f "$mariadb_dir/port" ]; then "$root/scripts/mariadb.py" fresh "$mariadb_dir"; fi; }

# A throwaway S3-compatible server (tools/s3-server) for the s3 cases, one bucket per run.
s3_dir="$data/s3-$$"
s3=()
s3flags=()
start_s3() {
  if [ -n "${STRATA_BENCH_ONLY:-}" ] && [[ $STRATA_BENCH_ONLY != *s3* ]]; then
    return 0
  fi
  mkdir -p "$s3_dir"
  local endpoint
  endpoint=$("$root/scripts/s3server.py" start "$s3_dir")
  mkdir -p "$s3_dir/root/bench"
  cleanups+=('"$root/scripts/s3server.py" stop "$s3_dir" || true')
  s3flags=(--s3-endpoint "$endpoint" --s3-bucket bench --s3-access-key strata-test
           --s3-secret-key strata-test-secret)
  s3=(--engine s3 "${s3flags[@]}")
}
cleanups=()
trap 'for c in "${cleanups[@]}"; do eval "$c"; done' EXIT

if [ "$quick" = 1 ]; then
  case_ quick/memory/append --engine memory --total-bytes 4MiB
  case_ quick/memory/read --engine memory --mode read --shards 4 --concurrency 2 --total-bytes 4MiB
  case_ quick/memory/append-read --engine memory --mode append-read --total-bytes 4MiB
  for m in "${file_models[@]}"; do
    f=(--engine file --model "$m")
    case_ "quick/$m/append/os" "${f[@]}" --total-bytes 4MiB
    case_ "quick/$m/append/fsync" "${f[@]}" --durability fsync --total-bytes 256KiB
    case_ "quick/$m/append/fsync/8x8" "${f[@]}" --durability fsync --shards 8 --concurrency 8 \
      --total-bytes 256KiB
    case_ "quick/$m/append/1000-shards" "${f[@]}" --shards 1000 --total-bytes 2MiB --reopen
    case_ "quick/$m/read/warm" "${f[@]}" --mode read --batch-bytes 1MiB --total-bytes 16MiB
    case_ "quick/$m/read/cold" "${f[@]}" --mode read --cache cold --shards 10 --total-bytes 4MiB
    case_ "quick/$m/append-read" "${f[@]}" --mode append-read --total-bytes 4MiB
  done
  low_fd_case 1024 quick/dedicated/append/2000-shards/low-fd --engine file --shards 2000 \
    --total-bytes 4MiB
  for m in "${file_models[@]}"; do
    case_ "quick/rocksdb/$m/append/fsync" --engine rocksdb --model "$m" --durability fsync \
      --shards 8 --concurrency 8 --total-bytes 256KiB
    case_ "quick/rocksdb/$m/read" --engine rocksdb --model "$m" --mode read --shards 100 \
      --total-bytes 4MiB --reopen
  done
  start_mariadb
  for m in "${file_models[@]}"; do
    case_ "quick/mysql/$m/append" --engine mysql --model "$m" --mysql-url "$(fresh_db)" \
      --shards 100 --concurrency 4 --total-bytes 1MiB --reopen
    case_ "quick/mysql/$m/read" --engine mysql --model "$m" --mysql-url "$(fresh_db)" \
      --mode read --total-bytes 2MiB
  done
  start_s3
  for m in "${file_models[@]}"; do
    case_ "quick/s3/$m/append" "${s3[@]}" --model "$m" --shards 16 --concurrency 16 \
      --batch-bytes 16KiB --total-bytes 4MiB --s3-flush-ms 20
    case_ "quick/s3/$m/append/wal/fsync" "${s3[@]}" --model "$m" --s3-wal --durability fsync \
      --total-bytes 256KiB
    case_ "quick/s3/$m/read/cold" "${s3[@]}" --model "$m" --s3-wal --mode read --cache cold \
      --shards 4 --concurrency 4 --batch-bytes 64KiB --total-bytes 8MiB
  done
  case_ "quick/s3/tier/read/cold" --engine file --model dedicated --tier "${s3flags[@]}" \
    --mode read --cache cold --shards 2 --concurrency 2 --batch-bytes 64KiB --total-bytes 8MiB \
    --segment-bytes 1MiB
else
  # 1. Batch size and durability, one shard, one appender.
  case_ append/memory/1KiB --engine memory --batch-bytes 1KiB --total-bytes 256MiB
  case_ append/memory/64KiB --engine memory --batch-bytes 64KiB --total-bytes 1GiB
  case_ append/memory/1MiB --engine memory --batch-bytes 1MiB --total-bytes 1GiB
  for m in "${file_models[@]}"; do
    f=(--engine file --model "$m")
    case_ "append/$m/1KiB/os" "${f[@]}" --batch-bytes 1KiB --total-bytes 128MiB
    case_ "append/$m/1KiB/fsync" "${f[@]}" --batch-bytes 1KiB --durability fsync --total-bytes 4MiB
    case_ "append/$m/64KiB/os" "${f[@]}" --batch-bytes 64KiB --total-bytes 1GiB
    case_ "append/$m/64KiB/fsync" "${f[@]}" --batch-bytes 64KiB --durability fsync \
      --total-bytes 128MiB
    case_ "append/$m/1MiB/os" "${f[@]}" --batch-bytes 1MiB --total-bytes 1GiB
    case_ "append/$m/1MiB/fsync" "${f[@]}" --batch-bytes 1MiB --durability fsync --total-bytes 1GiB
  done

  # 2. Shard count: 1 KiB appends, at least one per shard; file engines also time a reopen.
  case_ shards/memory/1000 --engine memory --shards 1000 --total-bytes 64MiB
  case_ shards/memory/100000 --engine memory --shards 100000 --total-bytes 200MiB
  for m in "${file_models[@]}"; do
    f=(--engine file --model "$m" --reopen)
    case_ "shards/$m/1000" "${f[@]}" --shards 1000 --total-bytes 64MiB
    case_ "shards/$m/100000" "${f[@]}" --shards 100000 --total-bytes 200MiB
  done
  case_ shards/shared/1000000 --engine file --model shared --reopen --shards 1000000 \
    --total-bytes 1GiB
  # Recovery after a crash: the reopen replays the journal since the last checkpoint.
  case_ shards/shared/1000000/crash --engine file --model shared --reopen --crash \
    --shards 1000000 --total-bytes 1GiB
  case_ shards/dedicated/100000/crash --engine file --model dedicated --reopen --crash \
    --shards 100000 --total-bytes 200MiB
  low_fd_case 1024 shards/dedicated/100000/low-fd --engine file --model dedicated \
    --shards 100000 --total-bytes 200MiB

  # 3. Reads, warm and cold.
  case_ read/memory/1KiB --engine memory --mode read --batch-bytes 1KiB --total-bytes 256MiB
  case_ read/memory/1MiB --engine memory --mode read --batch-bytes 1MiB --total-bytes 1GiB
  for m in "${file_models[@]}"; do
    for cache in warm cold; do
      f=(--engine file --model "$m" --mode read --cache "$cache")
      case_ "read/$m/$cache/1MiB" "${f[@]}" --batch-bytes 1MiB --total-bytes 1GiB
      case_ "read/$m/$cache/1KiB" "${f[@]}" --batch-bytes 1KiB --total-bytes 128MiB
      case_ "read/$m/$cache/1KiB/1000-shards" "${f[@]}" --batch-bytes 1KiB --shards 1000 \
        --total-bytes 64MiB
    done
  done

  # 4. Group commit: small fsynced appends to 64 shards, 64 appenders against one.
  for m in "${file_models[@]}"; do
    for c in 1 64; do
      case_ "fsync/$m/64-shards/$c-appenders" --engine file --model "$m" --durability fsync \
        --batch-bytes 1KiB --shards 64 --concurrency "$c" --total-bytes 16MiB
    done
  done

  # 5. Append then read back, 100-byte records (the memory engine's one-core target).
  case_ append-read/memory/1KiB --engine memory --mode append-read --record-bytes 100 \
    --batch-bytes 1KiB --total-bytes 256MiB
  case_ append-read/memory/64KiB --engine memory --mode append-read --record-bytes 100 \
    --batch-bytes 64KiB --total-bytes 1GiB
  # The same with the engine bounded, as a memory topic is: memory is reused, not grown.
  case_ append-read/memory/1KiB/bounded --engine memory --mode append-read --record-bytes 100 \
    --batch-bytes 1KiB --total-bytes 1GiB --retention-bytes 64MiB
  for m in "${file_models[@]}"; do
    case_ "append-read/$m/1KiB" --engine file --model "$m" --mode append-read \
      --record-bytes 100 --batch-bytes 1KiB --total-bytes 64MiB
  done
  # 6. The rocksdb and mysql engines: 1 and 10,000 shards, appends and reads. MariaDB runs on
  # this machine (scripts/mariadb.py), with InnoDB fsyncing every commit.
  for m in "${file_models[@]}"; do
    r=(--engine rocksdb --model "$m")
    case_ "rocksdb/$m/append/1KiB/os" "${r[@]}" --batch-bytes 1KiB --total-bytes 128MiB
    case_ "rocksdb/$m/append/1KiB/fsync" "${r[@]}" --batch-bytes 1KiB --durability fsync \
      --total-bytes 4MiB
    case_ "rocksdb/$m/append/64KiB/fsync" "${r[@]}" --batch-bytes 64KiB --durability fsync \
      --total-bytes 128MiB
    case_ "rocksdb/$m/read/1KiB" "${r[@]}" --mode read --batch-bytes 1KiB --total-bytes 128MiB
    case_ "rocksdb/$m/10000-shards/append" "${r[@]}" --shards 10000 --total-bytes 64MiB --reopen
    case_ "rocksdb/$m/10000-shards/fsync" "${r[@]}" --shards 10000 --concurrency 64 \
      --durability fsync --total-bytes 16MiB
    case_ "rocksdb/$m/10000-shards/read" "${r[@]}" --mode read --shards 10000 --total-bytes 64MiB
  done
  start_mariadb
  for m in "${file_models[@]}"; do
    q=(--engine mysql --model "$m")
    case_ "mysql/$m/append/1KiB" "${q[@]}" --mysql-url "$(fresh_db)" --batch-bytes 1KiB \
      --total-bytes 8MiB
    case_ "mysql/$m/append/64KiB" "${q[@]}" --mysql-url "$(fresh_db)" --batch-bytes 64KiB \
      --total-bytes 128MiB
    case_ "mysql/$m/read/1KiB" "${q[@]}" --mysql-url "$(fresh_db)" --mode read --batch-bytes 1KiB \
      --total-bytes 32MiB
    case_ "mysql/$m/10000-shards/append" "${q[@]}" --mysql-url "$(fresh_db)" --shards 10000 \
      --concurrency 16 --total-bytes 32MiB --reopen
    case_ "mysql/$m/10000-shards/read" "${q[@]}" --mysql-url "$(fresh_db)" --mode read \
      --shards 10000 --concurrency 16 --total-bytes 32MiB
  done
  # 7. The s3 engine against a local S3-compatible server (tools/s3-server over this disk).
  # Beside each line: the same bytes PUT (or GET) straight to the bucket by one writer.
  start_s3
  for m in "${file_models[@]}"; do
    case_ "s3/$m/append/64KiB" "${s3[@]}" --model "$m" --shards 256 --concurrency 256 \
      --batch-bytes 64KiB --total-bytes 1GiB
    case_ "s3/$m/append/1KiB/wal/fsync" "${s3[@]}" --model "$m" --s3-wal --durability fsync \
      --batch-bytes 1KiB --total-bytes 4MiB
    case_ "s3/file-reference/$m/append/1KiB/fsync" --engine file --model "$m" --durability fsync \
      --batch-bytes 1KiB --total-bytes 4MiB
    case_ "s3/$m/append/1KiB/wal/os" "${s3[@]}" --model "$m" --s3-wal --batch-bytes 1KiB \
      --total-bytes 128MiB
    case_ "s3/$m/read/64KiB/cold" "${s3[@]}" --model "$m" --s3-wal --mode read --cache cold \
      --shards 4 --concurrency 4 --batch-bytes 64KiB --total-bytes 512MiB
    case_ "s3/file-reference/$m/read/64KiB/cold" --engine file --model "$m" --mode read \
      --cache cold --shards 4 --concurrency 4 --batch-bytes 64KiB --total-bytes 512MiB
  done
  # Tiered file segments read back from offset 0, beside the same read from local segments.
  case_ "s3/tier/read/64KiB/cold" --engine file --model dedicated --tier "${s3flags[@]}" \
    --mode read --cache cold --shards 4 --concurrency 4 --batch-bytes 64KiB --total-bytes 512MiB \
    --segment-bytes 16MiB
  case_ "s3/tier/file-reference/read/64KiB/cold" --engine file --model dedicated --mode read \
    --cache cold --shards 4 --concurrency 4 --batch-bytes 64KiB --total-bytes 512MiB \
    --segment-bytes 16MiB
  case_ "s3/shared/10000-shards/append" "${s3[@]}" --model shared --shards 10000 \
    --concurrency 512 --batch-bytes 16KiB --total-bytes 1GiB
  case_ "s3/shared/10000-shards/wal" "${s3[@]}" --model shared --s3-wal --shards 10000 \
    --concurrency 64 --batch-bytes 1KiB --total-bytes 128MiB
  case_ "s3/dedicated/10000-shards/append" "${s3[@]}" --model dedicated --shards 10000 \
    --concurrency 512 --batch-bytes 16KiB --total-bytes 256MiB
fi

bench_summary bench-storage
