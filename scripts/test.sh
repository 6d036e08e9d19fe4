#!/bin/bash
# Quick start, command 2: installs what is missing, builds, and runs the whole test suite three
# ways: a gcc release build (everything), a gcc AddressSanitizer + UndefinedBehaviorSanitizer
# build (everything), and a clang build (unit tests, and the libFuzzer targets for a short run
# each). Warnings are errors when CI=true. Ends with "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
source scripts/deps.sh
xdt_install_deps || exit 1
werror=false
[ "${CI:-}" = "true" ] && werror=true

passed=0 failed=0 skipped=0
run_suite() { # run_suite NAME BUILD_DIR [meson test args...]
    local name=$1 dir=$2; shift 2
    echo "== $name"
    local log=$dir/meson-logs/testlog.json
    rm -f "$log" # the tally below must come from this run, never from an earlier one
    meson test -C "$dir" --print-errorlogs "$@" 2>&1 |
        grep -E '^ *[0-9]+/[0-9]+ |^Ok:|^Fail:|^Skipped:|FAIL|xdt: error'
    local meson_status=${PIPESTATUS[0]}
    [ -f "$log" ] || { echo "no test log in $dir" >&2; failed=$((failed + 1)); return; }
    local ok fail skip
    ok=$(grep -c '"result": "OK"' "$log")
    skip=$(grep -c '"result": "SKIP"' "$log")
    fail=$(grep -vc -e '"result": "OK"' -e '"result": "SKIP"' "$log")
    if [ "$meson_status" -ne 0 ] && [ "$fail" -eq 0 ]; then
        echo "meson test in $dir exited $meson_status with no failing test in its log" >&2
        fail=1
    fi
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
# The HIP backend: devices/cuda/'s kernel sources compiled by hipcc (through gpu_vendor.h) for
# gfx908, gfx90a and gfx1030, and each object checked to hold code for all three. Compile only:
# there is no AMD GPU here. Skipped where hipcc is missing (deps.sh installs it on Debian).
echo "== build: HIP backend (hipcc: gfx908, gfx90a, gfx1030)"
if ! command -v hipcc >/dev/null; then
    echo "hipcc not found: HIP compile check skipped"
    skipped=$((skipped + 1))
elif { [ -f build-hip/build.ninja ] ||
    meson setup build-hip -Dhip=enabled -Dcuda=disabled -Dwerror=$werror \
        -Dhip_archs=gfx908,gfx90a,gfx1030 >build-hip.setup.log 2>&1; } &&
    ninja -C build-hip devices/hip/libxdt_hip.a >build-hip.build.log 2>&1; then
    hip_ok=true kernels=0 # every object holding GPU code holds it for all three targets
    for obj in build-hip/devices/hip/libxdt_hip.a.p/*.o; do
        grep -q "amdgcn-amd-amdhsa--gfx" "$obj" || continue
        kernels=$((kernels + 1))
        for arch in gfx908 gfx90a gfx1030; do
            grep -q "amdgcn-amd-amdhsa--$arch" "$obj" ||
                { echo "$obj: no code object for $arch" >&2; hip_ok=false; }
        done
    done
    [ $kernels -gt 0 ] || { echo "no GPU code objects in the HIP backend" >&2; hip_ok=false; }
    if $hip_ok; then
        echo "HIP backend compiled: $kernels objects with kernels for gfx908, gfx90a, gfx1030"
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
else
    cat build-hip.setup.log build-hip.build.log 2>/dev/null | tail -40 >&2
    echo "HIP backend build failed" >&2
    failed=$((failed + 1))
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
