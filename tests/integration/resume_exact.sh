#!/bin/bash
# Save at step 10, resume, continue to step 20: losses 11..20 are bit-identical to an
# uninterrupted run (CPU; same thread count).
source "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "SKIP: $TEXT is missing"; exit 77; }
common=(--model "$TINY" --data "$TEXT" --steps 20 --batch 4 --seq 32 --seed 7 --threads 2
        --eval-every 5)
"$XDT" train "${common[@]}" --ckpt-dir "$WORK/a" --ckpt-every 10 --metrics "$WORK/a.jsonl" \
    >/dev/null 2>&1 || fail "uninterrupted run failed"
check "checkpoint at step 10" test -f "$WORK/a/ckpt_00000010.xdt"
check "checkpoint at step 20" test -f "$WORK/a/ckpt_00000020.xdt"
mkdir -p "$WORK/b"
cp "$WORK/a/ckpt_00000010.xdt" "$WORK/b/"
head -10 "$WORK/a.jsonl" >"$WORK/b.jsonl"
"$XDT" train "${common[@]}" --ckpt-dir "$WORK/b" --resume --metrics "$WORK/b.jsonl" \
    >/dev/null 2>&1 || fail "resumed run failed"
check "resumed run wrote steps 11..20" test "$(wc -l <"$WORK/b.jsonl")" -eq 20
check "losses 11..20 identical" diff <(jsonl_field "$WORK/a.jsonl" loss | tail -10) \
    <(jsonl_field "$WORK/b.jsonl" loss | tail -10)
check "validation losses identical" diff <(jsonl_field "$WORK/a.jsonl" val_loss) \
    <(jsonl_field "$WORK/b.jsonl" val_loss)
check "final weights identical" cmp -s <(tail -c +257 "$WORK/a/ckpt_00000020.xdt") \
    <(tail -c +257 "$WORK/b/ckpt_00000020.xdt")
# resuming with another batch shape is refused
expect_error "saved with --batch 4 --seq 32" "$XDT" train --model "$TINY" --data "$TEXT" \
    --steps 20 --batch 2 --seq 32 --ckpt-dir "$WORK/b" --resume
finish
