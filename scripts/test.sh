#!/usr/bin/env bash
# Installs what the tests need, then runs every test: formatting, lints, the Rust test suites
# (unit, contract, crash and property tests) and a smoke run of the storage benchmark.
#
#   scripts/test.sh
#
# Needs Rust (the toolchain in rust-toolchain/rust-version) and python3 with venv. Builds go to
# $CARGO_TARGET_DIR, by default ~/.cache/strata/target, so repeated runs and fresh clones reuse
# them; Python packages go to a virtualenv in ~/.cache/strata/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STRATA_CACHE:-$HOME/.cache/strata}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"

step() { printf '\n== %s\n' "$*"; }

step "test dependencies"
if ! python3 -c 'import venv' 2>/dev/null; then
  sudo_if() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  sudo_if apt-get update -q && sudo_if apt-get install -y -q python3-venv
fi
venv="$cache/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r scripts/requirements-test.txt
export STRATA_KAFKA_PYTHON="$venv/bin/python"

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "storage benchmark smoke run"
cargo build --release --locked -p strata-server
STRATA_BIN="$CARGO_TARGET_DIR/release/strata" scripts/bench-storage.sh --quick "$cache/bench-smoke.jsonl"

step "all tests passed"
