# lib.sh: helpers for the integration tests. Each test is a bash script run by meson with
# XDT_BIN (the xdt binary) and XDT_SOURCE_ROOT set; exit 0 = pass, 1 = fail, 77 = skipped.
set -u
XDT=${XDT_BIN:?XDT_BIN is not set}
ROOT=${XDT_SOURCE_ROOT:?XDT_SOURCE_ROOT is not set}
TINY=$ROOT/configs/models/gpt-tiny.yaml
WORK=$(mktemp -d /tmp/xdt-it.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The corpus: a text every Debian has; elsewhere (the GPU machines' images) the repository's
# documentation, the same for every run of a test
TEXT=/usr/share/common-licenses/GPL-3
if [ ! -r "$TEXT" ]; then
    TEXT=$WORK/corpus.txt
    cat "$ROOT"/README.md "$ROOT"/docs/*.md >"$TEXT"
fi
FAILED=0
CHECKS=0

# require_ucx: pipelined runs (xdt launch, xdt worker) need the UCX transport; a build without it
# says so in `xdt --help`, and the test is skipped (77) rather than failed
require_ucx() {
    local built
    built=$("$XDT" --help | grep '^built with:') ||
        { echo "FAIL: xdt --help has no 'built with' line" >&2; exit 1; }
    grep -q 'transport UCX' <<<"$built" || { echo "skip: this build has no UCX ($built)"; exit 77; }
}
fail() { echo "FAIL: $*" >&2; FAILED=$((FAILED + 1)); }
pass() { CHECKS=$((CHECKS + 1)); }
check() { # check "description" condition-command...
    local what=$1; shift
    if "$@"; then pass; else fail "$what"; fi
}
finish() {
    echo "$(basename "$0"): $CHECKS checks passed, $FAILED failed"
    [ "$CHECKS" -gt 0 ] || { echo "no checks ran" >&2; exit 1; }
    [ "$FAILED" -eq 0 ]
    exit $?
}

# tiny_model FILE LAYERS: the pipeline tests' model, gpt-tiny's width at 32 tokens with LAYERS
# blocks (named gpt-tinyLAYERS)
tiny_model() {
    printf 'name: gpt-tiny%s\nvocab_size: 256\nmax_seq_len: 32\nn_layer: %s\nn_head: 4\nn_embd: 64\n' \
        "$2" "$2" >"$1"
}

# Field values of a metrics JSONL file, one per line: jsonl_field FILE FIELD
jsonl_field() {
    grep -o "\"$2\":[^,}]*" "$1" | cut -d: -f2
}

# expect_error PATTERN cmd...: the command must exit 1 or 2 (no signal, no crash), print exactly
# one "xdt: error:" line on stderr, and that line must match PATTERN (grep -E).
expect_error() {
    local pattern=$1; shift
    local err=$WORK/stderr.txt rc
    "$@" >/dev/null 2>"$err"; rc=$?
    local lines
    lines=$(grep -c '^xdt: error:' "$err")
    if [ "$rc" -ne 1 ] && [ "$rc" -ne 2 ]; then
        fail "exit $rc (want 1 or 2) for: $*"; sed 's/^/    /' "$err" >&2; return
    fi
    if [ "$lines" -ne 1 ]; then
        fail "$lines error lines (want 1) for: $*"; sed 's/^/    /' "$err" >&2; return
    fi
    if ! grep '^xdt: error:' "$err" | grep -qE -- "$pattern"; then
        fail "error does not match /$pattern/ for: $*"; sed 's/^/    /' "$err" >&2; return
    fi
    pass
}

# losses_match A B TOL VALIDATIONS: two metrics files hold the same number of steps, each with
# VALIDATIONS val_loss entries, and every loss and val_loss agrees within TOL relative.
losses_match() {
    python3 - "$1" "$2" "$3" "$4" <<'PY'
import json, sys
ra = [json.loads(l) for l in open(sys.argv[1])]
rb = [json.loads(l) for l in open(sys.argv[2])]
a = [r["loss"] for r in ra] + [r["val_loss"] for r in ra if "val_loss" in r]
b = [r["loss"] for r in rb] + [r["val_loss"] for r in rb if "val_loss" in r]
worst = max(abs(x - y) / abs(y) for x, y in zip(a, b)) if len(a) == len(b) else float("inf")
print(f"    {len(ra)} steps, {len(a) - len(ra)} validations, worst relative difference {worst:.2e}")
ok = len(a) == len(b) == len(ra) + int(sys.argv[4]) and worst <= float(sys.argv[3])
sys.exit(0 if ok else 1)
PY
}
