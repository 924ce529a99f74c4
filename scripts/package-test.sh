#!/usr/bin/env bash
# Builds the Debian package from the $STRATA_PACKAGE_PROFILE build, installs it with dpkg -i, starts the
# installed binary as the `strata` user with the packaged /etc/strata/strata.toml (listeners
# moved to free local ports), and round-trips one message with kcat.
#
#   scripts/package-test.sh        (needs root or sudo, cargo-deb and kcat; scripts/test.sh
#                                   installs them)
#
#   STRATA_PACKAGE_PROFILE   the cargo profile packaged (default: release; scripts/test.sh
#                            packages its `ci` build, which skips the link-time optimization)
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
target="${CARGO_TARGET_DIR:-target}"

profile="${STRATA_PACKAGE_PROFILE:-release}"
cargo build --profile "$profile" --locked -p strata-server
deb=$(cargo deb -p strata-server --profile "$profile" --no-build --quiet)
echo "package: $deb ($(du -k "$deb" | cut -f1) KiB)"
as_root dpkg -i "$deb" >/dev/null
/usr/bin/strata --version
getent passwd strata >/dev/null || { echo "the package did not create the strata user"; exit 1; }
test -f /etc/strata/strata.toml && test -f /usr/lib/systemd/system/strata.service

port() { python3 -c 'import sys; sys.path.insert(0, "scripts"); from ports import free_port; print(free_port())'; }
kafka=$(port); admin=$(port); mqtt=$(port)
log=$(mktemp)
as_root runuser -u strata -- /usr/bin/strata serve --config /etc/strata/strata.toml \
  --kafka-addr "127.0.0.1:$kafka" --admin-addr "127.0.0.1:$admin" --mqtt-addr "127.0.0.1:$mqtt" \
  2>"$log" &
pid=$!
cleanup() { as_root pkill -TERM -f "strata serve --config /etc/strata/strata.toml --kafka-addr 127.0.0.1:$kafka" || true; wait "$pid" 2>/dev/null || true; rm -f "$log"; }
trap cleanup EXIT
for _ in $(seq 100); do grep -q "strata listening" "$log" && break; sleep 0.1; done
grep -q "strata listening" "$log" || { cat "$log"; echo "the installed strata did not start"; exit 1; }
grep -q 'data_dir=/var/lib/strata' "$log" || { cat "$log"; echo "the packaged config was not used"; exit 1; }

topic="package-$(date +%s%N)"
message="installed-$RANDOM"
echo "$message" | kcat -P -b "127.0.0.1:$kafka" -t "$topic"
got=$(kcat -C -b "127.0.0.1:$kafka" -t "$topic" -o beginning -c 1 -e -q)
if [ "$got" != "$message" ]; then
  cat "$log"; echo "round trip through the installed package failed: got '$got'"; exit 1
fi
echo "round trip through the installed package: ok"
