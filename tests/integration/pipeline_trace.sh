#!/bin/bash
# A measured run's trace against the simulator: `xdt launch --trace` writes a trace with every
# rank and step, and `xdt simulate --compare` reads it back next to the prediction (structure
# only: no timing thresholds, the machine is noisy); bad traces give one clear error line.
source "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "SKIP: $TEXT is missing"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }
require_ucx
cd "$WORK" || exit 1

"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --stages 2 \
    --replicas 1 --microbatch 1 --schedule 1f1b --codec none -o plan.json >plan.txt 2>&1
check "plan for two stages" test $? -eq 0
"$XDT" launch plan.json --data "$TEXT" --steps 6 --threads 1 --trace run.json >launch.txt 2>&1
rc=$?
check "launch with --trace exits 0" test $rc -eq 0
[ $rc -eq 0 ] || sed 's/^/    /' launch.txt >&2
check "run.json: valid JSON, both ranks, steps 0..5, step/chunk args" python3 -c "
import json
d = json.load(open('run.json'))
ev = [e for e in d['traceEvents'] if e.get('ph') == 'X']
assert ev, 'no events'
assert {e['tid'] for e in ev} == {0, 1}, {e['tid'] for e in ev}
assert {e['args']['step'] for e in ev} == set(range(6)), {e['args']['step'] for e in ev}
assert all('chunk' in e['args'] and 'microbatch' in e['args'] for e in ev)
for r in (0, 1):
    for cat in ('forward', 'backward', 'wait'):
        assert any(e['tid'] == r and e['cat'] == cat for e in ev), (r, cat)"

# the comparison, with the simulator's trace and timeline written alongside
"$XDT" simulate plan.json --compare run.json --trace sim.json --svg sim.svg >cmp.txt 2>cmp.err
rc=$?
check "simulate --compare exits 0" test $rc -eq 0
[ $rc -eq 0 ] || sed 's/^/    /' cmp.err >&2
check "the summary line, median of 5 steps (step 0 left out), finite error" grep -qE \
    '^measured step [0-9]+\.[0-9]+ ms \(median of 5 steps\), predicted [0-9]+\.[0-9]+ ms, error -?[0-9]+\.[0-9] %$' \
    cmp.txt
check "the prediction is printed as before" grep -q '^predicted step [0-9.]* ms' cmp.txt
check "5 largest differences by default" test "$(grep -cE \
    '^rank [01] ([FB] chunk 0|receive wait per step|busy per step): predicted [0-9.]+ ms, measured [0-9.]+ ms \(-?[0-9]+\.[0-9] %\)$' \
    cmp.txt)" -eq 5
check "per-op lines for forward and backward" bash -c \
    "\"$XDT\" simulate plan.json --compare run.json --top 100 | grep -qE '^rank 1 B chunk 0: predicted'"
check "--trace and --svg still written with --compare" test -s sim.json -a -s sim.svg

# bad traces: one error line naming the file and what is wrong, non-zero exit
echo 'not json {' >bad.txt
expect_error "bad.txt: not valid JSON" "$XDT" simulate plan.json --compare bad.txt
echo '{"displayTimeUnit":"ms"}' >noevents.json
expect_error "noevents.json: no \"traceEvents\"" "$XDT" simulate plan.json --compare noevents.json
expect_error "missing.json: cannot open" "$XDT" simulate plan.json --compare missing.json
expect_error "sim.json: .*has no args.step" "$XDT" simulate plan.json --compare sim.json
python3 -c "
import json
d = json.load(open('run.json'))
for e in d['traceEvents']:
    if e.get('ph') == 'X' and e['tid'] == 1:
        e['tid'] = 2
json.dump(d, open('rank2.json', 'w'))"
expect_error "rank2.json: .*on rank 2, but the plan has 2 ranks" \
    "$XDT" simulate plan.json --compare rank2.json
python3 -c "
import json
d = json.load(open('run.json'))
d['traceEvents'] = [e for e in d['traceEvents'] if e.get('tid') != 1]
json.dump(d, open('onerank.json', 'w'))"
expect_error "onerank.json: no events of rank 1" "$XDT" simulate plan.json --compare onerank.json
finish
