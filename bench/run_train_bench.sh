#!/bin/bash
# Times a training step of xdt and of the same model in PyTorch, side by side in one run, for
# gpt-small-cpu (B=8, T=256) and gpt2-124M (B=4, T=64) on 1 and 2 threads; prints a Markdown
# table for docs/BENCHMARKS.md. Each pair runs REPEATS times, alternating xdt and PyTorch, and the
# table shows the run with the median ms/step of each (this machine is shared and noisy).
# Needs a built tree (build/) and Debian's python3-torch.
# usage: bench/run_train_bench.sh [STEPS] [WARMUP] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-10} warmup=${2:-3} repeats=${3:-3}
bench=build/bench/bench_train_step
[ -x "$bench" ] || { echo "build first: meson setup build && ninja -C build" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (apt-get install python3-torch)" >&2; exit 1; }
field() { grep -o "\"$2\": *[^,}]*" <<<"$1" | head -1 | sed 's/.*: *//; s/"//g'; }
# median_run LINES...: the JSON line whose ms_per_step is the median
median_run() {
    local l
    for l in "$@"; do echo "$(field "$l" ms_per_step) $l"; done | sort -n |
        sed -n "$(( ($# + 1) / 2 ))p" | cut -d' ' -f2-
}
echo "| model | B×T | threads | xdt ms/step | PyTorch ms/step | xdt tok/s | PyTorch tok/s | ratio | xdt GFLOP/s | sgemm GFLOP/s | % of sgemm | xdt peak RSS MiB | state MiB | RSS ratio | PyTorch peak RSS MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for cfg in "gpt-small-cpu 8 256" "gpt2-124M 4 64"; do
    set -- $cfg
    for th in 1 2; do
        xs=() ps=()
        for ((r = 0; r < repeats; r++)); do
            xs+=("$("$bench" "configs/models/$1.yaml" "$2" "$3" "$th" "$steps" "$warmup")")
            ps+=("$(/usr/bin/python3 bench/torch_gpt.py "configs/models/$1.yaml" "$2" "$3" "$th" "$steps" "$warmup")")
        done
        x=$(median_run "${xs[@]}") p=$(median_run "${ps[@]}")
        xt=$(field "$x" tokens_per_s) pt=$(field "$p" tokens_per_s)
        xg=$(field "$x" gflops) sg=$(field "$x" sgemm_gflops)
        printf '| %s | %s×%s | %s | %s | %s | %s | %s | %.2f | %s | %s | %.0f %% | %s | %s | %s | %s |\n' \
            "$1" "$2" "$3" "$th" "$(field "$x" ms_per_step)" "$(field "$p" ms_per_step)" "$xt" "$pt" \
            "$(awk -v a="$xt" -v b="$pt" 'BEGIN{print a/b}')" "$xg" "$sg" \
            "$(awk -v a="$xg" -v b="$sg" 'BEGIN{print 100*a/b}')" "$(field "$x" peak_rss_mib)" \
            "$(field "$x" model_state_mib)" "$(field "$x" rss_ratio)" "$(field "$p" peak_rss_mib)"
    done
done
