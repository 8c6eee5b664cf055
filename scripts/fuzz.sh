#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of everything that reads
# untrusted bytes: WebSocket frames, client messages, REST bodies, query
# strings, credentials (SSO payloads, session tokens, signed cookies) and
# annotation imports with their SVG.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 30 s, all)
# Runs on the stable toolchain (RUSTC_BOOTSTRAP for libFuzzer's flags, no
# sanitizer: the fuzzed code has no unsafe; panics and aborts are found).
# New inputs go to a temporary corpus; the seeds in fuzz/corpus stay as they
# are. A crash stops the run and leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER="${1:-30}"; shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(frame client_message rest_body query credentials annotations)
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# Built first, so a target that does not compile is told as such, not as a
# crash.
build_log=$(mktemp)
if ! (cd fuzz && cargo fuzz build --sanitizer none --release) >"$build_log" 2>&1; then
  tail -40 "$build_log"
  echo "the fuzz targets do not build" >&2
  exit 1
fi
for t in "${TARGETS[@]}"; do
  work=$(mktemp -d)
  log="$work/log"
  echo "--- fuzz $t for ${SECONDS_PER}s"
  if ! (cd fuzz && cargo fuzz run --sanitizer none --release "$t" "$work" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1) >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz target $t found a crash: its input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 || true)
  echo "$t: $execs executions, $cov, 0 crashes"
  rm -rf "$work"
done
