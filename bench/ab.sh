#!/bin/sh
# Two imagechat servers side by side, interleaved (A, B, A, B, ...), so the
# machine's noise falls on both alike; prints the medians and B ÷ A.
#
#   bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] [SCENARIOS]
#
# e.g. build the previous commit into /tmp/old (git worktree + cargo build
# --release), then: bench/ab.sh /tmp/old/imagechat target/release/imagechat
# Defaults: 3 rounds of fanout-high,fanout-light,idle,reconnect-storm
# (about 8 minutes). The generator is this checkout's imagechat-bench.
set -eu
cd "$(dirname "$0")/.."
A="$1"; B="$2"; ROUNDS="${3:-3}"; SCEN="${4:-fanout-high,fanout-light,idle,reconnect-storm}"
flock /tmp/imagechat-cargo.lock cargo build --release -p imagechat-bench
out=$(mktemp -d "${TMPDIR:-/tmp}/imagechat-ab.XXXXXX")
cp "$A" "$out/a"; cp "$B" "$out/b"; cp target/release/imagechat-bench "$out/"
r=1
while [ "$r" -le "$ROUNDS" ]; do
  for which in a b; do
    echo "=== round $r: $which" >&2
    "$out/imagechat-bench" compare --imagechat-bin "$out/$which" --only imagechat \
      --scenarios "$SCEN" --repeat 1 --out "$out/$which-$r.json" >/dev/null
  done
  r=$((r + 1))
done
python3 - "$out" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def rows(which):
    res = []
    for r in range(1, rounds + 1):
        d = json.load(open(f"{out}/{which}-{r}.json"))
        row = {}
        for scen, key, f in [
            ("fanout-high", "fanout-high CPU µs/delivery", lambda x: x["server_cpu_us_per_delivery"]),
            ("fanout-high", "fanout-high p99 ms", lambda x: x["latency"]["p99_ms"]),
            ("fanout-light", "fanout-light CPU µs/delivery", lambda x: x["server_cpu_us_per_delivery"]),
            ("fanout-light", "fanout-light p99 ms", lambda x: x["latency"]["p99_ms"]),
            ("fanout-light", "fanout-light write answer p99 ms", lambda x: x["write_answer_p99_ms"]),
            ("idle", "idle KiB/connection", lambda x: x["kib_per_connection"]),
            ("reconnect-storm", "storm all caught up ms", lambda x: x["all_caught_up_ms"]),
        ]:
            runs = d.get(scen, {}).get("imagechat", [])
            if runs:
                row[key] = f(runs[0])
        for scen in d:
            for x in d[scen].get("imagechat", []) if isinstance(d[scen], dict) else []:
                if x.get("lost") or x.get("duplicated") or x.get("reordered"):
                    row["LOSS in " + scen] = 1
        res.append(row)
    return res
a, b = rows("a"), rows("b")
print("| measure | A runs | A median | B runs | B median | B ÷ A |")
print("|---|---|---:|---|---:|---:|")
for k in a[0]:
    av = [round(r[k], 2) for r in a if k in r]; bv = [round(r[k], 2) for r in b if k in r]
    ma, mb = statistics.median(av), statistics.median(bv)
    print(f"| {k} | {av} | {ma:.3g} | {bv} | {mb:.3g} | {mb / ma:.2f} |" if ma else f"| {k} | {av} | {ma} | {bv} | {mb} | - |")
PY
rm -rf "$out"
