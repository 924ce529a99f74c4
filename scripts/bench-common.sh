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
