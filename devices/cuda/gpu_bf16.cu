/* gpu_bf16.cu: bf16 copies of fp32 arrays, for the bf16 mode's products: cuBLAS's bf16 GEMMs
 * (gpu_gemm.cu) and the tensor-core attention (gpu_flash_attention_mma.cu) read bf16 operands.
 * Rounding is bf16_round's (nearest, ties to even: the CPU backend's). A contiguous array is
 * copied as one flat run, four values a thread per step (16-byte loads, 8-byte stores) where
 * aligned; a strided one row by row (four values a thread where its rows are aligned). */
#include "devices/cuda/gpu_common.cuh"

#include <string.h>

namespace XDT_GPU_NS {

/* Four values from in, rounded, to out (in 16-byte aligned, out 8-byte aligned). */
__device__ inline void pack4(uint16_t *out, const float *in) {
    float v[4];
    load4(v, in);
    const uint32_t w[2] = {pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3])};
#if defined(XDT_GPU_EMU)
    memcpy(out, w, sizeof w);
#else
    *reinterpret_cast<uint2 *>(out) = make_uint2(w[0], w[1]);
#endif
}

__global__ void pack_bf16_flat4_kernel(uint16_t *out, const float *in, size_t n4) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n4;
         i += (size_t)gridDim.x * blockDim.x)
        pack4(out + 4 * i, in + 4 * i);
}

__global__ void pack_bf16_flat_kernel(uint16_t *out, const float *in, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = bf16_bits(in[i]);
}

/* grid.y walks the rows of all the matrices, grid.x the columns, W values a thread per step (4:
 * rows 16-byte aligned, cols and ld multiples of 4; `groups` is cols / W) */
template <int W>
__global__ void pack_bf16_rows_kernel(uint16_t *out, const float *in, int rows, int groups, int ld,
                                      long s, int batch) {
    const long total = (long)rows * batch;
    for (long rz = blockIdx.y; rz < total; rz += gridDim.y) {
        const long z = rz / rows, r = rz % rows;
        const float *src = in + z * s + r * ld;
        uint16_t *dst = out + rz * W * groups;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < groups;
             j += gridDim.x * blockDim.x) {
            if (W == 4)
                pack4(dst + 4 * j, src + 4 * j);
            else
                dst[j] = bf16_bits(src[j]);
        }
    }
}

bool pack_bf16(gpu_ctx *c, uint16_t *out, const float *in, int rows, int cols, int ld, long s,
               int batch, const char *op) {
    if (rows <= 0 || cols <= 0 || batch <= 0) return true;
    if (ld == cols && (batch == 1 || s == (long)rows * cols)) {
        const size_t n = (size_t)rows * cols * batch;
        if (n % 4 == 0 && (uintptr_t)in % 16 == 0 && (uintptr_t)out % 8 == 0) {
            XDT_LAUNCH(grid_for(n / 4, kBlock), kBlock, c->stream, pack_bf16_flat4_kernel)
            (out, in, n / 4);
        } else {
            XDT_LAUNCH(grid_for(n, kBlock), kBlock, c->stream, pack_bf16_flat_kernel)(out, in, n);
        }
    } else {
        const long total = (long)rows * batch;
        const bool by4 = cols % 4 == 0 && ld % 4 == 0 && (batch == 1 || s % 4 == 0) &&
                         (uintptr_t)in % 16 == 0 && (uintptr_t)out % 8 == 0;
        const int per_row = by4 ? cols / 4 : cols;
        const unsigned gx = (unsigned)((per_row + kBlock - 1) / kBlock);
        const unsigned gy = (unsigned)(total < 65535 ? total : 65535);
        if (by4) {
            XDT_LAUNCH(dim3(gx, gy), kBlock, c->stream, pack_bf16_rows_kernel<4>)
            (out, in, rows, per_row, ld, s, batch);
        } else {
            XDT_LAUNCH(dim3(gx, gy), kBlock, c->stream, pack_bf16_rows_kernel<1>)
            (out, in, rows, per_row, ld, s, batch);
        }
    }
    return check_launch(c, op);
}

} // namespace XDT_GPU_NS
