#!/bin/bash
# Training gpt-tiny on an English text (the GPL-3 text every Debian system ships) with a fixed
# seed lowers the validation loss from step 10 to step 200 by at least 1.5 nats, to below 3.2.
source "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "SKIP: $TEXT is missing (not a Debian system)"; exit 77; }
"$XDT" train --model "$TINY" --data "$TEXT" --steps 200 --batch 8 --seq 64 --seed 1337 \
    --eval-every 10 --metrics "$WORK/m.jsonl" >"$WORK/out.txt" 2>&1 || fail "xdt train failed"
vals=$(jsonl_field "$WORK/m.jsonl" val_loss)
first=$(echo "$vals" | head -1)
last=$(echo "$vals" | tail -1)
echo "val_loss at step 10: $first, at step 200: $last"
check "200 steps written" test "$(wc -l <"$WORK/m.jsonl")" -eq 200
check "val loss falls by >= 1.5 ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(a - b >= 1.5)}'
check "val loss at step 200 < 3.2 ($last)" awk -v b="$last" 'BEGIN{exit !(b < 3.2)}'
for key in step loss lr tokens_per_s step_ms; do
    check "metrics carry $key" grep -q "\"$key\":" "$WORK/m.jsonl"
done
# plain log lines when stdout is not a terminal
check "plain progress lines" grep -q '^step 200/200 | loss' "$WORK/out.txt"
finish
