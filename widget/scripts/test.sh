#!/usr/bin/env bash
# Checks and browser tests of the widget (imagechat.js and its lazy/ files),
# the demo page and the dashboard.
#   IMAGECHAT_BIN=/path/to/imagechat bash widget/scripts/test.sh
# Each test file starts its own server from $IMAGECHAT_BIN (the files it
# serves are the ones embedded in that binary) and drives Debian's Chromium.
set -euo pipefail

: "${IMAGECHAT_BIN:?set IMAGECHAT_BIN to the imagechat server binary}"
# Resolve it before leaving the caller's directory, so a relative path works.
IMAGECHAT_BIN="$(cd "$(dirname "$IMAGECHAT_BIN")" && pwd)/$(basename "$IMAGECHAT_BIN")"
export IMAGECHAT_BIN
[ -x "$IMAGECHAT_BIN" ] || { echo "not executable: $IMAGECHAT_BIN" >&2; exit 1; }
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  echo "--- installing Chromium (Debian package)"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "--- npm ci"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error

echo "--- tsc --noEmit --checkJs --strict"
npx tsc --noEmit -p tsconfig.json

echo "--- no focused tests"
if grep -rnE '\.only\(|[{,] *only: *true' tests/; then
  echo "a focused test (.only) would skip the others: remove it" >&2
  exit 1
fi

echo "--- sizes"
size=$(gzip -9 -c imagechat.js | wc -c)
# Every visitor loads it: 24 KB, read as 24,000 bytes.
echo "imagechat.js: $(wc -c < imagechat.js) bytes, $size bytes gzipped (budget 24000)"
[ "$size" -le 24000 ] || { echo "imagechat.js is over its 24 KB (24,000 bytes) gzipped budget" >&2; exit 1; }
# Loaded on demand (served at /imagechat/NAME.js): no budget, but worth watching.
for f in lazy/*.js; do
  echo "$f: $(wc -c < "$f") bytes, $(gzip -9 -c "$f" | wc -c) bytes gzipped (on demand)"
done

echo "--- browser tests"
node --test --test-concurrency=1 --test-timeout=180000 tests/
