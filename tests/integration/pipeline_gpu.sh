#!/bin/bash
# pipeline_gpu.sh (the GPU machine): pipelines on CUDA devices give the losses of `xdt train` on
# the CPU. gpt-tiny with 6 layers, global batch 4 x 32, codec none, 20 steps, every step's loss
# and the validation losses within 1e-4 relative of the CPU reference:
#   - a mixed plan on configs/clusters/local-cpu-cuda.yaml (a CUDA stage and a CPU stage, as
#     planned and with the two swapped): activations and gradients cross backends through host
#     memory;
#   - 2 data-parallel replicas of one CUDA stage: with two GPUs on cuda:0 and cuda:1 through NCCL
#     (--allreduce nccl, which fails rather than fall back); with one GPU both on cuda:0 through
#     the ring over the transport (NCCL refuses two members on one GPU), gradients staged
#     through pinned host memory.
#   - the mixed plan in bf16 against the CPU's bf16 run, to 1e-3.
# Plans are fp32 unless a case says (xdt plan's auto precision is bf16 when all ranks are GPUs).
# Exits 77 without an NVIDIA GPU, or when this build has no CUDA backend; a CUDA build that
# cannot train on the GPU fails.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
[ "${GPUS:-0}" -ge 1 ] || { echo "skip: no NVIDIA GPU here (nvidia-smi lists none)"; exit 77; }
if ! "$XDT" train --model "$TINY" --device cuda:0 --data "$TEXT" --steps 1 --batch 2 --seq 16 \
    >/dev/null 2>"$WORK/probe.err"; then
    if grep -q "this build has no CUDA backend" "$WORK/probe.err"; then
        echo "skip: $(grep -m1 'error' "$WORK/probe.err")"
        exit 77
    fi
    echo "FAIL: a CUDA build cannot train on cuda:0: $(grep -m1 'error' "$WORK/probe.err")"
    exit 1
fi
echo "$GPUS NVIDIA GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort -u | paste -sd,)"

tiny_model "$WORK/model.yaml" 6
STEPS=20
COMMON=(--data "$TEXT" --steps $STEPS --threads 1 --eval-every 10 --eval-batches 2 --seed 7)
"$XDT" train --model "$WORK/model.yaml" --batch 4 --seq 32 "${COMMON[@]}" \
    --metrics "$WORK/ref.jsonl" >/dev/null 2>&1
check "CPU reference writes $STEPS steps" test "$(wc -l <"$WORK/ref.jsonl")" -eq $STEPS

# backends PLAN: every rank's backend:device
backends() { python3 -c "import json,sys; print(' '.join(f\"{s['backend']}:{s['device']}\" for s in json.load(open(sys.argv[1]))['stages']))" "$1"; }

# rewrite PLAN PYTHON: edits the plan's stages in place (p = the plan)
rewrite() {
    python3 - "$1" "$2" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
exec(sys.argv[2])
json.dump(p, open(sys.argv[1], "w"), indent=1)
PY
}

# run_plan TAG PLAN [worker options]: launches the plan and compares it with the reference
# (REF and TOL in the environment: the fp32 reference and 1e-4 unless set)
run_plan() {
    local tag=$1 plan=$2 ref=${REF:-$WORK/ref.jsonl} tol=${TOL:-1e-4}; shift 2
    echo "$tag: ranks on $(backends "$plan")"
    if ! timeout 600 "$XDT" launch "$plan" "${COMMON[@]}" --no-emulate-wan "$@" \
        --metrics "$WORK/$tag.jsonl" >"$WORK/$tag.out" 2>"$WORK/$tag.err"; then
        fail "launch $tag"; tail -n 8 "$WORK/$tag.err" | sed 's/^/    /' >&2; return 1
    fi
    check "$tag gives the CPU reference's losses to $tol" \
        losses_match "$WORK/$tag.jsonl" "$ref" "$tol" 2
}

plan() { # plan CLUSTER OUT STAGES REPLICAS [PRECISION]: fp32 unless told (auto is bf16 on GPUs)
    "$XDT" plan --cluster "$1" --catalog "$ROOT/configs/devices.yaml" --model "$WORK/model.yaml" \
        --global-batch 4 --seq 32 --microbatch 1 --stages "$3" --replicas "$4" --schedule 1f1b \
        --codec none --split even --precision "${5:-fp32}" -o "$2" >"$2.txt" 2>&1
}

# 1. mixed backends: one CUDA stage and one CPU stage, in both orders
if plan "$ROOT/configs/clusters/local-cpu-cuda.yaml" "$WORK/mixed.json" 2 1; then
    check "the mixed plan has a cuda and a cpu rank" \
        test "$(backends "$WORK/mixed.json" | tr ' ' '\n' | cut -d: -f1 | sort | paste -sd,)" = "cpu,cuda"
    run_plan mixed "$WORK/mixed.json"
    cp "$WORK/mixed.json" "$WORK/swapped.json"
    rewrite "$WORK/swapped.json" '
a, b = p["stages"]
for k in ("node", "device_type", "backend", "device"):
    a[k], b[k] = b[k], a[k]'
    run_plan swapped "$WORK/swapped.json"
else
    fail "plan on local-cpu-cuda"; sed 's/^/    /' "$WORK/mixed.json.txt" >&2
fi

# 2. two data-parallel replicas of one CUDA stage
cat >"$WORK/two-gpus.yaml" <<'YAML'
name: two-gpus
sites:
  - name: lab
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: gpu, type: H100-SXM, devices: 2}
YAML
if plan "$WORK/two-gpus.yaml" "$WORK/dp.json" 1 2; then
    if [ "$GPUS" -ge 2 ]; then
        run_plan dp-nccl "$WORK/dp.json" --allreduce nccl &&
            check "dp-nccl all-reduced through NCCL" grep -q "all-reduce through NCCL" "$WORK/dp-nccl.err"
    else
        echo "note: one GPU: the two replicas share cuda:0 and take the ring (NCCL needs a GPU per member; test_nccl_group covers a one-member NCCL group here)"
        rewrite "$WORK/dp.json" 'for s in p["stages"]: s["device"] = 0'
        run_plan dp-ring-one-gpu "$WORK/dp.json"
        check "one GPU, two replicas: no NCCL" bash -c "! grep -q 'through NCCL' '$WORK/dp-ring-one-gpu.err'"
        # asked for, NCCL fails up front on every rank, saying why
        forced_status=0
        "$XDT" launch "$WORK/dp.json" "${COMMON[@]}" --no-emulate-wan --allreduce nccl \
            --timeout 5 >/dev/null 2>"$WORK/forced.err" || forced_status=$?
        check "--allreduce nccl on one GPU exits non-zero" test "$forced_status" -ne 0
        check "--allreduce nccl on one GPU fails naming the shared device" \
            grep -q "cannot all-reduce through NCCL: ranks 0 and 1 share cuda:0" "$WORK/forced.err"
    fi
else
    fail "plan on two-gpus"; sed 's/^/    /' "$WORK/dp.json.txt" >&2
fi

# 3. the precision `xdt plan` picks for GPU-only clusters, bf16: the mixed plan made bf16 (its
# CUDA stage rounds attention products too, the CPU's fused attention does not) against
# `xdt train --precision bf16` on the CPU, to bf16's 1e-3
"$XDT" train --model "$WORK/model.yaml" --batch 4 --seq 32 "${COMMON[@]}" --precision bf16 \
    --metrics "$WORK/ref-bf16.jsonl" >/dev/null 2>&1
if plan "$ROOT/configs/clusters/local-cpu-cuda.yaml" "$WORK/mixed16.json" 2 1 bf16; then
    check "the plan records bf16" grep -q '"precision":[[:space:]]*"bf16"' "$WORK/mixed16.json"
    REF=$WORK/ref-bf16.jsonl TOL=1e-3 run_plan mixed-bf16 "$WORK/mixed16.json"
    check "its workers compute in bf16" grep -q "GEMMs compute in bf16" "$WORK/mixed-bf16.err"
else
    fail "plan on local-cpu-cuda in bf16"; sed 's/^/    /' "$WORK/mixed16.json.txt" >&2
fi
finish
