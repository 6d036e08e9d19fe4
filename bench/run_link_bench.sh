#!/bin/bash
# Side by side in one run: `xdt bench link` and Debian's `ucx_perftest -t tag_bw` (package
# ucx-utils) on loopback over UCX tcp and shared memory, 4 KiB ... 64 MiB. Prints a Markdown
# table for docs/BENCHMARKS.md. Bandwidths in MB/s (10^6 bytes); ucx_perftest reports MiB/s and
# is converted. usage: bench/run_link_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
xdt=build/xdt
[ -x "$xdt" ] || { echo "build first" >&2; exit 1; }
command -v ucx_perftest >/dev/null || { echo "needs ucx_perftest (apt-get install ucx-utils)" >&2; exit 1; }
port=13400
perftest() { # perftest TLS SIZE ITERS -> MB/s
    local tls=$1 size=$2 iters=$3
    port=$((port + 1))
    UCX_TLS=$tls,self ucx_perftest -t tag_bw -s "$size" -n "$iters" -p $port >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    local line
    line=$(UCX_TLS=$tls,self timeout 120 ucx_perftest 127.0.0.1 -t tag_bw -s "$size" -n "$iters" -p $port 2>/dev/null | grep '^Final:')
    wait $srv || true
    awk '{printf "%.1f", $6 * 1048576 / 1e6}' <<<"$line"
}
echo "| tls | size | xdt MB/s | ucx_perftest MB/s | ratio | xdt latency ms | xdt CPU sender / receiver % |"
echo "|---|---|---|---|---|---|---|"
for tls in tcp shm; do
    ucx_tls=tcp; [ $tls = shm ] && ucx_tls=posix,sysv,cma
    for size in 4096 65536 1048576 4194304 16777216 67108864; do
        iters=$(( size >= 16777216 ? 20 : (size >= 1048576 ? 100 : 2000) ))
        j=$("$xdt" bench link --tls $tls --size $size --iters $iters --json)
        xb=$(grep -o '"bandwidth_MBps":[0-9.]*' <<<"$j" | cut -d: -f2)
        xl=$(grep -o '"latency_ms":[0-9.]*' <<<"$j" | cut -d: -f2)
        cs=$(grep -o '"cpu_sender_percent":[0-9.]*' <<<"$j" | cut -d: -f2)
        cr=$(grep -o '"cpu_receiver_percent":[0-9.]*' <<<"$j" | cut -d: -f2)
        pb=$(perftest $ucx_tls $size $iters)
        printf '| %s | %s | %s | %s | %.2f | %s | %s / %s |\n' $tls $size "$xb" "$pb" \
            "$(awk -v a="$xb" -v b="$pb" 'BEGIN{print (b > 0 ? a / b : 0)}')" "$xl" "$cs" "$cr"
    done
done
