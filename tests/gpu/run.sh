#!/bin/bash
# tests/gpu/run.sh: every GPU check in one script, for a machine with an NVIDIA GPU. It ends
# within XDT_GPU_BUDGET_S seconds (default 480): each step runs under a limit cut to the time
# left, and a step that no longer fits is reported as not run, so the summary always prints.
#
#   bash tests/gpu/run.sh                       builds here: needs the CUDA toolkit and the build
#                                               dependencies of scripts/deps.sh
#   bash tests/gpu/run.sh --bundle FILE.tar.xz  runs a build made elsewhere by
#                                               scripts/gpu_bundle.sh (binaries and the libraries
#                                               they need; the machine needs only the CUDA
#                                               runtime, cuBLAS and a driver for CUDA 13)
# Steps:
#   1. build: meson setup $XDT_GPU_BUILD (default build-gpu) -Dcuda=enabled -Dhip=disabled, ninja
#      (or unpack the bundle)
#   2. test_device_ops: every device op on the GPU against the CPU backend (normalised error
#      <= 1e-5 with TF32 off; the tiled GEMM kernel; the bf16 GEMM mode) must pass, and
#      test_train_gpu: 8 whole gpt-tiny steps on the GPU and the CPU in one process (losses to
#      1e-4 in fp32, 1e-3 in bf16; parameters to 1e-4); then test_nccl_group (NCCL loaded at
#      run time: XDT_NCCL_LIBRARY, else the toolkit's, else the one PyTorch installed) and
#      tests/integration/pipeline_gpu.sh (mixed CPU + CUDA pipelines against the CPU); those
#      needing more GPUs than the machine has skip
#   3. xdt train gpt-tiny for 20 steps with --device cpu and --device cuda:0 from the same seed;
#      the per-step losses must agree to 1e-4 relative in fp32, 1e-3 in bf16 (--precision)
#   4. time a gpt2-124M training step, B=8 T=1024, on the GPU with bench_train_step (median of 10
#      steps after 3 warm-up steps) in fp32 (TF32 off, the default), tf32 and bf16, each beside
#      the same model in PyTorch on the same GPU (bench/torch_gpt.py: TF32 off, TF32 on, bf16
#      autocast; fused AdamW), when a python3 with CUDA-enabled torch is found; prints xdt/PyTorch
#      tokens/s of one run each (bench/gpu_pairs.sh gives medians of interleaved rounds)
#      (xdt in fp32 and bf16 also with --attention flash: XDT_GPU_ATTENTION=flash); then, time
#      left permitting, the bf16 flash step with each of its levers turned off in turn
#   5. with the time left, where a bf16 and an fp32 step spend it: xdt's ops timed by device
#      events (bench_train_step --profile) beside PyTorch's kernels (torch_gpt.py --profile)
#   6. with the time left, test_device_ops under compute-sanitizer's memcheck
# Environment: XDT_GPU_DEVICE (default cuda:0), XDT_GPU_BUILD, XDT_NVCC_ARCHS (default 80,90),
# XDT_GPU_BUDGET_S. Exit status 0 only when steps 1-3 passed and step 4 measured.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
BUILD=${XDT_GPU_BUILD:-build-gpu}
DEVICE=${XDT_GPU_DEVICE:-cuda:0}
ARCHS=${XDT_NVCC_ARCHS:-80,90}
BUNDLE=""
if [ "${1:-}" = "--bundle" ]; then
    BUNDLE=${2:?--bundle needs a file}
elif [ $# -gt 0 ]; then
    echo "usage: bash tests/gpu/run.sh [--bundle FILE.tar.xz]" >&2
    exit 2
fi
WORK=$(mktemp -d /tmp/xdt-gpu-run.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
DEADLINE=$((START + ${XDT_GPU_BUDGET_S:-480}))
summary=()
failed=0
note() { summary+=("$1"); echo "== $1"; }
fail() { note "FAIL: $1"; failed=1; }
elapsed() { echo "$(($(date +%s) - START)) s"; }
# limit WANT NEED: seconds a step may take (WANT, cut to the time left less 15 s for the
# summary); prints nothing and fails when fewer than NEED are left
limit() {
    local left=$((DEADLINE - $(date +%s) - 15))
    [ "$left" -ge "$2" ] || return 1
    echo $(($1 < left ? $1 : left))
}
out_of_time() { fail "$1: not run, out of time ($(elapsed) used)"; }

echo "== xdt GPU checks on $(hostname), device $DEVICE"
command -v nvidia-smi >/dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

# 1. build (or unpack)
if [ -n "$BUNDLE" ]; then
    echo "== 1. unpack $BUNDLE"
    mkdir -p "$WORK/bundle"
    tar -xJf "$BUNDLE" -C "$WORK/bundle" || { echo "cannot unpack $BUNDLE" >&2; exit 1; }
    BIN=$WORK/bundle/bin
    export LD_LIBRARY_PATH=$WORK/bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    for b in xdt bench_train_step test_device_ops test_train_gpu test_nccl_group; do
        [ -x "$BIN/$b" ] || { echo "the bundle has no bin/$b" >&2; exit 1; }
    done
    unresolved() { for b in "$BIN"/*; do ldd "$b" | grep "not found" | sed "s|^|$(basename "$b"): |"; done; }
    missing=$(unresolved)
    if [ -n "$missing" ]; then
        # CUDA's runtime and cuBLAS may sit outside the loader's path: the toolkit's lib64, the
        # driver's folder, or the pip wheels PyTorch brought (nvidia/*/lib)
        wheel_dirs=$(python3 -c 'import glob, os, sys
print("\n".join(sorted({p for d in sys.path for p in glob.glob(os.path.join(d or ".", "nvidia", "*", "lib"))})))' 2>/dev/null)
        for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
            /usr/local/nvidia/lib64 /usr/local/nvidia/lib $wheel_dirs; do
            for lib in $(echo "$missing" | awk '{ print $2 }' | sort -u); do
                if [ -e "$dir/$lib" ]; then
                    export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$dir
                    echo "== found $lib in $dir"
                    break
                fi
            done
            missing=$(unresolved)
            [ -n "$missing" ] || break
        done
    fi
    if [ -n "$missing" ]; then
        echo "$missing" >&2
        echo "libraries missing on this machine (see above)" >&2
        exit 1
    fi
    note "bundle: $(cat "$WORK/bundle/BUILD_INFO" 2>/dev/null || echo unpacked)"
    XDT=$BIN/xdt BENCH=$BIN/bench_train_step DEVICE_OPS=$BIN/test_device_ops
    TRAIN_GPU=$BIN/test_train_gpu NCCL_TEST=$BIN/test_nccl_group
else
    echo "== 1. build ($BUILD, -Dcuda=enabled, sm ${ARCHS})"
    for tool in meson ninja pkg-config; do
        command -v "$tool" >/dev/null || { echo "missing: $tool (see scripts/deps.sh)" >&2; exit 1; }
    done
    setup_args=(-Dcuda=enabled -Dhip=disabled "-Dnvcc_archs=$ARCHS" -Dbuildtype=release)
    if [ -f "$BUILD/build.ninja" ]; then
        meson configure "$BUILD" "${setup_args[@]}" >"$WORK/setup.log" 2>&1
    else
        meson setup "$BUILD" "${setup_args[@]}" >"$WORK/setup.log" 2>&1
    fi || { cat "$WORK/setup.log" >&2; echo "meson setup failed" >&2; exit 1; }
    t=$(limit 300 60) || { echo "out of time before the build" >&2; exit 1; }
    if ! timeout "$t" ninja -C "$BUILD" >"$WORK/build.log" 2>&1; then
        tail -40 "$WORK/build.log" >&2
        echo "build failed (or ran out of time)" >&2
        exit 1
    fi
    note "build: ok ($(elapsed) so far)"
    XDT=$BUILD/xdt BENCH=$BUILD/bench/bench_train_step
    DEVICE_OPS=$BUILD/tests/gpu/test_device_ops TRAIN_GPU=$BUILD/tests/gpu/test_train_gpu
    NCCL_TEST=$BUILD/transports/nccl/test_nccl_group
fi

# NCCL is loaded at run time: PyTorch's copy (its wheel's nvidia/nccl*/lib), which is known to
# work with this machine's driver, when there is one; else xdt's own search
if [ -z "${XDT_NCCL_LIBRARY:-}" ] && command -v python3 >/dev/null; then
    lib=$(python3 -c 'import glob, os, sys
for d in sys.path:
    for p in sorted(glob.glob(os.path.join(d or ".", "nvidia", "nccl*", "lib", "libnccl.so.2"))):
        print(p); raise SystemExit' 2>/dev/null | head -1)
    if [ -n "$lib" ]; then
        export XDT_NCCL_LIBRARY=$lib
        note "NCCL: $lib (PyTorch's)"
    fi
fi

# 2. the GPU tests, each run directly under its own limit
# gpu_test NAME WANT NEED ON_SKIP CMD...: runs a test under `limit WANT NEED`; exit 0 passes, 77
# (skipped) is a failure or a note as ON_SKIP says (fail: a GPU machine must run it)
gpu_test() {
    local name=$1 want=$2 need=$3 on_skip=$4 t rc log=$WORK/$1.log
    shift 4
    t=$(limit "$want" "$need") || { out_of_time "$name"; return; }
    timeout "$t" "$@" >"$log" 2>&1
    rc=$?
    grep -E "normalised error|differ in bits|sum n=|mem_info|^device |against|step |parameters|worst|checks|SKIP|skip|FAIL|error" \
        "$log" | head -250
    case $rc in
    0) note "$name: passed ($(tail -1 "$log"))" ;;
    77) if [ "$on_skip" = fail ]; then fail "$name skipped on a GPU machine: $(tail -1 "$log")"
        else note "$name: skipped ($(tail -1 "$log"))"; fi ;;
    124) fail "$name: out of time" ;;
    *) fail "$name (exit $rc)" ;;
    esac
}
echo "== 2. GPU tests"
gpu_test device_ops 150 30 fail env XDT_TEST_GPU="$DEVICE" "$DEVICE_OPS"
gpu_test train_gpu 90 20 fail env XDT_TEST_GPU="$DEVICE" XDT_SOURCE_ROOT="$PWD" "$TRAIN_GPU"
gpu_test nccl_group 90 30 note "$NCCL_TEST"
gpu_test pipeline_gpu 150 60 fail env XDT_BIN="$XDT" XDT_SOURCE_ROOT="$PWD" \
    bash tests/integration/pipeline_gpu.sh

# 3. gpt-tiny, 20 steps, CPU against GPU, in fp32 and in bf16
TEXT=/usr/share/common-licenses/GPL-3
if [ ! -r "$TEXT" ]; then # any fixed English text will do: the repository's documentation
    TEXT=$WORK/text.txt
    find docs README.md core devices -name '*.md' -o -name '*.c' | sort | xargs cat >"$TEXT"
fi
train() { # train DEVICE PRECISION METRICS [ARGS...]: under the time left, 60 s at most
    local t dev=$1 p=$2 m=$3
    shift 3
    t=$(limit 60 20) || { echo "out of time" >"$m.out"; return 1; }
    timeout "$t" "$XDT" train --model configs/models/gpt-tiny.yaml --data "$TEXT" --steps 20 \
        --batch 8 --seq 64 --seed 1337 --eval-every 0 --device "$dev" --precision "$p" \
        --metrics "$m" "$@" >"$m.out" 2>&1
}
losses() { grep -o '"loss":[^,}]*' "$1" | cut -d: -f2; }
compare_losses() { # compare_losses PRECISION TOLERANCE [ATTENTION]
    local p=$1 tol=$2 att=${3:-explicit} cpu=$WORK/cpu-$1.jsonl gpu=$WORK/gpu-$1-${3:-explicit}.jsonl
    echo "== 3. gpt-tiny, 20 steps, $p: --device cpu and --device $DEVICE --attention $att"
    limit 60 40 >/dev/null || { out_of_time "gpt-tiny $p $att"; return; }
    local ok=1 # the CPU run of a precision serves both attentions
    if [ ! -s "$cpu" ]; then train cpu "$p" "$cpu" || ok=0; fi
    if [ $ok = 1 ]; then train "$DEVICE" "$p" "$gpu" --attention "$att" || ok=0; fi
    if [ $ok = 0 ]; then
        cat "$cpu.out" "$gpu.out" >&2
        fail "xdt train --precision $p on cpu or $DEVICE failed"
        return
    fi
    local pair=$WORK/losses-$p-$att.txt
    paste <(losses "$cpu") <(losses "$gpu") >"$pair"
    awk 'BEGIN { printf "  %4s  %12s  %12s  %10s\n", "step", "cpu loss", "gpu loss", "rel diff" }
         { d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1);
           printf "  %4d  %12.6f  %12.6f  %10.2e\n", NR, $1, $2, r }' "$pair"
    local n maxrel
    n=$(wc -l <"$pair")
    maxrel=$(awk '{ d = $1 - $2; if (d < 0) d = -d; r = d / ($1 < 0 ? -$1 : $1); if (r > m) m = r }
                  END { printf "%.3e", m }' "$pair")
    if [ "$n" -eq 20 ] && awk -v m="$maxrel" -v t="$tol" 'BEGIN { exit !(m <= t) }'; then
        note "gpt-tiny $p $att attention, cpu vs $DEVICE: 20 steps, max relative loss difference $maxrel (<= $tol)"
    else
        fail "gpt-tiny $p $att attention, cpu vs $DEVICE: $n steps, max relative loss difference $maxrel (> $tol)"
    fi
}
compare_losses fp32 1e-4
compare_losses fp32 1e-4 flash
# bf16: both round GEMM inputs alike; the GPU's attention products are bf16 too, the CPU's fp32
compare_losses bf16 1e-3
compare_losses bf16 1e-3 flash

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
measured=0
xdt_step() { # xdt_step PRECISION ATTENTION: one bench_train_step run; its JSON line in $out
    local p=$1 att=$2 t
    t=$(limit 90 40) || { out_of_time "xdt gpt2-124M step ($p, $att attention)"; return 1; }
    out=$(XDT_GPU_ATTENTION=$att timeout "$t" "$BENCH" configs/models/gpt2-124M.yaml 8 1024 \
        "$(nproc)" 10 3 "$DEVICE" "$p" 2>"$WORK/bench.err") || {
        cat "$WORK/bench.err" >&2
        fail "xdt gpt2-124M step ($p, $att attention) failed"
        return 1
    }
    measured=$((measured + 1))
    echo "  $out"
    note "$(printf 'xdt gpt2-124M B=8 T=1024 %s %s, %s attention: %.1f ms/step, %.0f tokens/s, %.1f TFLOP/s, peak RSS %.0f MiB' \
        "$DEVICE" "$p" "$att" "$(field "$out" ms_per_step)" "$(field "$out" tokens_per_s)" \
        "$(awk -v g="$(field "$out" gflops)" 'BEGIN{print g/1000}')" "$(field "$out" peak_rss_mib)")"
}
bench() { # bench PRECISION: xdt (explicit, then flash attention) and PyTorch on the same GPU
    local p=$1 peer ratio t out="" flash_out=""
    xdt_step "$p" explicit || out=""
    local explicit_out=$out
    out=""
    if [ "$p" != tf32 ]; then xdt_step "$p" flash && flash_out=$out; fi
    [ -n "$PY" ] || return
    t=$(limit 90 40) || { out_of_time "PyTorch gpt2-124M step ($p)"; return; }
    local gpu_index=${DEVICE#cuda}
    gpu_index=${gpu_index#:}
    peer=$(timeout "$t" "$PY" bench/torch_gpt.py configs/models/gpt2-124M.yaml 8 1024 "$(nproc)" \
        10 3 "cuda:${gpu_index:-0}" "$p" 2>"$WORK/peer.err") || {
        tail -5 "$WORK/peer.err" >&2
        note "PyTorch gpt2-124M step ($p) failed: no peer figure"
        return
    }
    echo "  $peer"
    for pair in "explicit:$explicit_out" "flash:$flash_out"; do
        local att=${pair%%:*} mine=${pair#*:}
        [ -n "$mine" ] || continue
        ratio=$(awk -v a="$(field "$mine" tokens_per_s)" -v b="$(field "$peer" tokens_per_s)" \
            'BEGIN { printf "%.2f", a / b }')
        note "$(printf 'PyTorch %s gpt2-124M B=8 T=1024 %s: %.1f ms/step, %.0f tokens/s (attention %s, %s AdamW); xdt (%s attention)/PyTorch tokens/s %s' \
            "$(field "$peer" torch)" "$p" "$(field "$peer" ms_per_step)" \
            "$(field "$peer" tokens_per_s)" "$(field "$peer" attention)" "$(field "$peer" adamw)" \
            "$att" "$ratio")"
    done
}
for p in fp32 tf32 bf16; do bench $p; done
[ $measured -gt 0 ] || fail "no gpt2-124M step was measured"

# 4b. what each of the bf16 step's levers is worth: the bf16 flash step again with one of them
# turned off (the bias in cuBLASLt's epilogue; whole copies of large GEMM operands; the ops' bf16
# sidecars), time left permitting; notes only
echo "== 4b. bf16 levers, one at a time off (time left permitting)"
ablate() { # ablate ENV=VALUE WHAT: the bf16 flash step with ENV=VALUE
    local t out
    t=$(limit 60 30) || { note "bf16 without $2: not run (time)"; return; }
    out=$(env "$1" XDT_GPU_ATTENTION=flash timeout "$t" "$BENCH" configs/models/gpt2-124M.yaml 8         1024 "$(nproc)" 10 3 "$DEVICE" bf16 2>"$WORK/bench.err") || {
        tail -3 "$WORK/bench.err" >&2
        note "bf16 without $2 ($1): failed"
        return
    }
    note "$(printf 'xdt gpt2-124M bf16 flash without %s (%s): %.1f ms/step' "$2" "$1" \
        "$(field "$out" ms_per_step)")"
}
ablate XDT_GPU_BLASLT=0 "the bias epilogue"
ablate XDT_GPU_BF16_CHUNK=33554432 "whole copies of large operands"
ablate XDT_GPU_BF16_SIDECAR=0 "sidecars (every GEMM copies its own a)"

# 5. where the step's time goes, with the time left: xdt's ops (bench_train_step --profile) and
# PyTorch's kernels (torch.profiler), bf16 first (the mode furthest from its peer, if any)
echo "== 5. profiles of the gpt2-124M step (time left permitting)"
profile() { # profile PRECISION [ATTENTION]: xdt's ops, then (explicit only) PyTorch's kernels
    local p=$1 att=${2:-explicit} t
    t=$(limit 60 30) || { note "profile $p $att: not run (time)"; return; }
    XDT_GPU_ATTENTION=$att timeout "$t" "$BENCH" --profile configs/models/gpt2-124M.yaml 8 1024 \
        "$(nproc)" 2 1 "$DEVICE" "$p" 2>&1 | tail -n +2 || note "xdt profile $p $att failed"
    [ -n "$PY" ] && [ "$att" = explicit ] || return
    t=$(limit 60 30) || { note "PyTorch profile $p: not run (time)"; return; }
    local gpu_index=${DEVICE#cuda}
    gpu_index=${gpu_index#:}
    timeout "$t" "$PY" bench/torch_gpt.py --profile configs/models/gpt2-124M.yaml 8 1024 \
        "$(nproc)" 1 1 "cuda:${gpu_index:-0}" "$p" 2>&1 | tail -n +2 ||
        note "PyTorch profile $p failed"
}
profile bf16
profile bf16 flash
profile fp32

# 6. with whatever time is left, the device ops under compute-sanitizer's memcheck (out-of-bounds
# and misaligned accesses in xdt's kernels); a note only, since the sanitizer is not on every
# machine and cuBLAS under it is slow
echo "== 6. compute-sanitizer memcheck of test_device_ops (time left permitting)"
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ ! -x "$SANITIZER" ]; then
    note "memcheck: not run (no compute-sanitizer)"
elif t=$(limit 200 30); then
    XDT_TEST_GPU=$DEVICE timeout "$t" "$SANITIZER" --tool memcheck --report-api-errors no --error-exitcode 3 \
        "$DEVICE_OPS" >"$WORK/memcheck.log" 2>&1
    rc=$?
    grep -E "=========|FAIL" "$WORK/memcheck.log" | head -40
    case $rc in
    0) note "memcheck of test_device_ops: no errors" ;;
    124) note "memcheck of test_device_ops: not finished in $t s" ;;
    3) fail "memcheck of test_device_ops found errors (above)" ;;
    *) note "memcheck of test_device_ops: exit $rc ($(tail -1 "$WORK/memcheck.log"))" ;;
    esac
else
    note "memcheck: not run (time)"
fi

echo
echo "== summary ($(elapsed))"
printf '  %s\n' "${summary[@]}"
skips=$(printf '%s\n' "${summary[@]}" | grep -c ': skipped' || true)
if [ $failed -eq 0 ]; then
    [ "$skips" -gt 0 ] && echo "ALL GPU CHECKS PASSED ($skips skipped, see above)" ||
        echo "ALL GPU CHECKS PASSED"
else
    echo "SOME GPU CHECKS FAILED"
fi
exit $failed
