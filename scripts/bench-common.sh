# Sourced by scripts/bench-*.sh: the arguments every bench script takes, and the binaries.
#
#   bench_args USAGE HELP_LINES "$@"   sets quick (0/1) and results (the RESULTS.jsonl path)
#   bench_bins                         sets root, STRATA_BIN and STRATA_BENCH_BIN
#
#   STRATA_BIN        the strata binary (default: built here with cargo build --release)
#   STRATA_BENCH_BIN  the strata-bench binary (default: built here, with every engine)

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
  if [ -z "${STRATA_BIN:-}" ]; then
    (cd "$root" && cargo build --release -q -p strata-server)
    STRATA_BIN="$target/release/strata"
  fi
  if [ -z "${STRATA_BENCH_BIN:-}" ]; then
    (cd "$root" && cargo build --release -q -p strata-bench)
    STRATA_BENCH_BIN="$target/release/strata-bench"
  fi
}
