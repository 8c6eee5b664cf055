#!/usr/bin/env bash
# Every check and test of the project, on a fresh machine as on a developer's:
# formatting, lints, unit and integration tests (storage, broker and node
# faults included), the protocol conformance suite against the release
# binary, the soak test's short form, the Autobahn|Testsuite WebSocket
# cases, short fuzzing runs, schemathesis against the OpenAPI document, and
# the widget's type check and browser tests. Installs what is missing
# (PostgreSQL, Redis, e2fsprogs, Python, moto, standardwebhooks, aiosmtpd,
# schemathesis, Python 2.7 and Autobahn|Testsuite, Node.js, Chromium) with
# apt, pyenv and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

step "tools"
command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)" >&2; exit 1; }
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
cargo --version; python3 --version; node --version

step "PostgreSQL and Redis"
# The cluster tests and the PostgreSQL run of the suite need both. Use the
# ones running here, start installed ones, or install them; never skip.
PG_URL="${IMAGECHAT_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_URL="${IMAGECHAT_TEST_REDIS:-redis://127.0.0.1:6379}"
command -v psql >/dev/null || apt_install postgresql-client
pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    apt_install postgresql
    # Local test clusters trust loopback connections, as the URL above assumes.
    for f in /etc/postgresql/*/main/pg_hba.conf; do
      $SUDO sed -i -E 's/(host.*127\.0\.0\.1\/32\s+)(scram-sha-256|md5|peer)/\1trust/; s/(host.*::1\/128\s+)(scram-sha-256|md5|peer)/\1trust/' "$f"
    done
  fi
  # Restart, so a cluster the package just started reads the trust rules.
  for v in $(ls /etc/postgresql); do
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main stop >/dev/null 2>&1 || true
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
  done
  for _ in $(seq 1 50); do pg_up && break; sleep 0.2; done
fi
pg_up || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
# The fault tests start and stop a PostgreSQL of their own: its server binaries.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_install postgresql
# The read-only database test makes an ext4 image and sets its files immutable.
command -v mkfs.ext4 >/dev/null && command -v chattr >/dev/null || apt_install e2fsprogs
# The Redis restart test starts and kills a redis-server of its own.
command -v redis-server >/dev/null || apt_install redis-server
redis_up() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }
if ! redis_up; then
  command -v redis-server >/dev/null || apt_install redis-server
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
  for _ in $(seq 1 50); do redis_up && break; sleep 0.1; done
fi
redis_up || { echo "Redis is not reachable on 127.0.0.1:6379" >&2; exit 1; }
export IMAGECHAT_TEST_REDIS="$REDIS_URL" IMAGECHAT_CLUSTER_POSTGRES="$PG_URL"

step "S3-compatible server (moto) for the upload storage tests"
# The S3 storage runs against a real S3 API: moto's server, from PyPI.
if ! command -v moto_server >/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  python3 -m pip install --quiet 'moto[server]' || python3 -m pip install --quiet --break-system-packages 'moto[server]'
fi
command -v moto_server >/dev/null || { echo "moto_server could not be installed" >&2; exit 1; }
S3_PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
moto_log=$(mktemp)
moto_server -H 127.0.0.1 -p "$S3_PORT" >"$moto_log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fs -o /dev/null -X PUT "http://127.0.0.1:$S3_PORT/imagechat-test" && break; sleep 0.2; done
curl -fs -o /dev/null "http://127.0.0.1:$S3_PORT/imagechat-test" \
  || { echo "the S3 test server did not start:"; cat "$moto_log"; exit 1; } >&2
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export IMAGECHAT_TEST_S3="s3://imagechat-test?endpoint=http://127.0.0.1:$S3_PORT&region=us-east-1"

step "webhook receiver and SMTP sink (standardwebhooks, aiosmtpd) for the webhook and e-mail tests"
# The tests verify deliveries with the independent standardwebhooks package
# and read digests from a real SMTP server (aiosmtpd), both from PyPI.
if ! python3 -c 'import standardwebhooks.webhooks, aiosmtpd.controller' 2>/dev/null; then
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  python3 -m pip install --quiet standardwebhooks aiosmtpd || python3 -m pip install --quiet --break-system-packages standardwebhooks aiosmtpd
fi
python3 -c 'import standardwebhooks.webhooks, aiosmtpd.controller' \
  || { echo "standardwebhooks and aiosmtpd could not be installed" >&2; exit 1; }
# The interpreter that has them, for the Rust tests that start the receivers.
IMAGECHAT_TEST_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export IMAGECHAT_TEST_PYTHON
python3 tests/receivers/selftest.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (SQLite; cluster tests on PostgreSQL and Redis)"
env -u IMAGECHAT_TEST_POSTGRES cargo test --workspace --locked

step "the same integration tests on PostgreSQL"
IMAGECHAT_TEST_POSTGRES="$PG_URL" cargo test --locked --test server -- --skip cluster:: --skip binary:: --skip faults::

step "release build"
cargo build --release --workspace --locked
BIN="$PWD/target/release/imagechat"

step "protocol conformance suite against the release binary"
suite=""
# A newer copy of the suite beside the checkout wins over the one kept here.
for candidate in "${IMAGECHAT_CONFORMANCE:-}" ../shared/conformance/run.py conformance/run.py; do
  if [ -n "$candidate" ] && [ -f "$candidate" ]; then suite="$candidate"; break; fi
done
if [ -z "$suite" ]; then
  echo "the conformance suite was not found (set IMAGECHAT_CONFORMANCE to its run.py)" >&2
  exit 1
fi
work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$BIN" serve --listen "127.0.0.1:$port" --database "sqlite://$work/conformance.db" --uploads "file://$work/uploads" --admin-key conformance-key >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server $moto 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
if ! python3 "$suite" --base "http://127.0.0.1:$port" --admin-key conformance-key; then
  echo "--- server log"; tail -50 "$work/server.log"
  exit 1
fi
kill $server; wait $server 2>/dev/null || true

step "protocol conformance suite against one node of a three-node cluster"
cluster_db="imagechat_conformance_$(date +%s)_$$"
psql "$PG_URL" -q -c "CREATE DATABASE $cluster_db" >/dev/null
nodes=()
trap 'kill "${nodes[@]}" $moto 2>/dev/null || true; rm -rf "$work"' EXIT
ports=()
for n in 1 2 3; do
  p=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  ports+=("$p")
  "$BIN" serve --listen "127.0.0.1:$p" --database "${PG_URL%/*}/$cluster_db" --broker "$REDIS_URL" \
    --uploads "file://$work/uploads" \
    --admin-key conformance-key >"$work/node$n.log" 2>&1 &
  nodes+=("$!")
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$p/readyz" >/dev/null && break; sleep 0.1; done
done
if ! python3 "$suite" --base "http://127.0.0.1:${ports[1]}" --admin-key conformance-key; then
  echo "--- node logs"; tail -30 "$work"/node*.log
  exit 1
fi
kill "${nodes[@]}"; wait "${nodes[@]}" 2>/dev/null || true
psql "$PG_URL" -q -c "DROP DATABASE $cluster_db" >/dev/null || true
trap 'kill $moto 2>/dev/null || true; rm -rf "$work"' EXIT

step "soak, short form (bench/soak.sh alone runs the 10-minute form)"
IMAGECHAT_SOAK_BIN="$BIN" bench/soak.sh --duration "${SOAK_SECONDS:-45}" --connections 2000 --images 200

step "write path and snapshot cache benchmarks, short form (bench/run.sh --scenarios write,snapshot --repeat 3 for the figures)"
# Fails if a write or a snapshot read is lost, refused or wrong; the
# figures of so short a run are not the benchmark's.
target/release/imagechat-bench compare --scenarios write,snapshot --repeat 1 \
  --imagechat-bin "$BIN" --minimal-bin "$PWD/target/release/minimal_write_server" \
  --write-duration 3 --write-ramp 250,500 --snapshot-requests 300 --snapshot-storm-clients 500 >/dev/null

step "webhook delivery latency, short form (scripts/webhook-latency.py --count 500 for the figures)"
# Fails if a delivery is missing, unverified, out of order or misshaped.
python3 scripts/webhook-latency.py --bin "$BIN" --short

step "Autobahn|Testsuite: RFC 6455 cases 1-10 on the framing, close cases on /api/v1/ws"
cargo build --release --locked --example ws_echo
scripts/autobahn.sh "$BIN" "$PWD/target/release/examples/ws_echo"

step "fuzzing, short form (scripts/fuzz.sh 600 for the long run)"
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"

step "schemathesis: every REST answer against the OpenAPI document"
python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
scripts/schemathesis.sh "$BIN" "${SCHEMATHESIS_EXAMPLES:-25}"

step "widget: type check and browser tests"
IMAGECHAT_BIN="$BIN" bash widget/scripts/test.sh
