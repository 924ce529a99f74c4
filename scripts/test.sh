#!/usr/bin/env bash
# Installs what the tests need, then runs every test: formatting, lints, the Rust test suites
# (unit, contract, crash and property tests), brief fuzzing, real Kafka and MQTT clients against
# `strata serve`, and smoke runs of the benchmarks.
#
#   scripts/test.sh
#
# Needs Rust, python3 and Debian's apt for kcat, mosquitto, mosquitto-clients, npm,
# mariadb-server and libclang-dev (installed if missing), and builds the throwaway S3 server of
# tools/s3-server. The tests start their own MariaDB and S3 servers on free ports; none depends
# on a server already running. Builds go to
# $CARGO_TARGET_DIR, by default ~/.cache/strata/target, so repeated runs and fresh clones reuse
# them; Python packages go to a virtualenv in ~/.cache/strata/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${STRATA_CACHE:-$HOME/.cache/strata}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$cache/target}"
mkdir -p "$cache"

step() { printf '\n== %s\n' "$*"; }

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

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "fuzz targets (briefly)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for target in kafka_request record_batch mqtt_packet; do
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --target-dir "$cache/fuzz-target" "$target" -- \
    -max_total_time="${STRATA_FUZZ_SECONDS:-20}" -print_final_stats=0 2>&1 | tail -1)
done

step "server build"
cargo build --release --locked -p strata-server
export STRATA_BIN="$CARGO_TARGET_DIR/release/strata"

step "clients against strata serve (Kafka: confluent-kafka, kafka-python, aiokafka, kcat; MQTT: paho-mqtt, mosquitto_pub/sub)"
(cd tests/python && "$venv/bin/python" -m pytest -q)

step "clients against strata serve (kafkajs, mqtt.js)"
(cd tests/node && npm test --silent)

step "benchmark smoke runs (storage, Kafka, MQTT against mosquitto)"
scripts/bench-storage.sh --quick "$cache/bench-smoke.jsonl"
scripts/bench-kafka.sh "$cache/bench-kafka-smoke.jsonl" --quick
scripts/bench-mqtt.sh "$cache/bench-mqtt-smoke.jsonl" --quick

step "all tests passed"
