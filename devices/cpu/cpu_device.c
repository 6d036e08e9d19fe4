/* cpu_device.c: the CPU backend. Memory is host memory (64-byte aligned), GEMM is OpenBLAS
 * (cblas_sgemm, one thread per call), the other kernels the OpenMP loops of cpu_kernels.inc. Work
 * runs synchronously, so sync only reports.
 *
 * GEMM precision bf16 computes what a GPU's bf16 tensor cores compute: both operands rounded to
 * bf16 (copies of 256-deep panels in a scratch buffer that grows to the largest and stays), then
 * fp32 GEMMs, in which the products of bf16 values are exact. It is the reference for GPU runs and
 * mixed-device pipelines, not a speed-up (Debian's OpenBLAS has no cblas_sbgemm). The fused
 * attention kernel computes its products in fp32 in every mode. tf32 is fp32 here. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/float_bits.h"
#include "core/log.h"
#include "devices/cpu/cpu_kernels.h"
#include "devices/device.h"

typedef struct cpu_ctx {
    int threads;
    bool bf16;        /* GEMM precision bf16 */
    float *round_buf; /* bf16-rounded GEMM operands */
    size_t round_cap; /* floats */
    xdt_status err;   /* first failure since the last sync */
} cpu_ctx;

#define NT(ctx) (((cpu_ctx *)(ctx))->threads)

static void cpu_destroy(void *ctx) {
    if (ctx) free(((cpu_ctx *)ctx)->round_buf);
    free(ctx);
}

static xdt_status cpu_alloc(void *ctx, size_t bytes, void **out) {
    (void)ctx;
    void *p = NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    if (posix_memalign(&p, 64, rounded) != 0) return XDT_ERR_NO_MEMORY;
    *out = p;
    return XDT_OK;
}

static void cpu_free(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}

static void cpu_copy(void *ctx, void *dst, const void *src, size_t bytes, xdt_copy_dir dir) {
    (void)ctx;
    (void)dir;
    if (bytes) memmove(dst, src, bytes);
}

static void cpu_memset(void *ctx, void *ptr, int value, size_t bytes) {
    (void)ctx;
    memset(ptr, value, bytes);
}

static xdt_status cpu_sync(void *ctx) {
    cpu_ctx *c = ctx;
    xdt_status st = c->err;
    c->err = XDT_OK;
    return st;
}

/* rows x cols of src (leading dimension ld) rounded to bf16 into dst, packed (ld = cols). */
static void round_bf16_packed(int nt, float *dst, const float *src, int rows, int cols, int ld) {
#pragma omp parallel for num_threads(nt) schedule(static) if ((long)rows * cols > 65536)
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++)
            dst[(size_t)r * cols + j] = xdt_bf16_round(src[(size_t)r * ld + j]);
}

/* bf16 GEMMs take k in panels of this depth: the rounded copies then need (m + n) x 256 floats
 * whatever the product (a whole LM-head gradient would need gigabytes). */
#define BF16_PANEL 256

static void cpu_gemm(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                     int lda, const float *b, int ldb, float beta, float *c, int ldc) {
    cpu_ctx *x = ctx;
    if (!x->bf16 || m <= 0 || n <= 0 || k <= 0) {
        xdt_cpu_gemm_f32(x->threads, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    const int kp = k < BF16_PANEL ? k : BF16_PANEL;
    const size_t na = (size_t)m * kp, need = na + (size_t)kp * n;
    if (need > x->round_cap) {
        float *grown = realloc(x->round_buf, need * sizeof(float));
        if (!grown) {
            if (!x->err)
                x->err = xdt_fail(XDT_ERR_NO_MEMORY,
                                  "device cpu: gemm: no memory for %zu MiB of bf16-rounded "
                                  "operands",
                                  need * sizeof(float) >> 20);
            return;
        }
        x->round_buf = grown;
        x->round_cap = need;
    }
    float *ra = x->round_buf, *rb = x->round_buf + na;
    for (int k0 = 0; k0 < k; k0 += kp) {
        const int kk = k - k0 < kp ? k - k0 : kp;
        /* as stored: a is k x m when transposed, else m x k; b is n x k when transposed, else
         * k x n; each panel packed with its own leading dimension */
        if (ta)
            round_bf16_packed(x->threads, ra, a + (size_t)k0 * lda, kk, m, lda);
        else
            round_bf16_packed(x->threads, ra, a + k0, m, kk, lda);
        if (tb)
            round_bf16_packed(x->threads, rb, b + k0, n, kk, ldb);
        else
            round_bf16_packed(x->threads, rb, b + (size_t)k0 * ldb, kk, n, ldb);
        xdt_cpu_gemm_f32(x->threads, ta, tb, m, n, kk, alpha, ra, ta ? m : kk, rb, tb ? kk : n,
                         k0 == 0 ? beta : 1.0f, c, ldc);
    }
}

static void cpu_bias_add(void *ctx, float *out, const float *bias, int n, int c) {
    xdt_cpu_bias_add_f32(NT(ctx), out, bias, n, c);
}

static void cpu_bias_grad(void *ctx, float *dbias, const float *dout, int n, int c) {
    xdt_cpu_bias_grad_f32(NT(ctx), dbias, dout, n, c);
}

static void cpu_ln_fwd(void *ctx, float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int n, int c) {
    xdt_cpu_layernorm_forward_f32(NT(ctx), out, mean, rstd, inp, w, b, n, c);
}

static void cpu_ln_bwd(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                       const float *inp, const float *w, const float *mean, const float *rstd,
                       int n, int c, bool accumulate) {
    xdt_cpu_layernorm_backward_f32(NT(ctx), dinp, dw, db, dout, inp, w, mean, rstd, n, c,
                                   accumulate);
}

static void cpu_attn_fwd(void *ctx, float *out, float *att, const float *qkv, int b, int t, int c,
                         int nh) {
    xdt_cpu_attention_forward_f32(NT(ctx), out, att, qkv, b, t, c, nh);
}

static void cpu_attn_bwd(void *ctx, float *dqkv, float *ws, const float *dout, const float *qkv,
                         const float *att, const float *out, int b, int t, int c, int nh) {
    (void)out; /* the probabilities are enough */
    xdt_cpu_attention_backward_f32(NT(ctx), dqkv, ws, dout, qkv, att, b, t, c, nh);
}

static void cpu_gelu_fwd(void *ctx, float *out, const float *inp, size_t n) {
    xdt_cpu_gelu_forward_f32(NT(ctx), out, inp, n);
}

static void cpu_gelu_bwd(void *ctx, float *dinp, const float *inp, const float *dout, size_t n) {
    xdt_cpu_gelu_backward_f32(NT(ctx), dinp, inp, dout, n);
}

static void cpu_add(void *ctx, float *out, const float *a, const float *b, size_t n) {
    xdt_cpu_add_f32(NT(ctx), out, a, b, n);
}

static void cpu_scale(void *ctx, float *x, float s, size_t n) {
    xdt_cpu_scale_f32(NT(ctx), x, s, n);
}

static void cpu_emb_fwd(void *ctx, float *out, const int32_t *tokens, const float *wte,
                        const float *wpe, int b, int t, int c) {
    xdt_cpu_embedding_forward_f32(NT(ctx), out, tokens, wte, wpe, b, t, c);
}

static void cpu_emb_bwd(void *ctx, float *dwte, float *dwpe, const float *dout,
                        const int32_t *tokens, int b, int t, int c) {
    xdt_cpu_embedding_backward_f32(NT(ctx), dwte, dwpe, dout, tokens, b, t, c);
}

static void cpu_xent(void *ctx, float *logits, float *losses, const int32_t *targets, int n, int v,
                     int vp, float dloss_scale, bool want_grad) {
    xdt_cpu_softmax_xent_f32(NT(ctx), logits, losses, targets, n, v, vp, dloss_scale, want_grad);
}

static void cpu_adamw(void *ctx, float *param, const float *grad, float *m, float *v, size_t n,
                      const xdt_adamw_args *args) {
    xdt_cpu_adamw_f32(NT(ctx), param, grad, m, v, n, args);
}

static xdt_status cpu_sum(void *ctx, const float *x, size_t n, double *out) {
    *out = xdt_cpu_sum_f32(NT(ctx), x, n);
    return XDT_OK;
}

static xdt_status cpu_sum_squares(void *ctx, const float *x, size_t n, double *out) {
    *out = xdt_cpu_sum_squares_f32(NT(ctx), x, n);
    return XDT_OK;
}

static const xdt_device_ops cpu_ops = {
    .name = "cpu",
    .mem_type = XDT_MEM_HOST,
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .memset = cpu_memset,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .layernorm_forward = cpu_ln_fwd,
    .layernorm_backward = cpu_ln_bwd,
    .attention_forward = cpu_attn_fwd,
    .attention_backward = cpu_attn_bwd,
    .gelu_forward = cpu_gelu_fwd,
    .gelu_backward = cpu_gelu_bwd,
    .add = cpu_add,
    .scale = cpu_scale,
    .embedding_forward = cpu_emb_fwd,
    .embedding_backward = cpu_emb_bwd,
    .softmax_xent = cpu_xent,
    .adamw = cpu_adamw,
    .sum = cpu_sum,
    .sum_squares = cpu_sum_squares,
};

xdt_status xdt_cpu_device_create(const xdt_device_options *opts, xdt_device **out) {
    int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (cores < 1) cores = 1;
    int threads = opts->threads > 0 ? opts->threads : cores;
    if (threads > 1024)
        return xdt_fail(XDT_ERR_INVALID_ARG, "device cpu: %d threads is too many", threads);
    xdt_device *dev = calloc(1, sizeof *dev);
    cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!dev || !ctx) {
        free(dev);
        free(ctx);
        return xdt_fail(XDT_ERR_NO_MEMORY, "device cpu: out of memory");
    }
    ctx->threads = threads;
    ctx->bf16 = opts->gemm_precision == XDT_PRECISION_BF16;
    /* All parallelism comes from OpenMP (see gemm in cpu_kernels.inc); OpenBLAS's own pool would
     * compete with it for the same cores. */
    openblas_set_num_threads(1);
    dev->ops = &cpu_ops;
    dev->ctx = ctx;
    snprintf(dev->name, sizeof dev->name, "cpu");
    *out = dev;
    return XDT_OK;
}
