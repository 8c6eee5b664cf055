#!/usr/bin/env bash
# Property-based tests of the REST API against its own OpenAPI document:
# schemathesis generates requests from /api/v1/openapi.json and checks that
# no answer is a 5xx and that every answer (status, content type, headers,
# body) is one the document describes.
#   scripts/schemathesis.sh BINARY [MAX_EXAMPLES]
# Installs schemathesis from PyPI when it is missing.
set -euo pipefail
BIN="${1:?usage: scripts/schemathesis.sh BINARY [MAX_EXAMPLES]}"
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
EXAMPLES="${2:-25}"
if ! command -v schemathesis >/dev/null; then
  python3 -m pip install --quiet schemathesis || python3 -m pip install --quiet --break-system-packages schemathesis
fi
command -v schemathesis >/dev/null || { echo "schemathesis could not be installed" >&2; exit 1; }
work=$(mktemp -d)
port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# No write limit, so the generated writes reach the logic behind the limiter.
"$BIN" serve --listen "127.0.0.1:$port" --database "sqlite://$work/api.db" --uploads "file://$work/uploads" \
  --admin-key schemathesis-key --write-rate-per-minute 0 >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
# schemathesis keeps its state in the working directory: not in the checkout.
cd "$work"
for _ in $(seq 1 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
json() { python3 -c "import json,sys;print(json.load(sys.stdin)$1)"; }
secret=$(curl -fs -XPOST "$base/api/v1/admin/tenants" -H 'authorization: Bearer schemathesis-key' \
  -H 'content-type: application/json' -d '{"tenantId":"api","anonymous":"write"}' | json "['secret']")
token=$(curl -fs -XPOST "$base/api/v1/sessions" -H 'content-type: application/json' \
  -d '{"tenantId":"api"}' | json "['token']")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance
run() {
  schemathesis run "$base/api/v1/openapi.json" --checks "$checks" --max-examples "$EXAMPLES" \
    --seed 1 --no-color "$@"
}
status=0
echo "--- every operation, with a session token"
run -H "Authorization: Bearer $token" || status=1
echo "--- the tenant API, with the tenant's credentials"
basic=$(printf 'api:%s' "$secret" | base64 -w0)
run -H "Authorization: Basic $basic" --include-path-regex '^/api/v1/tenant/' || status=1
echo "--- the operator call, with the operator key"
run -H "Authorization: Bearer schemathesis-key" --include-path-regex '^/api/v1/admin/' || status=1
if [ "$status" -ne 0 ]; then
  echo "--- server log"; tail -40 "$work/server.log"
fi
exit "$status"
