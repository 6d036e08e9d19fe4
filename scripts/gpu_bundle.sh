#!/bin/bash
# gpu_bundle.sh [OUT.tar.xz]: builds xdt's CUDA backend on this machine (nvcc, no GPU needed) and
# packs what `bash tests/gpu/run.sh --bundle OUT.tar.xz` needs on a GPU machine that has a CUDA
# 13 runtime and driver but none of xdt's build dependencies (and no package registry to get
# them from): bin/ (xdt, bench_train_step, test_device_ops, test_train_gpu, test_nccl_group) and
# lib/ (every
# shared library they load that is neither glibc's, the C++ runtime's nor CUDA's, with UCX's
# shared-memory module in lib/ucx/), plus BUILD_INFO. Default OUT: .gpu-bundle/xdt-gpu.tar.xz
# (.gpu-bundle/ is ignored by git; it is what a device run carries).
#
# NCCL is not carried (libnccl is 200 MB): xdt loads it at run time, and tests/gpu/run.sh points
# it at the machine's own (PyTorch's, on the GPU machines). No HIP. Code for sm_80 and sm_90
# (XDT_NVCC_ARCHS).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh
xdt_install_deps
OUT=${1:-.gpu-bundle/xdt-gpu.tar.xz}
BUILD=${XDT_GPU_BUNDLE_BUILD:-build-gpu-bundle}
ARCHS=${XDT_NVCC_ARCHS:-80,90}
setup_args=(-Dcuda=enabled -Dhip=disabled "-Dnvcc_archs=$ARCHS" -Dbuildtype=release)
if [ -f "$BUILD/build.ninja" ]; then
    meson configure "$BUILD" "${setup_args[@]}" >"$BUILD.setup.log" 2>&1
else
    meson setup "$BUILD" "${setup_args[@]}" >"$BUILD.setup.log" 2>&1
fi || { cat "$BUILD.setup.log" >&2; exit 1; }
bins=(xdt bench/bench_train_step tests/gpu/test_device_ops tests/gpu/test_train_gpu
    transports/nccl/test_nccl_group)
ninja -C "$BUILD" "${bins[@]}" >"$BUILD.build.log" 2>&1 || { tail -40 "$BUILD.build.log" >&2; exit 1; }

stage=$(mktemp -d /tmp/xdt-gpu-bundle.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib/ucx"
for b in "${bins[@]}"; do cp "$BUILD/$b" "$stage/bin/"; done
# UCX's transport modules sit in ucx/ beside libucs, which finds them there
libucs=$(ldd "$BUILD/xdt" | awk '$1 == "libucs.so.0" { print $3 }')
[ -n "$libucs" ] || { echo "$BUILD/xdt does not load UCX (libucs.so.0)" >&2; exit 1; }
cp -L "$(dirname "$libucs")/ucx/libuct_cma.so.0" "$stage/lib/ucx/"

# The libraries to carry: everything the binaries and the UCX module load, less what any Linux
# with a CUDA runtime has. Debian 12's builds run on newer glibc (the GPU machines' is newer).
system_lib='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libresolv|libstdc\+\+|libgcc_s|libcudart|libcublas|libcublasLt|libcuda)\.so'
for f in "$stage"/bin/* "$stage"/lib/ucx/*; do
    ldd "$f" | awk '/=>/ && $3 ~ /^\// { print $1, $3 }'
done | sort -u | while read -r name path; do
    if [[ ! $name =~ $system_lib ]]; then cp -L "$path" "$stage/lib/$name"; fi
done
missing=$(for f in "$stage"/bin/*; do ldd "$f"; done | grep "not found" || true)
[ -z "$missing" ] || { echo "$missing" >&2; echo "unresolved libraries" >&2; exit 1; }
nvcc_bin=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
cuda_release=$("$nvcc_bin" --version 2>/dev/null | grep -o 'release [0-9.]*' || echo "release ?")
echo "xdt $(git describe --always --dirty 2>/dev/null || echo '?') built $(date -u +%F) on" \
    "$(. /etc/os-release && echo "$PRETTY_NAME"), CUDA $cuda_release, sm $ARCHS" \
    >"$stage/BUILD_INFO"
mkdir -p "$(dirname "$OUT")"
tar -cJf "$OUT" -C "$stage" .
echo "wrote $OUT ($(du -h "$OUT" | cut -f1)): $(ls "$stage/bin" | tr '\n' ' ')+ $(ls "$stage/lib" | grep -c so) libraries"
