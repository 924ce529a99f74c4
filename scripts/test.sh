#!/usr/bin/env bash
# Installs what the tests need, then runs every test: formatting, lints, the Rust test suites
# (unit, contract, crash and property tests) of the all-engines, default and edge builds,
# brief fuzzing, real Kafka and MQTT clients against `strata serve`, the Debian package
# installed with dpkg, and smoke runs of the benchmarks. Prints the time of each step at the
# end.
#
#   scripts/test.sh
#
# Needs Rust, python3 and Debian's apt for kcat, mosquitto, mosquitto-clients, npm,
# mariadb-server and libclang-dev (installed if missing), root or sudo for apt and dpkg, and
# builds cargo-deb, cargo-fuzz and the throwaway S3 server of tools/s3-server. The tests start
# their own MariaDB and S3 servers on free ports; none depends on a server already running.
# Builds go to $CARGO_TARGET_DIR, by default ~/.cache/strata/target, so repeated runs and fresh
# clones reuse them; Python packages go to a virtualenv in ~/.cache/strata/venv.
#
# Every Rust build of the tests uses one profile, `ci` (optimized, no LTO, debug assertions
# on), so that RocksDB's C++ is compiled once and no test waits for a link-time optimized
# build; the Debian package under test holds the `ci` build of the default engines. The sizes
# of the release builds users get are measured by scripts/footprint.sh, not here.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STRATA_CACHE:-$HOME/.cache/strata}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"

timings=()
step_name=""
step_started=0
run_started=$(date +%s)
end_step() {
  if [ -n "$step_name" ]; then
    timings+=("$(printf '%6ss  %s' $(( $(date +%s) - step_started )) "$step_name")")
  fi
}
step() {
  end_step
  step_name="$*"
  step_started=$(date +%s)
  printf '\n== %s\n' "$*"
}
report_timings() {
  end_step
  step_name=""
  printf '\n== time per step\n'
  printf '%s\n' "${timings[@]}"
  printf '%6ss  total\n' $(( $(date +%s) - run_started ))
}
trap report_timings EXIT

step "test dependencies"
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
python3 -c 'import venv' 2>/dev/null || missing+=(python3-venv)
command -v kcat >/dev/null || missing+=(kcat)
command -v mosquitto_pub >/dev/null || missing+=(mosquitto-clients)
command -v mosquitto >/dev/null || missing+=(mosquitto)
command -v npm >/dev/null || missing+=(npm)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
# The rocksdb crate generates its bindings with bindgen, which needs libclang.
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
venv="$cache/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r scripts/requirements-test.txt
export STRATA_KAFKA_PYTHON="$venv/bin/python"
(cd tests/node && npm ci --silent --no-audit --no-fund)
# The throwaway S3-compatible server of the s3 engine's tests (reinstalled when its source
# changes; built outside the workspace so that its dependencies do not change the workspace's).
tools="$cache/tools"
s3_source=$(cat tools/s3-server/Cargo.toml tools/s3-server/Cargo.lock tools/s3-server/src/*.rs | sha256sum)
if [ ! -x "$tools/bin/strata-test-s3" ] || [ "$(cat "$tools/source.sha256" 2>/dev/null)" != "$s3_source" ]; then
  CARGO_TARGET_DIR="$cache/tools-target" cargo install --quiet --force --locked \
    --path tools/s3-server --root "$tools"
  echo "$s3_source" > "$tools/source.sha256"
fi
export STRATA_TEST_S3="$tools/bin/strata-test-s3"
command -v cargo-deb >/dev/null || \
  CARGO_TARGET_DIR="$cache/tools-target" cargo install --quiet --locked cargo-deb

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --profile ci --workspace --all-targets --all-features --locked -- -D warnings

step "tests: every engine (--all-features)"
cargo test --profile ci --workspace --all-features --locked

step "tests: the default build (mysql, s3)"
cargo test --profile ci --locked -p strata-server -p strata-broker --no-default-features \
  --features strata-server/mysql,strata-server/s3

step "tests: the edge build (--no-default-features: memory and file engines, Kafka, MQTT)"
cargo test --profile ci --locked -p strata-server -p strata-broker -p strata-kafka -p strata-mqtt --no-default-features
cargo clippy --profile ci --locked -p strata-server -p strata-broker --all-targets --no-default-features -- -D warnings

step "fuzz targets (briefly)"
command -v cargo-fuzz >/dev/null || CARGO_TARGET_DIR="$cache/tools-target" cargo install --quiet --locked cargo-fuzz
for target in kafka_request record_batch mqtt_packet; do
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir "$cache/fuzz-target" "$target" -- \
    -max_total_time="${STRATA_FUZZ_SECONDS:-10}" -print_final_stats=0 2>&1 | tail -1)
done

step "server builds (every engine for the client tests; the edge build)"
# Each feature set's binary is copied out, since every build of strata-server in one profile
# lands on the same path.
bin="$cache/bin"
mkdir -p "$bin"
cargo build --profile ci --locked -p strata-server --no-default-features
cp "$CARGO_TARGET_DIR/ci/strata" "$bin/strata-edge"
cargo build --profile ci --locked -p strata-server --features full
cp "$CARGO_TARGET_DIR/ci/strata" "$bin/strata"
cargo build --profile ci --locked -p strata-bench
export STRATA_BIN="$bin/strata"
export STRATA_EDGE_BIN="$bin/strata-edge"
export STRATA_BENCH_BIN="$CARGO_TARGET_DIR/ci/strata-bench"

step "clients against strata serve (Kafka: confluent-kafka, kafka-python, aiokafka, kcat; MQTT: paho-mqtt, mosquitto_pub/sub)"
(cd tests/python && "$venv/bin/python" -m pytest -q)

step "clients against strata serve (kafkajs, mqtt.js)"
(cd tests/node && npm test --silent)

step "Debian package (cargo deb, dpkg -i, the installed binary with the packaged config)"
STRATA_PACKAGE_PROFILE=ci scripts/package-test.sh

step "benchmark smoke runs (storage, Kafka, MQTT against mosquitto)"
scripts/bench-storage.sh --quick "$cache/bench-smoke.jsonl"
scripts/bench-kafka.sh "$cache/bench-kafka-smoke.jsonl" --quick
scripts/bench-mqtt.sh "$cache/bench-mqtt-smoke.jsonl" --quick

step "all tests passed"
