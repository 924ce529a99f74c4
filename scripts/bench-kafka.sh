#!/usr/bin/env bash
# Runs the Kafka benchmark cases the project reports against a `strata serve` of its own, and
# appends every JSON line to one results file. Each case is one `strata-bench kafka` run, which
# creates (and afterwards deletes) its own topic and measures the storage engine reference in
# the same run. The whole set takes a few minutes on a 2-core VM.
#
#   scripts/bench-kafka.sh RESULTS.jsonl [--quick]
#
#   --quick           a smoke run of a few seconds: every mode, tiny sizes
#   STRATA_BIN, STRATA_BENCH_BIN  the strata and strata-bench binaries (default: built here)
#   STRATA_BENCH_ONLY a regular expression: run only the cases whose label matches
#   STRATA_BENCH_DIR  folder for the node's throwaway data directory and the engine references
#                     (default: target/bench-data); put it on the disk you mean to measure
#   STRATA_BENCH_REPEATS  run the whole set this many times, interleaved (default 1); one run
#                     of a case is one noisy sample, so compare medians
#
# The node listens on free loopback ports, with a throwaway data directory, and is stopped on
# exit. A failing case is reported and the set goes on; the last line counts passed and failed
# cases, and the exit status is non-zero if any failed. Do not run anything heavy meanwhile.
set -euo pipefail

. "$(dirname "$0")/bench-common.sh"
bench_args "RESULTS.jsonl [--quick]" 2,19 "$@"

bench_bins
bench_dir="${STRATA_BENCH_DIR:-$root/target/bench-data}"
mkdir -p "$bench_dir" "$(dirname "$results")"
node_dir="$(mktemp -d "$bench_dir/kafka-node.XXXXXX")"

# The node: free ports, throwaway data, stopped however this script ends. The group join delay
# is 0 because consume runs time from the first message, and waiting adds only wall time.
bench_node_start "$node_dir" "$node_dir/serve.log" --mqtt-addr off \
  --group-initial-rebalance-delay-ms 0
stop_node() {
  bench_node_stop
  bench_node_warnings bench-kafka "$node_dir/serve.log"
  rm -rf "$node_dir"
}
trap stop_node EXIT
bootstrap="$(bench_node_addr "$node_dir/serve.log" kafka)"
echo "bench-kafka: node at $bootstrap, data in $node_dir" >&2

# case_ LABEL FLAGS...: one run, its line appended to the results file.
case_() {
  local label="$1"
  shift
  bench_run "$label" "$STRATA_BENCH_BIN" kafka --bootstrap "$bootstrap" --label "$label" \
    --dir "$bench_dir" --jsonl "$results" "$@"
}

# rate_of LABEL DIVISOR: the msgs_per_s of the last line with that label, divided (1000 if
# there is no such line).
rate_of() {
  local line
  line="$(grep -F "\"label\":\"$1\"" "$results" | tail -1 || true)"
  sed -n 's/.*"msgs_per_s":\([0-9.e+]*\).*/\1/p' <<<"$line" |
    awk -v d="$2" 'BEGIN { r = 1000 } { r = $1 / d } END { printf "%d\n", (r < 1 ? 1 : r) }'
}

fd=(--engine file --model dedicated)
mem=(--engine memory)
repeats="${STRATA_BENCH_REPEATS:-1}"

for _ in $(seq 1 "$repeats"); do
  if [ "$quick" = 1 ]; then
    case_ quick/produce/file/100B/os "${fd[@]}" --record-bytes 100 --messages 20000
    case_ quick/produce/file/1KiB/os "${fd[@]}" --messages 20000
    case_ quick/produce/file/1KiB/fsync "${fd[@]}" --durability fsync --messages 5000
    case_ quick/produce/file-shared/1KiB/os --engine file --model shared --partitions 2 \
      --compression lz4 --messages 20000
    case_ quick/produce/memory/1KiB "${mem[@]}" --messages 20000
    case_ quick/latency/file/1KiB/os "${fd[@]}" --mode latency --rate 2000 --duration-secs 1
    half="$(rate_of quick/produce/file/1KiB/os 2)"
    case_ "quick/e2e/file/1KiB/os/half-max" "${fd[@]}" --mode e2e --rate "$half" \
      --duration-secs 1
    case_ quick/e2e/memory/1KiB/10000 "${mem[@]}" --mode e2e --rate 10000 --duration-secs 1
    case_ quick/consume/file/1KiB/os "${fd[@]}" --mode consume --messages 20000
  else
    # 1. Throughput, as many messages in flight as librdkafka allows (acks=all).
    case_ produce/file/100B/os "${fd[@]}" --record-bytes 100 --messages 3000000
    case_ produce/file/1KiB/os "${fd[@]}" --messages 1000000
    case_ produce/file/1KiB/fsync "${fd[@]}" --durability fsync --messages 500000
    case_ produce/memory/100B "${mem[@]}" --record-bytes 100 --messages 3000000
    case_ produce/memory/1KiB "${mem[@]}" --messages 1000000

    # 2. Delivery latency at a fixed rate, well below the maximum.
    case_ latency/file/1KiB/os/10000 "${fd[@]}" --mode latency --rate 10000 --duration-secs 10
    case_ latency/file/1KiB/fsync/10000 "${fd[@]}" --durability fsync --mode latency \
      --rate 10000 --duration-secs 10
    case_ latency/memory/1KiB/10000 "${mem[@]}" --mode latency --rate 10000 --duration-secs 10
    # Without the client's 5 ms of batching: what the node adds to one small request.
    case_ latency/file/1KiB/os/10000/linger-0 "${fd[@]}" --mode latency --rate 10000 \
      --duration-secs 10 --linger-ms 0

    # 3. End to end (send → a consumer's receipt): file at half the maximum measured above,
    #    and at a quarter and an eighth of it, to show where the host stops keeping up;
    #    memory at 10,000 messages/s with the client's default 5 ms linger and without it.
    for div in 2 4 8; do
      case_ "e2e/file/1KiB/os/max-div-$div" "${fd[@]}" --mode e2e \
        --rate "$(rate_of produce/file/1KiB/os "$div")" --duration-secs 5
    done
    case_ e2e/memory/1KiB/10000 "${mem[@]}" --mode e2e --rate 10000 --duration-secs 10
    case_ e2e/memory/1KiB/10000/linger-0 "${mem[@]}" --mode e2e --rate 10000 --duration-secs 10 \
      --linger-ms 0

    # 4. Consuming a filled topic from the beginning with a fresh group.
    case_ consume/file/100B/os "${fd[@]}" --record-bytes 100 --mode consume --messages 3000000
    case_ consume/file/1KiB/os "${fd[@]}" --mode consume --messages 1000000
    case_ consume/memory/1KiB "${mem[@]}" --mode consume --messages 1000000
  fi
done

bench_summary bench-kafka
