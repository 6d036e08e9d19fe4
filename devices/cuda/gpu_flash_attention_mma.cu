/* gpu_flash_attention_mma.cu: the bf16 mode's flash attention on tensor cores. The same
 * algorithm and kernels as gpu_flash_attention.cu (forward with an online softmax keeping the
 * log-sum-exp; backward as one kernel per key tile for dK, dV and one per query tile for dQ, no
 * atomics, so every run gives the same bits), with each tile's products done by the warp-level
 * mma.sync.m16n8k16 on bf16 operands with fp32 sums, as FlashAttention-2 does them.
 *
 * Rounding, as the bf16 GEMM mode everywhere: q, k, v and dout are rounded to bf16 when staged,
 * and so are the probabilities (and dS) before their product with v (q, k); the softmax, its
 * sums, the log-sum-exp and every accumulator stay fp32.
 *
 * Layout: 128 threads (four warps) own 64 rows (queries; keys in the dK/dV kernel), 16 per warp,
 * and stream the other side in tiles of 64 rows through shared memory as bf16. Heads are
 * zero-padded to 64 dims. A warp's own rows live in registers as mma "a" fragments; a product's
 * 16 x 8 accumulator tiles are turned into the next product's "a" fragments without a trip
 * through shared memory (FlashAttention-2's register reuse), which is why the probabilities are
 * laid out rows x keys in both kernels of the backward. The "b" operand must be read
 * k-contiguous, so v (forward), q and dout (dK/dV) and k (dQ) are also staged transposed.
 *
 * CUDA for devices of compute capability 8.0 and up, and the CPU emulation (gpu_emu.h emulates
 * the mma); gpu_flash_attention.cu calls it in bf16 mode when the device has it. */
#include "devices/cuda/gpu_common.cuh"

#include <math.h>
#include <string.h>

namespace XDT_GPU_NS {

#if XDT_GPU_HAVE_MMA_BF16

constexpr int kD = 64;    /* head dims, zero-padded: gpu_flash_attention.cu's kHeadMax */
constexpr int kTile = 64; /* rows a block owns (16 per warp) and rows per streamed tile */
constexpr int kMmaThreads = 128;
constexpr int kLd = kD + 8; /* bf16 values per shared row: 144 bytes, so the eight rows and four
                               pairs one fragment load touches fall in 32 different banks */
static_assert(kTile == kD, "the transposed tiles share the row tiles' shape");
static_assert(kTile == 16 * (kMmaThreads / 32), "16 rows per warp");

typedef uint16_t tile_t[kTile][kLd];

__device__ inline uint16_t bf16_bits(float x) {
    return (uint16_t)(__float_as_uint(bf16_round(x)) >> 16);
}

/* Two values rounded to bf16, lo in the low half (the order mma reads a pair in). */
__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)bf16_bits(lo) | ((uint32_t)bf16_bits(hi) << 16);
#endif
}

/* The pair of bf16 values at p (p even-indexed within a 4-byte aligned row). */
__device__ inline uint32_t load_pair(const uint16_t *p) {
#if defined(XDT_GPU_EMU)
    uint32_t r;
    memcpy(&r, p, sizeof r);
    return r;
#else
    return *reinterpret_cast<const uint32_t *>(p);
#endif
}

/* d += a b for a 16 x 16 a and a 16 x 8 b (fragments as in gpu_emu.h's mma_bf16_16816). */
__device__ inline void mma(float d[4], const uint32_t a[4], const uint32_t b[2]) {
#if defined(XDT_GPU_EMU)
    xdt_emu::mma_bf16_16816(d, a, b);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                 "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    (void)d, (void)a, (void)b;
    __trap(); /* the host side never launches these kernels below compute capability 8.0 */
#endif
}

/* The "a" fragment of rows r0..r0+15, columns k0..k0+15 of a row-major shared tile (g: the lane's
 * group, lane / 4; q: its place in the group, lane % 4). */
__device__ inline void frag_a(uint32_t a[4], const tile_t &m, int r0, int k0, int g, int q) {
    a[0] = load_pair(&m[r0 + g][k0 + 2 * q]);
    a[1] = load_pair(&m[r0 + g + 8][k0 + 2 * q]);
    a[2] = load_pair(&m[r0 + g][k0 + 8 + 2 * q]);
    a[3] = load_pair(&m[r0 + g + 8][k0 + 8 + 2 * q]);
}

/* The "b" fragment b[kk][n] = m[n0 + n][k0 + kk] (kk < 16, n < 8): a tile's rows as b's columns. */
__device__ inline void frag_b(uint32_t b[2], const tile_t &m, int n0, int k0, int g, int q) {
    b[0] = load_pair(&m[n0 + g][k0 + 2 * q]);
    b[1] = load_pair(&m[n0 + g][k0 + 8 + 2 * q]);
}

/* The "a" fragment made of two accumulator tiles side by side (columns 0-7 and 8-15). */
__device__ inline void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16x2(lo[0], lo[1]);
    a[1] = pack_bf16x2(lo[2], lo[3]);
    a[2] = pack_bf16x2(hi[0], hi[1]);
    a[3] = pack_bf16x2(hi[2], hi[3]);
}

/* Rows [r0, r0 + kTile) of one head's slice (column offset col, hs dims) of a (t x ld) matrix,
 * as bf16, into a row-major tile and/or a transposed one ([dim][row]); zeros past t and hs. */
__device__ inline void stage(tile_t *rows, tile_t *cols, const float *m, size_t ld, int col, int r0,
                             int t, int hs) {
    for (int x = threadIdx.x; x < kTile * kD; x += kMmaThreads) {
        const int r = x / kD, d = x % kD;
        const float v = r0 + r < t && d < hs ? m[(size_t)(r0 + r) * ld + col + d] : 0.0f;
        const uint16_t h = bf16_bits(v);
        if (rows) (*rows)[r][d] = h;
        if (cols) (*cols)[d][r] = h;
    }
}

/* Accumulator element e of tile nt sits at row g + 8 (e / 2), column 8 nt + 2 q + e % 2. */
__device__ inline int acc_row(int g, int e) {
    return g + 8 * (e >> 1);
}
__device__ inline int acc_col(int nt, int q, int e) {
    return 8 * nt + 2 * q + (e & 1);
}

/* grid (query tiles, nh, b); the last query tiles (most keys) first. out (b, t, c); lse (b, nh,
 * t). */
__global__ void __launch_bounds__(kMmaThreads)
    flash_forward_mma_kernel(float *out, float *lse, const float *qkv, int t, int c, int nh,
                             float scale) {
    __shared__ __align__(16) uint16_t qs[kTile][kLd];
    __shared__ __align__(16) uint16_t ks[kTile][kLd];
    __shared__ __align__(16) uint16_t vt[kD][kLd];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + 16 * warp; /* the warp's first query */
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld;
    stage(&qs, nullptr, x, ld, h * hs, q0, t, hs);
    __syncthreads();
    uint32_t qa[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; kc++)
        frag_a(qa[kc], qs, 16 * warp, 16 * kc, g, q);
    float o[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    const int last = (q0 + kTile < t ? q0 + kTile : t) - 1;
    for (int k0 = 0; k0 <= last; k0 += kTile) {
        __syncthreads(); /* the previous tiles are read */
        stage(&ks, nullptr, x, ld, c + h * hs, k0, t, hs);
        stage(nullptr, &vt, x, ld, 2 * c + h * hs, k0, t, hs);
        __syncthreads();
        float s[kTile / 8][4];
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++) {
            s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < kD / 16; kc++) {
                uint32_t b[2];
                frag_b(b, ks, 8 * nt, 16 * kc, g, q);
                mma(s[nt], qa[kc], b);
            }
        }
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = row0 + acc_row(g, e), j = k0 + acc_col(nt, q, e);
                const float v = j <= i && i < t ? s[nt][e] * scale : -INFINITY;
                s[nt][e] = v;
                mx[e >> 1] = fmaxf(mx[e >> 1], v);
            }
        float corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const float m_new = fmaxf(m_run[r], quad_max(mx[r]));
            /* the running sums rescaled to the new maximum (nothing to rescale before a key) */
            corr[r] = m_run[r] == -INFINITY ? 0.0f : expf(m_run[r] - m_new);
            m_run[r] = m_new;
        }
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float m = m_run[e >> 1];
                const float p = m == -INFINITY ? 0.0f : expf(s[nt][e] - m);
                s[nt][e] = p;
                sum[e >> 1] += p;
            }
#pragma unroll
        for (int r = 0; r < 2; r++)
            l_run[r] = l_run[r] * corr[r] + quad_sum(sum[r]);
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                o[dt][e] *= corr[e >> 1];
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t pa[4];
            acc_to_a(pa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++) {
                uint32_t b[2];
                frag_b(b, vt, 8 * dt, 16 * kc, g, q);
                mma(o[dt], pa, b);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        if (i >= t) continue;
        const float inv = 1.0f / l_run[r];
        float *row = out + ((size_t)bi * t + i) * c + (size_t)h * hs;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d < hs) row[d] = o[dt][e] * inv;
            }
        if (q == 0) lse[((size_t)bi * nh + h) * t + i] = m_run[r] + logf(l_run[r]);
    }
}

/* grid (key tiles, nh, b): dK and dV of kTile keys over every query that sees them (the first
 * key tiles, which see the most, are launched first). */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_kv_mma_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                 const float *dd, int t, int c, int nh, float scale) {
    __shared__ __align__(16) uint16_t qs[kTile][kLd];
    __shared__ __align__(16) uint16_t qt[kD][kLd];
    __shared__ __align__(16) uint16_t dos[kTile][kLd];
    __shared__ __align__(16) uint16_t dot[kD][kLd];
    __shared__ float lse_s[kTile], dd_s[kTile];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z, k0 = blockIdx.x * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int j0 = k0 + 16 * warp; /* the warp's first key */
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld, *dy = dout + (size_t)bi * t * c;
    const float *lse_bh = lse + ((size_t)bi * nh + h) * t, *dd_bh = dd + ((size_t)bi * nh + h) * t;
    /* the block's keys and values, staged through the query tiles' buffers into registers */
    stage(&qs, nullptr, x, ld, c + h * hs, k0, t, hs);
    stage(&dos, nullptr, x, ld, 2 * c + h * hs, k0, t, hs);
    __syncthreads();
    uint32_t ka[kD / 16][4], va[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; kc++) {
        frag_a(ka[kc], qs, 16 * warp, 16 * kc, g, q);
        frag_a(va[kc], dos, 16 * warp, 16 * kc, g, q);
    }
    float dk[kD / 8][4], dv[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[dt][e] = dv[dt][e] = 0.0f;
    for (int q0 = k0; q0 < t; q0 += kTile) {
        __syncthreads();
        stage(&qs, &qt, x, ld, h * hs, q0, t, hs);
        stage(&dos, &dot, dy, (size_t)c, h * hs, q0, t, hs);
        if (threadIdx.x < kTile) {
            const int i = q0 + (int)threadIdx.x;
            lse_s[threadIdx.x] = i < t ? lse_bh[i] : 0.0f;
            dd_s[threadIdx.x] = i < t ? dd_bh[i] : 0.0f;
        }
        __syncthreads();
        /* p: keys x queries, s^T then the probabilities; ds: dP^T then dS^T */
        float p[kTile / 8][4], ds[kTile / 8][4];
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++)
                p[nt][e] = ds[nt][e] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < kD / 16; kc++) {
                uint32_t b[2];
                frag_b(b, qs, 8 * nt, 16 * kc, g, q);
                mma(p[nt], ka[kc], b);
                frag_b(b, dos, 8 * nt, 16 * kc, g, q);
                mma(ds[nt], va[kc], b);
            }
        }
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = j0 + acc_row(g, e), ii = acc_col(nt, q, e), i = q0 + ii;
                float pv = 0.0f, dsv = 0.0f;
                if (j <= i && i < t) {
                    pv = expf(p[nt][e] * scale - lse_s[ii]);
                    dsv = pv * (ds[nt][e] - dd_s[ii]);
                }
                p[nt][e] = pv;
                ds[nt][e] = dsv;
            }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t pa[4], dsa[4];
            acc_to_a(pa, p[2 * kc], p[2 * kc + 1]);
            acc_to_a(dsa, ds[2 * kc], ds[2 * kc + 1]);
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++) {
                uint32_t b[2];
                frag_b(b, dot, 8 * dt, 16 * kc, g, q);
                mma(dv[dt], pa, b);
                frag_b(b, qt, 8 * dt, 16 * kc, g, q);
                mma(dk[dt], dsa, b);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int j = j0 + g + 8 * r;
        if (j >= t) continue;
        float *row = dqkv + ((size_t)bi * t + j) * ld + (size_t)h * hs;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d >= hs) continue;
                row[c + d] = dk[dt][e] * scale;
                row[2 * c + d] = dv[dt][e];
            }
    }
}

/* grid (query tiles, nh, b): dQ of kTile queries over the keys they see (most keys first). */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_q_mma_kernel(float *dqkv, const float *dout, const float *qkv, const float *lse,
                                const float *dd, int t, int c, int nh, float scale) {
    __shared__ __align__(16) uint16_t ks[kTile][kLd];
    __shared__ __align__(16) uint16_t kt[kD][kLd];
    __shared__ __align__(16) uint16_t vs[kTile][kLd];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + 16 * warp;
    const size_t ld = 3 * (size_t)c;
    const float *x = qkv + (size_t)bi * t * ld;
    /* the block's queries and their output gradients, staged through the key tiles' buffers */
    stage(&ks, nullptr, x, ld, h * hs, q0, t, hs);
    stage(&vs, nullptr, dout + (size_t)bi * t * c, (size_t)c, h * hs, q0, t, hs);
    __syncthreads();
    uint32_t qa[kD / 16][4], da[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; kc++) {
        frag_a(qa[kc], ks, 16 * warp, 16 * kc, g, q);
        frag_a(da[kc], vs, 16 * warp, 16 * kc, g, q);
    }
    const size_t bh = ((size_t)bi * nh + h) * t;
    float lse_r[2], dd_r[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        lse_r[r] = i < t ? lse[bh + i] : 0.0f;
        dd_r[r] = i < t ? dd[bh + i] : 0.0f;
    }
    float dq[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
        dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
    const int last = (q0 + kTile < t ? q0 + kTile : t) - 1;
    for (int k0 = 0; k0 <= last; k0 += kTile) {
        __syncthreads();
        stage(&ks, &kt, x, ld, c + h * hs, k0, t, hs);
        stage(&vs, nullptr, x, ld, 2 * c + h * hs, k0, t, hs);
        __syncthreads();
        float s[kTile / 8][4], dp[kTile / 8][4];
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++) {
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
            for (int kc = 0; kc < kD / 16; kc++) {
                uint32_t b[2];
                frag_b(b, ks, 8 * nt, 16 * kc, g, q);
                mma(s[nt], qa[kc], b);
                frag_b(b, vs, 8 * nt, 16 * kc, g, q);
                mma(dp[nt], da[kc], b);
            }
        }
        /* s becomes dS */
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1, i = row0 + acc_row(g, e), j = k0 + acc_col(nt, q, e);
                float dsv = 0.0f;
                if (j <= i && i < t)
                    dsv = expf(s[nt][e] * scale - lse_r[r]) * (dp[nt][e] - dd_r[r]);
                s[nt][e] = dsv;
            }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t dsa[4];
            acc_to_a(dsa, s[2 * kc], s[2 * kc + 1]);
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++) {
                uint32_t b[2];
                frag_b(b, kt, 8 * dt, 16 * kc, g, q);
                mma(dq[dt], dsa, b);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        if (i >= t) continue;
        float *row = dqkv + ((size_t)bi * t + i) * ld + (size_t)h * hs;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d < hs) row[d] = dq[dt][e] * scale;
            }
    }
}

static dim3 mma_tiles(int t, int nh, int b) {
    return dim3((unsigned)((t + kTile - 1) / kTile), (unsigned)nh, (unsigned)b);
}

void flash_mma_forward(gpu_ctx *g, float *out, float *lse, const float *qkv, int b, int t, int c,
                       int nh) {
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_forward_mma_kernel)
    (out, lse, qkv, t, c, nh, 1.0f / sqrtf((float)(c / nh)));
    check_launch(g, "attention_forward (flash, bf16)");
}

void flash_mma_backward(gpu_ctx *g, float *dqkv, const float *dd, const float *dout,
                        const float *qkv, const float *lse, int b, int t, int c, int nh) {
    const char *op = "attention_backward (flash, bf16)";
    const float scale = 1.0f / sqrtf((float)(c / nh));
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_kv_mma_kernel)
    (dqkv, dout, qkv, lse, dd, t, c, nh, scale);
    if (!check_launch(g, op)) return;
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_q_mma_kernel)
    (dqkv, dout, qkv, lse, dd, t, c, nh, scale);
    check_launch(g, op);
}

#endif

} // namespace XDT_GPU_NS
