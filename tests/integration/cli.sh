#!/bin/bash
# The xdt command: help texts, unknown commands, and the progress display on a terminal.
source "$(dirname "$0")/lib.sh"
check "xdt --help exits 0" bash -c "\"$XDT\" --help >/dev/null"
check "xdt --help lists train" bash -c "\"$XDT\" --help | grep -q '^  train'"
check "xdt --help lists eval" bash -c "\"$XDT\" --help | grep -q '^  eval'"
for opt in --model --data --steps --batch --seq --lr --warmup --weight-decay --grad-clip --beta1 \
    --beta2 --adam-eps --threads --seed --eval-every --val-fraction --data-order --lr-decay \
    --ckpt-dir --ckpt-every --resume --init --export-llmc --metrics; do
    check "train --help documents $opt" bash -c "\"$XDT\" train --help | grep -q -- '$opt '"
done
for opt in --init --ckpt-dir --data --batch --seq --max-batches --json; do
    check "eval --help documents $opt" bash -c "\"$XDT\" eval --help | grep -q -- '$opt'"
done
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
finish
