#!/bin/bash
# Quick start, command 2: installs what is missing, builds, and runs the whole test suite three
# ways: a gcc release build (everything), a gcc AddressSanitizer + UndefinedBehaviorSanitizer
# build (everything), and a clang build (unit tests, and the libFuzzer targets for a short run
# each). Warnings are errors when CI=true. Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
xdt_install_deps || exit 1
werror=false
[ "${CI:-}" = "true" ] && werror=true

passed=0 failed=0 skipped=0
run_suite() { # run_suite NAME BUILD_DIR [meson test args...]
    local name=$1 dir=$2; shift 2
    echo "== $name"
    meson test -C "$dir" --print-errorlogs "$@" 2>&1 | grep -E '^ *[0-9]+/[0-9]+ |^Ok:|^Fail:|^Skipped:|FAIL|xdt: error' || true
    local log=$dir/meson-logs/testlog.json
    [ -f "$log" ] || { echo "no test log in $dir" >&2; failed=$((failed + 1)); return; }
    local ok fail skip
    ok=$(grep -c '"result": "OK"' "$log")
    skip=$(grep -c '"result": "SKIP"' "$log")
    fail=$(grep -vc -e '"result": "OK"' -e '"result": "SKIP"' "$log")
    passed=$((passed + ok)) failed=$((failed + fail)) skipped=$((skipped + skip))
}
build_or_fail() { # build_or_fail NAME DIR [meson options...]
    local name=$1; shift
    echo "== build: $name"
    if ! xdt_build "$@"; then echo "build $name failed" >&2; failed=$((failed + 1)); return 1; fi
}

if build_or_fail "gcc release" build-test -Dwerror=$werror; then
    run_suite "gcc release" build-test
fi
if build_or_fail "gcc asan+ubsan" build-asan -Dwerror=$werror -Db_sanitize=address,undefined \
    -Dbuildtype=debugoptimized -Db_lundef=false; then
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_suite "gcc asan+ubsan" build-asan
fi
if CC=clang build_or_fail "clang" build-clang -Dwerror=$werror -Dfuzz=enabled; then
    run_suite "clang (unit, fuzz)" build-clang --suite unit --suite fuzz
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
