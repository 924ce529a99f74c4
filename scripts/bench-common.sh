# Sourced by scripts/bench-*.sh: the arguments every bench script takes, and the binaries.
#
#   bench_args USAGE HELP_LINES "$@"   sets quick (0/1) and results (the RESULTS.jsonl path)
#   bench_bins                         sets root, STRATA_BIN and STRATA_BENCH_BIN
#
#   STRATA_BIN        the strata binary (default: built here, with every engine)
#   STRATA_BENCH_BIN  the strata-bench binary (default: built here, with every engine)
#   STRATA_PROFILE    the cargo profile of both when built here (default: release)

# bench_args "USAGE" "FIRST,LAST" ARGS...: --quick, -h (prints the calling script's header
# lines FIRST..LAST) and one results file.
bench_args() {
  local usage="$1" help="$2"
  shift 2
  quick=0
  results=""
  for arg in "$@"; do
    case "$arg" in
      --quick) quick=1 ;;
      -h|--help) sed -n "${help}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      -*) echo "unknown flag $arg" >&2; exit 2 ;;
      *) results="$arg" ;;
    esac
  done
  if [ -z "$results" ]; then
    echo "usage: $0 $usage" >&2
    exit 2
  fi
  mkdir -p "$(dirname "$results")"
}

bench_bins() {
  root="$(cd "$(dirname "$0")/.." && pwd)"
  local target="${CARGO_TARGET_DIR:-$root/target}"
  local profile="${STRATA_PROFILE:-release}"
  if [ -z "${STRATA_BIN:-}" ]; then
    (cd "$root" && cargo build --profile "$profile" -q -p strata-server --features full)
    STRATA_BIN="$target/$profile/strata"
  fi
  if [ -z "${STRATA_BENCH_BIN:-}" ]; then
    (cd "$root" && cargo build --profile "$profile" -q -p strata-bench)
    STRATA_BENCH_BIN="$target/$profile/strata-bench"
  fi
}

# bench_run LABEL COMMAND...: one case. Prints its label, runs the command and counts it in
# passed or failed; a failing case is reported and the set goes on. STRATA_BENCH_ONLY (a bash
# regular expression) skips the cases whose label does not match.
passed=0
failed=0
bench_run() {
  local label="$1"
  shift
  if [ -n "${STRATA_BENCH_ONLY:-}" ] && ! [[ "$label" =~ $STRATA_BENCH_ONLY ]]; then
    return 0
  fi
  echo "== $label" >&2
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $label" >&2
    failed=$((failed + 1))
  fi
}

# bench_summary NAME: the counts, and a non-zero status if any case failed.
bench_summary() {
  echo "$1: $passed passed, $failed failed" >&2
  [ "$failed" = 0 ]
}

# bench_node_start DIR LOG FLAGS...: `strata serve` with its data in DIR/data (emptied first),
# loopback listeners on free ports and FLAGS, logging to LOG; returns once it listens and
# sets node_pid. bench_node_addr LOG LISTENER (kafka, mqtt, admin) prints a bound address.
node_pid=""
bench_node_start() {
  local dir="$1" log="$2"
  shift 2
  rm -rf "$dir/data"
  "$STRATA_BIN" serve --data-dir "$dir/data" --kafka-addr 127.0.0.1:0 \
    --admin-addr 127.0.0.1:0 "$@" >"$log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 300); do
    grep -q "strata listening" "$log" && return 0
    kill -0 "$node_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "the node did not start listening" >&2
  exit 1
}
bench_node_addr() {
  sed -n "s/.*strata listening.* $2=\([0-9.:]*\).*/\1/p" "$1" | tail -1
}
bench_node_stop() {
  [ -n "$node_pid" ] && { kill "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true; }
  node_pid=""
}

# bench_node_warnings NAME LOG...: shows what the node logged at WARN or ERROR.
bench_node_warnings() {
  local name="$1"
  shift
  if cat "$@" 2>/dev/null | grep -qE ' (WARN|ERROR) '; then
    echo "$name: the node logged warnings or errors:" >&2
    cat "$@" | grep -E ' (WARN|ERROR) ' | tail -20 >&2
  fi
}
