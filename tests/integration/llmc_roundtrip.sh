#!/bin/bash
# llm.c model files: an independently written file imports and exports byte for byte; a model
# exported to llm.c's format and re-imported trains to the same losses; eval agrees between the
# llm.c export and xdt's own checkpoint of the same weights.
source "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "SKIP: $TEXT is missing"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: python3 is missing"; exit 77; }
# gpt-tiny: maxT 64, V 256, L 2, NH 4, C 64, Vp 256
python3 "$(dirname "$0")/make_llmc_model.py" "$WORK/r.bin" 64 256 2 4 64 256 11 ||
    fail "generator failed"
"$XDT" train --model "$TINY" --data "$TEXT" --steps 0 --init "$WORK/r.bin" \
    --export-llmc "$WORK/r2.bin" >/dev/null 2>&1 || fail "import/export failed"
check "import then export is byte-identical" cmp "$WORK/r.bin" "$WORK/r2.bin"

common=(--model "$TINY" --data "$TEXT" --batch 4 --seq 32 --seed 5 --eval-every 0)
"$XDT" train "${common[@]}" --steps 0 --export-llmc "$WORK/init.bin" >/dev/null 2>&1 ||
    fail "export of the initial weights failed"
"$XDT" train "${common[@]}" --steps 15 --metrics "$WORK/a.jsonl" --ckpt-dir "$WORK/ck" \
    --export-llmc "$WORK/a.bin" >/dev/null 2>&1 || fail "training from the seed failed"
"$XDT" train "${common[@]}" --steps 15 --init "$WORK/init.bin" --metrics "$WORK/b.jsonl" \
    >/dev/null 2>&1 || fail "training from the llm.c file failed"
check "15 losses written" test "$(jsonl_field "$WORK/a.jsonl" loss | wc -l)" -eq 15
check "re-imported model trains to the same losses" diff <(jsonl_field "$WORK/a.jsonl" loss) \
    <(jsonl_field "$WORK/b.jsonl" loss)
e1=$("$XDT" eval --init "$WORK/a.bin" --data "$TEXT" --batch 4 --seq 32 --max-batches 5 --json)
e2=$("$XDT" eval --ckpt-dir "$WORK/ck" --data "$TEXT" --batch 4 --seq 32 --max-batches 5 --json)
echo "eval llm.c: $e1 / checkpoint: $e2"
check "eval is the same for the llm.c export and the checkpoint" test "$e1" = "$e2"
check "eval reports 5 batches" grep -q '"batches":5' <<<"$e1"
# the loss of a trained model is below that of the initial weights
e0=$("$XDT" eval --init "$WORK/init.bin" --data "$TEXT" --batch 4 --seq 32 --max-batches 5 --json)
l0=$(grep -o '"loss":[^,]*' <<<"$e0" | cut -d: -f2)
l1=$(grep -o '"loss":[^,]*' <<<"$e1" | cut -d: -f2)
check "trained eval loss $l1 < initial $l0" awk -v a="$l0" -v b="$l1" 'BEGIN{exit !(b < a)}'
finish
