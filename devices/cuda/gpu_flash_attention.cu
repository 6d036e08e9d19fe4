/* gpu_flash_attention.cu: causal multi-head attention without the t x t matrices, in the manner
 * of FlashAttention-2: the forward walks key tiles with an online softmax and keeps, per row,
 * only the log-sum-exp; the backward recomputes the probabilities tile by tile from it, and
 * takes the rows' dout . out term from the forward's output, which the caller keeps. Memory per
 * layer falls from b nh t^2 floats (probabilities, and as much again for the backward's
 * workspace) to b nh t (the log-sum-exp) and b nh t of workspace, so long sequences fit.
 *
 * Arithmetic is fp32 (as the CPU backend's attention), except in the bf16 mode on devices with
 * bf16 tensor cores, where gpu_flash_attention_mma.cu runs the same kernels' products on them.
 * Every sum is taken in a fixed order: no atomics, so results are the same on every run. The
 * backward is two kernels, one per key tile (dK, dV) and one per query tile (dQ), each recomputing
 * what it needs. Heads of up to kHeadMax dims (the GPT-2 family has 64); wider heads take the
 * explicit path.
 *
 * Thread layout, all kernels: 128 threads, four per row of a 32-row tile (query rows in the
 * forward and dQ kernels, key rows in the dK/dV kernel); a thread owns the head dims
 * lane, lane + 4, ... of its row's accumulators, so reads of shared tiles along d are
 * conflict-free, and the other operand streams through shared memory in tiles of 16 rows. */
#include "devices/cuda/gpu_common.cuh"

#include <math.h>

namespace XDT_GPU_NS {

constexpr int kHeadMax = 64; /* = XDT_FUSED_ATTENTION_HEAD_MAX (core/gpt.h; test_device_ops) */
constexpr int kPad = kHeadMax + 1; /* shared rows padded against bank conflicts */
constexpr int kThreads = 128;
constexpr int kRows = 32;           /* rows owned per block, four threads each */
constexpr int kStream = 16;         /* rows of the streamed operand per tile */
constexpr int kDims = kHeadMax / 4; /* head dims per thread at most */
static_assert(kStream == 16, "dots4 covers a 16-row tile with four threads a row");

bool flash_attention_fits(int c, int nh) {
    return nh > 0 && c > 0 && c % nh == 0 && c / nh <= kHeadMax;
}

void flash_attention_sizes(int b, int t, int c, int nh, size_t *state, size_t *workspace) {
    (void)c;
    *state = (size_t)b * nh * t;     /* log-sum-exp */
    *workspace = (size_t)b * nh * t; /* rowsum(dout * out) */
}

/* Copies rows [r0, r0 + rows) of one head's slice (column offset col, head size hs) of a
 * (t x ld) matrix into a shared tile; rows past t become zero. */
__device__ inline void load_tile(float (*tile)[kPad], const float *m, size_t ld, int col, int r0,
                                 int rows, int t, int hs) {
    for (int x = threadIdx.x; x < rows * hs; x += kThreads) {
        const int r = x / hs, d = x % hs;
        tile[r][d] = r0 + r < t ? m[(size_t)(r0 + r) * ld + col + d] : 0.0f;
    }
}

__device__ inline float dot(const float *a, const float *b, int hs) {
    float s = 0.0f;
    for (int d = 0; d < hs; d++)
        s += a[d] * b[d];
    return s;
}

/* The products of one row `a` with rows lane, lane + 4, lane + 8, lane + 12 of a shared tile:
 * each value of `a` is read once for the four (kStream == 16 rows, four threads a row). */
__device__ inline void dots4(const float *a, const float (*b)[kPad], int lane, int hs,
                             float out[4]) {
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    for (int d = 0; d < hs; d++) {
        const float x = a[d];
        s0 += x * b[lane][d];
        s1 += x * b[lane + 4][d];
        s2 += x * b[lane + 8][d];
        s3 += x * b[lane + 12][d];
    }
    out[0] = s0;
    out[1] = s1;
    out[2] = s2;
    out[3] = s3;
}

/* grid (query tiles, nh, b). out (b, t, c); lse (b, nh, t). */
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(float *out, float *lse, const float *qkv, int t, int c, int nh,
                         float scale) {
    __shared__ float qs[kRows][kPad];
    __shared__ float ks[kStream][kPad];
    __shared__ float vs[kStream][kPad];
    __shared__ float ps[kRows][kStream + 1];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z, q0 = blockIdx.x * kRows;
    const int r = threadIdx.x >> 2, lane = threadIdx.x & 3, i = q0 + r;
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld;
    load_tile(qs, x, ld, h * hs, q0, kRows, t, hs);
    float acc[kDims];
#pragma unroll
    for (int u = 0; u < kDims; u++)
        acc[u] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int last = (q0 + kRows < t ? q0 + kRows : t) - 1; /* the tile's last query */
    for (int k0 = 0; k0 <= last; k0 += kStream) {
        __syncthreads(); /* the previous tiles are read */
        load_tile(ks, x, ld, c + h * hs, k0, kStream, t, hs);
        load_tile(vs, x, ld, 2 * c + h * hs, k0, kStream, t, hs);
        __syncthreads();
        float s[kStream / 4], mx = -INFINITY;
        dots4(qs[r], ks, lane, hs, s);
#pragma unroll
        for (int w = 0; w < kStream / 4; w++) {
            s[w] = k0 + lane + 4 * w <= i && i < t ? s[w] * scale : -INFINITY;
            mx = fmaxf(mx, s[w]);
        }
        const float m_new = fmaxf(m, quad_max(mx));
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < kStream / 4; w++) {
            const float p = m_new == -INFINITY ? 0.0f : expf(s[w] - m_new);
            ps[r][lane + 4 * w] = p;
            sum += p;
        }
        /* the running sums rescaled to the new maximum (nothing to rescale before a key) */
        const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
        l = l * corr + quad_sum(sum);
        m = m_new;
        __syncthreads(); /* the row's probabilities, written by its four threads */
#pragma unroll
        for (int u = 0; u < kDims; u++)
            acc[u] *= corr;
        /* key by key, so each probability is read once for all the thread's dims (the sums
         * keep their order: the results are those of the loops the other way round) */
        for (int jj = 0; jj < kStream; jj++) {
            const float p = ps[r][jj];
#pragma unroll
            for (int u = 0; u < kDims; u++) {
                const int d = lane + 4 * u;
                if (d < hs) acc[u] += p * vs[jj][d];
            }
        }
    }
    if (i >= t) return;
    const float inv = 1.0f / l;
    const size_t o = ((size_t)bi * t + i) * c + (size_t)h * hs;
#pragma unroll
    for (int u = 0; u < kDims; u++) {
        const int d = lane + 4 * u;
        if (d >= hs) break;
        out[o + d] = acc[u] * inv;
    }
    if (lane == 0) lse[((size_t)bi * nh + h) * t + i] = m + logf(l);
}

/* dd[b, h, i] = dout_i . out_i over the head's dims: the softmax backward's row term. One thread
 * per (b, i, h), h fastest. */
__global__ void flash_row_dot_kernel(float *dd, const float *dout, const float *o, int b, int t,
                                     int c, int nh) {
    const int hs = c / nh;
    const size_t n = (size_t)b * t * nh;
    for (size_t x = blockIdx.x * (size_t)blockDim.x + threadIdx.x; x < n;
         x += (size_t)gridDim.x * blockDim.x) {
        const int h = (int)(x % nh);
        const size_t bt = x / nh, bi = bt / t, i = bt % t;
        const size_t off = bt * c + (size_t)h * hs;
        dd[(bi * nh + h) * t + i] = dot(dout + off, o + off, hs);
    }
}

/* grid (key tiles, nh, b): dK and dV of kRows keys, over every query that sees them. */
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                             const float *dd, int t, int c, int nh, float scale) {
    __shared__ float ks[kRows][kPad];
    __shared__ float vs[kRows][kPad];
    __shared__ float qs[kStream][kPad];
    __shared__ float dos[kStream][kPad];
    __shared__ float ps[kRows][kStream + 1];
    __shared__ float dss[kRows][kStream + 1];
    __shared__ float lse_s[kStream], dd_s[kStream];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z, k0 = blockIdx.x * kRows;
    const int r = threadIdx.x >> 2, lane = threadIdx.x & 3, j = k0 + r;
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld, *dy = dout + (size_t)bi * t * c;
    const float *lse_bh = lse + ((size_t)bi * nh + h) * t, *dd_bh = dd + ((size_t)bi * nh + h) * t;
    load_tile(ks, x, ld, c + h * hs, k0, kRows, t, hs);
    load_tile(vs, x, ld, 2 * c + h * hs, k0, kRows, t, hs);
    float dk[kDims], dv[kDims];
#pragma unroll
    for (int u = 0; u < kDims; u++)
        dk[u] = dv[u] = 0.0f;
    for (int q0 = k0 / kStream * kStream; q0 < t; q0 += kStream) {
        __syncthreads();
        load_tile(qs, x, ld, h * hs, q0, kStream, t, hs);
        load_tile(dos, dy, (size_t)c, h * hs, q0, kStream, t, hs);
        if (threadIdx.x < kStream) {
            const int i = q0 + (int)threadIdx.x;
            lse_s[threadIdx.x] = i < t ? lse_bh[i] : 0.0f;
            dd_s[threadIdx.x] = i < t ? dd_bh[i] : 0.0f;
        }
        __syncthreads();
        float sq[4], dp[4];
        dots4(ks[r], qs, lane, hs, sq);
        dots4(vs[r], dos, lane, hs, dp);
#pragma unroll
        for (int w = 0; w < kStream / 4; w++) {
            const int ii = lane + 4 * w, i = q0 + ii;
            float p = 0.0f, ds = 0.0f;
            if (j <= i && i < t) {
                p = expf(sq[w] * scale - lse_s[ii]);
                ds = p * (dp[w] - dd_s[ii]);
            }
            ps[r][ii] = p;
            dss[r][ii] = ds;
        }
        __syncthreads();
        for (int ii = 0; ii < kStream; ii++) {
            const float p = ps[r][ii], ds = dss[r][ii];
#pragma unroll
            for (int u = 0; u < kDims; u++) {
                const int d = lane + 4 * u;
                if (d < hs) {
                    dv[u] += p * dos[ii][d];
                    dk[u] += ds * qs[ii][d];
                }
            }
        }
    }
    if (j >= t) return;
    float *row = dqkv + ((size_t)bi * t + j) * ld + (size_t)h * hs;
#pragma unroll
    for (int u = 0; u < kDims; u++) {
        const int d = lane + 4 * u;
        if (d >= hs) break;
        row[c + d] = dk[u] * scale;
        row[2 * c + d] = dv[u];
    }
}

/* grid (query tiles, nh, b): dQ of kRows queries, over the keys they see. */
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                            const float *dd, int t, int c, int nh, float scale) {
    __shared__ float qs[kRows][kPad];
    __shared__ float dos[kRows][kPad];
    __shared__ float ks[kStream][kPad];
    __shared__ float vs[kStream][kPad];
    __shared__ float dss[kRows][kStream + 1];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z, q0 = blockIdx.x * kRows;
    const int r = threadIdx.x >> 2, lane = threadIdx.x & 3, i = q0 + r;
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld;
    load_tile(qs, x, ld, h * hs, q0, kRows, t, hs);
    load_tile(dos, dout + (size_t)bi * t * c, (size_t)c, h * hs, q0, kRows, t, hs);
    const size_t bh = ((size_t)bi * nh + h) * t;
    const float lse_i = i < t ? lse[bh + i] : 0.0f, dd_i = i < t ? dd[bh + i] : 0.0f;
    float dq[kDims];
#pragma unroll
    for (int u = 0; u < kDims; u++)
        dq[u] = 0.0f;
    const int last = (q0 + kRows < t ? q0 + kRows : t) - 1;
    for (int k0 = 0; k0 <= last; k0 += kStream) {
        __syncthreads();
        load_tile(ks, x, ld, c + h * hs, k0, kStream, t, hs);
        load_tile(vs, x, ld, 2 * c + h * hs, k0, kStream, t, hs);
        __syncthreads();
        float sq[4], dp[4];
        dots4(qs[r], ks, lane, hs, sq);
        dots4(dos[r], vs, lane, hs, dp);
#pragma unroll
        for (int w = 0; w < kStream / 4; w++) {
            const int jj = lane + 4 * w;
            float ds = 0.0f;
            if (k0 + jj <= i && i < t) {
                const float p = expf(sq[w] * scale - lse_i);
                ds = p * (dp[w] - dd_i);
            }
            dss[r][jj] = ds;
        }
        __syncthreads();
        for (int jj = 0; jj < kStream; jj++) {
            const float ds = dss[r][jj];
#pragma unroll
            for (int u = 0; u < kDims; u++) {
                const int d = lane + 4 * u;
                if (d < hs) dq[u] += ds * ks[jj][d];
            }
        }
    }
    if (i >= t) return;
    float *row = dqkv + ((size_t)bi * t + i) * ld + (size_t)h * hs;
#pragma unroll
    for (int u = 0; u < kDims; u++) {
        const int d = lane + 4 * u;
        if (d >= hs) break;
        row[d] = dq[u] * scale;
    }
}

static dim3 tiles(int t, int nh, int b) {
    return dim3((unsigned)((t + kRows - 1) / kRows), (unsigned)nh, (unsigned)b);
}

void flash_attention_forward(gpu_ctx *g, float *out, float *state, const float *qkv, int b, int t,
                             int c, int nh) {
    const char *op = "attention_forward (flash)";
#if XDT_GPU_HAVE_MMA_BF16
    if (g->bf16 && g->mma_bf16) {
        flash_mma_forward(g, out, state, qkv, b, t, c, nh);
        return;
    }
#endif
    XDT_LAUNCH(tiles(t, nh, b), kThreads, g->stream, flash_forward_kernel)
    (out, state, qkv, t, c, nh, 1.0f / sqrtf((float)(c / nh)));
    check_launch(g, op);
}

void flash_attention_backward(gpu_ctx *g, float *dqkv, float *workspace, const float *dout,
                              const float *qkv, const float *state, const float *out, int b, int t,
                              int c, int nh) {
    const char *op = "attention_backward (flash)";
    const float *lse = state;
    const float scale = 1.0f / sqrtf((float)(c / nh));
    XDT_LAUNCH(grid_for((size_t)b * t * nh, kBlock), kBlock, g->stream, flash_row_dot_kernel)
    (workspace, dout, out, b, t, c, nh);
    if (!check_launch(g, op)) return;
#if XDT_GPU_HAVE_MMA_BF16
    if (g->bf16 && g->mma_bf16) {
        flash_mma_backward(g, dqkv, workspace, dout, qkv, lse, b, t, c, nh);
        return;
    }
#endif
    XDT_LAUNCH(tiles(t, nh, b), kThreads, g->stream, flash_backward_kv_kernel)
    (dqkv, dout, qkv, lse, workspace, t, c, nh, scale);
    if (!check_launch(g, op)) return;
    XDT_LAUNCH(tiles(t, nh, b), kThreads, g->stream, flash_backward_q_kernel)
    (dqkv, dout, qkv, lse, workspace, t, c, nh, scale);
    check_launch(g, op);
}

} // namespace XDT_GPU_NS
