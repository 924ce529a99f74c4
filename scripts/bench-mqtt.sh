#!/usr/bin/env bash
# Runs the MQTT benchmark cases against a `strata serve` of its own and, in the same run, a
# Debian `mosquitto` that `strata-bench mqtt --mosquitto` starts on a free port. Appends every
# JSON line (one per server and case) to one results file.
#
#   scripts/bench-mqtt.sh RESULTS.jsonl [--quick]
#
#   --quick           a smoke run of a few seconds: every case, tiny sizes
#   STRATA_BIN, STRATA_BENCH_BIN  the strata and strata-bench binaries (default: built here)
#   STRATA_BENCH_ONLY a regular expression: run only the cases whose label matches
#   STRATA_BENCH_REPEATS  run the whole set this many times, interleaved (default 1)
#   STRATA_BENCH_CONNECTIONS  idle connections of the connections case (default 50000)
#
# The descriptor limit is raised for the node, the bench and mosquitto (the connections case
# needs one descriptor per connection on each side; raising the hard limit needs root).
# A failing case is reported and the set goes on; the exit status is non-zero if any failed.
set -euo pipefail

. "$(dirname "$0")/bench-common.sh"
bench_args "RESULTS.jsonl [--quick]" 2,16 "$@"
command -v mosquitto >/dev/null || { echo "bench-mqtt: needs mosquitto (apt-get install mosquitto)" >&2; exit 2; }

bench_bins
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mkdir -p "$(dirname "$results")"
node_dir="$(mktemp -d)"

addr=""
starts=0
# start_node: a node on free ports with empty data; sets node_pid and addr.
start_node() {
  starts=$((starts + 1))
  local log="$node_dir/serve-$starts.log"
  bench_node_start "$node_dir" "$log" --mqtt-addr 127.0.0.1:0
  addr="$(bench_node_addr "$log" mqtt)"
}
finish() {
  bench_node_stop
  bench_node_warnings bench-mqtt "$node_dir"/serve-*.log
  rm -rf "$node_dir"
}
trap finish EXIT
start_node
echo "bench-mqtt: node at $addr" >&2

case_() {
  local label="$1"
  shift
  bench_run "$label" "$STRATA_BENCH_BIN" mqtt --server "$addr" --server-pid "$node_pid" \
    --mosquitto --label "$label" --jsonl "$results" "$@" >/dev/null
}

repeats="${STRATA_BENCH_REPEATS:-1}"
conns="${STRATA_BENCH_CONNECTIONS:-50000}"
# Each side needs a descriptor per connection: fit the case to the limit this host allows.
nofile="$(ulimit -n)"
if [ "$nofile" != unlimited ] && [ "$conns" -gt $((nofile - 1000)) ]; then
  echo "bench-mqtt: descriptor limit $nofile: the connections case uses $((nofile - 1000)) connections, not $conns" >&2
  conns=$((nofile - 1000))
fi
for _ in $(seq 1 "$repeats"); do
  if [ "$quick" = 1 ]; then
    for q in 0 1 2; do
      case_ "quick/qos$q/1-1/100B" --qos "$q" --messages 2000
    done
    case_ quick/qos1/2-2/100B --qos 1 --publishers 2 --subscribers 2 --messages 1000
    case_ quick/latency/qos0/100B/1000 --case latency --rate 1000 --duration-secs 1
    # Memory per connection is measured on a fresh node: freed memory is not given back.
    bench_node_stop; start_node
    case_ quick/connections/200 --case connections --connections 200
  else
    # Throughput: 1 publisher → 1 subscriber, and 4 → 4 (each subscriber gets every message).
    case_ qos0/1-1/100B --qos 0 --messages 500000
    case_ qos1/1-1/100B --qos 1 --messages 200000
    case_ qos2/1-1/100B --qos 2 --messages 100000
    case_ qos0/4-4/100B --qos 0 --publishers 4 --subscribers 4 --messages 100000
    case_ qos1/4-4/100B --qos 1 --publishers 4 --subscribers 4 --messages 50000
    # Latency at a fixed rate.
    case_ latency/qos0/100B/10000 --case latency --qos 0 --rate 10000 --duration-secs 10
    case_ latency/qos1/100B/10000 --case latency --qos 1 --rate 10000 --duration-secs 10
    # Idle connections: server memory per connection, on a fresh node (a node's freed memory
    # is not given back to the OS, so a second run would read near zero).
    bench_node_stop; start_node
    case_ "connections/$conns" --case connections --connections "$conns"
    bench_node_stop; start_node
  fi
done
bench_summary bench-mqtt
