#!/bin/bash
# tests/gpu/run.sh: every GPU check in one script, for a machine with an NVIDIA GPU, the CUDA
# toolkit (nvcc, cuBLAS) and the build dependencies of scripts/deps.sh. About 3-5 minutes on one
# H100 (most of it compiling); it stops any step that runs past its limit, so the whole script
# ends within 8 minutes. Steps:
#   1. build: meson setup $XDT_GPU_BUILD (default build-gpu) -Dcuda=enabled -Dhip=disabled, ninja
#   2. meson test --suite gpu: tests/gpu/test_device_ops (every device op on the GPU against the
#      CPU backend, normalised error <= 1e-5 with TF32 off; the tiled GEMM kernel too) must pass;
#      other GPU tests run too (those needing more GPUs than the machine has may skip)
#   3. xdt train gpt-tiny for 20 steps with --device cpu and --device cuda:0 from the same seed;
#      the per-step losses must agree to 1e-4 relative in fp32, 1e-3 in bf16 (--precision)
#   4. time a gpt2-124M training step, B=8 T=1024, on the GPU with bench_train_step (median of 10
#      steps after 3 warm-up steps) in fp32 (TF32 off, the default), tf32 and bf16, each beside
#      the same model in PyTorch on the same GPU (bench/torch_gpt.py: TF32 off, TF32 on, bf16
#      autocast), when a python3 with CUDA-enabled torch is found; prints xdt/PyTorch tokens/s
# Environment: XDT_GPU_DEVICE (default cuda:0), XDT_GPU_BUILD, XDT_NVCC_ARCHS (default 80,90).
# Prints a summary; exit status 0 only when steps 1-3 passed and step 4 measured.
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${XDT_GPU_BUILD:-build-gpu}
DEVICE=${XDT_GPU_DEVICE:-cuda:0}
ARCHS=${XDT_NVCC_ARCHS:-80,90}
WORK=$(mktemp -d /tmp/xdt-gpu-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
summary=()
failed=0
note() { summary+=("$1"); echo "== $1"; }
fail() { note "FAIL: $1"; failed=1; }
elapsed() { echo "$(($(date +%s) - START)) s"; }

echo "== xdt GPU checks on $(hostname), device $DEVICE"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
for tool in meson ninja pkg-config; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (see scripts/deps.sh)" >&2; exit 1; }
done

# 1. build
echo "== 1. build ($BUILD, -Dcuda=enabled, sm ${ARCHS})"
setup_args=(-Dcuda=enabled -Dhip=disabled "-Dnvcc_archs=$ARCHS" -Dbuildtype=release)
if [ -f "$BUILD/build.ninja" ]; then
    meson configure "$BUILD" "${setup_args[@]}" >"$WORK/setup.log" 2>&1
else
    meson setup "$BUILD" "${setup_args[@]}" >"$WORK/setup.log" 2>&1
fi || { cat "$WORK/setup.log" >&2; echo "meson setup failed" >&2; exit 1; }
if ! timeout 300 ninja -C "$BUILD" >"$WORK/build.log" 2>&1; then
    tail -40 "$WORK/build.log" >&2
    echo "build failed (or took over 300 s)" >&2
    exit 1
fi
note "build: ok ($(elapsed) so far)"
XDT=$BUILD/xdt

# 2. the GPU test suite
echo "== 2. meson test --suite gpu"
XDT_TEST_GPU=$DEVICE timeout 240 meson test -C "$BUILD" --suite gpu --print-errorlogs -v \
    >"$WORK/gpu_tests.log" 2>&1
rc=$?
grep -E "normalised error|differ in bits|sum n=|mem_info|^device |checks,|SKIP|FAIL|xdt: error" \
    "$WORK/gpu_tests.log" | head -200
log=$BUILD/meson-logs/testlog.json
skipped_tests=$(grep '"result": "SKIP"' "$log" | grep -o '"name": "[^"]*"' | cut -d'"' -f4 |
    tr '\n' ' ')
if [ $rc -ne 0 ]; then
    fail "meson test --suite gpu (exit $rc)"
elif ! grep '"name": "device_ops"' "$log" | grep -q '"result": "OK"'; then
    fail "device_ops did not pass on a GPU machine (skipped?)"
else
    note "gpu test suite: $(grep -c '"result": "OK"' "$log") passed${skipped_tests:+, skipped (they need more than this machine has): $skipped_tests}"
fi

# 3. gpt-tiny, 20 steps, CPU against GPU, in fp32 and in bf16
TEXT=/usr/share/common-licenses/GPL-3
if [ ! -r "$TEXT" ]; then # any fixed English text will do: the repository's documentation
    TEXT=$WORK/text.txt
    find docs README.md core devices -name '*.md' -o -name '*.c' | sort | xargs cat >"$TEXT"
fi
train() { # train DEVICE PRECISION METRICS
    timeout 120 "$XDT" train --model configs/models/gpt-tiny.yaml --data "$TEXT" --steps 20 \
        --batch 8 --seq 64 --seed 1337 --eval-every 0 --device "$1" --precision "$2" \
        --metrics "$3" >"$3.out" 2>&1
}
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2; }
compare_losses() { # compare_losses PRECISION TOLERANCE
    local p=$1 tol=$2 cpu=$WORK/cpu-$1.jsonl gpu=$WORK/gpu-$1.jsonl
    echo "== 3. gpt-tiny, 20 steps, $p: --device cpu and --device $DEVICE"
    if ! train cpu "$p" "$cpu" || ! train "$DEVICE" "$p" "$gpu"; then
        cat "$cpu.out" "$gpu.out" >&2
        fail "xdt train --precision $p on cpu or $DEVICE failed"
        return
    fi
    paste <(losses "$cpu") <(losses "$gpu") >"$WORK/losses-$p.txt"
    awk 'BEGIN { printf "  %4s  %12s  %12s  %10s\n", "step", "cpu loss", "gpu loss", "rel diff" }
         { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1);
           printf "  %4d  %12.6f  %12.6f  %10.2e\n", NR, $1, $2, r }' "$WORK/losses-$p.txt"
    local n maxrel
    n=$(wc -l <"$WORK/losses-$p.txt")
    maxrel=$(awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > m) m = r }
                  END { printf "%.3e", m }' "$WORK/losses-$p.txt")
    if [ "$n" -eq 20 ] && awk -v m="$maxrel" -v t="$tol" 'BEGIN { exit !(m <= t) }'; then
        note "gpt-tiny $p, cpu vs $DEVICE: 20 steps, max relative loss difference $maxrel (<= $tol)"
    else
        fail "gpt-tiny $p, cpu vs $DEVICE: $n steps, max relative loss difference $maxrel (> $tol)"
    fi
}
compare_losses fp32 1e-4
# bf16: both round GEMM inputs alike; the GPU's attention products are bf16 too, the CPU's fp32
compare_losses bf16 1e-3

# 4. gpt2-124M training step, B=8, T=1024, xdt and PyTorch side by side per precision
echo "== 4. gpt2-124M training step, B=8 T=1024, on $DEVICE: xdt and PyTorch"
PY=""
for py in python3 /usr/bin/python3; do
    if command -v "$py" >/dev/null &&
        "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
    then PY=$py; break; fi
done
[ -n "$PY" ] || note "no PyTorch with CUDA found: xdt is timed without its peer"
field() { echo "$1" | grep -o "\"$2\":[^,}]*" | cut -d: -f2 | tr -d '" '; }
bench() { # bench PRECISION: xdt, then PyTorch, on the same GPU
    local p=$1 out peer ratio
    out=$(timeout 150 "$BUILD/bench/bench_train_step" configs/models/gpt2-124M.yaml 8 1024 \
        "$(nproc)" 10 3 "$DEVICE" "$p" 2>"$WORK/bench.err") || {
        cat "$WORK/bench.err" >&2
        fail "xdt gpt2-124M step ($p) failed"
        return
    }
    echo "  $out"
    note "$(printf 'xdt     gpt2-124M B=8 T=1024 %s %s: %.1f ms/step, %.0f tokens/s, %.1f TFLOP/s' \
        "$DEVICE" "$p" "$(field "$out" ms_per_step)" "$(field "$out" tokens_per_s)" \
        "$(awk -v g="$(field "$out" gflops)" 'BEGIN{print g/1000}')")"
    [ -n "$PY" ] || return
    local gpu_index=${DEVICE#cuda}
    gpu_index=${gpu_index#:}
    peer=$(timeout 150 "$PY" bench/torch_gpt.py configs/models/gpt2-124M.yaml 8 1024 "$(nproc)" \
        10 3 "cuda:${gpu_index:-0}" "$p" 2>"$WORK/peer.err") || {
        tail -5 "$WORK/peer.err" >&2
        note "PyTorch gpt2-124M step ($p) failed: no peer figure"
        return
    }
    echo "  $peer"
    ratio=$(awk -v a="$(field "$out" tokens_per_s)" -v b="$(field "$peer" tokens_per_s)" \
        'BEGIN { printf "%.2f", a / b }')
    note "$(printf 'PyTorch %s gpt2-124M B=8 T=1024 %s: %.1f ms/step, %.0f tokens/s (attention %s); xdt/PyTorch tokens/s %s' \
        "$(field "$peer" torch)" "$p" "$(field "$peer" ms_per_step)" \
        "$(field "$peer" tokens_per_s)" "$(field "$peer" attention)" "$ratio")"
}
for p in fp32 tf32 bf16; do bench $p; done

echo
echo "== summary ($(elapsed))"
printf '  %s\n' "${summary[@]}"
[ $failed -eq 0 ] && echo "ALL GPU CHECKS PASSED" || echo "SOME GPU CHECKS FAILED"
exit $failed
