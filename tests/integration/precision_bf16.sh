#!/bin/bash
# precision_bf16.sh: the bf16 GEMM mode on the CPU, which computes what a GPU's bf16 tensor cores
# compute (inputs rounded to bf16, fp32 sums) and is the reference for GPU runs. gpt-tiny, 20
# steps: `xdt train --precision bf16` trains, its losses are not fp32's bits (the mode is live)
# yet within 1e-3 relative of them; a plan made with --precision bf16 records it, its workers
# compute in bf16, and its 2-stage pipeline gives the single-process bf16 run's losses to 1e-4
# (not fp32's 1e-5: a GEMM input that differs in its last fp32 bit, summed in another order by
# the microbatched pipeline, now and then rounds to the neighbouring bf16 value, 2^-8 away); a
# bad precision is refused.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
tiny_model "$WORK/model.yaml" 4
COMMON=(--data "$TEXT" --steps 20 --threads 1 --eval-every 10 --eval-batches 2 --seed 5)
for p in fp32 bf16; do
    check "xdt train --precision $p" "$XDT" train --model "$WORK/model.yaml" --batch 4 --seq 32 \
        "${COMMON[@]}" --precision $p --metrics "$WORK/$p.jsonl"
done
jsonl_field "$WORK/fp32.jsonl" loss >"$WORK/fp32.loss"
jsonl_field "$WORK/bf16.jsonl" loss >"$WORK/bf16.loss"
check "bf16 losses differ from fp32's bits" test "$(cat "$WORK/fp32.loss")" != "$(cat "$WORK/bf16.loss")"
echo "bf16 against fp32:"
check "bf16 within 1e-3 of fp32" losses_match "$WORK/bf16.jsonl" "$WORK/fp32.jsonl" 1e-3 2
first=$(jsonl_field "$WORK/bf16.jsonl" loss | head -1)
last=$(jsonl_field "$WORK/bf16.jsonl" loss | tail -1)
check "bf16 loss falls ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.2) }'

cat >"$WORK/cluster.yaml" <<'YAML'
name: two-cpus
sites:
  - name: lab
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: host, type: cpu, devices: 2}
YAML
check "plan --precision bf16" "$XDT" plan --cluster "$WORK/cluster.yaml" \
    --catalog "$ROOT/configs/devices.yaml" --model "$WORK/model.yaml" --global-batch 4 --seq 32 \
    --microbatch 1 --stages 2 --replicas 1 --schedule 1f1b --codec none --precision bf16 \
    -o "$WORK/plan.json"
check "plan.json records bf16" grep -q '"precision":[[:space:]]*"bf16"' "$WORK/plan.json"
check "the pipeline runs" timeout 300 "$XDT" launch "$WORK/plan.json" "${COMMON[@]}" \
    --no-emulate-wan --metrics "$WORK/pipe.jsonl" 2>"$WORK/pipe.err"
check "its workers compute in bf16" grep -q "the plan's GEMMs compute in bf16" "$WORK/pipe.err"
echo "2-stage bf16 pipeline against xdt train --precision bf16:"
check "the pipeline gives the bf16 losses" losses_match "$WORK/pipe.jsonl" "$WORK/bf16.jsonl" 1e-4 2

# bad input
expect_error "--precision fp8: expected fp32, tf32 or bf16" "$XDT" train --model "$WORK/model.yaml" \
    --data "$TEXT" --steps 1 --precision fp8
expect_error "--attention sparse: expected auto, explicit or flash" "$XDT" train \
    --model "$WORK/model.yaml" --data "$TEXT" --steps 1 --attention sparse
expect_error "--attention flash is for GPU devices" "$XDT" train --model "$WORK/model.yaml" \
    --data "$TEXT" --steps 1 --attention flash
expect_error "--precision half: expected auto, fp32, tf32 or bf16" "$XDT" plan \
    --cluster "$WORK/cluster.yaml" --catalog "$ROOT/configs/devices.yaml" \
    --model "$WORK/model.yaml" --global-batch 4 --precision half
sed 's/"precision":[[:space:]]*"bf16"/"precision": "bf8"/' "$WORK/plan.json" >"$WORK/bad.json"
expect_error "bad.json: field 'precision' must be" "$XDT" simulate "$WORK/bad.json"
finish
