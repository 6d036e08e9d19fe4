#!/bin/bash
# Interleaved timings of the gpt2-124M training step (B=8, T=1024) on one GPU: xdt against
# PyTorch, ROUNDS rounds each running every configuration once, so that drift in clocks or in the
# host's load falls on all of them alike. Prints each run as it ends, then each configuration's
# median ms/step over the rounds and the ratios of the medians (xdt's tokens/s over PyTorch's).
#
# usage: bench/gpu_pairs.sh BENCH_TRAIN_STEP [ROUNDS] [DEVICE]
#   BENCH_TRAIN_STEP: the bench_train_step binary of a CUDA build (e.g. a bundle's bin/)
#   ROUNDS: default 3; DEVICE: default cuda:0. PyTorch is python3's, which must see the GPU.
# Run from the repository root (it reads configs/models/gpt2-124M.yaml and bench/torch_gpt.py).
set -u
BENCH=${1:?usage: bench/gpu_pairs.sh BENCH_TRAIN_STEP [ROUNDS] [DEVICE]}
ROUNDS=${2:-3}
DEVICE=${3:-cuda:0}
MODEL=configs/models/gpt2-124M.yaml
[ -x "$BENCH" ] || { echo "gpu_pairs.sh: $BENCH: not an executable" >&2; exit 2; }
[ -f "$MODEL" ] ||
    { echo "gpu_pairs.sh: $MODEL: not found (run from the repository root)" >&2; exit 2; }
python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null ||
    { echo "gpu_pairs.sh: python3 has no PyTorch with CUDA" >&2; exit 2; }

# Each configuration: NAME|KIND|PRECISION|ENVIRONMENT (KIND xdt or torch)
CONFIGS=(
    "xdt bf16 flash|xdt|bf16|XDT_GPU_ATTENTION=flash"
    "PyTorch bf16, fused AdamW|torch|bf16|TORCH_GPT_ADAMW=fused"
    "PyTorch bf16, default AdamW|torch|bf16|TORCH_GPT_ADAMW=default"
    "xdt fp32 explicit|xdt|fp32|XDT_GPU_ATTENTION=explicit"
    "PyTorch fp32, fused AdamW|torch|fp32|TORCH_GPT_ADAMW=fused"
)
RESULTS=$(mktemp)
ERR=$(mktemp)
trap 'rm -f "$RESULTS" "$ERR"' EXIT
ms_of() { grep -o '"ms_per_step": *[0-9.]*' | grep -o '[0-9.]*$'; }

for round in $(seq 1 "$ROUNDS"); do
    for config in "${CONFIGS[@]}"; do
        IFS='|' read -r name kind precision environment <<<"$config"
        # $environment is split on purpose: its words are VAR=VALUE pairs for env
        # shellcheck disable=SC2086
        if [ "$kind" = xdt ]; then
            line=$(env $environment timeout 120 "$BENCH" "$MODEL" 8 1024 "$(nproc)" 10 3 \
                "$DEVICE" "$precision" 2>"$ERR" | grep '^{' | tail -1)
        else
            # shellcheck disable=SC2086
            line=$(env $environment timeout 120 python3 bench/torch_gpt.py "$MODEL" 8 1024 \
                "$(nproc)" 10 3 "$DEVICE" "$precision" 2>"$ERR" | grep '^{' | tail -1)
        fi
        ms=$(echo "$line" | ms_of)
        if [ -z "$ms" ]; then
            echo "round $round, $name: failed: $(tail -1 "$ERR")"
            continue
        fi
        printf 'round %d  %-36s %8.2f ms/step\n' "$round" "$name" "$ms"
        printf '%s|%s\n' "$name" "$ms" >>"$RESULTS"
    done
done

echo "== medians over $ROUNDS rounds (gpt2-124M, B=8, T=1024, $DEVICE)"
median() { awk -F'|' -v n="$1" '$1 == n { print $2 }' "$RESULTS" | sort -g |
    awk '{ v[NR] = $1 }
         END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
for config in "${CONFIGS[@]}"; do
    name=${config%%|*}
    m=$(median "$name")
    [ -n "$m" ] && printf '  %-36s %8.2f ms/step  %8.0f tokens/s  (%d runs)\n' "$name" "$m" \
        "$(awk -v m="$m" 'BEGIN { print 8 * 1024 / (m / 1000) }')" \
        "$(awk -F'|' -v n="$name" '$1 == n' "$RESULTS" | wc -l)"
done
ratio() { # ratio XDT PEER: PyTorch's median ms over xdt's (= xdt's tokens/s over PyTorch's)
    local a b
    a=$(median "$1") b=$(median "$2")
    [ -n "$a" ] && [ -n "$b" ] && printf '  %s / %s tokens/s: %.2f\n' "$1" "$2" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')"
}
echo "== ratios of the medians"
ratio "xdt bf16 flash" "PyTorch bf16, fused AdamW"
ratio "xdt bf16 flash" "PyTorch bf16, default AdamW"
ratio "xdt fp32 explicit" "PyTorch fp32, fused AdamW"
