#!/usr/bin/env bash
# Every check and test of the project, on a fresh machine as on a developer's:
# formatting, lints, unit and integration tests, the protocol conformance
# suite against the release binary, and the widget's type check and browser
# tests. Installs what is missing (Python, Node.js, Chromium) with apt.
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

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

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
"$BIN" serve --listen "127.0.0.1:$port" --database "sqlite://$work/conformance.db" --admin-key conformance-key >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
if ! python3 "$suite" --base "http://127.0.0.1:$port" --admin-key conformance-key; then
  echo "--- server log"; tail -50 "$work/server.log"
  exit 1
fi
kill $server; wait $server 2>/dev/null || true
trap 'rm -rf "$work"' EXIT

step "widget: type check and browser tests"
IMAGECHAT_BIN="$BIN" bash widget/scripts/test.sh
