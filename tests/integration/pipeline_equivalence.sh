#!/bin/bash
# pipeline_equivalence.sh: a pipeline gives the losses of single-process training (and its
# validation losses, evaluated by forward-only passes through the pipeline). gpt-tiny
# with 6 layers, global batch 4 x 32 (6 x 32 for 3 interleaved stages), codec none, 20 steps:
# 2, 3 and 4 stages under every schedule kind, and 2 data-parallel
# replicas of 2 stages, each launched as real processes over UCX; every step's loss must match
# `xdt train` on the same data and seed to 1e-5 relative.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
tiny_model "$WORK/model.yaml" 6
# two sites of two CPU ranks on this host
cat >"$WORK/cluster.yaml" <<'YAML'
name: four-cpus
sites:
  - name: a
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: a, type: cpu, devices: 2}
  - name: b
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: b, type: cpu, devices: 2}
links:
  - {from: a, to: b, gbps: 1, latency_ms: 5}
YAML
STEPS=20
COMMON=(--data "$TEXT" --steps $STEPS --threads 1 --eval-every 10 --eval-batches 2 --seed 7)
for gb in 4 6; do # 6 = a multiple of 3 stages, for interleaving them
    "$XDT" train --model "$WORK/model.yaml" --batch $gb --seq 32 "${COMMON[@]}" \
        --metrics "$WORK/ref$gb.jsonl" >/dev/null 2>&1
    check "reference run (batch $gb) writes $STEPS steps" test "$(wc -l <"$WORK/ref$gb.jsonl")" -eq $STEPS
done

same_losses() { losses_match "$1" "$2" 1e-5 2; }

run_case() { # run_case STAGES REPLICAS SCHEDULE [GLOBAL_BATCH]
    local gb=${4:-4}
    local tag="$1x$2-$3-b$gb" plan="$WORK/plan-$1x$2-$3-b$gb.json"
    if ! "$XDT" plan --cluster "$WORK/cluster.yaml" --catalog "$ROOT/configs/devices.yaml" \
        --model "$WORK/model.yaml" --global-batch "$gb" --seq 32 --microbatch 1 --stages "$1" \
        --replicas "$2" --schedule "$3" --codec none -o "$plan" >"$WORK/plan-$tag.txt" 2>&1; then
        fail "plan $tag"; sed 's/^/    /' "$WORK/plan-$tag.txt" >&2; return
    fi
    if ! timeout 300 "$XDT" launch "$plan" "${COMMON[@]}" --no-emulate-wan \
        --metrics "$WORK/$tag.jsonl" >"$WORK/$tag.out" 2>&1; then
        fail "launch $tag"; tail -n 5 "$WORK/$tag.out" | sed 's/^/    /' >&2; return
    fi
    echo "$tag:"
    check "$tag gives xdt train's losses" same_losses "$WORK/$tag.jsonl" "$WORK/ref$gb.jsonl"
}

for stages in 2 3 4; do
    for kind in gpipe 1f1b xdc; do run_case $stages 1 $kind; done
done
run_case 2 1 interleaved
run_case 3 1 interleaved 6
run_case 4 1 interleaved
run_case 2 2 1f1b
run_case 2 2 gpipe
finish
