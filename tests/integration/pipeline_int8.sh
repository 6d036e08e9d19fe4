#!/bin/bash
# pipeline_int8.sh: int8 on the WAN link costs gpt-tiny less than 1 % of its loss. Two stages,
# one per site, 300 steps: the validation loss after 300 steps (16 fixed held-out batches) with
# int8 activations and gradients on the link between the sites is within 1 % of the run with
# codec none. Prints both training curves every 25 steps (docs/BENCHMARKS.md tabulates them).
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
RUN=(--data "$TEXT" --steps 300 --threads 1 --eval-every 100 --eval-batches 16 --no-emulate-wan)
for codec in none int8; do
    "$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
        "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 8 --seq 64 --microbatch 2 \
        --stages 2 --replicas 1 --schedule 1f1b --codec $codec -o "$WORK/$codec.json" \
        >/dev/null 2>&1
    check "plan has codec $codec on the WAN" python3 -c "
import json; d = json.load(open('$WORK/$codec.json'))
assert [l['codec'] for l in d['links'] if l['between_sites']] == ['$codec']"
    timeout 600 "$XDT" launch "$WORK/$codec.json" "${RUN[@]}" --metrics "$WORK/$codec.jsonl" \
        >/dev/null 2>"$WORK/$codec.err"
    check "$codec run completes" test "$(wc -l <"$WORK/$codec.jsonl")" -eq 300
done
check "int8's validation loss within 1 % of none's" python3 - "$WORK/none.jsonl" "$WORK/int8.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
print("    step   none     int8")
for i in range(24, 300, 25):
    print(f"    {i + 1:4d}  {a[i]['loss']:.4f}  {b[i]['loss']:.4f}")
va = [x["val_loss"] for x in a if "val_loss" in x]
vb = [x["val_loss"] for x in b if "val_loss" in x]
print("    validation at steps 100, 200, 300: none", " ".join(f"{v:.4f}" for v in va),
      "| int8", " ".join(f"{v:.4f}" for v in vb))
fa, fb = va[-1], vb[-1]
wa = sum(x["wan_bytes"] for x in a) / 1e6
wb = sum(x["wan_bytes"] for x in b) / 1e6
print(f"    validation loss after 300 steps: none {fa:.4f}, int8 {fb:.4f} ({100 * (fb - fa) / fa:+.2f} %);"
      f" bytes between sites {wa:.1f} MB vs {wb:.1f} MB")
assert abs(fb - fa) / fa <= 0.01
PY
finish
