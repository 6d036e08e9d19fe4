#!/bin/bash
# pipeline_devices.sh: device selection per rank, on any machine. The planner puts a CUDA stage
# and a CPU stage on configs/clusters/local-cpu-cuda.yaml and plan.json records each rank's
# backend and device; where cuda:0 cannot be opened (no GPU, or no CUDA backend in this build),
# the worker of the CUDA rank fails with one error line naming its rank and device. NCCL
# asked for a group of CPU ranks is refused, naming why; a bad --allreduce is a usage error.
# A plan with --attention flash records it and counts less activation memory on the GPU rank.
# A worker's --device replaces its planned device within the same backend only.
# (tests/integration/pipeline_gpu.sh runs such plans on the GPU machine.)
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
tiny_model "$WORK/model.yaml" 4
plan() { # plan CLUSTER OUT STAGES REPLICAS [ARGS...]
    local cluster=$1 out=$2 stages=$3 replicas=$4
    shift 4
    "$XDT" plan --cluster "$cluster" --catalog "$ROOT/configs/devices.yaml" \
        --model "$WORK/model.yaml" --global-batch 4 --seq 32 --microbatch 1 --stages "$stages" \
        --replicas "$replicas" --schedule 1f1b --codec none --split even -o "$out" "$@" \
        >"$out.txt" 2>&1
}
RUN=(--data "$TEXT" --steps 2 --threads 1 --no-emulate-wan --timeout 3)

# 1. the mixed plan records backend and device per rank
check "plan on local-cpu-cuda" plan "$ROOT/configs/clusters/local-cpu-cuda.yaml" "$WORK/mixed.json" 2 1
CUDA_RANK=$(python3 -c "
import json, sys
st = json.load(open(sys.argv[1]))['stages']
kinds = sorted((s['backend'], s['device'], s['device_type']) for s in st)
assert kinds == [('cpu', 0, 'cpu'), ('cuda', 0, 'H100-SXM')], kinds
print([s['rank'] for s in st if s['backend'] == 'cuda'][0])" "$WORK/mixed.json" 2>"$WORK/kinds.err")
check "the mixed plan has one cpu:0 rank and one cuda:0 rank" test -n "$CUDA_RANK"

# 1b. --attention flash: recorded in plan.json; the CUDA stage's memory figure falls by what its
# blocks no longer keep (the t x t probabilities), the CPU stage's stays (the CPU keeps them)
check "plan with --attention flash" plan "$ROOT/configs/clusters/local-cpu-cuda.yaml" \
    "$WORK/flash.json" 2 1 --attention flash
check "plan.json records the flash attention" python3 -c "
import json, sys
e, f = (json.load(open(p)) for p in sys.argv[1:3])
assert e['attention'] == 'explicit' and f['attention'] == 'flash', (e['attention'], f['attention'])
act = lambda plan, b: [s['chunks'][0]['activation_bytes'] for s in plan['stages'] if s['backend'] == b][0]
assert act(f, 'cuda') < act(e, 'cuda'), (act(f, 'cuda'), act(e, 'cuda'))
assert act(f, 'cpu') == act(e, 'cpu'), (act(f, 'cpu'), act(e, 'cpu'))" "$WORK/mixed.json" "$WORK/flash.json"
expect_error "--attention sparse: expected auto, explicit or flash" "$XDT" plan \
    --cluster "$ROOT/configs/clusters/local-cpu-cuda.yaml" --catalog "$ROOT/configs/devices.yaml" \
    --model "$WORK/model.yaml" --global-batch 4 --attention sparse
sed 's/"attention":[[:space:]]*"flash"/"attention": "sparse"/' "$WORK/flash.json" >"$WORK/bad-att.json"
expect_error "bad-att.json: field 'attention' must be" "$XDT" simulate "$WORK/bad-att.json"
# a device index no device name can carry (cuda:N takes N up to 1024) is refused at load
python3 -c "import json, sys
p = json.load(open(sys.argv[1])); p['stages'][0]['device'] = 1025; json.dump(p, open(sys.argv[2], 'w'))" \
    "$WORK/flash.json" "$WORK/bad-dev.json"
expect_error "bad-dev.json: field 'stages\[0\].device' is 1025, expected an integer in \[0, 1024\]" \
    "$XDT" simulate "$WORK/bad-dev.json"
# bad worker options and a missing data file: one line from xdt launch, before any rank starts
expect_error "--steps: expected an integer, got 'x'" "$XDT" launch "$WORK/mixed.json" \
    --data "$TEXT" --steps x
expect_error "/nonexistent.txt: cannot open data file" "$XDT" launch "$WORK/mixed.json" \
    --data /nonexistent.txt
# a plan whose stages talk over no listed link would be simulated as if the transfer were free
python3 -c "import json, sys
p = json.load(open(sys.argv[1])); p['links'] = []; json.dump(p, open(sys.argv[2], 'w'))" \
    "$WORK/flash.json" "$WORK/no-links.json"
expect_error "no-links.json: rank 0 sends to rank 1, but 'links' has no link from 0 to 1" \
    "$XDT" simulate "$WORK/no-links.json"
# every codec the plan names is one the planner knows: links', all-reduces' and the tied embedding's
for case in "allreduce:p['allreduce'][0]:allreduce\[0\]" "tied:p['tied_embedding']:tied_embedding"; do
    IFS=: read -r name field where <<<"$case"
    check "bad-$name.json written" python3 -c "import json, sys
p = json.load(open(sys.argv[1])); $field['codec'] = 'bogus'; json.dump(p, open(sys.argv[2], 'w'))" \
        "$WORK/flash.json" "$WORK/bad-$name.json"
    expect_error "bad-$name.json: $where.codec 'bogus' is not a known codec" \
        "$XDT" simulate "$WORK/bad-$name.json"
done

# 2. a CUDA rank where cuda:0 cannot be opened: one line naming the rank and the device
if "$XDT" train --model "$WORK/model.yaml" --device cuda:0 --data "$TEXT" --steps 1 --batch 2 \
    --seq 16 >/dev/null 2>&1; then
    echo "note: cuda:0 opens here; the mixed run itself is pipeline_gpu.sh's"
elif [ -n "$CUDA_RANK" ]; then
    timeout 120 "$XDT" launch "$WORK/mixed.json" "${RUN[@]}" >/dev/null 2>"$WORK/mixed.err"
    check "the launch fails" test $? -ne 0
    lines=$(grep -c "^xdt: error: rank $CUDA_RANK: .*cuda:0" "$WORK/mixed.err")
    check "one error line names rank $CUDA_RANK and cuda:0 (got $lines)" test "$lines" -eq 1
    [ "$lines" -eq 1 ] || sed 's/^/    /' "$WORK/mixed.err" >&2
    check "no worker refuses non-cpu ranks wholesale" bash -c "! grep -q 'cpu ranks only' '$WORK/mixed.err'"
fi

# 3. NCCL asked for CPU replicas: every rank refuses, saying why; the ring runs them
cat >"$WORK/two-cpus.yaml" <<'YAML'
name: two-cpus
sites:
  - name: lab
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: host, type: cpu, devices: 2}
YAML
check "plan two CPU replicas" plan "$WORK/two-cpus.yaml" "$WORK/dp.json" 1 2
timeout 120 "$XDT" launch "$WORK/dp.json" "${RUN[@]}" --allreduce nccl >/dev/null 2>"$WORK/nccl.err"
check "--allreduce nccl on CPU replicas fails" test $? -ne 0
check "the refusal says why" \
    grep -qE "^xdt: error: rank [01]: the replicas of pipeline rank 0 cannot all-reduce through NCCL: rank [01] computes in host memory" "$WORK/nccl.err"
check "--allreduce ring trains them" timeout 120 "$XDT" launch "$WORK/dp.json" "${RUN[@]}" \
    --allreduce ring --metrics "$WORK/ring.jsonl"
check "two steps recorded" test "$(wc -l <"$WORK/ring.jsonl" 2>/dev/null)" = 2

# 4. a worker's --device in place of the plan's: the same backend only
check "plan one CPU rank" plan "$WORK/two-cpus.yaml" "$WORK/one.json" 1 1
solo() { # solo ARGS...: rank 0 of a one-rank job, as a torchrun-style launcher would start it
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
        XDT_JOB_TOKEN=device-test-token-0123456789 timeout 120 "$XDT" worker "$WORK/one.json" \
        "${RUN[@]}" "$@"
}
expect_error "rank 0: --device cuda:0: the plan puts this rank on cpu; expected cpu" \
    solo --device cuda:0
expect_error "rank 0: --device cpu:1: the plan puts this rank on cpu" solo --device cpu:1
check "--device cpu on a cpu rank trains" solo --device cpu --metrics "$WORK/solo.jsonl"
check "two steps recorded" test "$(wc -l <"$WORK/solo.jsonl" 2>/dev/null)" = 2
# a CUDA rank (planned on cuda:0) told another GPU number opens that one: here cuda:7, which no
# machine of this suite has, so the error names it; a CPU in its place is refused
cat >"$WORK/one-gpu.yaml" <<'YAML'
name: one-gpu
sites:
  - name: lab
    network: {gbps: 40, latency_us: 10}
    nodes:
      - {name: gpu, type: H100-SXM, devices: 1}
YAML
if plan "$WORK/one-gpu.yaml" "$WORK/gpu1.json" 1 1; then
    cp "$WORK/gpu1.json" "$WORK/one.json"
    expect_error "rank 0: --device cpu: the plan puts this rank on cuda:0; expected cuda" \
        solo --device cpu
    expect_error "cuda:7" solo --device cuda:7
    for bad in cuda: cudax cuda:1x hip:0; do
        expect_error "rank 0: --device $bad: the plan puts this rank on cuda:0; expected cuda" \
            solo --device "$bad"
    done
else
    fail "plan one GPU rank"; sed 's/^/    /' "$WORK/gpu1.json.txt" >&2
fi

# 5. usage
expect_error "--allreduce bogus: expected auto, ring or nccl" \
    "$XDT" worker "$WORK/dp.json" --data "$TEXT" --allreduce bogus
finish
