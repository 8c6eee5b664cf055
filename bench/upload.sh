#!/usr/bin/env bash
# Upload throughput: a PNG of about 2 MB (random pixels), uploaded by
# `imagechat-bench upload` to imagechat and, in the same run, to the
# minimal server (which stores the body as it came, reading the size from
# the header): uploads per second and server CPU per upload, medians of
# the rounds, and imagechat's ratio to the minimal server.
#
#   bench/upload.sh [imagechat-bench upload flags...]   e.g. -n 30 -c 2 --rounds 5
set -euo pipefail
cd "$(dirname "$0")/.."
flock /tmp/imagechat-cargo.lock cargo build --release -p imagechat -p imagechat-bench
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$1/healthz" >/dev/null && return 0; sleep 0.1; done; return 1; }

p1=$(free_port)
target/release/imagechat serve --listen "127.0.0.1:$p1" --database "sqlite://$work/imagechat.db" \
  --uploads "file://$work/uploads" --write-rate-per-minute 0 \
  --anonymous-writes-per-address-per-minute 0 --upload-quota-bytes-per-day 0 >"$work/imagechat.log" 2>&1 &
pids+=("$!"); ic=$!
p2=$(free_port)
target/release/minimal_write_server --listen "127.0.0.1:$p2" --database "$work/minimal/minimal.db" >"$work/minimal.log" 2>&1 &
mkdir -p "$work/minimal"
pids+=("$!"); mi=$!
wait_up "$p1" && wait_up "$p2" || { echo "a server did not start" >&2; tail "$work"/*.log >&2; exit 1; }

echo "--- minimal server (stores the body as it came)"
target/release/imagechat-bench upload --url "http://127.0.0.1:$p2" --server-pid "$mi" --json "$@" >"$work/minimal.json"
echo "--- imagechat"
target/release/imagechat-bench upload --url "http://127.0.0.1:$p1" --server-pid "$ic" --json "$@" >"$work/imagechat.json"
python3 - "$work/minimal.json" "$work/imagechat.json" <<'PY'
import json, sys
m, i = (json.load(open(p)) for p in sys.argv[1:3])
for name, r in (("minimal", m), ("imagechat", i)):
    print(f"{name:9}: {r['median_uploads_per_second']:6.1f} uploads/s, "
          f"server CPU {r['median_server_cpu_ms_per_upload']:5.1f} ms/upload "
          f"({r['png_bytes']} B PNG, {r['concurrency']} at once, {len(r['rounds'])} rounds)")
print(f"imagechat / minimal: CPU per upload {i['median_server_cpu_ms_per_upload'] / m['median_server_cpu_ms_per_upload']:.2f}x, "
      f"uploads/s {i['median_uploads_per_second'] / m['median_uploads_per_second']:.2f}x; "
      f"one decode of the file in the generator: {i['decode_floor_ms']:.2f} ms")
sys.exit(0 if m['ok'] and i['ok'] else 1)
PY
