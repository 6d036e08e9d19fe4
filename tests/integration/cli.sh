#!/bin/bash
# The xdt command: help texts, unknown commands, and the progress display on a terminal.
source "$(dirname "$0")/lib.sh"
# each help text captured first, so that xdt's own exit status is checked too
help=$("$XDT" --help)
check "xdt --help exits 0" test $? -eq 0
check "xdt --help lists train" grep -q '^  train' <<<"$help"
check "xdt --help lists eval" grep -q '^  eval' <<<"$help"
check "xdt --help says what the build has" \
    grep -qE '^built with: devices cpu(, cuda)?(, hip)?; transport (UCX|in-process only)' <<<"$help"
train_help=$("$XDT" train --help)
check "xdt train --help exits 0" test $? -eq 0
for opt in --model --data --steps --batch --seq --lr --warmup --weight-decay --grad-clip --beta1 \
    --beta2 --adam-eps --threads --seed --eval-every --val-fraction --data-order --lr-decay \
    --ckpt-dir --ckpt-every --resume --init --export-llmc --metrics --precision; do
    check "train --help documents $opt" grep -q -- "$opt " <<<"$train_help"
done
eval_help=$("$XDT" eval --help)
check "xdt eval --help exits 0" test $? -eq 0
for opt in --init --ckpt-dir --data --batch --seq --max-batches --json; do
    check "eval --help documents $opt" grep -q -- "$opt" <<<"$eval_help"
done
worker_help=$("$XDT" worker --help)
check "xdt worker --help exits 0" test $? -eq 0
for opt in --resume --allreduce; do
    check "worker --help documents $opt" grep -q -- "$opt" <<<"$worker_help"
done
# xdt bench: link (two threads, and two UCX processes when UCX is built) and codec
j=$("$XDT" bench link --transport inproc --iters 3 --size 4096 --json 2>/dev/null)
for key in latency_ms bandwidth_MBps ratio; do
    check "bench link --json has $key" grep -q "\"$key\":[0-9]" <<<"$j"
done
j=$("$XDT" bench link --iters 3 --size 65536 --codec int8 --json 2>/dev/null)
check "bench link over UCX with int8 reports ratio > 3" \
    awk -v r="$(grep -o '"ratio":[0-9.]*' <<<"$j" | cut -d: -f2)" 'BEGIN{exit !(r > 3)}'
check "bench codec prints every data set" bash -c "\"$XDT\" bench codec --codec int8 --model $ROOT/configs/models/gpt-small-cpu.yaml \
    --size 65536 --iters 2 --steps 1 2>/dev/null | grep -c 'int8' | grep -qx 3"
expect_error "unknown codec \"int9\"" "$XDT" bench link --codec int9
expect_error "bandwidth 'fast'" "$XDT" bench link --bandwidth fast
# xdt plan: a table, a prediction and a versioned plan.json
"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$ROOT/configs/models/gpt-small-cpu.yaml" \
    --global-batch 8 --seq 256 -o "$WORK/plan.json" >"$WORK/plan.txt" 2>&1
check "plan prints the prediction" grep -q '^predicted: step [0-9.]* ms' "$WORK/plan.txt"
check "plan.json has the documented keys" python3 -c "
import json, sys
d = json.load(open('$WORK/plan.json'))
assert d['version'] == 2 and d['schedule']['kind'] in ('1f1b', 'gpipe', 'interleaved', 'xdc')
assert d['schedule']['microbatches'] == sum(r['microbatches'] for r in d['replicas']) > 0
assert all(k in st for st in d['stages'] for k in ('rank', 'site', 'device_type', 'units', 'chunks'))
assert all('codec' in l for l in d['links']) and d['predicted']['step_ms'] > 0
assert len(d['allreduce']) * len(d['replicas']) == len(d['stages']) == len(d['ops'])"
# one pipeline across the two sites, xdc: extra warm-up before the WAN, int8 on it
"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$ROOT/configs/models/gpt-small-cpu.yaml" \
    --global-batch 8 --seq 256 --max-replicas 1 --schedule xdc --codec int8 \
    -o "$WORK/xdc.json" >"$WORK/xdc.txt" 2>&1
check "xdc plan across the sites with int8 on the WAN" python3 -c "
import json
d = json.load(open('$WORK/xdc.json'))
assert d['schedule']['kind'] == 'xdc' and len(d['replicas']) == 1, d['schedule']
wan = [l for l in d['links'] if l['between_sites']]
assert wan and all(l['codec'] == 'int8' for l in wan), d['links']
assert all(l['codec'] == 'none' for l in d['links'] if not l['between_sites'])
first = wan[0]['from']
assert d['schedule']['extra'][first] > 0, d['schedule']['extra']"
expect_error "--codec int9: not a codec" "$XDT" plan --cluster \
    "$ROOT/configs/clusters/local-two-sites.yaml" --catalog "$ROOT/configs/devices.yaml" \
    --model "$ROOT/configs/models/gpt-small-cpu.yaml" --global-batch 8 --codec int9
# xdt simulate: replays the plan to the same prediction, writes a trace and a timeline
"$XDT" simulate "$WORK/plan.json" --trace "$WORK/sim.json" --svg "$WORK/sim.svg" >"$WORK/sim.txt" 2>&1
want=$(python3 -c "import json; print('%.3f' % json.load(open('$WORK/plan.json'))['predicted']['step_ms'])")
check "simulate reproduces the plan's prediction ($want ms)" grep -q "^predicted step $want ms" "$WORK/sim.txt"
check "simulate writes a JSON trace" python3 -c "import json; assert json.load(open('$WORK/sim.json'))['traceEvents']"
check "simulate writes an SVG timeline" grep -q '</svg>' "$WORK/sim.svg"
odd="$WORK/a\"<&b" # a plan's path with characters JSON and XML must escape
mkdir -p "$odd" && cp "$WORK/plan.json" "$odd/plan.json"
"$XDT" simulate "$odd/plan.json" --trace "$WORK/sim-q.json" --svg "$WORK/sim-q.svg" >/dev/null 2>&1
check "the trace stays JSON whatever the plan's path" python3 -c "import json, sys
assert json.load(open(sys.argv[1]))['traceEvents'][0]['args']['name'].startswith(sys.argv[2])" \
    "$WORK/sim-q.json" "$odd/plan.json"
check "the timeline stays XML whatever the plan's path" python3 -c "import sys
import xml.etree.ElementTree as ET
texts = [t.text for t in ET.parse(sys.argv[1]).getroot().iter('{http://www.w3.org/2000/svg}text')]
assert texts[0].startswith(sys.argv[2]), texts[0]" "$WORK/sim-q.svg" "$odd/plan.json"
python3 - "$WORK" <<'PY'
import json, sys
w = sys.argv[1]
d = json.load(open(w + "/plan.json"))
d["version"] = 7
json.dump(d, open(w + "/v7.json", "w"))
d = json.load(open(w + "/xdc.json"))  # one pipeline of two ranks
d["ops"][0], d["ops"][1] = d["ops"][1], d["ops"][0]  # ranks swapped: no longer a valid schedule
json.dump(d, open(w + "/swapped.json", "w"))
PY
expect_error "v7.json: field 'version' is 7" "$XDT" simulate "$WORK/v7.json"
expect_error "swapped.json: replica 0's schedule fails validation" "$XDT" simulate "$WORK/swapped.json"
printf 'name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: B300, devices: 8}\n' >"$WORK/bad.yaml"
expect_error "unknown device type 'B300'" "$XDT" plan --cluster "$WORK/bad.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$ROOT/configs/models/gpt-small-cpu.yaml" --global-batch 8
printf 'name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: T4, devices: 1}\n' >"$WORK/small.yaml"
expect_error "fits no placement" "$XDT" plan --cluster "$WORK/small.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$ROOT/configs/models/gpt2-124M.yaml" --global-batch 512 \
    --microbatch 512
"$XDT" frobnicate >/dev/null 2>&1
check "unknown command exits 2" test $? -eq 2
"$XDT" >/dev/null 2>&1
check "no command exits 2" test $? -eq 2
# On a terminal the progress bar shows step, loss, tokens/s and ETA (script(1) gives a pty).
if command -v script >/dev/null && [ -r "$TEXT" ]; then
    script -qec "\"$XDT\" train --model \"$TINY\" --data \"$TEXT\" --steps 5 --batch 2 --seq 16 \
        --eval-every 0" "$WORK/tty.txt" >/dev/null 2>&1
    check "progress bar on a terminal" grep -qE '\[#+\.*\] step 5/5 \| loss [0-9.]+ \| [0-9]+ tok/s \| .* ETA ' "$WORK/tty.txt"
else
    echo "note: script(1) or $TEXT missing; the terminal progress check did not run"
    fail "cannot check the terminal progress bar without script(1)"
fi
# xdt profile: per-unit forward/backward medians and the GEMM rate, as profile.json
"$XDT" profile --model "$TINY" --device cpu --microbatch 1,2 --seq 32 --reps 2 --threads 1 \
    -o "$WORK/prof.json" >"$WORK/prof.txt" 2>&1
check "profile exits 0" test $? -eq 0
check "profile prints the sgemm rate" grep -qE '^sgemm 1024\^3: [0-9.]+ TFLOP/s' "$WORK/prof.txt"
check "profile prints a row per microbatch size" test "$(grep -cE '^ +[12] +[0-9.]+ ' "$WORK/prof.txt")" -eq 2
check "profile.json has the documented fields and positive times" python3 -c "
import json
d = json.load(open('$WORK/prof.json'))
assert d['version'] == 1 and d['device_type'] == 'cpu' and d['seq'] == 32 and d['threads'] == 1
m = d['model']
assert (m['name'], m['n_layer'], m['n_embd'], m['n_head'], m['vocab_size'], m['padded_vocab_size']) == ('gpt-tiny', 2, 64, 4, 256, 256)
assert d['sgemm_tflops'] > 0 and [mb['b'] for mb in d['microbatches']] == [1, 2]
for mb in d['microbatches']:
    assert [u['unit'] for u in mb['units']] == [0, 1, 2, 3]
    assert all(u['fwd_ms'] > 0 and u['bwd_ms'] > 0 for u in mb['units'])"
check "profile leaves no temp file" test -z "$(ls "$WORK" | grep '^prof\.json\.')"
expect_error "device 'cuda:0'|device cuda:0" "$XDT" profile --model "$TINY" --device cuda:0 -o "$WORK/p2.json"
expect_error "nonexistent\.yaml: cannot open" "$XDT" profile --model "$WORK/nonexistent.yaml" -o "$WORK/p2.json"
expect_error "--microbatch: '1,x' is not a list" "$XDT" profile --model "$TINY" --microbatch 1,x -o "$WORK/p2.json"
expect_error "--seq 65 exceeds gpt-tiny's max_seq_len 64" "$XDT" profile --model "$TINY" --seq 65 -o "$WORK/p2.json"
expect_error "profile: -o is required" "$XDT" profile --model "$TINY"
check "a failed profile writes nothing" test ! -e "$WORK/p2.json"
# a co-runner that dies mid-measurement: the contention the profile would claim did not happen
"$XDT" profile --model "$TINY" --device cpu --microbatch 1,2,4,8 --reps 300 --threads 1 \
    --co-runners 1 -o "$WORK/p3.json" >/dev/null 2>"$WORK/p3.err" &
profiler=$!
co_runner=""
for _ in $(seq 100); do
    co_runner=$(pgrep -P "$profiler" | head -1)
    [ -n "$co_runner" ] && break
    sleep 0.1
done
[ -n "$co_runner" ] && kill -9 "$co_runner"
p3_status=0
wait "$profiler" || p3_status=$?
check "profile saw its co-runner start" test -n "$co_runner"
check "a killed co-runner fails the profile" test "$p3_status" -ne 0
check "a killed co-runner is named" grep -q "co-runner 0 (pid [0-9]*) was killed by signal 9" \
    "$WORK/p3.err"
check "a profile without its co-runner writes nothing" test ! -e "$WORK/p3.json"
# xdt plan --profile: the measured times replace the roofline's in the plan
"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --max-replicas 1 \
    --microbatch 1 --profile "$WORK/prof.json" -o "$WORK/prof-plan.json" >/dev/null 2>&1
check "plan --profile uses the measured unit times" python3 -c "
import json
p = json.load(open('$WORK/prof.json'))['microbatches'][0]['units']
d = json.load(open('$WORK/prof-plan.json'))
for st in d['stages']:
    first, last = st['units']
    want = sum(u['fwd_ms'] for u in p[first:last + 1])
    assert abs(st['chunks'][0]['fwd_ms'] - want) <= 1e-9 * want, (st, want)"
expect_error "measured for another model or sequence length" "$XDT" plan --cluster \
    "$ROOT/configs/clusters/local-two-sites.yaml" --catalog "$ROOT/configs/devices.yaml" \
    --model "$TINY" --global-batch 4 --seq 16 --profile "$WORK/prof.json"
python3 -c "import json, sys
d = json.load(open(sys.argv[1])); d['device_type'] = 'CPU '; json.dump(d, open(sys.argv[2], 'w'))" \
    "$WORK/prof.json" "$WORK/prof-other.json"
expect_error "prof-other.json: measured on device type 'CPU ', which no node of .*local-two-sites.yaml has" \
    "$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --profile \
    "$WORK/prof-other.json"
finish
