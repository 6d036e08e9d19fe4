/* device.h: the device interface. A backend is a static const table of function pointers plus a
 * context (the shape of ggml's backend interface). Pointers passed to kernels are device memory;
 * all arrays are fp32 row-major unless named otherwise. Kernels are queued on the device's stream
 * and return nothing: a backend that sees a failure logs it (one line, where it happens) and
 * records it, and xdt_device_sync() returns it.
 * Optional slots may be NULL; the wrappers below supply the fallback. */
#ifndef XDT_DEVICE_H
#define XDT_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/precision.h"
#include "core/status.h"
#include "devices/gpu_stream.h"
#include "devices/mem_type.h"

typedef enum xdt_copy_dir {
    XDT_COPY_HOST_TO_DEVICE = 0,
    XDT_COPY_DEVICE_TO_HOST = 1,
    XDT_COPY_DEVICE_TO_DEVICE = 2,
} xdt_copy_dir;

/* Arguments of one AdamW update: p -= lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p),
 * with g = grad * grad_scale (grad-norm clipping), m_hat = m / bias_correction1, ... */
typedef struct xdt_adamw_args {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    float bias_correction1; /* 1 - beta1^t */
    float bias_correction2; /* 1 - beta2^t */
} xdt_adamw_args;

/* One GEMM's shape (row-major, as the gemm slot takes it); batch 1 for a single product. */
typedef struct xdt_gemm_shape {
    bool trans_a, trans_b;
    int m, n, k, batch;
} xdt_gemm_shape;

/* The shapes of the ops one stage runs, for a backend's estimate of the workspace it allocates
 * for itself (workspace_bytes). */
typedef struct xdt_op_shapes {
    const xdt_gemm_shape *gemms; /* every GEMM the stage calls */
    int n_gemms;
    int rows;                        /* rows of the row-wise ops: b t tokens */
    int widest_row;                  /* widest row of bias_grad and layernorm_backward (columns) */
    int att_b, att_t, att_c, att_nh; /* attention's shape (att_b 0: none) */
} xdt_op_shapes;

typedef struct xdt_device_ops {
    const char *name;
    xdt_mem_type mem_type;
    void (*destroy)(void *ctx);

    /* memory */
    xdt_status (*alloc)(void *ctx, size_t bytes, void **out);
    void (*free)(void *ctx, void *ptr);
    xdt_status (*alloc_pinned)(void *ctx, size_t bytes, void **out); /* optional */
    void (*free_pinned)(void *ctx, void *ptr);                       /* optional */
    void (*copy)(void *ctx, void *dst, const void *src, size_t bytes, xdt_copy_dir dir);
    void (*memset)(void *ctx, void *ptr, int value, size_t bytes);
    /* Waits for queued work; returns the first error recorded since the last sync. */
    xdt_status (*sync)(void *ctx);

    /* kernels (see devices/cpu/cpu_kernels_decl.inc for the exact contracts) */
    void (*gemm)(void *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
    /* optional: `batch` independent gemms at fixed strides (in elements) */
    void (*gemm_strided_batched)(void *ctx, bool trans_a, bool trans_b, int m, int n, int k,
                                 float alpha, const float *a, int lda, long stride_a,
                                 const float *b, int ldb, long stride_b, float beta, float *c,
                                 int ldc, long stride_c, int batch);
    /* optional: gemm, then bias[j] added to column j of each of c's m rows, in one pass where
     * the backend can (a BLAS epilogue); NULL: gemm then bias_add (xdt_device_gemm_bias) */
    void (*gemm_bias)(void *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                      const float *a, int lda, const float *b, int ldb, float beta, float *c,
                      int ldc, const float *bias);
    void (*bias_add)(void *ctx, float *out, const float *bias, int n, int c);
    void (*bias_grad)(void *ctx, float *dbias, const float *dout, int n, int c);
    void (*layernorm_forward)(void *ctx, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int n, int c);
    void (*layernorm_backward)(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean,
                               const float *rstd, int n, int c, bool accumulate);
    /* att: the state the backward reads (the softmax probabilities, b nh t t floats, unless
     * attention_sizes says otherwise); workspace: the backward's scratch, as large. The
     * backward also gets the forward's `out`, unchanged since (a fused attention needs it). */
    void (*attention_forward)(void *ctx, float *out, float *att, const float *qkv, int b, int t,
                              int c, int nh);
    void (*attention_backward)(void *ctx, float *dqkv, float *workspace, const float *dout,
                               const float *qkv, const float *att, const float *out, int b, int t,
                               int c, int nh);
    void (*gelu_forward)(void *ctx, float *out, const float *inp, size_t n);
    void (*gelu_backward)(void *ctx, float *dinp, const float *inp, const float *dout, size_t n);
    void (*add)(void *ctx, float *out, const float *a, const float *b, size_t n);
    void (*scale)(void *ctx, float *x, float s, size_t n);
    void (*embedding_forward)(void *ctx, float *out, const int32_t *tokens, const float *wte,
                              const float *wpe, int b, int t, int c);
    void (*embedding_backward)(void *ctx, float *dwte, float *dwpe, const float *dout,
                               const int32_t *tokens, int b, int t, int c);
    void (*softmax_xent)(void *ctx, float *logits, float *losses, const int32_t *targets, int n,
                         int v, int vp, float dloss_scale, bool want_grad);
    void (*adamw)(void *ctx, float *param, const float *grad, float *m, float *v, size_t n,
                  const xdt_adamw_args *args);
    /* Reductions return their result to the host (they synchronise). */
    xdt_status (*sum)(void *ctx, const float *x, size_t n, double *out);
    xdt_status (*sum_squares)(void *ctx, const float *x, size_t n, double *out);

    /* optional: floats of attention's `att` state and backward workspace for this shape (NULL:
     * b nh t t each); a fused attention keeps far less (xdt_device_attention_sizes) */
    void (*attention_sizes)(void *ctx, int b, int t, int c, int nh, size_t *state,
                            size_t *workspace);

    /* optional: bytes of device memory the backend will allocate on its own (a workspace it
     * keeps, beyond what callers allocate) while running ops of these shapes (NULL: none) */
    size_t (*workspace_bytes)(void *ctx, const xdt_op_shapes *shapes);

    /* optional: free and total bytes of the device's own memory (NULL: it uses host memory) */
    xdt_status (*mem_info)(void *ctx, size_t *free_bytes, size_t *total_bytes);
    /* optional (GPU backends): the device's stream, for libraries that queue work on it after
     * the kernels (NCCL, RCCL), so that they need no sync first */
    void (*gpu_stream)(void *ctx, xdt_gpu_stream *out);

    /* optional (GPU backends): timing events on the device's stream. A recorded event marks the
     * point the stream has reached; event_elapsed gives the milliseconds between two recorded
     * events once both have passed (after a sync). Backends without them run their kernels
     * synchronously, where the host clock serves (devices/device_profiler.h). */
    xdt_status (*event_create)(void *ctx, void **out);
    void (*event_destroy)(void *ctx, void *event);
    void (*event_record)(void *ctx, void *event);
    xdt_status (*event_elapsed)(void *ctx, const void *start, const void *end, float *ms);
} xdt_device_ops;

typedef struct xdt_device {
    const xdt_device_ops *ops;
    void *ctx;
    char name[32]; /* "cpu", "cuda:0", ... */
} xdt_device;

typedef struct xdt_device_options {
    int threads; /* CPU threads for kernels and BLAS; 0 = all cores */
    /* GEMM precision (fp32 by default). On the CUDA backend the environment variable
     * XDT_CUDA_TF32=1 turns fp32 into tf32 too. */
    xdt_precision gemm_precision;
    /* GPU backends: run GEMMs in xdt's own tiled kernel instead of cuBLAS/hipBLAS (what a HIP
     * build without hipBLAS always does); for testing the kernel against the vendor BLAS. */
    bool tiled_gemm;
    /* GPU backends: causal attention in fused kernels that keep per-row statistics instead of
     * the t x t probabilities (heads of up to 64 dims; wider ones take the explicit path). The
     * environment variable XDT_GPU_ATTENTION=flash|explicit overrides it. */
    bool flash_attention;
} xdt_device_options;

/* The largest N a device name "cuda:N" or "hip:N" (and a plan's device index) may carry. */
#define XDT_DEVICE_INDEX_MAX 1024

/* Opens a device by name: "cpu", "cuda:N" ("cuda" is "cuda:0") when the build has the CUDA
 * backend, "hip:N" when it has the HIP backend. Unknown or unavailable names (no such backend in
 * this build, no driver or GPU, N out of range) are reported and return XDT_ERR_UNSUPPORTED.
 * Caller owns *out. */
xdt_status xdt_device_create(const char *name, const xdt_device_options *opts, xdt_device **out);
void xdt_device_destroy(xdt_device *dev);

/* Checks a device name as xdt_device_create would, without opening anything (safe before
 * fork()): XDT_OK, or XDT_ERR_UNSUPPORTED reported in create's words. */
xdt_status xdt_device_check_name(const char *name);

/* The device backends this build has, for `xdt --help`: "cpu", "cpu, cuda", "cpu, cuda, hip". */
const char *xdt_device_backends(void);

/* Memory wrappers: report failures with the size and the device name. */
xdt_status xdt_device_alloc(xdt_device *dev, size_t bytes, void **out);
void xdt_device_free(xdt_device *dev, void *ptr);
/* Page-locked host memory for transport staging; falls back to plain host memory. */
xdt_status xdt_device_alloc_pinned(xdt_device *dev, size_t bytes, void **out);
void xdt_device_free_pinned(xdt_device *dev, void *ptr);
/* Waits for the queued work; returns the first failure recorded since the last sync (already
 * logged by the backend where it happened, so not logged again). */
xdt_status xdt_device_sync(xdt_device *dev);

/* The device's attention_sizes, or b nh t t floats for each. */
void xdt_device_attention_sizes(xdt_device *dev, int b, int t, int c, int nh, size_t *state,
                                size_t *workspace);

/* gemm_strided_batched, or a loop of gemm calls when the backend has none. */
void xdt_device_gemm_batched(xdt_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                             float alpha, const float *a, int lda, long stride_a, const float *b,
                             int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                             int batch);

/* c = alpha op(a) op(b) + beta c, plus bias[j] on column j of every row: gemm_bias, or gemm then
 * bias_add (row by row when ldc != n). */
void xdt_device_gemm_bias(xdt_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                          float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                          float *c, int ldc, const float *bias);

/* The CPU backend's constructor (devices/cpu/cpu_device.c). */
xdt_status xdt_cpu_device_create(const xdt_device_options *opts, xdt_device **out);

/* The GPU backends' constructors (devices/cuda/gpu_device.cu, compiled by nvcc for CUDA and by
 * hipcc for HIP): GPU number `index`. Defined only when the build has the backend (the macros
 * XDT_HAVE_CUDA and XDT_HAVE_HIP are set for devices/device.c); use xdt_device_create. */
xdt_status xdt_cuda_device_create(int index, const xdt_device_options *opts, xdt_device **out);
xdt_status xdt_hip_device_create(int index, const xdt_device_options *opts, xdt_device **out);

#endif
