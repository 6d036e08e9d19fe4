#!/bin/bash
# The root-only WAN harness: two namespaces joined by veth, shaped by tc. A TCP transfer of
# 6 MB from site a to site b must not beat the configured 50 Mbit/s (shaping can only slow a
# link; a busy machine only slows it more), and the harness must report whether netem exists.
source "$(dirname "$0")/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
command -v tc >/dev/null || { echo "SKIP: needs tc (iproute2)"; exit 77; }
command -v python3 >/dev/null || { echo "SKIP: needs python3"; exit 77; }
export XDT_NETNS_PREFIX=xdtit$$
H="$ROOT/scripts/wan-netns.sh"
trap '"$H" down; rm -rf "$WORK"' EXIT
if ! "$H" up --rate 50mbit --delay 5ms >"$WORK/up.txt" 2>&1; then
    if grep -q "Operation not permitted\|cannot" "$WORK/up.txt"; then
        echo "SKIP: network namespaces are not permitted here"; cat "$WORK/up.txt"; exit 77
    fi
    cat "$WORK/up.txt"; fail "wan-netns.sh up failed"
fi
cat "$WORK/up.txt"
check "both sides shaped" test "$(grep -c 'tbf rate 50mbit\|rate 50mbit only' "$WORK/up.txt")" -eq 2
check "tbf installed" bash -c "\"$H\" status | grep -q 'tbf .*rate 50Mbit'"
cat >"$WORK/recv.py" <<'PY'
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.77.0.2", 5999)); s.listen(1); open(sys.argv[1], "w").write("ready")
c, _ = s.accept(); n = 0; t0 = None
while True:
    b = c.recv(1 << 16)
    if not b: break
    if t0 is None: t0 = time.monotonic()
    n += len(b)
print("%d %.6f" % (n, time.monotonic() - t0))
PY
"$H" exec b python3 "$WORK/recv.py" "$WORK/ready" >"$WORK/rate.txt" &
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
"$H" exec a python3 -c "
import socket; s = socket.create_connection(('10.77.0.2', 5999)); s.sendall(b'x' * 6000000); s.close()"
wait
read -r bytes secs <"$WORK/rate.txt"
mbit=$(awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.1f", b * 8 / s / 1e6}')
echo "transferred $bytes bytes in $secs s: $mbit Mbit/s (configured 50)"
check "all bytes arrived" test "$bytes" -eq 6000000
check "the link is rate limited ($mbit Mbit/s <= 55)" awk -v m="$mbit" 'BEGIN{exit !(m <= 55)}'
finish
