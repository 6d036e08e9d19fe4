#!/bin/bash
# wan-netns.sh: a root-only harness that puts two emulated sites in two network namespaces
# joined by a veth pair, with the kernel shaping the link: tc tbf for the rate, and netem for
# the delay where the kernel has it (it says so and carries on with rate only where it does
# not). The in-process WAN shaper (transports/wan_shaper.h) needs none of this; this harness
# adds real kernel TCP behaviour.
#
#   scripts/wan-netns.sh up [--rate 1gbit] [--delay 25ms] [--prefix xdt]
#   scripts/wan-netns.sh exec a|b COMMAND...     run in site a (10.77.0.1) or b (10.77.0.2)
#   scripts/wan-netns.sh status
#   scripts/wan-netns.sh down
set -euo pipefail
prefix=${XDT_NETNS_PREFIX:-xdt}
rate=1gbit delay=25ms
cmd=${1:-}; shift || true
while [ $# -gt 0 ] && [ "$cmd" = up ]; do
    case $1 in
        --rate) rate=$2; shift 2 ;;
        --delay) delay=$2; shift 2 ;;
        --prefix) prefix=$2; shift 2 ;;
        *) echo "wan-netns: unknown option $1" >&2; exit 2 ;;
    esac
done
a=$prefix-a b=$prefix-b
need_root() {
    [ "$(id -u)" -eq 0 ] || { echo "wan-netns: needs root (network namespaces, tc)" >&2; exit 77; }
    command -v ip >/dev/null && command -v tc >/dev/null ||
        { echo "wan-netns: needs iproute2 (ip, tc)" >&2; exit 77; }
}
shape() { # shape NETNS DEV
    local ns=$1 dev=$2
    # netem delay, then tbf rate beneath it; without netem, tbf alone at the root
    if ip netns exec "$ns" tc qdisc add dev "$dev" root handle 1: netem delay "$delay" 2>/dev/null; then
        ip netns exec "$ns" tc qdisc add dev "$dev" parent 1: handle 2: tbf rate "$rate" burst 256kb latency 400ms
        echo "$ns/$dev: netem delay $delay + tbf rate $rate"
    else
        ip netns exec "$ns" tc qdisc add dev "$dev" root tbf rate "$rate" burst 256kb latency 400ms
        echo "$ns/$dev: this kernel has no netem: rate $rate only, no added delay (use the in-process shaper for latency)"
    fi
}
case $cmd in
    up)
        need_root
        "$0" down >/dev/null 2>&1 || true
        ip netns add "$a"
        ip netns add "$b"
        ip link add "$prefix-va" type veth peer name "$prefix-vb"
        ip link set "$prefix-va" netns "$a"
        ip link set "$prefix-vb" netns "$b"
        ip -n "$a" addr add 10.77.0.1/24 dev "$prefix-va"
        ip -n "$b" addr add 10.77.0.2/24 dev "$prefix-vb"
        for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
        ip -n "$a" link set "$prefix-va" up
        ip -n "$b" link set "$prefix-vb" up
        shape "$a" "$prefix-va"
        shape "$b" "$prefix-vb"
        ;;
    exec)
        need_root
        site=${1:-}; shift || true
        case $site in a) ns=$a ;; b) ns=$b ;; *) echo "wan-netns: exec a|b COMMAND" >&2; exit 2 ;; esac
        exec ip netns exec "$ns" "$@"
        ;;
    status)
        need_root
        for ns in "$a" "$b"; do echo "== $ns"; ip netns exec "$ns" tc qdisc show; done
        ;;
    down)
        need_root
        ip netns del "$a" 2>/dev/null || true
        ip netns del "$b" 2>/dev/null || true
        ;;
    *)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
