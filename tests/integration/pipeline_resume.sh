#!/bin/bash
# pipeline_resume.sh: checkpoints and --resume of a pipelined run (2 ranks, 1F1B, codec none).
# An uninterrupted 12-step run is the reference. A second run saves every 4 steps and has its
# rank 1 killed (kill -9) once the step-8 manifest exists; --resume then continues from step 8
# to 12, and its losses 9..12 and final shards equal the reference's. Refused, with a clear
# error and no crash: --resume from an empty or missing directory, a checkpoint of another plan,
# a truncated shard, a fresh run into a directory that holds a checkpoint.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx

plan() { # plan OUT STAGES
    "$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
        "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --microbatch 1 \
        --stages "$2" --replicas 1 --schedule 1f1b --codec none -o "$1" >/dev/null 2>&1
}
PLAN=$WORK/plan.json
plan "$PLAN" 2
check "plan with two ranks" test -s "$PLAN"
RUN=(--data "$TEXT" --steps 12 --threads 1 --timeout 5)

# last_losses FILE N: the losses of the last N lines of a metrics file
last_losses() { tail -n "$2" "$1" | grep -o '"loss":[^,}]*' | cut -d: -f2; }
# same_losses A B: equal within 1e-6 relative, line by line
same_losses() {
    paste <(echo "$1") <(echo "$2") | awk 'NF != 2 { bad = 1 }
        { d = $1 - $2; if (d < 0) d = -d; m = $1 < 0 ? -$1 : $1;
          if (d > 1e-6 * m) bad = 1; n++ }
        END { exit (bad || n == 0) }'
}
# no_sanitizer ERRFILE...: no sanitizer report; no_crash ERRFILE: nor a worker killed by a signal
no_sanitizer() { ! grep -qE "Sanitizer|runtime error" "$@"; }
no_crash() { no_sanitizer "$1" && ! grep -q "killed by signal" "$1"; }

# (a) the reference, uninterrupted (checkpoint at the end only)
"$XDT" launch "$PLAN" "${RUN[@]}" --no-emulate-wan --metrics "$WORK/full.jsonl" \
    --ckpt-dir "$WORK/a" >/dev/null 2>"$WORK/a.err" || fail "reference run failed"
check "reference wrote 12 steps" test "$(wc -l <"$WORK/full.jsonl")" -eq 12
check "--ckpt-every 0: only the end is saved" test "$(ls "$WORK/a")" = step-00000012
check "reference manifest" test -s "$WORK/a/step-00000012/manifest.json"

# (b) checkpoints every 4 steps; the WAN emulation (25 ms) slows steps to ~0.1 s so the run can
# be cut after step 8: kill -9 of rank 1 once the step-8 manifest exists
B=$WORK/b
"$XDT" launch "$PLAN" "${RUN[@]}" --ckpt-dir "$B" --ckpt-every 4 --metrics "$WORK/b.jsonl" \
    >/dev/null 2>"$WORK/b.err" &
launcher=$!
for _ in $(seq 1500); do
    [ -f "$B/step-00000008/manifest.json" ] && break
    kill -0 $launcher 2>/dev/null || break
    sleep 0.02
done
check "step-8 manifest written" test -f "$B/step-00000008/manifest.json"
victim=$(pgrep -f -- "xdt worker $PLAN" | while read -r p; do
    tr '\0' '\n' </proc/"$p"/environ 2>/dev/null | grep -qx "RANK=1" && echo "$p"; done)
[ -n "$victim" ] && kill -9 "$victim" 2>/dev/null
timeout 60 tail --pid=$launcher -f /dev/null
wait $launcher
if [ -f "$B/step-00000012/manifest.json" ]; then
    # the run ended before the kill landed (a slow poll): a crash before the last manifest
    echo "note: the run finished before the kill; removing its step-12 manifest instead"
    rm -f "$B/step-00000012/manifest.json"
fi
check "checkpoints at steps 4 and 8" test -f "$B/step-00000004/manifest.json" -a \
    -f "$B/step-00000004/rank-0-chunk-0.xdt" -a -f "$B/step-00000008/rank-1-chunk-0.xdt"
check "manifest lists the plan and both shards" grep -q '"stages":[[:space:]]*2' \
    "$B/step-00000008/manifest.json"
check "manifest lists shard sizes" test "$(grep -c '"bytes"' "$B/step-00000008/manifest.json")" -eq 2

# (c) resume from step 8 to 12 (metrics appended to the interrupted run's file)
steps_before=$(wc -l <"$WORK/b.jsonl")
"$XDT" launch "$PLAN" "${RUN[@]}" --no-emulate-wan --ckpt-dir "$B" --ckpt-every 4 --resume \
    --metrics "$WORK/b.jsonl" >/dev/null 2>"$WORK/c.err" || fail "resumed run failed"
check "resume says where it continues" grep -q "resumed from .*step-00000008 at step 8" \
    "$WORK/c.err"
check "metrics appended, not truncated" test "$(wc -l <"$WORK/b.jsonl")" -eq $((steps_before + 4))
check "resumed run starts at step 9" test "$(tail -n 4 "$WORK/b.jsonl" | head -1 |
    grep -o '"step":[0-9]*')" = '"step":9'
check "losses 9..12 equal the uninterrupted run's" same_losses \
    "$(last_losses "$WORK/full.jsonl" 4)" "$(last_losses "$WORK/b.jsonl" 4)"
check "learning rates 9..12 equal" diff <(tail -n 4 "$WORK/full.jsonl" | grep -o '"lr":[^,]*') \
    <(tail -n 4 "$WORK/b.jsonl" | grep -o '"lr":[^,]*')
for r in 0 1; do
    check "rank $r's final shards exist" test -s "$WORK/a/step-00000012/rank-$r-chunk-0.xdt" -a \
        -s "$B/step-00000012/rank-$r-chunk-0.xdt"
    check "rank $r's final shard equals the reference's" cmp -s \
        <(tail -c +257 "$WORK/a/step-00000012/rank-$r-chunk-0.xdt") \
        <(tail -c +257 "$B/step-00000012/rank-$r-chunk-0.xdt")
done

check "no sanitizer report in the runs" no_sanitizer "$WORK/a.err" "$WORK/b.err" "$WORK/c.err"

# refused cases: non-zero exit, the reason on stderr, no crash
refused() { # refused NAME PATTERN PLAN [worker options]: the launch must fail with PATTERN
    local name=$1 pattern=$2 plan=$3 err=$WORK/$1.err rc
    shift 3
    "$XDT" launch "$plan" "${RUN[@]}" --no-emulate-wan "$@" >/dev/null 2>"$err"; rc=$?
    check "$name: exits non-zero" test $rc -ne 0
    check "$name: says why" grep -qE -- "^xdt: error: .*$pattern" "$err"
    check "$name: no crash" no_crash "$err"
}
mkdir -p "$WORK/empty"
refused empty "empty: no complete checkpoint" "$PLAN" --ckpt-dir "$WORK/empty" --resume
refused missing "cannot open the checkpoint directory" "$PLAN" --ckpt-dir "$WORK/nope" --resume
PLAN1=$WORK/plan1.json
plan "$PLAN1" 1
check "plan with one rank" test -s "$PLAN1"
refused other-plan "step-00000012/manifest.json: saved for 2 stages, the plan has 1" "$PLAN1" \
    --ckpt-dir "$B" --resume
refused fresh-run "already holds a checkpoint; pass --resume" "$PLAN" --ckpt-dir "$B"
check "fresh-run: one error line, from launch, not one a rank" \
    test "$(grep -c '^xdt: error:' "$WORK/fresh-run.err")" -eq 1
cp -r "$B" "$WORK/t"
truncate -s 100000 "$WORK/t/step-00000012/rank-1-chunk-0.xdt"
refused truncated "rank-1-chunk-0.xdt: 100000 bytes, .* \(truncated or replaced\)" "$PLAN" \
    --ckpt-dir "$WORK/t" --resume
cp -r "$B" "$WORK/x"
printf 'corrupt!' | dd of="$WORK/x/step-00000012/rank-0-chunk-0.xdt" bs=1 seek=5000 \
    conv=notrunc 2>/dev/null
refused corrupt "rank-0-chunk-0.xdt: payload checksum mismatch" "$PLAN" --ckpt-dir "$WORK/x" \
    --resume
check "no worker left" test -z "$(pgrep -f -- "xdt worker $WORK" || true)"
finish
