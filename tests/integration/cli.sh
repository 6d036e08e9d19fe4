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
