#!/bin/bash
# Bad input of every kind gives one clear error line naming the file and field, a non-zero exit,
# no crash, and never a half-written checkpoint.
source "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "SKIP: $TEXT is missing"; exit 77; }
run=(train --model "$TINY" --batch 2 --seq 16 --steps 2 --eval-every 0)
poke() { printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none; } # poke FILE OFFSET BYTES

# --- data files ---
expect_error "/nonexistent.txt: cannot open data file" "$XDT" "${run[@]}" --data /nonexistent.txt
python3 - "$WORK" <<'PY'
import struct, sys
w = sys.argv[1]
def shard(name, magic=20240520, version=1, count=3000, actual=3000, top=200):
    with open(f"{w}/{name}", "wb") as f:
        f.write(struct.pack("<256i", magic, version, count, *([0] * 253)))
        f.write(struct.pack(f"<{actual}H", *[(i * 7) % top for i in range(actual)]))
shard("good.bin")
shard("short.bin", count=3000, actual=2000)
shard("magic.bin", magic=1)
shard("version.bin", version=9)
shard("vocab.bin", top=300)
shard("tiny.bin", count=20, actual=20)
PY
"$XDT" "${run[@]}" --data "$WORK/good.bin" --val-fraction 0.1 >/dev/null 2>&1
check "a valid shard trains" test $? -eq 0
expect_error "short.bin: .*'token count'.*truncated" "$XDT" "${run[@]}" --data "$WORK/short.bin"
expect_error "magic.bin: header field 'magic' is 1" "$XDT" "${run[@]}" --data "$WORK/magic.bin"
expect_error "version.bin: header field 'version' is 9" "$XDT" "${run[@]}" --data "$WORK/version.bin"
expect_error "vocab.bin: token #[0-9]+ has id 2[0-9][0-9], outside the model's vocab_size 256" \
    "$XDT" "${run[@]}" --data "$WORK/vocab.bin"
expect_error "tiny.bin: the training split holds" "$XDT" "${run[@]}" --data "$WORK/tiny.bin"
head -c 10 "$WORK/good.bin" >"$WORK/cut.bin"
expect_error "cut.bin: truncated llm.c shard" "$XDT" "${run[@]}" --data "$WORK/cut.bin"

# --- model configs ---
cfg() { cp "$TINY" "$WORK/m.yaml"; printf '%s\n' "$@" >>"$WORK/m.yaml"; }
expect_error "/nonexistent.yaml: cannot open" "$XDT" train --model /nonexistent.yaml --data "$TEXT"
cfg "dropout: 0.1"
expect_error "m.yaml:9: unknown field 'dropout'" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
grep -v n_embd "$TINY" >"$WORK/m.yaml"
expect_error "m.yaml:[0-9]+: missing required field 'n_embd'" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
sed 's/n_layer: 2/n_layer: two/' "$TINY" >"$WORK/m.yaml"
expect_error "m.yaml:6: field 'n_layer': expected an integer, got 'two'" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
sed 's/n_head: 4/n_head: 5/' "$TINY" >"$WORK/m.yaml"
expect_error "m.yaml:7: field 'n_head'" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
cfg "n_layer: [1"
expect_error "m.yaml:[0-9]+: YAML syntax error" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
cfg "n_layer: 3" # after the file's own n_layer
expect_error "m.yaml:9: field 'n_layer' is given twice \(first on line 6\)" "$XDT" train \
    --model "$WORK/m.yaml" --data "$TEXT"
cfg "---" "n_layer: 3"
expect_error "m.yaml:9: a second YAML document" "$XDT" train --model "$WORK/m.yaml" --data "$TEXT"
expect_error "$WORK: cannot open: it is a directory" "$XDT" train --model "$WORK" --data "$TEXT"

# --- sizes and flags ---
expect_error "needs [0-9.]+ GiB .* lower --batch or --seq" "$XDT" train --model "$TINY" \
    --data "$TEXT" --batch 100000000 --seq 64 --val-fraction 0
expect_error "--seq 65 exceeds max_seq_len 64" "$XDT" "${run[@]}" --data "$TEXT" --seq 65
expect_error "unknown option '--bogus'" "$XDT" "${run[@]}" --data "$TEXT" --bogus 1
expect_error "--steps: expected an integer, got 'x'" "$XDT" "${run[@]}" --data "$TEXT" --steps x
expect_error "--data is required" "$XDT" train --model "$TINY"
expect_error "--data-order: 'shuffled' is not one of random\|sequential" "$XDT" "${run[@]}" \
    --data "$TEXT" --data-order shuffled
expect_error "--resume needs --ckpt-dir" "$XDT" "${run[@]}" --data "$TEXT" --resume

# --- checkpoints ---
"$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/ck" >/dev/null 2>&1 || fail "checkpoint run failed"
ck=$WORK/ck/ckpt_00000002.xdt
check "checkpoint written" test -s "$ck"
# a second run without --resume must not mix its checkpoints with the first's
ck_sum=$(md5sum <"$ck")
expect_error "ck/ckpt_00000002.xdt: --ckpt-dir already holds a checkpoint; pass --resume" \
    "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/ck" --seed 7
check "the earlier run's checkpoint is untouched" test "$(md5sum <"$ck")" = "$ck_sum"
check "the refused run wrote no checkpoint" test "$(ls "$WORK/ck")" = "ckpt_00000002.xdt"
expect_error "--ckpt-every needs --ckpt-dir" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-every 1
bad() { rm -rf "$WORK/bad"; mkdir -p "$WORK/bad"; cp "$ck" "$WORK/bad/"; echo "$WORK/bad/ckpt_00000002.xdt"; }
f=$(bad); truncate -s -100 "$f"
expect_error "ckpt_00000002.xdt: .*truncated" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/bad" --resume
f=$(bad); poke "$f" 5000 '\x55\x55'
expect_error "payload checksum mismatch" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/bad" --resume
f=$(bad); poke "$f" 0 'Q'
expect_error "field 'magic' is wrong" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/bad" --resume
f=$(bad); poke "$f" 8 '\x07'
expect_error "field 'version' is 7" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/bad" --resume
rm -rf "$WORK/empty"; mkdir "$WORK/empty"
expect_error "no checkpoint" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$WORK/empty" --resume
sed 's/n_layer: 2/n_layer: 3/' "$TINY" >"$WORK/m3.yaml"
expect_error "field 'n_layer' is 2 in the checkpoint but 3" "$XDT" train --model "$WORK/m3.yaml" \
    --data "$TEXT" --batch 2 --seq 16 --steps 3 --ckpt-dir "$WORK/ck" --resume
expect_error "cannot create directory" "$XDT" "${run[@]}" --data "$TEXT" --ckpt-dir "$TEXT/sub"
# a write that fails half way (file size limit) leaves neither a checkpoint nor a temp file
rm -rf "$WORK/full"
expect_error "ckpt_00000002.xdt.tmp.[0-9]+: write failed" bash -c \
    "ulimit -f 64; exec \"$XDT\" ${run[*]} --data $TEXT --ckpt-dir $WORK/full"
check "no file left in the checkpoint directory" test -z "$(ls -A "$WORK/full")"

# --- cluster files: sizes past the limits are refused before anything is allocated ---
cluster() { # cluster FILE DEVICES COUNT: one site, one kind of node
    printf 'name: big\nsites:\n  - name: a\n    network: {gbps: 10, latency_us: 10}\n    nodes:\n      - {name: n, type: H100-SXM, devices: %s, count: %s}\n' \
        "$2" "$3" >"$1"
}
plan=(plan --catalog "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 -o "$WORK/p.json")
cluster "$WORK/wide.yaml" 1026 1
expect_error "wide.yaml:6: field 'devices': 1026 is outside \[1, 1025\]" "$XDT" "${plan[@]}" \
    --cluster "$WORK/wide.yaml"
cluster "$WORK/huge.yaml" 1025 4096 # 4.2M devices: past the int the planner counts them in
expect_error "huge.yaml:6: node 'n': more than 1048576 devices in the cluster" "$XDT" \
    "${plan[@]}" --cluster "$WORK/huge.yaml"
check "a refused plan writes nothing" test ! -e "$WORK/p.json"

# --- llm.c model files ---
"$XDT" "${run[@]}" --data "$TEXT" --steps 0 --export-llmc "$WORK/m.bin" >/dev/null 2>&1 || fail "export failed"
cp "$WORK/m.bin" "$WORK/magic.bin"; poke "$WORK/magic.bin" 0 '\x01'
expect_error "magic.bin: header field 'magic'" "$XDT" "${run[@]}" --data "$TEXT" --init "$WORK/magic.bin"
cp "$WORK/m.bin" "$WORK/layers.bin"; poke "$WORK/layers.bin" 16 '\xff\xff\xff\x7f' # n_layer 2^31-1
expect_error "layers.bin: field 'n_layer': 2147483647 is outside \[1, 4096\]" \
    "$XDT" eval --init "$WORK/layers.bin" --data "$TEXT"
head -c 5000 "$WORK/m.bin" >"$WORK/short.bin"
expect_error "short.bin: 5000 bytes, but a model of this shape needs [0-9]+ \(truncated\)" \
    "$XDT" "${run[@]}" --data "$TEXT" --init "$WORK/short.bin"
expect_error "m.bin: header field 'n_layer' is 2 but the model config has 3" "$XDT" train \
    --model "$WORK/m3.yaml" --data "$TEXT" --steps 1 --init "$WORK/m.bin"
expect_error "give exactly one of --init and --ckpt-dir" "$XDT" eval --data "$TEXT"
expect_error "short.bin: truncated llm.c model file" bash -c \
    "head -c 500 $WORK/m.bin > $WORK/short.bin; exec \"$XDT\" eval --init $WORK/short.bin --data $TEXT"
finish
