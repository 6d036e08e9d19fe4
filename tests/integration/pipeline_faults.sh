#!/bin/bash
# pipeline_faults.sh: a pipelined run under faults. kill -9 of a worker mid-run (rank 1, then
# rank 0, which also serves the bootstrap store) makes the other rank exit with an error naming
# the lost rank and the launcher exit non-zero naming it; Ctrl-C stops every rank and leaves no
# worker behind; a worker with the wrong job token is refused.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
PLAN=$WORK/plan.json
"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --microbatch 1 \
    --stages 2 --replicas 1 --schedule 1f1b --codec none -o "$PLAN" >/dev/null 2>&1
check "plan with two ranks" test -s "$PLAN"
RUN=(--data "$TEXT" --steps 100000 --threads 1 --eval-every 0 --timeout 10)

# workers_of PLAN: pids of the workers running it
workers_of() { pgrep -f "xdt worker $1" || true; }

# wait_for_steps FILE N: until the metrics file has N lines (at most 60 s)
wait_for_steps() {
    for _ in $(seq 600); do
        [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ] && return 0
        sleep 0.1
    done
    return 1
}

kill_case() { # kill_case RANK: kill -9 that rank's worker mid-run
    local victim=$1 m=$WORK/kill$1.jsonl err=$WORK/kill$1.err
    "$XDT" launch "$PLAN" "${RUN[@]}" --metrics "$m" >/dev/null 2>"$err" &
    local launcher=$!
    check "rank $victim case: training runs" wait_for_steps "$m" 3
    local pid
    pid=$(pgrep -f -- "xdt worker $PLAN" | while read -r p; do
        tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "RANK=$victim" && echo "$p"; done)
    check "rank $victim case: found the worker" test -n "$pid"
    kill -9 $pid 2>/dev/null
    # a hang guard, not a speed check: the workers' own timeout is 10 s
    local rc=0
    timeout 60 tail --pid=$launcher -f /dev/null || rc=124
    wait $launcher; local lrc=$?
    check "rank $victim case: the launcher ended" test $rc -eq 0
    check "rank $victim case: launcher exits non-zero" test $lrc -ne 0
    check "rank $victim case: launcher names the killed rank" \
        grep -q "xdt launch: rank $victim was killed by signal 9" "$err"
    local other=$((1 - victim))
    check "rank $victim case: rank $other names the lost rank $victim" \
        grep -qE "rank $other: .*rank $victim" "$err"
    check "rank $victim case: no worker left" test -z "$(workers_of "$PLAN")"
}
kill_case 1
kill_case 0

# Ctrl-C: SIGINT to the launcher stops every rank
"$XDT" launch "$PLAN" "${RUN[@]}" --metrics "$WORK/int.jsonl" >/dev/null 2>"$WORK/int.err" &
launcher=$!
check "Ctrl-C case: training runs" wait_for_steps "$WORK/int.jsonl" 2
kill -INT $launcher
timeout 60 tail --pid=$launcher -f /dev/null
wait $launcher; rc=$?
check "Ctrl-C: launcher exits 130 (got $rc)" test $rc -eq 130
check "Ctrl-C: says it was stopped" grep -q "stopped by signal 2" "$WORK/int.err"
check "Ctrl-C: no worker left" test -z "$(workers_of "$PLAN")"

# the wrong job token: rank 1 is refused by rank 0's store
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
env RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port XDT_JOB_TOKEN=right-token-0123456789 \
    "$XDT" worker "$PLAN" "${RUN[@]}" --timeout 5 >/dev/null 2>"$WORK/tok0.err" &
r0=$!
env RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port XDT_JOB_TOKEN=wrong-token-9876543210 \
    timeout 60 "$XDT" worker "$PLAN" "${RUN[@]}" --timeout 5 >/dev/null 2>"$WORK/tok1.err"
rc1=$?
timeout 60 tail --pid=$r0 -f /dev/null
wait $r0; rc0=$?
check "wrong token: that worker fails (got $rc1)" test $rc1 -eq 1
check "wrong token: it is refused" grep -qiE "token|auth|refused" "$WORK/tok1.err"
check "wrong token: rank 0 does not train alone (got $rc0)" test $rc0 -ne 0
finish
