#!/bin/bash
# demo.sh: a shortened `xdt demo` (the README's first command runs the full one): profile, plan,
# simulate, launch over the emulated WAN, compare, and every promised file in the folder.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
"$XDT" demo --root "$ROOT" --out "$WORK/demo" --steps 6 --global-batch 4 --seq 32 \
    >"$WORK/demo.txt" 2>&1
check "demo exits 0" test $? -eq 0 || tail -n 20 "$WORK/demo.txt" >&2
for f in plan.json profile.json sim.trace.json timeline.svg run.trace.json metrics.jsonl \
    compare.txt summary.txt; do
    check "demo leaves $f" test -s "$WORK/demo/$f"
done
check "metrics has a line per step" test "$(wc -l <"$WORK/demo/metrics.jsonl")" -eq 6
check "summary gives predicted and measured step" grep -qE 'step time: predicted [0-9.]+ ms, measured [0-9.]+ ms' "$WORK/demo/summary.txt"
check "summary gives the WAN bytes" grep -qE 'between the sites: [0-9.]+ MB sent' "$WORK/demo/summary.txt"
check "compare names the error" grep -qE 'error [-+]?[0-9.]+ %' "$WORK/demo/compare.txt"
check "the loss fell" python3 -c "
import json
l = [json.loads(x)['loss'] for x in open('$WORK/demo/metrics.jsonl')]
assert l[-1] < l[0], l"
check "the timeline is an SVG" grep -q '</svg>' "$WORK/demo/timeline.svg"
finish
