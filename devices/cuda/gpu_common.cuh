/* gpu_common.cuh: what the GPU backend's translation units share: the device context, error
 * recording, the workspace, block reductions, and the op functions each .cu file defines for the
 * ops table in gpu_device.cu. Included by devices/cuda/ *.cu only (compiled by nvcc, or by hipcc
 * through gpu_vendor.h). Everything lives in namespace XDT_GPU_NS so that the CUDA and HIP
 * builds of these sources link into one binary. */
#ifndef XDT_GPU_COMMON_CUH
#define XDT_GPU_COMMON_CUH

#include "devices/cuda/gpu_vendor.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "core/log.h"
#include "devices/device.h"
}

namespace XDT_GPU_NS {

/* Threads per block of the row and element-wise kernels: a multiple of every warp size. */
constexpr int kBlock = 256;

/* Written by kernels through mapped pinned memory, read by the host after a stream sync. */
struct host_area {
    double result;  /* the last reduction's value */
    int bad_target; /* softmax_xent saw a target outside [0, v) */
    int bad_token;  /* embedding saw a negative token */
};

struct gpu_ctx {
    int index;
    char name[32]; /* "cuda:0" */
    cudaStream_t stream;
#if XDT_GPU_HAVE_BLAS
    cublasHandle_t blas;
#endif
#if XDT_GPU_HAVE_BLASLT
    cublasLtHandle_t lt; /* GEMMs with the bias in the epilogue (NULL: bias by kernel) */
    void *lt_ws;         /* cuBLASLt's own workspace (kLtWorkspaceBytes, or none) */
    size_t lt_ws_bytes;
#endif
    size_t bf16_chunk; /* values of a per bf16 copy pass (gpu_gemm.cu) */
    bool bf16_whole;   /* ... or a whole a, within bf16_whole_budget bytes of workspace */
    size_t bf16_whole_budget;
    bool bf16_sidecar;   /* ops write bf16 copies of their outputs for the next GEMM */
    bool blas_ok;        /* GEMMs go to the vendor BLAS (else the tiled kernel) */
    bool tf32;           /* TF32 tensor-core GEMMs allowed (cuBLAS only) */
    bool bf16;           /* GEMM inputs rounded to bf16, fp32 sums (xdt_precision) */
    bool flash;          /* attention in the fused kernels (gpu_flash_attention.cu) where fit */
    bool mma_bf16;       /* bf16 mode's flash attention on tensor cores (XDT_GPU_HAVE_MMA_BF16) */
    host_area *host;     /* mapped pinned: host view */
    host_area *host_dev; /* the same memory: device view */
    void *ws;            /* device workspace for reduction partials and index tables */
    size_t ws_bytes;
    unsigned ws_generation;         /* bumped whenever ws is (re)allocated: its contents are gone */
    unsigned long long ops_entered; /* ops queued so far (enter()) */
    /* the bf16 copy of a matrix left at the workspace's start, reusable by the very next op when
     * that is a GEMM whose a is that matrix: a GEMM's own copy of a (a linear layer's backward
     * reads dout in both of its products), or the copy an op made of its own output as it wrote
     * it (a sidecar: layernorm, GELU, attention, whose outputs the next GEMM multiplies) */
    struct {
        bool valid;
        const float *src;
        int rows, cols, ld; /* as stored; a sidecar is one contiguous row */
        unsigned long long op;
        unsigned ws_generation;
    } bf16_a;
    int32_t *pin_ints; /* pinned host scratch for embedding_backward (4 N + 1 ints) */
    size_t pin_ints_cap;
    int32_t *counts; /* host scratch: per-token counts */
    size_t counts_cap;
    xdt_status err;      /* first error recorded since the last sync */
    const char *last_op; /* the op most recently queued, named in asynchronous errors */
};

static inline gpu_ctx *as_ctx(void *ctx) {
    return static_cast<gpu_ctx *>(ctx);
}

/* Error translation and recording (gpu_device.cu). Recording keeps the first error until sync
 * returns it and logs it once, naming the device and the op. */
xdt_status status_of(cudaError_t e);
void record(gpu_ctx *c, xdt_status st, const char *op, const char *what, const char *detail);
/* Returns true when e is success; otherwise records it for `op`. */
bool check(gpu_ctx *c, cudaError_t e, const char *op, const char *what);
/* Checks the launch of the kernel just queued for `op`. */
bool check_launch(gpu_ctx *c, const char *op);
/* Makes the context's device current on this thread and remembers `op` for async errors. */
void enter(gpu_ctx *c, const char *op);
/* A device scratch buffer of at least `bytes` (grown when needed), or NULL after recording. */
void *workspace(gpu_ctx *c, size_t bytes, const char *op);

/* Blocks of `block` threads covering n items, capped for grid-stride loops (the CPU emulation
 * runs blocks one after another, so there the cap is small and the loops do the rest). */
#if defined(XDT_GPU_EMU)
constexpr size_t kMaxGrid = 64;
#else
constexpr size_t kMaxGrid = 65535u * 16u;
#endif
static inline unsigned grid_for(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    if (g < 1) g = 1;
    return (unsigned)(g > kMaxGrid ? kMaxGrid : g);
}

/* Row-major c = alpha op(a) op(b) + beta c for `batch` products at the given element strides
 * (gpu_gemm.cu): the vendor BLAS when present, else the tiled kernel. With a bias (batch 1 only),
 * bias[j] is added to column j of every row of c, in the BLAS's epilogue where it has one. */
void gemm_batched(gpu_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, long sa, const float *b, int ldb, long sb, float beta, float *cm,
                  int ldc, long sc, int batch, const float *bias, const char *op);

/* Values of a per bf16 copy pass by default (XDT_GPU_BF16_CHUNK overrides it, for tests), the
 * most values of a copied whole instead (when the workspace for it is within a sixteenth of the
 * device's memory), and the bytes of cuBLASLt's workspace (NVIDIA's recommendation for Hopper). */
constexpr size_t kBf16Chunk = (size_t)32 << 20;
constexpr size_t kBf16WholeMax = (size_t)512 << 20;
constexpr size_t kLtWorkspaceBytes = (size_t)32 << 20;

/* gpu_gemm.cu: bytes of workspace one GEMM of shape s takes (its bf16 copies; 0 elsewhere). */
size_t gemm_workspace_need(const gpu_ctx *c, const xdt_gemm_shape &s);
/* gpu_device.cu: what workspace() allocates when asked for `need` bytes (its growth rule). */
size_t workspace_alloc_bytes(size_t need);

/* Sidecars (bf16_a): where an op that writes n contiguous values should also write their bf16
 * copy (the workspace's start, grown to hold them), or NULL when no GEMM could take it (not the
 * bf16 BLAS mode, sidecars off, or more than a copy chunk); then, once its kernels are queued,
 * sidecar_made records the copy for the next op. Ops that keep more in the workspace place it
 * after round_up_128(n) values. */
bool sidecar_wanted(const gpu_ctx *c, size_t n);
uint16_t *sidecar_begin(gpu_ctx *c, size_t n, const char *op);
void sidecar_made(gpu_ctx *c, const float *src, size_t n);

/* gpu_kernels.cu: bias[j] added to column j of the m rows of out (leading dimension ld). */
void add_row_bias(gpu_ctx *c, float *out, int ld, const float *bias, int m, int n, const char *op);

/* x rounded to the nearest bf16 value (even on ties) as an fp32, NaN kept NaN: the rounding of
 * core/float_bits.h, so the tiled kernel's bf16 GEMMs equal the CPU backend's. */
__device__ inline float bf16_round(float x) {
    const unsigned u = __float_as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __uint_as_float((u | 0x00400000u) & 0xffff0000u);
    return __uint_as_float((u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u);
}

/* bf16_round's bits. */
__device__ inline uint16_t bf16_bits(float x) {
    return (uint16_t)(__float_as_uint(bf16_round(x)) >> 16);
}

/* Two values rounded to bf16 in one word, lo in the low half (the order mma reads a pair in). */
__device__ inline uint32_t pack_bf16x2(float lo, float hi) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(XDT_GPU_HIP)
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#else
    return (uint32_t)bf16_bits(lo) | ((uint32_t)bf16_bits(hi) << 16);
#endif
}

/* Four floats from/to 16-byte aligned memory (16-byte accesses; the emulation copies). */
__device__ inline void load4(float v[4], const float *p) {
#if defined(XDT_GPU_EMU)
    memcpy(v, p, 4 * sizeof(float));
#else
    const float4 x = *reinterpret_cast<const float4 *>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
#endif
}
__device__ inline void store4(float *p, const float v[4]) {
#if defined(XDT_GPU_EMU)
    memcpy(p, v, 4 * sizeof(float));
#else
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
#endif
}

/* n rounded up to a multiple of 128 elements: sub-buffers of one workspace stay 256-byte aligned
 * for 2-byte elements (cuBLAS's and cp.async's alignment). */
static inline size_t round_up_128(size_t n) {
    return (n + 127) / 128 * 128;
}

/* gpu_bf16.cu: out (packed: ld = cols, stride rows cols) = `batch` rows x cols matrices of in
 * (leading dimension ld, stride s) rounded to bf16; false after recording a launch failure. */
bool pack_bf16(gpu_ctx *c, uint16_t *out, const float *in, int rows, int cols, int ld, long s,
               int batch, const char *op);

/* ---- reductions over the four lanes of a quad (lanes 4g..4g+3, every one gets the result) ---- */

__device__ inline float quad_max(float v) {
    v = fmaxf(v, XDT_SHFL_XOR(v, 1));
    return fmaxf(v, XDT_SHFL_XOR(v, 2));
}

__device__ inline float quad_sum(float v) {
    v += XDT_SHFL_XOR(v, 1);
    return v + XDT_SHFL_XOR(v, 2);
}

/* ---- reductions inside a block (every thread gets the total) ---- */

template <typename T> __device__ inline T warp_sum(T v) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1)
        v += XDT_SHFL_XOR(v, o);
    return v;
}

template <typename T> __device__ inline T warp_max(T v) {
    for (int o = WARP_SIZE / 2; o > 0; o >>= 1) {
        T u = XDT_SHFL_XOR(v, o);
        v = u > v ? u : v;
    }
    return v;
}

/* `shared` holds at least blockDim.x / WARP_SIZE values; the sum is taken in warp order, so it
 * is the same every run. */
template <typename T> __device__ inline T block_sum(T v, T *shared) {
    v = warp_sum(v);
    const int lane = threadIdx.x % WARP_SIZE, wid = threadIdx.x / WARP_SIZE;
    __syncthreads(); /* the previous use of `shared` is over */
    if (lane == 0) shared[wid] = v;
    __syncthreads();
    T total = 0;
    for (int i = 0; i < (int)(blockDim.x / WARP_SIZE); i++)
        total += shared[i];
    return total;
}

template <typename T> __device__ inline T block_max(T v, T *shared) {
    v = warp_max(v);
    const int lane = threadIdx.x % WARP_SIZE, wid = threadIdx.x / WARP_SIZE;
    __syncthreads();
    if (lane == 0) shared[wid] = v;
    __syncthreads();
    T m = shared[0];
    for (int i = 1; i < (int)(blockDim.x / WARP_SIZE); i++)
        m = shared[i] > m ? shared[i] : m;
    return m;
}

/* ---- the ops (signatures of xdt_device_ops) ---- */

/* gpu_gemm.cu */
void op_gemm(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc);
void op_gemm_bias(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc,
                  const float *bias);
void op_gemm_strided_batched(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha,
                             const float *a, int lda, long sa, const float *b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int batch);

/* gpu_kernels.cu */
void op_bias_add(void *ctx, float *out, const float *bias, int n, int c);
void op_bias_grad(void *ctx, float *dbias, const float *dout, int n, int c);
void op_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int n, int c);
void op_layernorm_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean, const float *rstd,
                           int n, int c, bool accumulate);
void op_gelu_forward(void *ctx, float *out, const float *inp, size_t n);
void op_gelu_backward(void *ctx, float *dinp, const float *inp, const float *dout, size_t n);
void op_add(void *ctx, float *out, const float *a, const float *b, size_t n);
void op_scale(void *ctx, float *x, float s, size_t n);
void op_adamw(void *ctx, float *param, const float *grad, float *m, float *v, size_t n,
              const xdt_adamw_args *args);
xdt_status op_sum(void *ctx, const float *x, size_t n, double *out);
xdt_status op_sum_squares(void *ctx, const float *x, size_t n, double *out);

/* gpu_embedding.cu */
void op_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                          const float *wpe, int b, int t, int c);
void op_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                           const int32_t *tokens, int b, int t, int c);

/* gpu_attention.cu */
void op_attention_forward(void *ctx, float *out, float *att, const float *qkv, int b, int t, int c,
                          int nh);
void op_attention_backward(void *ctx, float *dqkv, float *ws, const float *dout, const float *qkv,
                           const float *att, const float *out, int b, int t, int c, int nh);
void op_softmax_xent(void *ctx, float *logits, float *losses, const int32_t *targets, int n, int v,
                     int vp, float dloss_scale, bool want_grad);
void op_attention_sizes(void *ctx, int b, int t, int c, int nh, size_t *state, size_t *workspace);
/* bytes of workspace attention of this shape takes (forward or backward, whichever is more) */
size_t attention_workspace_need(const gpu_ctx *g, int b, int t, int c, int nh);
/* gpu_embedding.cu: bytes of workspace embedding_backward takes for `rows` tokens */
size_t embedding_workspace_need(int rows);
/* gpu_kernels.cu: bytes of workspace the column sums (bias_grad, layernorm_backward) and the
 * reductions take, for rows x widest_row */
size_t row_ops_workspace_need(int rows, int widest_row);

/* gpu_flash_attention.cu: the fused attention, for heads of up to 64 dims. */
bool flash_attention_fits(int c, int nh);
void flash_attention_sizes(int b, int t, int c, int nh, size_t *state, size_t *workspace);
void flash_attention_forward(gpu_ctx *g, float *out, float *state, const float *qkv, int b, int t,
                             int c, int nh);
void flash_attention_backward(gpu_ctx *g, float *dqkv, float *workspace, const float *dout,
                              const float *qkv, const float *state, const float *out, int b, int t,
                              int c, int nh);
/* gpu_flash_attention_mma.cu: the same in bf16 mode on tensor cores (XDT_GPU_HAVE_MMA_BF16 and
 * gpu_ctx.mma_bf16); dd is the rows' dout . out, which the backward's caller computes. */
bool flash_mma_compiled(); /* the kernels were built for compute capability 8.0 or later */
void flash_mma_forward(gpu_ctx *g, float *out, float *lse, const float *qkv, int b, int t, int c,
                       int nh);
void flash_mma_backward(gpu_ctx *g, float *dqkv, const float *dd, const float *dout,
                        const float *qkv, const float *lse, int b, int t, int c, int nh);
/* its workspace: the larger of the forward's and the backward's bf16 copies */
size_t flash_mma_workspace_need(const gpu_ctx *g, int b, int t, int c);

/* gpu_device.cu: the synchronising part of the reductions. */
xdt_status sync_ctx(gpu_ctx *c);

} // namespace XDT_GPU_NS

#endif
