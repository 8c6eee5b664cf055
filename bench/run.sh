#!/bin/sh
# The whole side-by-side benchmark in one command:
#
#   bench/run.sh [compare flags...]        e.g. bench/run.sh --repeat 3 --out bench-results.json
#   bench/run.sh --scenarios write         imagechat's writes against a minimal axum + SQLite server
#   bench/run.sh --scenarios snapshot      imagechat's snapshot reads, with its cache and without
#
# Builds the imagechat server and the load generator (release), installs the
# Socket.IO peer's dependencies when they are missing, then runs
# `imagechat-bench compare`, which starts a fresh server for every run, drives
# it, stops it, and prints one table per scenario (median of the runs) plus
# the targets met or missed. Every server it starts is stopped at the end,
# also on error or Ctrl-C. See bench/README.md and BENCHMARKS.md.
set -eu
cd "$(dirname "$0")/.."

# Cargo shares the machine with other work: take the same lock as everyone else.
flock /tmp/imagechat-cargo.lock cargo build --release -p imagechat -p imagechat-bench

if [ ! -d bench/socketio/node_modules ]; then
    (cd bench/socketio && npm ci --no-audit --no-fund)
fi

# Measure a copy, so a rebuild in the same checkout during the runs cannot
# swap the server under test (or the generator) halfway.
snap=$(mktemp -d "${TMPDIR:-/tmp}/imagechat-bench-bin.XXXXXX")
trap 'rm -rf "$snap"' EXIT
cp target/release/imagechat target/release/imagechat-bench target/release/minimal_write_server "$snap/"
echo "imagechat $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo ' (with local changes)'), node $(node --version)" >&2

"$snap/imagechat-bench" compare \
    --imagechat-bin "$snap/imagechat" \
    --minimal-bin "$snap/minimal_write_server" \
    --socketio-dir bench/socketio \
    "$@"
