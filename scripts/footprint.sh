#!/usr/bin/env bash
# Prints the figures the README and docs/benchmarks.md give for the binary users run: its size
# on disk as built (release profile, no stripping step), and its resident memory after
# `strata serve` has started with defaults and sat idle for 10 s (listeners on free ports so
# that it runs beside anything else), for the default build and the edge build.
#
#   scripts/footprint.sh [--cold]
#
#   --cold   also time the README's build from an empty target directory (a few minutes;
#            run nothing else meanwhile)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ "${1:-}" = --cold ]; then
  start=$(date +%s)
  CARGO_TARGET_DIR="$work/cold" cargo build --release --locked -q -p strata-server
  echo "cold build (cargo build --release -p strata-server, empty target directory): $(( $(date +%s) - start )) s"
  rm -rf "$work/cold"
fi

idle_rss() {
  local bin="$1" dir="$work/run-$RANDOM"
  mkdir -p "$dir"
  (cd "$dir" && exec "$bin" serve --kafka-addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 \
    --mqtt-addr 127.0.0.1:0 2>/dev/null) &
  local pid=$!
  sleep 10
  awk '/VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$pid/status"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for build in default edge; do
  flags=()
  [ "$build" = edge ] && flags=(--no-default-features)
  cargo build --release --locked -q -p strata-server "${flags[@]}"
  cp "$target/release/strata" "$work/strata-$build"
  size=$(stat -c %s "$work/strata-$build")
  rss=$(idle_rss "$work/strata-$build")
  awk -v b="$build" -v s="$size" -v r="$rss" \
    'BEGIN { printf "%-8s binary %.2f MB (%d bytes), idle RSS after 10 s %s\n", b, s / 1e6, s, r }'
done
