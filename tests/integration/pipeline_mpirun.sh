#!/bin/bash
# pipeline_mpirun.sh: the ranks of a plan started by Open MPI's mpirun instead of xdt launch
# (the bootstrap reads OMPI_COMM_WORLD_RANK/SIZE): training proceeds the same, losses equal
# `xdt train`'s on the same data and seed.
. "$(dirname "$0")/lib.sh"
[ -r "$TEXT" ] || { echo "skip: $TEXT is missing"; exit 77; }
require_ucx
command -v mpirun >/dev/null || { echo "skip: mpirun is not installed (Debian: openmpi-bin)"; exit 77; }
"$XDT" plan --cluster "$ROOT/configs/clusters/local-two-sites.yaml" --catalog \
    "$ROOT/configs/devices.yaml" --model "$TINY" --global-batch 4 --seq 32 --microbatch 1 \
    --stages 2 --replicas 1 --schedule 1f1b --codec none -o "$WORK/plan.json" >/dev/null 2>&1
RUN=(--data "$TEXT" --steps 10 --threads 1 --eval-every 0 --seed 3)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_root=()
[ "$(id -u)" -eq 0 ] && as_root=(--allow-run-as-root)
timeout 300 mpirun "${as_root[@]}" --oversubscribe -np 2 --mca btl self,tcp \
    -x MASTER_ADDR=127.0.0.1 -x MASTER_PORT="$port" -x XDT_JOB_TOKEN=mpirun-test-token-0123456789 \
    "$XDT" worker "$WORK/plan.json" "${RUN[@]}" --metrics "$WORK/mpi.jsonl" \
    >"$WORK/mpi.out" 2>&1
rc=$?
check "mpirun runs both ranks (exit $rc)" test $rc -eq 0 || tail -n 20 "$WORK/mpi.out" >&2
"$XDT" train --model "$TINY" --batch 4 --seq 32 "${RUN[@]}" --metrics "$WORK/ref.jsonl" \
    >/dev/null 2>&1
check "losses equal xdt train's" python3 - "$WORK/mpi.jsonl" "$WORK/ref.jsonl" <<'PY'
import json, sys
a = [json.loads(l)["loss"] for l in open(sys.argv[1])]
b = [json.loads(l)["loss"] for l in open(sys.argv[2])]
assert len(a) == len(b) == 10, (len(a), len(b))
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
print(f"    worst relative difference {worst:.2e}")
assert worst <= 1e-5
PY
finish
