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
 * Layout: 128 threads (four warps) own 64 rows (queries; keys in the dK/dV kernel), 16 per warp
 * (the forward: 128 queries, 32 per warp), and stream the other side in tiles of 64 rows through
 * shared memory, double-buffered: the next tile's async copies (cp.async) are in flight while the
 * current one is multiplied. Heads are zero-padded to 64 dims. A warp's own rows live in registers
 * as mma "a" fragments; a product's 16 x 8 accumulator tiles become the next product's "a"
 * fragments without a trip through shared memory (FlashAttention-2's register reuse), which is why
 * the probabilities are laid out as the block's own rows x the streamed rows (queries x keys; keys
 * x queries in the dK/dV kernel). Fragments come from the row-major tiles by ldmatrix, plain (pairs
 * across a row: products with a transposed tile) or .trans (pairs down a column), two 16 x 8 "b"
 * fragments an instruction. The softmax runs in base 2, and only tiles on the diagonal or past t
 * test the causal mask.
 *
 * CUDA for devices of compute capability 8.0 and up, and the CPU emulation (gpu_emu.h emulates
 * the mma); gpu_flash_attention.cu calls it in bf16 mode when the device has it. */
#include "devices/cuda/gpu_common.cuh"

#include <math.h>
#include <string.h>

namespace XDT_GPU_NS {

#if XDT_GPU_HAVE_MMA_BF16

constexpr int kD = 64;    /* head dims, zero-padded: gpu_flash_attention.cu's kHeadMax */
constexpr int kTile = 64; /* rows a backward block owns (16 per warp), rows per streamed tile */
constexpr int kMmaThreads = 128;
constexpr int kLd = kD + 8; /* bf16 values per shared row: 144 bytes, so the eight rows and four
                               pairs one fragment load touches fall in 32 different banks */
static_assert(kTile == kD, "the transposed tiles share the row tiles' shape");
static_assert(kTile == 16 * (kMmaThreads / 32), "16 rows per warp");

typedef uint16_t tile_t[kTile][kLd];

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

/* ldmatrix.x4: the four 8 x 8 blocks of the 16 x 16 square at (r0, c0) of a shared tile, one
 * register each; register i holds the block 8 (i & 1) rows down and 8 (i >> 1) columns across
 * (kRowsFirst) or 8 (i >> 1) rows down and 8 (i & 1) across. A lane gets its block's row g, values
 * 2q and 2q + 1 (g: the lane's group, lane / 4; q: its place in the group, lane % 4), or with
 * kTrans its column g, rows 2q and 2q + 1: the pairs of the mma fragments, one instruction for what
 * took a lane eight 16-bit reads down columns. Lanes 8i..8i+7 give block i's row addresses; rows
 * are 144 bytes apart, so the eight rows of one block fall in distinct banks. */
template <bool kTrans, bool kRowsFirst>
__device__ inline void ldsm_x4(uint32_t r[4], const tile_t &m, int r0, int c0, int lane) {
    const int i = lane >> 3, down = kRowsFirst ? i & 1 : i >> 1,
              across = kRowsFirst ? i >> 1 : i & 1;
    const uint16_t *row = &m[r0 + (lane & 7) + 8 * down][c0 + 8 * across];
#if defined(XDT_GPU_EMU)
    xdt_emu::ldmatrix_x4(r, row, kTrans);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned at = (unsigned)__cvta_generic_to_shared(row);
    if constexpr (kTrans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(at));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(at));
#else
    (void)row;
    r[0] = r[1] = r[2] = r[3] = 0;
#endif
}

/* The "a" fragment of rows r0..r0+15, columns k0..k0+15 of a row-major shared tile. */
__device__ inline void frag_a(uint32_t a[4], const tile_t &m, int r0, int k0, int lane) {
    ldsm_x4<false, true>(a, m, r0, k0, lane);
}

/* The "b" fragments b[kk][n] = m[n0 + n][k0 + kk] (kk < 16, n < 8) in b[0..1] and the next eight
 * rows' (n0 + 8..) in b[2..3]: a tile's rows as b's columns (for products with a tile
 * transposed: q k^T, dout v^T). */
__device__ inline void frag_b_pair(uint32_t b[4], const tile_t &m, int n0, int k0, int lane) {
    ldsm_x4<false, false>(b, m, n0, k0, lane);
}

/* The "b" fragments b[kk][n] = m[k0 + kk][n0 + n] in b[0..1] and the next eight columns'
 * (n0 + 8..) in b[2..3]: the tile as it is (p v, dS k, ...). */
__device__ inline void frag_b_down_pair(uint32_t b[4], const tile_t &m, int k0, int n0, int lane) {
    ldsm_x4<true, true>(b, m, k0, n0, lane);
}

/* The "a" fragment made of two accumulator tiles side by side (columns 0-7 and 8-15). */
__device__ inline void acc_to_a(uint32_t a[4], const float lo[4], const float hi[4]) {
    a[0] = pack_bf16x2(lo[0], lo[1]);
    a[1] = pack_bf16x2(lo[2], lo[3]);
    a[2] = pack_bf16x2(hi[0], hi[1]);
    a[3] = pack_bf16x2(hi[2], hi[3]);
}

/* acc[mt] = (the warp's rows of row tile mt, as "a" fragments over the 64 dims) x (the tile's 64
 * rows)^T for kM row tiles of 16: 16 x 64 products in eight accumulator tiles each, started from
 * zero (q k^T, dout v^T and their transposes). Each fragment read from the tile feeds kM
 * products. */
template <int kM = 1>
__device__ inline void rows_times_tile(float (*acc)[kTile / 8][4], const uint32_t (*a)[kD / 16][4],
                                       const tile_t &m, int lane) {
#pragma unroll
    for (int mt = 0; mt < kM; mt++)
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
            acc[mt][nt][0] = acc[mt][nt][1] = acc[mt][nt][2] = acc[mt][nt][3] = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kTile / 8; nt += 2)
#pragma unroll
        for (int kc = 0; kc < kD / 16; kc++) {
            uint32_t b[4];
            frag_b_pair(b, m, 8 * nt, 16 * kc, lane);
#pragma unroll
            for (int mt = 0; mt < kM; mt++) {
                mma(acc[mt][nt], a[mt][kc], b);
                mma(acc[mt][nt + 1], a[mt][kc], b + 2);
            }
        }
}

/* acc[mt] += a[mt] x rows k0..k0+15 of the tile for kM row tiles: 16 x 16 "a" fragments (16 of the
 * streamed rows' probabilities or dS) times those rows' 64 dims (p v, dS k, ...). */
template <int kM = 1>
__device__ inline void add_a_times_rows(float (*acc)[kD / 8][4], const uint32_t (*a)[4],
                                        const tile_t &m, int k0, int lane) {
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt += 2) {
        uint32_t b[4];
        frag_b_down_pair(b, m, k0, 8 * dt, lane);
#pragma unroll
        for (int mt = 0; mt < kM; mt++) {
            mma(acc[mt][dt], a[mt], b);
            mma(acc[mt][dt + 1], a[mt], b + 2);
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

/* The softmax runs in base 2 (exp2f: one multi-function-unit instruction, where expf takes a
 * range reduction around it): scores times scale log2(e), log-sum-exps times log2(e). */
constexpr float kLog2e = 1.44269504088896341f, kLn2 = 0.693147180559945309f;

/* Whether query i sees key j: causal, and i a real row (t queries). Only the tiles a block shares
 * with the diagonal, or whose rows run past t, need the test. */
__device__ inline bool sees(int i, int j, int t) {
    return j <= i && i < t;
}

/* A warp's 16 rows of an accumulator (rows row0 + g, row0 + g + 8 of its block times factor[0],
 * factor[1]) into columns col..col+hs of rows of a (b, t, ld) fp32 matrix of batch row bi, and
 * into its bf16 sidecar when there is one; rows past t are not stored. */
__device__ inline void store_rows(float *dst, uint16_t *dst16, const float acc[kD / 8][4], int bi,
                                  int row0, int g, int q, int t, size_t ld, size_t col, int hs,
                                  const float factor[2]) {
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        if (i >= t) continue;
        const size_t at = ((size_t)bi * t + i) * ld + col;
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
            for (int e = 2 * r; e < 2 * r + 2; e++) {
                const int d = acc_col(dt, q, e);
                if (d >= hs) continue;
                const float y = acc[dt][e] * factor[r];
                dst[at + d] = y;
                if (dst16) dst16[at + d] = bf16_bits(y);
            }
    }
}

/* The forward's 16-row mma tiles a warp: with two, each fragment a warp reads of a key or value
 * tile feeds two products (FlashAttention-2's split for 64-dim heads). One tile a warp (148
 * registers against 249 by ptxas, three blocks an SM instead of two) gave the same bits and timed the same
 * on an H200 (bf16 gpt2-124M step 28.92 against 29.04 ms, medians of three rounds), so the
 * choice is this constant. The queries are staged through the second key and value buffers: at
 * most two tiles. */
constexpr int kFwdRowTiles = 2;
constexpr int kFwdRows = 16 * kFwdRowTiles * (kMmaThreads / 32); /* queries a block */
static_assert(kFwdRowTiles == 1 || kFwdRowTiles == 2, "one or two row tiles a warp");

/* grid (query blocks of kFwdRows, nh, b); the last query blocks (most keys) first. qkv: bf16
 * (b, t, 3c); out (b, t, c); lse (b, nh, t). Key tiles are double-buffered: the next is copied in
 * while the current one is multiplied. */
__global__ void __launch_bounds__(kMmaThreads)
    flash_forward_mma_kernel(float *out, uint16_t *out16, float *lse, const uint16_t *qkv, int t,
                             int c, int nh, float scale, bool fast) {
    __shared__ __align__(16) uint16_t ks[2][kTile][kLd];
    __shared__ __align__(16) uint16_t vs[2][kTile][kLd];
    constexpr int kM = kFwdRowTiles, kRows = kFwdRows, kWarpRows = 16 * kM;
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z;
    const int q0 = (int)(gridDim.x - 1 - blockIdx.x) * kRows;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int row0 = q0 + kWarpRows * warp; /* the warp's first query */
    const size_t ld = 3 * (size_t)c;
    const uint16_t *x = qkv + (size_t)bi * t * ld;
    const float sl2 = scale * kLog2e;
    /* the block's queries, staged through the second key and value buffers into registers */
    stage(ks[1], x, ld, h * hs, q0, t, hs, fast);
    if constexpr (kRows > kTile) stage(vs[1], x, ld, h * hs, q0 + kTile, t, hs, fast);
    stage(ks[0], x, ld, c + h * hs, 0, t, hs, fast);
    stage(vs[0], x, ld, 2 * c + h * hs, 0, t, hs, fast);
    async_commit();
    async_wait<0>();
    __syncthreads();
    uint32_t qa[kM][kD / 16][4];
    {
        const int r = kWarpRows * warp; /* the warp's rows in the block */
        const tile_t &mine = r < kTile ? ks[1] : vs[1];
#pragma unroll
        for (int mt = 0; mt < kM; mt++)
#pragma unroll
            for (int kc = 0; kc < kD / 16; kc++)
                frag_a(qa[mt][kc], mine, r % kTile + 16 * mt, 16 * kc, lane);
    }
    __syncthreads(); /* every warp has its fragments before the second buffers are reused */
    float o[kM][kD / 8][4];
    float m_run[kM][2], l_run[kM][2]; /* m_run: log2 units */
#pragma unroll
    for (int mt = 0; mt < kM; mt++) {
#pragma unroll
        for (int dt = 0; dt < kD / 8; dt++)
            o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.0f;
        m_run[mt][0] = m_run[mt][1] = -INFINITY;
        l_run[mt][0] = l_run[mt][1] = 0.0f;
    }
    const int last = (q0 + kRows < t ? q0 + kRows : t) - 1;
    for (int k0 = 0, buf = 0; k0 <= last; k0 += kTile, buf ^= 1) {
        if (k0 + kTile <= last) {
            stage(ks[buf ^ 1], x, ld, c + h * hs, k0 + kTile, t, hs, fast);
            stage(vs[buf ^ 1], x, ld, 2 * c + h * hs, k0 + kTile, t, hs, fast);
        }
        async_commit();
        async_wait<1>(); /* this tile's copies are in */
        __syncthreads();
        float s[kM][kTile / 8][4];
        rows_times_tile<kM>(s, qa, ks[buf], lane);
#pragma unroll
        for (int mt = 0; mt < kM; mt++)
#pragma unroll
            for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[mt][nt][e] *= sl2;
        if (k0 + kTile > q0 || q0 + kRows > t) {
#pragma unroll
            for (int mt = 0; mt < kM; mt++)
#pragma unroll
                for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                    for (int e = 0; e < 4; e++)
                        if (!sees(row0 + 16 * mt + acc_row(g, e), k0 + acc_col(nt, q, e), t))
                            s[mt][nt][e] = -INFINITY;
        }
#pragma unroll
        for (int mt = 0; mt < kM; mt++) {
            float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
            for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    mx[e >> 1] = fmaxf(mx[e >> 1], s[mt][nt][e]);
            float corr[2], sum[2] = {0.0f, 0.0f};
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const float m_new = fmaxf(m_run[mt][r], quad_max(mx[r]));
                /* the running sums rescaled to the new maximum (nothing to rescale before a key) */
                corr[r] = m_run[mt][r] == -INFINITY ? 0.0f : exp2f(m_run[mt][r] - m_new);
                m_run[mt][r] = m_new;
            }
#pragma unroll
            for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const float m = m_run[mt][e >> 1];
                    const float p = m == -INFINITY ? 0.0f : exp2f(s[mt][nt][e] - m);
                    s[mt][nt][e] = p;
                    sum[e >> 1] += p;
                }
#pragma unroll
            for (int r = 0; r < 2; r++)
                l_run[mt][r] = l_run[mt][r] * corr[r] + quad_sum(sum[r]);
#pragma unroll
            for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    o[mt][dt][e] *= corr[e >> 1];
        }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t pa[kM][4];
#pragma unroll
            for (int mt = 0; mt < kM; mt++)
                acc_to_a(pa[mt], s[mt][2 * kc], s[mt][2 * kc + 1]);
            add_a_times_rows<kM>(o, pa, vs[buf], 16 * kc, lane);
        }
        __syncthreads(); /* the tile is read: the next iteration's copies may overwrite it */
    }
#pragma unroll
    for (int mt = 0; mt < kM; mt++) {
        const float inv[2] = {1.0f / l_run[mt][0], 1.0f / l_run[mt][1]};
        store_rows(out, out16, o[mt], bi, row0 + 16 * mt, g, q, t, (size_t)c, (size_t)h * hs, hs,
                   inv);
#pragma unroll
        for (int r = 0; r < 2; r++) {
            const int i = row0 + 16 * mt + g + 8 * r;
            if (q == 0 && i < t)
                lse[((size_t)bi * nh + h) * t + i] = m_run[mt][r] * kLn2 + logf(l_run[mt][r]);
        }
    }
}

/* grid (key tiles, nh, b): dK and dV of kTile keys over every query that sees them (the first
 * key tiles, which see the most, are launched first). qkv and dout bf16; query tiles
 * double-buffered. */
__global__ void __launch_bounds__(kMmaThreads)
    flash_backward_kv_mma_kernel(float *dqkv, uint16_t *dqkv16, const uint16_t *dout,
                                 const uint16_t *qkv, const float *lse, const float *dd, int t,
                                 int c, int nh, float scale, bool fast) {
    __shared__ __align__(16) uint16_t qs[2][kTile][kLd];
    __shared__ __align__(16) uint16_t dos[2][kTile][kLd];
    __shared__ float lse_s[2][kTile], dd_s[2][kTile];
    const int hs = c / nh, h = blockIdx.y, bi = blockIdx.z, k0 = blockIdx.x * kTile;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, q = lane & 3;
    const int j0 = k0 + 16 * warp; /* the warp's first key */
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
        frag_a(ka[kc], qs[1], 16 * warp, 16 * kc, lane);
        frag_a(va[kc], dos[1], 16 * warp, 16 * kc, lane);
    }
    float dk[kD / 8][4], dv[kD / 8][4];
#pragma unroll
    for (int dt = 0; dt < kD / 8; dt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            dk[dt][e] = dv[dt][e] = 0.0f;
    const float sl2 = scale * kLog2e;
    /* query tile q0's data, into buffer b: async copies, and the rows' terms at once (the
     * log-sum-exps in log2 units) */
    auto fetch = [&](int q0, int b) {
        stage(qs[b], x, ld, h * hs, q0, t, hs, fast);
        stage(dos[b], dy, (size_t)c, h * hs, q0, t, hs, fast);
        if (threadIdx.x < kTile) {
            const int i = q0 + (int)threadIdx.x;
            lse_s[b][threadIdx.x] = i < t ? lse_bh[i] * kLog2e : 0.0f;
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
        rows_times_tile(&p, &ka, qs[buf], lane);
        rows_times_tile(&ds, &va, dos[buf], lane);
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int ii = acc_col(nt, q, e);
                p[nt][e] = exp2f(p[nt][e] * sl2 - lse_s[buf][ii]);
                ds[nt][e] = p[nt][e] * (ds[nt][e] - dd_s[buf][ii]);
            }
        if (q0 < k0 + kTile || q0 + kTile > t) {
#pragma unroll
            for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (!sees(q0 + acc_col(nt, q, e), j0 + acc_row(g, e), t))
                        p[nt][e] = ds[nt][e] = 0.0f;
        }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t pa[4], dsa[4];
            acc_to_a(pa, p[2 * kc], p[2 * kc + 1]);
            acc_to_a(dsa, ds[2 * kc], ds[2 * kc + 1]);
            add_a_times_rows(&dv, &pa, dos[buf], 16 * kc, lane);
            add_a_times_rows(&dk, &dsa, qs[buf], 16 * kc, lane);
        }
        __syncthreads();
    }
    const float k_factor[2] = {scale, scale}, v_factor[2] = {1.0f, 1.0f};
    store_rows(dqkv, dqkv16, dk, bi, j0, g, q, t, ld, (size_t)c + h * hs, hs, k_factor);
    store_rows(dqkv, dqkv16, dv, bi, j0, g, q, t, ld, 2 * (size_t)c + h * hs, hs, v_factor);
}

/* grid (query tiles, nh, b): dQ of kTile queries over the keys they see (most keys first),
 * recomputing dS; key tiles double-buffered. Keeping dS^T from the dK/dV kernel instead (one
 * product a tile here where recomputing takes three, but a bf16 plane of t^2 values a head
 * written and read back) timed the same on an H200 (29.04 against 28.99 ms a bf16 gpt2-124M
 * step, medians of three rounds), so dS is recomputed and needs no workspace. */
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
        frag_a(qa[kc], ks[1], 16 * warp, 16 * kc, lane);
        frag_a(da[kc], vs[1], 16 * warp, 16 * kc, lane);
    }
    const size_t bh = ((size_t)bi * nh + h) * t;
    const float sl2 = scale * kLog2e;
    float lse_r[2], dd_r[2]; /* lse_r in log2 units */
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int i = row0 + g + 8 * r;
        lse_r[r] = i < t ? lse[bh + i] * kLog2e : 0.0f;
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
        rows_times_tile(&s, &qa, ks[buf], lane);
        rows_times_tile(&dp, &da, vs[buf], lane);
        /* s becomes dS */
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int r = e >> 1;
                s[nt][e] = exp2f(s[nt][e] * sl2 - lse_r[r]) * (dp[nt][e] - dd_r[r]);
            }
        if (k0 + kTile > q0 || q0 + kTile > t) {
#pragma unroll
            for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (!sees(row0 + acc_row(g, e), k0 + acc_col(nt, q, e), t)) s[nt][e] = 0.0f;
        }
#pragma unroll
        for (int kc = 0; kc < kTile / 16; kc++) {
            uint32_t dsa[4];
            acc_to_a(dsa, s[2 * kc], s[2 * kc + 1]);
            add_a_times_rows(&dq, &dsa, ks[buf], 16 * kc, lane);
        }
        __syncthreads();
    }
    const float q_factor[2] = {scale, scale};
    store_rows(dqkv, dqkv16, dq, bi, row0, g, q, t, ld, (size_t)h * hs, hs, q_factor);
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

/* grid: blocks of `rows` queries (or keys) over t, by heads, by batch rows */
static dim3 mma_tiles(int t, int nh, int b, int rows = kTile) {
    return dim3((unsigned)((t + rows - 1) / rows), (unsigned)nh, (unsigned)b);
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
    const float scale = 1.0f / sqrtf((float)(c / nh));
    XDT_LAUNCH(mma_tiles(t, nh, b, kFwdRows), kMmaThreads, g->stream, flash_forward_mma_kernel)
    (out, out16, lse, qkv16, t, c, nh, scale, fast_rows(c, nh));
    if (check_launch(g, op) && out16) sidecar_made(g, out, (size_t)b * t * c);
}

/* Where the backward's pieces start in its workspace, in bf16 values: dqkv's sidecar (when
 * wanted) first, then the copies of qkv and dout. */
struct backward_layout {
    size_t qkv16, dout16, total;
};

static backward_layout backward_values(const gpu_ctx *g, int b, int t, int c) {
    backward_layout l;
    l.qkv16 = sidecar_values(g, (size_t)b * t * 3 * c);
    l.dout16 = l.qkv16 + round_up_128((size_t)b * t * 3 * c);
    l.total = l.dout16 + (size_t)b * t * c;
    return l;
}

size_t flash_mma_workspace_need(const gpu_ctx *g, int b, int t, int c) {
    size_t n_out;
    const size_t fwd = forward_values(g, b, t, c, &n_out);
    const size_t bwd = backward_values(g, b, t, c).total;
    return (fwd > bwd ? fwd : bwd) * sizeof(uint16_t);
}

void flash_mma_backward(gpu_ctx *g, float *dqkv, const float *dd, const float *dout,
                        const float *qkv, const float *lse, int b, int t, int c, int nh) {
    const char *op = "attention_backward (flash, bf16)";
    const float scale = 1.0f / sqrtf((float)(c / nh));
    const backward_layout l = backward_values(g, b, t, c);
    uint16_t *ws = static_cast<uint16_t *>(workspace(g, l.total * sizeof(uint16_t), op));
    if (!ws) return;
    uint16_t *dqkv16 = l.qkv16 ? ws : nullptr, *qkv16 = ws + l.qkv16, *dout16 = ws + l.dout16;
    if (!pack_bf16(g, qkv16, qkv, b * t, 3 * c, 3 * c, 0, 1, op) ||
        !pack_bf16(g, dout16, dout, b * t, c, c, 0, 1, op))
        return;
    const bool fast = fast_rows(c, nh);
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_kv_mma_kernel)
    (dqkv, dqkv16, dout16, qkv16, lse, dd, t, c, nh, scale, fast);
    if (!check_launch(g, op)) return;
    XDT_LAUNCH(mma_tiles(t, nh, b), kMmaThreads, g->stream, flash_backward_q_mma_kernel)
    (dqkv, dqkv16, dout16, qkv16, lse, dd, t, c, nh, scale, fast);
    if (!check_launch(g, op)) return;
    if (dqkv16) sidecar_made(g, dqkv, (size_t)b * t * 3 * c);
}

#endif

} // namespace XDT_GPU_NS
