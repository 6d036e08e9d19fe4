#!/bin/bash
# run_pipeline_bench.sh: the pipeline runtime's speed on this machine, every configuration in
# one run, side by side (docs/BENCHMARKS.md, issue 5):
#  (a) WAN tolerance: 2 stages (one per site of local-two-sites), gpt-small-cpu, tokens/s with
#      the emulated 1 Gbit/s / 25 ms link / without emulation; the planner's 2-stage choice
#      (xdc + its codec) and 1F1B with codec none;
#  (b) simulator error |predicted - measured| / measured for each run (plans use a measured
#      profile of this machine);
#  (c) pipeline overhead: 2 stages without emulation / single-process xdt train, same global
#      batch, same total threads (2);
#  (d) mixed generations: local-mixed (one rank at slowdown 2), the planner's uneven split /
#      an even split, measured and predicted.
# Usage: bench/run_pipeline_bench.sh [STEPS] [GLOBAL_BATCH] [SEQ]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-20}
GB=${2:-32}
SEQ=${3:-128}
XDT=build/xdt
OUT=$(mktemp -d /tmp/xdt-pipe-bench.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
DATA=/usr/share/common-licenses/GPL-3
MODEL=configs/models/gpt-small-cpu.yaml
COMMON=(--data "$DATA" --steps "$STEPS" --eval-every 0 --threads 1 --val-fraction 0.2)

median_field() { # median_field FILE FIELD: median over the steps after the first three
    python3 -c "
import json, statistics, sys
r = [json.loads(l)[sys.argv[2]] for l in open(sys.argv[1])][3:]
print(statistics.median(r))" "$1" "$2"
}
predicted() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['predicted']['step_ms'])" "$1"; }

"$XDT" profile --model "$MODEL" --device cpu --threads 1 --seq "$SEQ" --microbatch 1,2,4,8 \
    --co-runners 1 \
    --reps 5 -o "$OUT/prof.json" >/dev/null
plan() { # plan NAME CLUSTER ARGS...
    local name=$1 cluster=$2; shift 2
    "$XDT" plan --cluster "configs/clusters/$cluster.yaml" --model "$MODEL" --global-batch "$GB" \
        --seq "$SEQ" --profile "$OUT/prof.json" -o "$OUT/$name.json" "$@" >"$OUT/$name.txt"
}
plan planner local-two-sites --stages 2 --replicas 1
plan onef1b local-two-sites --stages 2 --replicas 1 --schedule 1f1b --codec none
plan balanced local-mixed --stages 2 --replicas 1
plan even local-mixed --stages 2 --replicas 1 --split even
run() { # run NAME PLAN [launch args]: median step ms of a launch
    local name=$1 p=$2; shift 2
    "$XDT" launch "$OUT/$p.json" "${COMMON[@]}" --metrics "$OUT/$name.jsonl" "$@" >/dev/null 2>&1
    median_field "$OUT/$name.jsonl" step_ms
}
kind() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(d['schedule']['kind'], [l['codec'] for l in d['links']])" "$1"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "gpt-small-cpu, global batch $GB x $SEQ, $STEPS steps per run (medians after step 3)"
echo "planner's 2-stage plan: $(kind "$OUT/planner.json")"
a_wan=$(run planner-wan planner)
a_free=$(run planner-free planner --no-emulate-wan)
b_wan=$(run 1f1b-wan onef1b)
b_free=$(run 1f1b-free onef1b --no-emulate-wan)
"$XDT" train --model "$MODEL" --data "$DATA" --batch "$GB" --seq "$SEQ" --steps "$STEPS" \
    --eval-every 0 --threads 2 --val-fraction 0.2 --metrics "$OUT/train.jsonl" >/dev/null 2>&1
t_ms=$(median_field "$OUT/train.jsonl" step_ms)
m_bal=$(run mixed-balanced balanced --no-emulate-wan)
m_even=$(run mixed-even even --no-emulate-wan)
python3 - "$a_wan" "$a_free" "$b_wan" "$b_free" "$t_ms" "$m_bal" "$m_even" \
    "$(predicted "$OUT/planner.json")" "$(predicted "$OUT/onef1b.json")" \
    "$(predicted "$OUT/balanced.json")" "$(predicted "$OUT/even.json")" <<'PY'
import sys
a_wan, a_free, b_wan, b_free, t, m_bal, m_even, p_a, p_b, p_bal, p_even = map(float, sys.argv[1:])
def err(p, m): return f"{100 * (p - m) / m:+.1f} %"
print(f"(a) WAN tolerance, planner's plan: {a_wan:.1f} ms with the WAN, {a_free:.1f} ms without: "
      f"ratio {a_free / a_wan:.3f}")
print(f"    1F1B, codec none:              {b_wan:.1f} ms with the WAN, {b_free:.1f} ms without: "
      f"ratio {b_free / b_wan:.3f}")
print(f"(b) simulator: planner's plan predicted {p_a:.1f} ms vs measured {a_wan:.1f} ms ({err(p_a, a_wan)}); "
      f"1F1B predicted {p_b:.1f} ms vs {b_wan:.1f} ms ({err(p_b, b_wan)})")
print(f"(c) pipeline overhead: 2 stages (no WAN) {a_free:.1f} ms vs xdt train (2 threads) {t:.1f} ms: "
      f"tokens/s ratio {t / a_free:.3f}")
print(f"(d) mixed generations: uneven split {m_bal:.1f} ms vs even {m_even:.1f} ms: speed-up {m_even / m_bal:.3f} "
      f"(predicted {p_bal:.1f} vs {p_even:.1f} ms: {p_even / p_bal:.3f}; errors {err(p_bal, m_bal)}, {err(p_even, m_even)})")
PY
