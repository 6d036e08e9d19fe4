/* gpu_flash_attention_mma.cu: the bf16 mode's flash attention on tensor cores. The same
 * algorithm and kernels as gpu_flash_attention.cu (forward with an online softmax keeping the
 * log-sum-exp; backward as one kernel per key tile for dK, dV and one per query tile for dQ, no
 * atomics, so every run gives the same bits), with each tile's products done by the warp-level
 * mma.sync.m16n8k16 on bf16 operands with fp32 sums, as FlashAttention-2 does them.
 *
 * Rounding, as the bf16 GEMM mode everywhere: q, k, v and dout are rounded to bf16 (one pass
 * into bf16 copies in the device's workspace, which the kernels read), and so are the
 * probabilities (and dS) before their product with v (q, k); the softmax, its sums, the
 * log-sum-exp and every accumulator stay fp32.
 *
 * Layout: 128 threads (four warps) own 64 rows (queries; keys in the dK/dV kernel), 16 per warp,
 * and stream the other side in tiles of 64 rows through shared memory, double-buffered: the next
 * tile's async copies (cp.async) are in flight while the current one is multiplied. Heads are
 * zero-padded to 64 dims. A warp's own rows live in registers as mma "a" fragments; a product's
 * 16 x 8 accumulator tiles become the next product's "a" fragments without a trip through shared
 * memory (FlashAttention-2's register reuse), which is why the probabilities are laid out as the
 * block's own rows x the streamed rows (queries x keys; keys x queries in the dK/dV kernel). "b"
 * fragments are read from the row-major tiles either across a row (for products with a transposed
 * tile) or down a column.
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

/* Stores a pair of bf16 values at p (4-byte aligned). */
__device__ inline void store_pair(uint16_t *p, uint32_t v) {
#if defined(XDT_GPU_EMU)
    memcpy(p, &v, sizeof v);
#else
    *reinterpret_cast<uint32_t *>(p) = v;
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

/* 16 bytes from global to shared memory without waiting (cp.async, compute capability 8.0); the
 * copies issued since the last async_commit form a group, and async_wait<N> returns once at most
 * N groups are still in flight. The emulation copies at once. */
__device__ inline void copy16_async(void *smem, const void *gmem) {
#if defined(XDT_GPU_EMU)
    memcpy(smem, gmem, 16);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned dst = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(gmem));
#else
    (void)smem, (void)gmem;
#endif
}
__device__ inline void async_commit() {
#if !defined(XDT_GPU_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;");
#endif
}
template <int N> __device__ inline void async_wait() {
#if !defined(XDT_GPU_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;" ::"n"(N));
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

/* The "b" fragment b[kk][n] = m[n0 + n][k0 + kk] (kk < 16, n < 8): a tile's rows as b's columns
 * (for products with a tile transposed: q k^T, dout v^T). */
__device__ inline void frag_b(uint32_t b[2], const tile_t &m, int n0, int k0, int g, int q) {
    b[0] = load_pair(&m[n0 + g][k0 + 2 * q]);
    b[1] = load_pair(&m[n0 + g][k0 + 8 + 2 * q]);
}

/* The "b" fragment b[kk][n] = m[k0 + kk][n0 + n]: the tile as it is (p v, dS k, ...). A
 * register's pair lies down a column, so it takes two 16-bit reads; the quad's rows 2q, 2q + 1
 * and the group's columns fall in distinct banks (or share a word), so none conflict. */
__device__ inline void frag_b_down(uint32_t b[2], const tile_t &m, int k0, int n0, int g, int q) {
    const int r = k0 + 2 * q, col = n0 + g;
    b[0] = (uint32_t)m[r][col] | ((uint32_t)m[r + 1][col] << 16);
    b[1] = (uint32_t)m[r + 8][col] | ((uint32_t)m[r + 9][col] << 16);
}

/* The "a" fragment of rows r0..r0+15, columns k0..k0+15 of the transpose of a shared tile
 * (a[r][kk] = m[k0 + kk][r0 + r]): pairs lie down m's columns, read as frag_b_down reads them. */
__device__ inline void frag_a_down(uint32_t a[4], const tile_t &m, int r0, int k0, int g, int q) {
    const int r = k0 + 2 * q, col = r0 + g;
    a[0] = (uint32_t)m[r][col] | ((uint32_t)m[r + 1][col] << 16);
    a[1] = (uint32_t)m[r][col + 8] | ((uint32_t)m[r + 1][col + 8] << 16);
    a[2] = (uint32_t)m[r + 8][col] | ((uint32_t)m[r + 9][col] << 16);
    a[3] = (uint32_t)m[r + 8][col + 8] | ((uint32_t)m[r + 9][col + 8] << 16);
}

/* The "a" fragment made of two accumulator tiles side by side (columns 0-7 and 8-15). */
__device__ inline void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16x2(lo[0], lo[1]);
    a[1] = pack_bf16x2(lo[2], lo[3]);
    a[2] = pack_bf16x2(hi[0], hi[1]);
    a[3] = pack_bf16x2(hi[2], hi[3]);
}

/* acc = (the warp's 16 rows, as "a" fragments over the 64 dims) x (the tile's 64 rows)^T: a 16 x 64
 * product in eight accumulator tiles, started from zero (q k^T, dout v^T and their transposes). */
__device__ inline void rows_times_tile(float acc[kTile / 8][4], const uint32_t a[kD / 16][4],
                                       const tile_t &m, int g, int q) {
#pragma unroll
    for (int nt = 0; nt < kTile / 8; nt++) {
        acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
#pragma unroll
        for (int kc = 0; kc < kD / 16; kc++) {
            uint32_t b[2];
            frag_b(b, m, 8 * nt, 16 * kc, g, q);
            mma(acc[nt], a[kc], b);
        }
    }
}

/* Starts copying rows [r0, r0 + kTile) of one head's slice (column offset col, hs dims) of a bf16
 * (t x ld) matrix into a shared tile; zeros past t and hs. Whole 64-dim heads (fast: rows of 128
 * bytes, 16-byte aligned) go by async 16-byte copies, four a thread; other heads value by value,
 * at once. Either way the tile is ready after async_wait and a barrier. */
__device__ inline void stage(tile_t &tile, const uint16_t *m, size_t ld, int col, int r0, int t,
                             int hs, bool fast) {
    if (fast) {
        for (int x = threadIdx.x; x < kTile * (kD / 8); x += kMmaThreads) {
            const int r = x / (kD / 8), d = 8 * (x % (kD / 8));
            if (r0 + r < t) {
                copy16_async(&tile[r][d], m + (size_t)(r0 + r) * ld + col + d);
            } else {
                const uint32_t zero[4] = {0, 0, 0, 0};
                memcpy(&tile[r][d], zero, sizeof zero);
            }
        }
        return;
    }
    for (int x = threadIdx.x; x < kTile * kD; x += kMmaThreads) {
        const int r = x / kD, d = x % kD;
        tile[r][d] = r0 + r < t && d < hs ? m[(size_t)(r0 + r) * ld + col + d] : (uint16_t)0;
    }
}

/* Accumulator element e of tile nt sits at row g + 8 (e / 2), column 8 nt + 2 q + e % 2. */
__device__ inline int acc_row(int g, int e) {
    return g + 8 * (e >> 1);
}
__device__ inline int acc_col(int nt, int q, int e) {
    return 8 * nt + 2 * q + (e & 1);
}

/* grid (query tiles, nh, b); the last query tiles (most keys) first. qkv: bf16 (b, t, 3c);
 * out (b, t, c); lse (b, nh, t). Key tiles are double-buffered: the next is copied in while the
 * current one is multiplied. */
__global__ void __launch_bounds__(kMmaThreads)
    flash_forward_mma_kernel(float *out, uint16_t *out16, float *lse, const uint16_t *qkv, int t,
                             int c, int nh, float scale, bool fast) {
    __shared__ __align__(16) uint16_t qs[kTile][kLd];
    __shared__ __align__(16) uint16_t ks[2][kTile][kLd];
    __shared__ __align__(16) uint16_t vs[2][kTile][kLd];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + 16 * warp; /* the warp's first query */
    const size_t ld = 3 * (size_t)c;
    const uint16_t *x = qkv + (size_t)bi * t * ld;
    stage(qs, x, ld, h * hs, q0, t, hs, fast);
    stage(ks[0], x, ld, c + h * hs, 0, t, hs, fast);
    stage(vs[0], x, ld, 2 * c + h * hs, 0, t, hs, fast);
    async_commit();
    float o[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
        o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.0f;
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};
    uint32_t qa[kD / 16][4];
    const int last = (q0 + kTile < t ? q0 + kTile : t) - 1;
    for (int k0 = 0, buf = 0; k0 <= last; k0 += kTile, buf ^= 1) {
        if (k0 + kTile <= last) {
            stage(ks[buf ^ 1], x, ld, c + h * hs, k0 + kTile, t, hs, fast);
            stage(vs[buf ^ 1], x, ld, 2 * c + h * hs, k0 + kTile, t, hs, fast);
        }
        async_commit();
        async_wait<1>(); /* this tile's copies (and, the first time, the queries') are in */
        __syncthreads();
        if (k0 == 0) {
#pragma unroll
            for (int kc = 0; kc < kD / 16; kc++)
                frag_a(qa[kc], qs, 16 * warp, 16 * kc, g, q);
        }
        float s[kTile / 8][4];
        rows_times_tile(s, qa, ks[buf], g, q);
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
                frag_b_down(b, vs[buf], 16 * kc, 8 * dt, g, q);
                mma(o[dt], pa, b);
            }
        }
        __syncthreads(); /* the tile is read: the next iteration's copies may overwrite it */
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        if (i >= t) continue;
        const float inv = 1.0f / l_run[r];
        const size_t at = ((size_t)bi * t + i) * c + (size_t)h * hs;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d >= hs) continue;
                const float y = o[dt][e] * inv;
                out[at + d] = y;
                if (out16) out16[at + d] = bf16_bits(y);
            }
        if (q == 0) lse[((size_t)bi * nh + h) * t + i] = m_run[r] + logf(l_run[r]);
    }
}

/* grid (key tiles, nh, batch rows b0..): dK and dV of kTile keys over every query that sees
 * them (the first key tiles, which see the most, are launched first). qkv and dout bf16; query
 * tiles double-buffered. With dst, it also stores dS^T in bf16 for the dQ kernel that reads it
 * (flash_backward_q_from_ds_kernel): per (row of the group, head) a tp x tp plane (tp: t rounded
 * up to the tile), keys down, queries across; the tiles with queries before the keys are left
 * unwritten (nothing reads them). */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_kv_mma_kernel(float *dqkv, uint16_t *dqkv16, const uint16_t *dout,
                                 const uint16_t *qkv, const float *lse, const float *dd, int t,
                                 int c, int nh, float scale, bool fast, int b0, uint16_t *dst,
                                 int tp) {
    __shared__ __align__(16) uint16_t qs[2][kTile][kLd];
    __shared__ __align__(16) uint16_t dos[2][kTile][kLd];
    __shared__ float lse_s[2][kTile], dd_s[2][kTile];
    const int hs = c / nh, h = blockIdx.y, bi = b0 + (int)blockIdx.z, k0 = blockIdx.x * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int j0 = k0 + 16 * warp; /* the warp's first key */
    uint16_t *dst_rows = dst ? dst + ((size_t)blockIdx.z * nh + h) * tp * tp + (size_t)j0 * tp
                             : nullptr; /* the warp's keys' rows of dS^T */
    const size_t ld = 3 * (size_t)c;
    const uint16_t *x = qkv + (size_t)bi * t * ld, *dy = dout + (size_t)bi * t * c;
    const float *lse_bh = lse + ((size_t)bi * nh + h) * t, *dd_bh = dd + ((size_t)bi * nh + h) * t;
    /* the block's keys and values, staged through the second query buffers into registers */
    stage(qs[1], x, ld, c + h * hs, k0, t, hs, fast);
    stage(dos[1], x, ld, 2 * c + h * hs, k0, t, hs, fast);
    async_commit();
    async_wait<0>();
    __syncthreads();
    uint32_t ka[kD / 16][4], va[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; kc++) {
        frag_a(ka[kc], qs[1], 16 * warp, 16 * kc, g, q);
        frag_a(va[kc], dos[1], 16 * warp, 16 * kc, g, q);
    }
    float dk[kD / 8][4], dv[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[dt][e] = dv[dt][e] = 0.0f;
    /* query tile q0's data, into buffer b: async copies, and the rows' terms at once */
    auto fetch = [&](int q0, int b) {
        stage(qs[b], x, ld, h * hs, q0, t, hs, fast);
        stage(dos[b], dy, (size_t)c, h * hs, q0, t, hs, fast);
        if (threadIdx.x < kTile) {
            const int i = q0 + (int)threadIdx.x;
            lse_s[b][threadIdx.x] = i < t ? lse_bh[i] : 0.0f;
            dd_s[b][threadIdx.x] = i < t ? dd_bh[i] : 0.0f;
        }
    };
    __syncthreads(); /* every warp has its fragments before buffer 1 is reused */
    fetch(k0, 0);
    async_commit();
    for (int q0 = k0, buf = 0; q0 < t; q0 += kTile, buf ^= 1) {
        if (q0 + kTile < t) fetch(q0 + kTile, buf ^ 1);
        async_commit();
        async_wait<1>();
        __syncthreads();
        /* p: keys x queries, s^T then the probabilities; ds: dP^T then dS^T */
        float p[kTile / 8][4], ds[kTile / 8][4];
        rows_times_tile(p, ka, qs[buf], g, q);
        rows_times_tile(ds, va, dos[buf], g, q);
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int j = j0 + acc_row(g, e), ii = acc_col(nt, q, e), i = q0 + ii;
                float pv = 0.0f, dsv = 0.0f;
                if (j <= i && i < t) {
                    pv = expf(p[nt][e] * scale - lse_s[buf][ii]);
                    dsv = pv * (ds[nt][e] - dd_s[buf][ii]);
                }
                p[nt][e] = pv;
                ds[nt][e] = dsv;
            }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t pa[4], dsa[4];
            acc_to_a(pa, p[2 * kc], p[2 * kc + 1]);
            acc_to_a(dsa, ds[2 * kc], ds[2 * kc + 1]);
            if (dst_rows) { /* the a fragment's pairs are rows g, g + 8 by queries 2q, 2q + 8 */
                uint16_t *at = dst_rows + (size_t)g * tp + q0 + 16 * kc + 2 * q;
                store_pair(at, dsa[0]);
                store_pair(at + 8 * (size_t)tp, dsa[1]);
                store_pair(at + 8, dsa[2]);
                store_pair(at + 8 * (size_t)tp + 8, dsa[3]);
            }
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++) {
                uint32_t b[2];
                frag_b_down(b, dos[buf], 16 * kc, 8 * dt, g, q);
                mma(dv[dt], pa, b);
                frag_b_down(b, qs[buf], 16 * kc, 8 * dt, g, q);
                mma(dk[dt], dsa, b);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int j = j0 + g + 8 * r;
        if (j >= t) continue;
        const size_t at = ((size_t)bi * t + j) * ld + (size_t)h * hs;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d >= hs) continue;
                const float gk = dk[dt][e] * scale, gv = dv[dt][e];
                dqkv[at + c + d] = gk;
                dqkv[at + 2 * c + d] = gv;
                if (dqkv16) {
                    dqkv16[at + c + d] = bf16_bits(gk);
                    dqkv16[at + 2 * c + d] = bf16_bits(gv);
                }
            }
    }
}

/* The warp's 16 rows of dQ (times scale) into dqkv's q columns of head column col (and into its
 * bf16 sidecar, when there is one). */
__device__ inline void store_dq(float *dqkv, uint16_t *dqkv16, const float dq[kD / 8][4], int bi,
                                int row0, int g, int q, int t, size_t ld, int col, int hs,
                                float scale) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        if (i >= t) continue;
        const size_t at = ((size_t)bi * t + i) * ld + (size_t)col;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d >= hs) continue;
                const float y = dq[dt][e] * scale;
                dqkv[at + d] = y;
                if (dqkv16) dqkv16[at + d] = bf16_bits(y);
            }
    }
}

/* grid (query tiles, nh, b): dQ of kTile queries over the keys they see (most keys first),
 * recomputing dS; key tiles double-buffered. For planes of dS^T too large to keep
 * (flash_mma_backward). */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_q_mma_kernel(float *dqkv, uint16_t *dqkv16, const uint16_t *dout,
                                const uint16_t *qkv, const float *lse, const float *dd, int t,
                                int c, int nh, float scale, bool fast) {
    __shared__ __align__(16) uint16_t ks[2][kTile][kLd];
    __shared__ __align__(16) uint16_t vs[2][kTile][kLd];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + 16 * warp;
    const size_t ld = 3 * (size_t)c;
    const uint16_t *x = qkv + (size_t)bi * t * ld;
    /* the block's queries and their output gradients, staged through the second key buffers */
    stage(ks[1], x, ld, h * hs, q0, t, hs, fast);
    stage(vs[1], dout + (size_t)bi * t * c, (size_t)c, h * hs, q0, t, hs, fast);
    async_commit();
    async_wait<0>();
    __syncthreads();
    uint32_t qa[kD / 16][4], da[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; kc++) {
        frag_a(qa[kc], ks[1], 16 * warp, 16 * kc, g, q);
        frag_a(da[kc], vs[1], 16 * warp, 16 * kc, g, q);
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
    __syncthreads(); /* every warp has its fragments before buffer 1 is reused */
    stage(ks[0], x, ld, c + h * hs, 0, t, hs, fast);
    stage(vs[0], x, ld, 2 * c + h * hs, 0, t, hs, fast);
    async_commit();
    for (int k0 = 0, buf = 0; k0 <= last; k0 += kTile, buf ^= 1) {
        if (k0 + kTile <= last) {
            stage(ks[buf ^ 1], x, ld, c + h * hs, k0 + kTile, t, hs, fast);
            stage(vs[buf ^ 1], x, ld, 2 * c + h * hs, k0 + kTile, t, hs, fast);
        }
        async_commit();
        async_wait<1>();
        __syncthreads();
        float s[kTile / 8][4], dp[kTile / 8][4];
        rows_times_tile(s, qa, ks[buf], g, q);
        rows_times_tile(dp, da, vs[buf], g, q);
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
                frag_b_down(b, ks[buf], 16 * kc, 8 * dt, g, q);
                mma(dq[dt], dsa, b);
            }
        }
        __syncthreads();
    }
    store_dq(dqkv, dqkv16, dq, bi, row0, g, q, t, ld, h * hs, hs, scale);
}

/* grid (query tiles, nh, batch rows b0..): dQ = dS K of kTile queries over the keys they see,
 * from the dS^T planes the dK/dV kernel stored (dst, tp) instead of recomputing the probabilities:
 * one product a tile where recomputing takes three. Key tiles and their dS^T tiles
 * double-buffered. */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_q_from_ds_kernel(float *dqkv, uint16_t *dqkv16, const uint16_t *qkv,
                                    const uint16_t *dst, int t, int c, int nh, float scale,
                                    bool fast, int b0, int tp) {
    __shared__ __align__(16) uint16_t ks[2][kTile][kLd];
    __shared__ __align__(16) uint16_t dss[2][kTile][kLd];
    const int hs = c / nh, h = blockIdx.y, bi = b0 + (int)blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + 16 * warp;
    const size_t ld = 3 * (size_t)c;
    const uint16_t *x = qkv + (size_t)bi * t * ld;
    const uint16_t *plane = dst + ((size_t)blockIdx.z * nh + h) * tp * tp;
    float dq[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
        dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
    const int last = (q0 + kTile < t ? q0 + kTile : t) - 1;
    /* rows k0.. of dS^T, columns q0..: whole tiles inside the plane, 16-byte aligned rows */
    stage(ks[0], x, ld, c + h * hs, 0, t, hs, fast);
    stage(dss[0], plane, (size_t)tp, q0, 0, tp, kTile, true);
    async_commit();
    for (int k0 = 0, buf = 0; k0 <= last; k0 += kTile, buf ^= 1) {
        if (k0 + kTile <= last) {
            stage(ks[buf ^ 1], x, ld, c + h * hs, k0 + kTile, t, hs, fast);
            stage(dss[buf ^ 1], plane, (size_t)tp, q0, k0 + kTile, tp, kTile, true);
        }
        async_commit();
        async_wait<1>();
        __syncthreads();
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t dsa[4];
            frag_a_down(dsa, dss[buf], 16 * warp, 16 * kc, g, q);
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++) {
                uint32_t b[2];
                frag_b_down(b, ks[buf], 16 * kc, 8 * dt, g, q);
                mma(dq[dt], dsa, b);
            }
        }
        __syncthreads();
    }
    store_dq(dqkv, dqkv16, dq, bi, row0, g, q, t, ld, h * hs, hs, scale);
}

bool flash_mma_compiled() {
#if defined(XDT_GPU_EMU)
    return true;
#else
    /* a build for older targets only (-Dnvcc_archs below 80) carries these kernels as PTX whose
     * mma is a trap; its PTX version says so (0: not reported, trust the device's capability) */
    cudaFuncAttributes attr;
    if (cudaFuncGetAttributes(&attr, flash_forward_mma_kernel) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return attr.ptxVersion == 0 || attr.ptxVersion >= 80;
#endif
}

static dim3 mma_tiles(int t, int nh, int b) {
    return dim3((unsigned)((t + kTile - 1) / kTile), (unsigned)nh, (unsigned)b);
}

/* Whole 64-dim heads of 16-byte aligned rows take the async copies. */
static bool fast_rows(int c, int nh) {
    return c / nh == kD && c % 8 == 0;
}

/* Values of the bf16 sidecar an op writing n values puts first in the workspace (0: none). */
static size_t sidecar_values(const gpu_ctx *g, size_t n) {
    return sidecar_wanted(g, n) ? round_up_128(n) : 0;
}

/* The forward's workspace in bf16 values: out's sidecar (n_out of them, first), then the copy of
 * qkv. */
static size_t forward_values(const gpu_ctx *g, int b, int t, int c, size_t *n_out) {
    *n_out = sidecar_values(g, (size_t)b * t * c);
    return *n_out + (size_t)b * t * 3 * c;
}

void flash_mma_forward(gpu_ctx *g, float *out, float *lse, const float *qkv, int b, int t, int c,
                       int nh) {
    const char *op = "attention_forward (flash, bf16)";
    size_t n_out;
    const size_t values = forward_values(g, b, t, c, &n_out);
    uint16_t *ws = static_cast<uint16_t *>(workspace(g, values * sizeof(uint16_t), op));
    if (!ws) return;
    uint16_t *out16 = n_out ? ws : nullptr, *qkv16 = ws + n_out;
    if (!pack_bf16(g, qkv16, qkv, b * t, 3 * c, 3 * c, 0, 1, op)) return;
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_forward_mma_kernel)
    (out, out16, lse, qkv16, t, c, nh, 1.0f / sqrtf((float)(c / nh)), fast_rows(c, nh));
    if (check_launch(g, op) && out16) sidecar_made(g, out, (size_t)b * t * c);
}

/* t rounded up to whole tiles: the side of a dS^T plane. */
static int plane_side(int t) {
    return (t + kTile - 1) / kTile * kTile;
}

/* Batch rows whose dS^T planes fit the context's budget for them (flash_ds_bytes): 0 when not
 * even one row's fit (then dQ recomputes dS). */
static int ds_group(const gpu_ctx *g, int b, int t, int nh) {
    const size_t tp = (size_t)plane_side(t), row = (size_t)nh * tp * tp * sizeof(uint16_t);
    const size_t fit = g->flash_ds_bytes / row;
    return (int)(fit < (size_t)b ? fit : (size_t)b);
}

/* Where the backward's pieces start in its workspace, in bf16 values: dqkv's sidecar (when
 * wanted) first, then the copies of qkv and dout, then the dS^T planes of one group of batch
 * rows. */
struct backward_layout {
    size_t qkv16, dout16, planes, total;
};

static backward_layout backward_values(const gpu_ctx *g, int b, int t, int c, int nh) {
    backward_layout l;
    l.qkv16 = sidecar_values(g, (size_t)b * t * 3 * c);
    l.dout16 = l.qkv16 + round_up_128((size_t)b * t * 3 * c);
    l.planes = l.dout16 + round_up_128((size_t)b * t * c);
    const size_t tp = (size_t)plane_side(t);
    l.total = l.planes + (size_t)ds_group(g, b, t, nh) * nh * tp * tp;
    return l;
}

size_t flash_mma_workspace_need(const gpu_ctx *g, int b, int t, int c, int nh) {
    size_t n_out;
    const size_t fwd = forward_values(g, b, t, c, &n_out);
    const size_t bwd = backward_values(g, b, t, c, nh).total;
    return (fwd > bwd ? fwd : bwd) * sizeof(uint16_t);
}

void flash_mma_backward(gpu_ctx *g, float *dqkv, const float *dd, const float *dout,
                        const float *qkv, const float *lse, int b, int t, int c, int nh) {
    const char *op = "attention_backward (flash, bf16)";
    const float scale = 1.0f / sqrtf((float)(c / nh));
    const backward_layout l = backward_values(g, b, t, c, nh);
    uint16_t *ws = static_cast<uint16_t *>(workspace(g, l.total * sizeof(uint16_t), op));
    if (!ws) return;
    uint16_t *dqkv16 = l.qkv16 ? ws : nullptr, *qkv16 = ws + l.qkv16, *dout16 = ws + l.dout16;
    if (!pack_bf16(g, qkv16, qkv, b * t, 3 * c, 3 * c, 0, 1, op) ||
        !pack_bf16(g, dout16, dout, b * t, c, c, 0, 1, op))
        return;
    const bool fast = fast_rows(c, nh);
    const int group = ds_group(g, b, t, nh), tp = plane_side(t);
    if (group == 0) { /* dS^T too large to keep: the dQ kernel recomputes it */
        XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_kv_mma_kernel)
        (dqkv, dqkv16, dout16, qkv16, lse, dd, t, c, nh, scale, fast, 0, nullptr, tp);
        if (!check_launch(g, op)) return;
        XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_q_mma_kernel)
        (dqkv, dqkv16, dout16, qkv16, lse, dd, t, c, nh, scale, fast);
        if (!check_launch(g, op)) return;
    } else {
        uint16_t *dst = ws + l.planes;
        for (int b0 = 0; b0 < b; b0 += group) {
            const int rows = b - b0 < group ? b - b0 : group;
            XDT_LAUNCH(mma_tiles(t, nh, rows), kMmaThreads, g->stream, flash_backward_kv_mma_kernel)
            (dqkv, dqkv16, dout16, qkv16, lse, dd, t, c, nh, scale, fast, b0, dst, tp);
            if (!check_launch(g, op)) return;
            XDT_LAUNCH(mma_tiles(t, nh, rows), kMmaThreads, g->stream,
                       flash_backward_q_from_ds_kernel)
            (dqkv, dqkv16, qkv16, dst, t, c, nh, scale, fast, b0, tp);
            if (!check_launch(g, op)) return;
        }
    }
    if (dqkv16) sidecar_made(g, dqkv, (size_t)b * t * 3 * c);
}

#endif

} // namespace XDT_GPU_NS
