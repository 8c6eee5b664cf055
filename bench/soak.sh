#!/usr/bin/env bash
# The soak test: two imagechat nodes on one fresh PostgreSQL database and
# Redis for --duration seconds (600 by default) under mixed writes, drops and
# resumes and a restart of one node, every event verified, memory sampled.
#
#   bench/soak.sh                                   # the long form: 10 minutes
#   bench/soak.sh --duration 45 --connections 2000 --images 200   # about a minute
#
# Every flag goes to `imagechat-bench soak` (see `imagechat-bench soak --help`).
# Settings from the environment:
#   IMAGECHAT_SOAK_POSTGRES  PostgreSQL server URL without a database
#                            (default postgres://postgres@127.0.0.1:5432)
#   IMAGECHAT_SOAK_REDIS     Redis URL (default redis://127.0.0.1:6379)
#   IMAGECHAT_SOAK_BIN       an imagechat binary to use instead of building one
#
# Exit status: 0 when every check passed, 1 when one failed, 2 on a set-up
# error. The database is dropped and the nodes stopped on exit, also on
# Ctrl-C.
set -euo pipefail

cd "$(dirname "$0")/.."

PG=${IMAGECHAT_SOAK_POSTGRES:-postgres://postgres@127.0.0.1:5432}
PG=${PG%/}
REDIS=${IMAGECHAT_SOAK_REDIS:-redis://127.0.0.1:6379}

fail() {
    echo "soak.sh: $*" >&2
    exit 2
}

command -v psql >/dev/null || fail "psql is needed to create and drop the soak database"
psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAtc 'select 1' >/dev/null 2>&1 ||
    fail "PostgreSQL is unreachable at $PG (set IMAGECHAT_SOAK_POSTGRES)"

# Redis: PING over bash's /dev/tcp, so redis-cli is not needed.
hostport=${REDIS#redis://}
hostport=${hostport##*@}
hostport=${hostport%%/*}
rhost=${hostport%:*}
rport=${hostport##*:}
[ "$rport" = "$hostport" ] && rport=6379
if ! reply=$(timeout 5 bash -c "exec 3<>/dev/tcp/$rhost/$rport && printf 'PING\r\n' >&3 && head -c 5 <&3" 2>/dev/null) ||
    [ "${reply%$'\r'}" != "+PONG" ]; then
    fail "Redis is unreachable at $REDIS (set IMAGECHAT_SOAK_REDIS)"
fi

# Every connection is a file descriptor, in the generator and in a node.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 8192 ]; then
    fail "the open-file hard limit is $hard; the soak needs at least 8192 (ulimit -Hn)"
fi
ulimit -n "$hard"

if [ -n "${IMAGECHAT_SOAK_BIN:-}" ]; then
    flock /tmp/imagechat-cargo.lock cargo build --release --locked -p imagechat-bench
    BIN=$IMAGECHAT_SOAK_BIN
else
    flock /tmp/imagechat-cargo.lock cargo build --release --locked -p imagechat -p imagechat-bench
    BIN=target/release/imagechat
fi
[ -x "$BIN" ] || fail "no imagechat binary at $BIN"

DB="imagechat_soak_$(date +%s)_$$"
BENCH_PID=
cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
        # The generator stops its nodes when it gets SIGTERM.
        kill -TERM "$BENCH_PID" 2>/dev/null || true
        wait "$BENCH_PID" 2>/dev/null || true
    fi
    psql "$PG/postgres" -qAtc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 ||
        echo "soak.sh: could not drop database $DB" >&2
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAtc "CREATE DATABASE $DB" >/dev/null ||
    fail "cannot create database $DB"

# In the background, so a signal reaches the trap at once.
target/release/imagechat-bench soak --imagechat-bin "$BIN" \
    --database "$PG/$DB" --broker "$REDIS" "$@" &
BENCH_PID=$!
set +e
wait "$BENCH_PID"
status=$?
set -e
BENCH_PID=
exit "$status"
