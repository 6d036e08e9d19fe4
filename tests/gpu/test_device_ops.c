/* test_device_ops.c: every op of a GPU backend against the CPU backend (the reference) on random
 * inputs, in the manner of ggml's test-backend-ops. Each op runs on both devices from the same
 * inputs; the GPU result must be within a normalised error ||gpu - cpu|| / ||cpu|| of 1e-5 (fp32,
 * TF32 off), and the embedding backward must equal the CPU's bit for bit. Outputs on the GPU start
 * as NaN or garbage, so ops that overwrite must overwrite all of it. Also: the tiled GEMM kernel
 * (what HIP builds without hipBLAS use) on the same cases, run-to-run determinism, error
 * reporting through sync, memory ops, and TF32 when allowed.
 *
 * The device is XDT_TEST_GPU when set, else cuda:0, else hip:0. Exits 77 (skipped) when the build
 * has no GPU backend or the machine has no GPU. Built with XDT_TEST_EMU, the same test runs the
 * backend's sources under the CPU emulation of devices/cuda/gpu_emu.h instead (no GPU needed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/float_bits.h"
#include "core/gpt.h"
#include "core/rng.h"
#include "devices/device.h"
#include "tests/unit/test_util.h"

#define TOL 1e-5

#ifdef XDT_TEST_EMU
/* The GPU backend's sources compiled for the CPU emulation (devices/cuda/gpu_emu.h). */
xdt_status xdt_gpuemu_device_create(int index, const xdt_device_options *opts, xdt_device **out);
#define OPEN_DEVICE(name, o, out) xdt_gpuemu_device_create(0, (o), (out))
#else
#define OPEN_DEVICE(name, o, out) xdt_device_create((name), (o), (out))
#endif

typedef struct env {
    xdt_device *cpu, *gpu;
    xdt_rng rng;
    double gemm_tol, attn_tol; /* TOL, except in the bf16 pass */
    xdt_device *cpu_fp32;      /* the bf16 pass: an fp32 CPU, to tell the modes apart */
} env;

static float *host_rand(env *e, size_t n, float scale) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        p[i] = scale * (float)(2.0 * xdt_rng_uniform(&e->rng) - 1.0);
    return p;
}

static float *host_copy(const float *src, size_t n) {
    float *p = malloc((n ? n : 1) * sizeof(float));
    memcpy(p, src, n * sizeof(float));
    return p;
}

static void *up(env *e, const void *h, size_t bytes) {
    void *d = NULL;
    if (xdt_device_alloc(e->gpu, bytes, &d) != XDT_OK) {
        fprintf(stderr, "GPU allocation of %zu bytes failed\n", bytes);
        exit(1);
    }
    e->gpu->ops->copy(e->gpu->ctx, d, h, bytes, XDT_COPY_HOST_TO_DEVICE);
    return d;
}

/* A GPU buffer of n floats filled with `value` (NaN marks outputs that must be written). */
static float *up_fill(env *e, size_t n, float value) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++)
        h[i] = value;
    float *d = up(e, h, n * sizeof(float));
    free(h);
    return d;
}

static float *down(env *e, const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    e->gpu->ops->copy(e->gpu->ctx, h, d, n * sizeof(float), XDT_COPY_DEVICE_TO_HOST);
    return h;
}

static double nerr(const float *got, const float *want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - (double)want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    if (!isfinite(num)) return INFINITY;
    return sqrt(num) / (sqrt(den) > 1e-30 ? sqrt(den) : 1e-30);
}

/* Syncs the GPU, downloads d (n floats) and compares it with the CPU's result. */
static void expect_close(env *e, const char *what, const float *d, const float *want, size_t n,
                         double tol) {
    CHECK_MSG(xdt_device_sync(e->gpu) == XDT_OK, "%s: sync failed", what);
    float *got = down(e, d, n);
    double err = nerr(got, want, n);
    printf("  %-46s normalised error %.2e\n", what, err);
    CHECK_MSG(err <= tol, "%s: normalised error %.3e > %.1e", what, err, tol);
    free(got);
}

static void expect_equal(env *e, const char *what, const float *d, const float *want, size_t n) {
    CHECK_MSG(xdt_device_sync(e->gpu) == XDT_OK, "%s: sync failed", what);
    float *got = down(e, d, n);
    size_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff += memcmp(&got[i], &want[i], sizeof(float)) != 0;
    printf("  %-46s %zu of %zu values differ in bits\n", what, diff, n);
    CHECK_MSG(diff == 0, "%s: %zu values differ from the CPU's bits", what, diff);
    free(got);
}

#define GPU(e, op, ...) (e)->gpu->ops->op((e)->gpu->ctx, __VA_ARGS__)
#define CPU(e, op, ...) (e)->cpu->ops->op((e)->cpu->ctx, __VA_ARGS__)
#define DFREE(e, ...)                                                                              \
    do {                                                                                           \
        void *ptrs_[] = {__VA_ARGS__};                                                             \
        for (size_t i_ = 0; i_ < sizeof ptrs_ / sizeof ptrs_[0]; i_++)                             \
            xdt_device_free((e)->gpu, ptrs_[i_]);                                                  \
    } while (0)
#define HFREE(...)                                                                                 \
    do {                                                                                           \
        void *ptrs_[] = {__VA_ARGS__};                                                             \
        for (size_t i_ = 0; i_ < sizeof ptrs_ / sizeof ptrs_[0]; i_++)                             \
            free(ptrs_[i_]);                                                                       \
    } while (0)

/* Opens `name` with var=value in the environment (none when value is NULL), unset again after:
 * the backend reads its test and comparison settings when a device opens. */
static xdt_status open_with_env(const char *name, const xdt_device_options *o, const char *var,
                                const char *value, xdt_device **out) {
    (void)name; /* the emulation has one device */
    if (value) setenv(var, value, 1);
    const xdt_status st = OPEN_DEVICE(name, o, out);
    unsetenv(var);
    return st;
}

/* One GEMM (or strided batch of them) with every stride padded, on both devices. */
static void test_gemm_case(env *e, bool ta, bool tb, int m, int n, int k, float alpha, float beta,
                           int batch) {
    const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 1;
    const long sa = (long)(ta ? k : m) * lda + 5, sb = (long)(tb ? n : k) * ldb + 7;
    const long sc = (long)m * ldc + 3;
    const size_t na = (size_t)sa * batch, nb = (size_t)sb * batch, nc = (size_t)sc * batch;
    float *a = host_rand(e, na, 1), *b = host_rand(e, nb, 1), *c = host_rand(e, nc, 1);
    if (beta == 0)
        for (size_t i = 0; i < nc; i++)
            c[i] = 0; /* the CPU's c; the GPU's is NaN, which it must not read */
    float *da = up(e, a, na * 4), *db = up(e, b, nb * 4);
    float *dc = beta == 0 ? up_fill(e, nc, NAN) : up(e, c, nc * 4);
    if (batch == 1) {
        CPU(e, gemm, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        GPU(e, gemm, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    } else {
        xdt_device_gemm_batched(e->cpu, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c,
                                ldc, sc, batch);
        /* a GPU backend has its own batched GEMM (a device without one fails here, not
         * with a crash) */
        CHECK_MSG(e->gpu->ops->gemm_strided_batched, "%s has no gemm_strided_batched",
                  e->gpu->name);
        if (e->gpu->ops->gemm_strided_batched)
            GPU(e, gemm_strided_batched, ta, tb, m, n, k, alpha, da, lda, sa, db, ldb, sb, beta, dc,
                ldc, sc, batch);
    }
    char what[96];
    snprintf(what, sizeof what, "gemm%s %c%c %dx%dx%d beta=%g", batch > 1 ? " batched" : "",
             ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, beta);
    /* compare the m x n products only (the padding between rows and matrices is not written) */
    CHECK_MSG(xdt_device_sync(e->gpu) == XDT_OK, "%s: sync failed", what);
    float *all = down(e, dc, nc);
    float *got = malloc((size_t)batch * m * n * 4), *want = malloc((size_t)batch * m * n * 4);
    size_t w = 0;
    for (int z = 0; z < batch; z++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++, w++) {
                got[w] = all[z * sc + (long)i * ldc + j];
                want[w] = c[z * sc + (long)i * ldc + j];
            }
    double err = nerr(got, want, w);
    printf("  %-46s normalised error %.2e\n", what, err);
    CHECK_MSG(err <= e->gemm_tol, "%s: normalised error %.3e > %.1e", what, err, e->gemm_tol);
    HFREE(all, got, want);
    DFREE(e, da, db, dc);
    HFREE(a, b, c);
}

static void test_gemm(env *e) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm_case(e, ta, tb, 67, 45, 83, 0.7f, 0.3f, 1);
            test_gemm_case(e, ta, tb, 130, 70, 33, 1.0f, 0.0f, 1);
            test_gemm_case(e, ta, tb, 19, 23, 29, 1.0f, 1.0f, 5);
        }
    test_gemm_case(e, false, true, 256, 576, 192, 1.0f, 0.0f, 1); /* a linear layer's shape */
    test_gemm_case(e, true, false, 70, 66, 600, 1.0f, 0.5f, 1);   /* deep: several k panels */
    test_gemm_case(e, true, false, 192, 576, 256, 1.0f, 1.0f, 1); /* its weight gradient */
}

/* gemm_bias (the bias in cuBLASLt's epilogue on CUDA, a kernel after the GEMM elsewhere) against
 * the CPU's gemm then bias_add; pad > 0 pads c's rows (the fallback's row-by-row case). */
static void test_gemm_bias_case(env *e, bool ta, bool tb, int m, int n, int k, float beta,
                                int pad) {
    const int lda = ta ? m : k, ldb = tb ? k : n, ldc = n + pad;
    const size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * ldc;
    float *a = host_rand(e, na, 1), *b = host_rand(e, nb, 1), *c = host_rand(e, nc, 1);
    float *bias = host_rand(e, n, 1);
    float *da = up(e, a, na * 4), *db = up(e, b, nb * 4), *dbias = up(e, bias, (size_t)n * 4);
    if (beta == 0)
        for (size_t i = 0; i < nc; i++)
            c[i] = 0; /* the CPU's c; the GPU's is NaN, which it must not read */
    float *dc = beta == 0 ? up_fill(e, nc, NAN) : up(e, c, nc * 4);
    CHECK_MSG(e->gpu->ops->gemm_bias, "%s has no gemm_bias", e->gpu->name);
    if (e->gpu->ops->gemm_bias)
        GPU(e, gemm_bias, ta, tb, m, n, k, 1.0f, da, lda, db, ldb, beta, dc, ldc, dbias);
    xdt_device_gemm_bias(e->cpu, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc, bias);
    char what[96];
    snprintf(what, sizeof what, "gemm_bias %c%c %dx%dx%d beta=%g ldc=%d", ta ? 'T' : 'N',
             tb ? 'T' : 'N', m, n, k, beta, ldc);
    CHECK_MSG(xdt_device_sync(e->gpu) == XDT_OK, "%s: sync failed", what);
    float *all = down(e, dc, nc);
    float *got = malloc((size_t)m * n * 4), *want = malloc((size_t)m * n * 4);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            got[(size_t)i * n + j] = all[(size_t)i * ldc + j];
            want[(size_t)i * n + j] = c[(size_t)i * ldc + j];
        }
    const double err = nerr(got, want, (size_t)m * n);
    printf("  %-46s normalised error %.2e\n", what, err);
    CHECK_MSG(err <= e->gemm_tol, "%s: normalised error %.3e > %.1e", what, err, e->gemm_tol);
    HFREE(all, got, want, a, b, c, bias);
    DFREE(e, da, db, dc, dbias);
}

static void test_gemm_bias(env *e) {
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            test_gemm_bias_case(e, ta, tb, 70, 68, 40, 0.0f, 0);
            test_gemm_bias_case(e, ta, tb, 33, 45, 29, 1.0f, 3);
        }
    test_gemm_bias_case(e, false, true, 256, 576, 192, 0.0f, 0); /* a linear layer */
    test_gemm_bias_case(e, false, true, 256, 192, 768, 1.0f, 0); /* a residual projection */
}

/* gemm_bias on a device opened without cuBLASLt (XDT_GPU_BLASLT=0): the BLAS GEMM, then the
 * bias kernel down the BLAS's rows (the path taken where cuBLASLt offers no algorithm). */
static void test_gemm_bias_no_lt(env *e, const char *name, const xdt_device_options *o) {
    xdt_device *dev = NULL;
    const xdt_status st = open_with_env(name, o, "XDT_GPU_BLASLT", "0", &dev);
    CHECK_MSG(st == XDT_OK, "cannot open %s with XDT_GPU_BLASLT=0", name);
    if (st != XDT_OK) return;
    printf("device %s without cuBLASLt\n", name);
    env en = *e;
    en.gpu = dev;
    test_gemm_bias(&en);
    e->rng = en.rng;
    xdt_device_destroy(dev);
}

static void test_bias(env *e) {
    const int n = 1100, c = 131; /* 18 chunks of rows: more than a column's 8 summing threads */
    float *out = host_rand(e, (size_t)n * c, 1), *bias = host_rand(e, c, 1);
    float *dout = host_rand(e, (size_t)n * c, 1), *dbias = host_rand(e, c, 1);
    float *d_out = up(e, out, sizeof(float) * n * c), *d_bias = up(e, bias, sizeof(float) * c);
    float *d_dout = up(e, dout, sizeof(float) * n * c), *d_dbias = up(e, dbias, sizeof(float) * c);
    CPU(e, bias_add, out, bias, n, c);
    GPU(e, bias_add, d_out, d_bias, n, c);
    expect_close(e, "bias_add", d_out, out, (size_t)n * c, TOL);
    /* accumulates; twice from the same start gives the same bits */
    float *first = NULL;
    for (int rep = 0; rep < 2; rep++) {
        e->gpu->ops->copy(e->gpu->ctx, d_dbias, dbias, sizeof(float) * c, XDT_COPY_HOST_TO_DEVICE);
        GPU(e, bias_grad, d_dbias, d_dout, n, c);
        xdt_device_sync(e->gpu);
        if (rep == 0) first = down(e, d_dbias, c);
    }
    expect_equal(e, "bias_grad: run-to-run", d_dbias, first, c);
    CPU(e, bias_grad, dbias, dout, n, c);
    expect_close(e, "bias_grad (accumulating)", d_dbias, dbias, c, TOL);
    DFREE(e, d_out, d_bias, d_dout, d_dbias);
    HFREE(out, bias, dout, dbias, first);
}

static void test_layernorm_case(env *e, int n, int c, bool accumulate) {
    const size_t nc = (size_t)n * c;
    float *inp = host_rand(e, nc, 2), *w = host_rand(e, c, 1), *b = host_rand(e, c, 1);
    for (size_t i = 0; i < nc; i++)
        inp[i] += 0.5f; /* a non-zero mean */
    float *out = malloc(nc * 4), *mean = malloc((size_t)n * 4), *rstd = malloc((size_t)n * 4);
    float *d_inp = up(e, inp, nc * 4), *d_w = up(e, w, c * 4), *d_b = up(e, b, c * 4);
    float *d_out = up_fill(e, nc, NAN), *d_mean = up_fill(e, n, NAN), *d_rstd = up_fill(e, n, NAN);
    CPU(e, layernorm_forward, out, mean, rstd, inp, w, b, n, c);
    GPU(e, layernorm_forward, d_out, d_mean, d_rstd, d_inp, d_w, d_b, n, c);
    char what[96];
    snprintf(what, sizeof what, "layernorm_forward %dx%d: out", n, c);
    expect_close(e, what, d_out, out, nc, TOL);
    expect_close(e, "layernorm_forward: mean", d_mean, mean, n, TOL);
    expect_close(e, "layernorm_forward: rstd", d_rstd, rstd, n, TOL);
    /* backward from the CPU's saved statistics */
    float *dout = host_rand(e, nc, 1), *dinp = host_rand(e, nc, 1);
    float *dw = host_rand(e, c, 1), *db = host_rand(e, c, 1);
    float *d_dout = up(e, dout, nc * 4), *d_dw = up(e, dw, c * 4), *d_db = up(e, db, c * 4);
    float *d_dinp = accumulate ? up(e, dinp, nc * 4) : up_fill(e, nc, NAN);
    e->gpu->ops->copy(e->gpu->ctx, d_mean, mean, (size_t)n * 4, XDT_COPY_HOST_TO_DEVICE);
    e->gpu->ops->copy(e->gpu->ctx, d_rstd, rstd, (size_t)n * 4, XDT_COPY_HOST_TO_DEVICE);
    CPU(e, layernorm_backward, dinp, dw, db, dout, inp, w, mean, rstd, n, c, accumulate);
    GPU(e, layernorm_backward, d_dinp, d_dw, d_db, d_dout, d_inp, d_w, d_mean, d_rstd, n, c,
        accumulate);
    snprintf(what, sizeof what, "layernorm_backward %dx%d acc=%d: dinp", n, c, accumulate);
    expect_close(e, what, d_dinp, dinp, nc, TOL);
    expect_close(e, "layernorm_backward: dw (accumulating)", d_dw, dw, c, TOL);
    expect_close(e, "layernorm_backward: db (accumulating)", d_db, db, c, TOL);
    DFREE(e, d_inp, d_w, d_b, d_out, d_mean, d_rstd, d_dout, d_dw, d_db, d_dinp);
    HFREE(inp, w, b, out, mean, rstd, dout, dinp, dw, db);
}

/* Attention forward and backward against the CPU. A GPU that keeps the probabilities (the
 * explicit path) must match the CPU's and takes the CPU's for the backward; one that keeps less
 * (flash) must say so through attention_sizes and runs its backward from its own forward. */
static void test_attention_case(env *e, int b, int t, int c, int nh) {
    const size_t n3 = (size_t)b * t * 3 * c, nc = (size_t)b * t * c;
    const size_t na = (size_t)b * nh * t * t;
    size_t ns = 0, nw = 0; /* the GPU's state and workspace */
    xdt_device_attention_sizes(e->gpu, b, t, c, nh, &ns, &nw);
    const bool probabilities = ns == na;
    float *qkv = host_rand(e, n3, 1), *out = malloc(nc * 4), *att = malloc(na * 4);
    float *d_qkv = up(e, qkv, n3 * 4), *d_out = up_fill(e, nc, NAN), *d_att = up_fill(e, ns, NAN);
    CPU(e, attention_forward, out, att, qkv, b, t, c, nh);
    GPU(e, attention_forward, d_out, d_att, d_qkv, b, t, c, nh);
    char what[112];
    snprintf(what, sizeof what, "attention_forward b%d t%d c%d nh%d%s: out", b, t, c, nh,
             probabilities ? "" : " (flash)");
    expect_close(e, what, d_out, out, nc, e->attn_tol);
    if (probabilities)
        expect_close(e, "attention_forward: att (probabilities)", d_att, att, na, e->attn_tol);
    else
        CHECK_MSG(ns < na && nw < na, "flash attention keeps %zu + %zu floats, not under %zu", ns,
                  nw, na);
    float *dout = host_rand(e, nc, 1), *dqkv = malloc(n3 * 4), *ws = malloc(na * 4);
    float *d_dout = up(e, dout, nc * 4), *d_dqkv = up_fill(e, n3, NAN), *d_ws = up_fill(e, nw, NAN);
    if (probabilities) e->gpu->ops->copy(e->gpu->ctx, d_att, att, na * 4, XDT_COPY_HOST_TO_DEVICE);
    CPU(e, attention_backward, dqkv, ws, dout, qkv, att, out, b, t, c, nh);
    GPU(e, attention_backward, d_dqkv, d_ws, d_dout, d_qkv, d_att, d_out, b, t, c, nh);
    snprintf(what, sizeof what, "attention_backward b%d t%d c%d nh%d%s: dqkv", b, t, c, nh,
             probabilities ? "" : " (flash)");
    expect_close(e, what, d_dqkv, dqkv, n3, e->attn_tol);
    DFREE(e, d_qkv, d_out, d_att, d_dout, d_dqkv, d_ws);
    HFREE(qkv, out, att, dout, dqkv, ws);
}

static void test_attention(env *e) {
    test_attention_case(e, 2, 37, 48, 4);  /* batched over heads */
    test_attention_case(e, 3, 64, 64, 2);  /* batched over the batch */
    test_attention_case(e, 1, 130, 96, 3); /* hs 32, t over two of the CPU's row blocks */
}

/* The fused attention: the shapes above, a head of 64 dims (the most it takes) over tiles that
 * end mid-way, a head of 6 (dims not a multiple of 4), and a head of 80, which takes the
 * explicit path (its state must then be the probabilities). */
static void test_flash_attention(env *e, const char *name) {
    xdt_device_options of = {.flash_attention = true};
    xdt_device *flash = NULL;
    if (OPEN_DEVICE(name, &of, &flash) != XDT_OK) {
        CHECK_MSG(0, "cannot open %s with flash attention", name);
        return;
    }
    printf("device %s with flash attention\n", name);
    env ef = *e;
    ef.gpu = flash;
    test_attention(&ef);
    test_attention_case(&ef, 2, 70, 128, 2);
    test_attention_case(&ef, 1, 33, 18, 3);
    size_t ns = 0, nw = 0;
    xdt_device_attention_sizes(flash, 1, 20, 160, 2, &ns, &nw);
    CHECK_MSG(ns == (size_t)2 * 20 * 20 && nw == ns, "a head of 80 keeps the probabilities");
    /* the planner's and the stage's figure (core/gpt.h) is the device's, at the widest head the
     * fused kernels take and one wider */
    const int heads[2][2] = {{128, 2}, {160, 2}}; /* c, nh: 64 and 80 dims */
    for (int i = 0; i < 2; i++) {
        const xdt_model_config m = {.n_embd = heads[i][0], .n_head = heads[i][1]};
        xdt_device_attention_sizes(flash, 3, 50, m.n_embd, m.n_head, &ns, &nw);
        CHECK_MSG(ns == xdt_gpt_attention_state_floats(&m, 3, 50, true),
                  "head of %d dims: the device keeps %zu floats, core/gpt.h says %zu",
                  m.n_embd / m.n_head, ns, xdt_gpt_attention_state_floats(&m, 3, 50, true));
    }
    test_attention_case(&ef, 1, 20, 160, 2);
    e->rng = ef.rng;
    xdt_device_destroy(flash);
}

static void test_elementwise(env *e) {
    const size_t n = 10007;
    float *x = host_rand(e, n, 3), *y = host_rand(e, n, 1), *out = malloc(n * 4);
    float *d_x = up(e, x, n * 4), *d_y = up(e, y, n * 4), *d_out = up_fill(e, n, NAN);
    CPU(e, gelu_forward, out, x, n);
    GPU(e, gelu_forward, d_out, d_x, n);
    expect_close(e, "gelu_forward", d_out, out, n, TOL);
    e->gpu->ops->memset(e->gpu->ctx, d_out, 0xff, n * 4);
    CPU(e, gelu_backward, out, x, y, n);
    GPU(e, gelu_backward, d_out, d_x, d_y, n);
    expect_close(e, "gelu_backward", d_out, out, n, TOL);
    CPU(e, add, out, x, y, n);
    GPU(e, add, d_out, d_x, d_y, n);
    expect_close(e, "add", d_out, out, n, TOL);
    CPU(e, add, x, x, y, n); /* out aliases a */
    GPU(e, add, d_x, d_x, d_y, n);
    expect_close(e, "add (in place)", d_x, x, n, TOL);
    CPU(e, scale, x, -0.37f, n);
    GPU(e, scale, d_x, -0.37f, n);
    expect_close(e, "scale", d_x, x, n, TOL);
    DFREE(e, d_x, d_y, d_out);
    HFREE(x, y, out);
}

static void test_embedding(env *e) {
    const int b = 3, t = 17, c = 40, vocab = 50, n = b * t;
    int32_t tok[3 * 17];
    for (int i = 0; i < n; i++) /* small vocabulary: many repeats */
        tok[i] = (int32_t)xdt_rng_below(&e->rng, i % 5 == 0 ? 3 : vocab);
    float *wte = host_rand(e, (size_t)vocab * c, 1), *wpe = host_rand(e, (size_t)t * c, 1);
    float *out = malloc((size_t)n * c * 4);
    int32_t *d_tok = up(e, tok, sizeof tok);
    float *d_wte = up(e, wte, (size_t)vocab * c * 4), *d_wpe = up(e, wpe, (size_t)t * c * 4);
    float *d_out = up_fill(e, (size_t)n * c, NAN);
    CPU(e, embedding_forward, out, tok, wte, wpe, b, t, c);
    GPU(e, embedding_forward, d_out, d_tok, d_wte, d_wpe, b, t, c);
    expect_equal(e, "embedding_forward", d_out, out, (size_t)n * c);
    float *dout = host_rand(e, (size_t)n * c, 1);
    float *d_dout = up(e, dout, (size_t)n * c * 4);
    CPU(e, embedding_backward, wte, wpe, dout, tok, b, t, c); /* accumulates into wte, wpe */
    GPU(e, embedding_backward, d_wte, d_wpe, d_dout, d_tok, b, t, c);
    expect_equal(e, "embedding_backward: dwte (accumulating)", d_wte, wte, (size_t)vocab * c);
    expect_equal(e, "embedding_backward: dwpe (accumulating)", d_wpe, wpe, (size_t)t * c);
    DFREE(e, d_tok, d_wte, d_wpe, d_out, d_dout);
    HFREE(wte, wpe, out, dout);
}

static void test_softmax_xent_case(env *e, int v, int vp) {
    enum { n = 19 };
    int32_t targets[n];
    for (int i = 0; i < n; i++)
        targets[i] = (int32_t)xdt_rng_below(&e->rng, v);
    targets[3] = v - 1;
    for (int want_grad = 0; want_grad < 2; want_grad++) {
        float *logits = host_rand(e, (size_t)n * vp, 4), *losses = malloc(n * 4);
        float *gpu_in = host_copy(logits, (size_t)n * vp);
        for (int i = 0; i < n; i++) /* padding: garbage the kernel must zero (or ignore) */
            for (int j = v; j < vp; j++)
                gpu_in[(size_t)i * vp + j] = want_grad ? NAN : 1e30f;
        float *d_logits = up(e, gpu_in, (size_t)n * vp * 4), *d_losses = up_fill(e, n, NAN);
        int32_t *d_targets = up(e, targets, sizeof targets);
        CPU(e, softmax_xent, logits, losses, targets, n, v, vp, 1.0f / n, want_grad);
        GPU(e, softmax_xent, d_logits, d_losses, d_targets, n, v, vp, 1.0f / n, want_grad);
        char what[96];
        snprintf(what, sizeof what, "softmax_xent v%d vp%d: losses%s", v, vp,
                 want_grad ? " (want_grad)" : "");
        expect_close(e, what, d_losses, losses, n, TOL);
        if (want_grad)
            expect_close(e, "softmax_xent: dlogits in place, padding zero", d_logits, logits,
                         (size_t)n * vp, TOL);
        DFREE(e, d_logits, d_losses, d_targets);
        HFREE(logits, losses, gpu_in);
    }
}

static void test_softmax_xent(env *e) {
    test_softmax_xent_case(e, 1000, 1024); /* rows of whole float4s */
    test_softmax_xent_case(e, 1001, 1004); /* a scalar tail after them */
    test_softmax_xent_case(e, 999, 1001);  /* rows not 16-byte aligned: value by value */
}

static void test_adamw(env *e) {
    const size_t n = 10007;
    float *p = host_rand(e, n, 1), *g = host_rand(e, n, 1), *m = host_rand(e, n, 0.1f);
    float *v = host_rand(e, n, 0.1f);
    for (size_t i = 0; i < n; i++)
        v[i] = fabsf(v[i]);
    float *d_p = up(e, p, n * 4), *d_g = up(e, g, n * 4), *d_m = up(e, m, n * 4);
    float *d_v = up(e, v, n * 4);
    xdt_adamw_args a = {.lr = 1e-3f,
                        .beta1 = 0.9f,
                        .beta2 = 0.95f,
                        .eps = 1e-8f,
                        .weight_decay = 0.1f,
                        .grad_scale = 0.5f,
                        .bias_correction1 = 1 - 0.9f * 0.9f * 0.9f,
                        .bias_correction2 = 1 - 0.95f * 0.95f * 0.95f};
    CPU(e, adamw, p, g, m, v, n, &a);
    GPU(e, adamw, d_p, d_g, d_m, d_v, n, &a);
    expect_close(e, "adamw: param", d_p, p, n, TOL);
    expect_close(e, "adamw: m", d_m, m, n, TOL);
    expect_close(e, "adamw: v", d_v, v, n, TOL);
    DFREE(e, d_p, d_g, d_m, d_v);
    HFREE(p, g, m, v);
}

static void test_reductions(env *e) {
    const size_t sizes[] = {0, 1, 1000, 1000003};
    for (int s = 0; s < 4; s++) {
        const size_t n = sizes[s];
        float *x = host_rand(e, n, 1);
        float *d_x = up(e, x, (n ? n : 1) * 4);
        double cs = 0, cq = 0, gs = -1, gq = -1;
        CPU(e, sum, x, n, &cs);
        CPU(e, sum_squares, x, n, &cq);
        CHECK(GPU(e, sum, d_x, n, &gs) == XDT_OK);
        CHECK(GPU(e, sum_squares, d_x, n, &gq) == XDT_OK);
        printf("  sum n=%-8zu cpu %.15g gpu %.15g; sum_squares cpu %.15g gpu %.15g\n", n, cs, gs,
               cq, gq);
        CHECK_MSG(fabs(gs - cs) <= 1e-10 * (fabs(cs) + sqrt((double)n)), "sum of %zu", n);
        CHECK_MSG(fabs(gq - cq) <= 1e-12 * (cq + 1), "sum_squares of %zu", n);
        DFREE(e, d_x);
        free(x);
    }
}

static void test_memory_and_errors(env *e) {
    const size_t n = 4099;
    float *x = host_rand(e, n, 1), *back = malloc(n * 4);
    float *d_a = up(e, x, n * 4), *d_b = up_fill(e, n, NAN);
    e->gpu->ops->copy(e->gpu->ctx, d_b, d_a, n * 4, XDT_COPY_DEVICE_TO_DEVICE);
    expect_equal(e, "copy device to device", d_b, x, n);
    e->gpu->ops->memset(e->gpu->ctx, d_b, 0, n * 4);
    memset(back, 0, n * 4);
    expect_equal(e, "memset", d_b, back, n);
    void *pinned = NULL;
    CHECK(xdt_device_alloc_pinned(e->gpu, n * 4, &pinned) == XDT_OK);
    if (pinned) {
        e->gpu->ops->copy(e->gpu->ctx, pinned, d_a, n * 4, XDT_COPY_DEVICE_TO_HOST);
        CHECK(!memcmp(pinned, x, n * 4)); /* device-to-host copies are complete on return */
        xdt_device_free_pinned(e->gpu, pinned);
    }
    size_t free_b = 0, total_b = 0;
    CHECK(e->gpu->ops->mem_info != NULL);
    if (e->gpu->ops->mem_info) {
        CHECK(e->gpu->ops->mem_info(e->gpu->ctx, &free_b, &total_b) == XDT_OK);
        printf("  mem_info: %.1f of %.1f GiB free\n", free_b / 1073741824.0,
               total_b / 1073741824.0);
        CHECK(free_b > 0 && free_b <= total_b);
    }
    /* errors are recorded, returned once by sync, then cleared */
    fprintf(stderr, "(two errors expected next)\n");
    int32_t bad = 5;
    int32_t *d_bad = up(e, &bad, sizeof bad);
    GPU(e, softmax_xent, d_a, d_b, d_bad, 1, 4, 4, 1.0f, true);
    CHECK(e->gpu->ops->sync(e->gpu->ctx) == XDT_ERR_INVALID_ARG);
    CHECK(e->gpu->ops->sync(e->gpu->ctx) == XDT_OK);
    GPU(e, gemm, false, false, -1, 4, 4, 1.0f, d_a, 4, d_a, 4, 0.0f, d_b, 4);
    CHECK(e->gpu->ops->sync(e->gpu->ctx) == XDT_ERR_INVALID_ARG);
    CHECK(e->gpu->ops->sync(e->gpu->ctx) == XDT_OK);
    void *huge = NULL;
    CHECK(e->gpu->ops->alloc(e->gpu->ctx, (size_t)1 << 52, &huge) == XDT_ERR_NO_MEMORY);
    CHECK(e->gpu->ops->sync(e->gpu->ctx) == XDT_OK); /* a failed allocation does not linger */
    DFREE(e, d_a, d_b, d_bad);
    HFREE(x, back);
}

/* TF32 when allowed: faster and about 1e-3 relative; only a sanity bound. */
static void test_tf32(env *e, const char *name) {
    xdt_device_options o = {.gemm_precision = XDT_PRECISION_TF32};
    xdt_device *tf = NULL;
    if (OPEN_DEVICE(name, &o, &tf) != XDT_OK) {
        CHECK_MSG(0, "cannot open %s with TF32", name);
        return;
    }
    const int m = 256, n = 256, k = 512;
    float *a = host_rand(e, (size_t)m * k, 1), *b = host_rand(e, (size_t)k * n, 1);
    float *c = malloc((size_t)m * n * 4), *got = malloc((size_t)m * n * 4);
    CPU(e, gemm, false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    float *d_a, *d_b, *d_c;
    xdt_device_alloc(tf, (size_t)m * k * 4, (void **)&d_a);
    xdt_device_alloc(tf, (size_t)k * n * 4, (void **)&d_b);
    xdt_device_alloc(tf, (size_t)m * n * 4, (void **)&d_c);
    tf->ops->copy(tf->ctx, d_a, a, (size_t)m * k * 4, XDT_COPY_HOST_TO_DEVICE);
    tf->ops->copy(tf->ctx, d_b, b, (size_t)k * n * 4, XDT_COPY_HOST_TO_DEVICE);
    tf->ops->gemm(tf->ctx, false, false, m, n, k, 1.0f, d_a, k, d_b, n, 0.0f, d_c, n);
    CHECK(xdt_device_sync(tf) == XDT_OK);
    tf->ops->copy(tf->ctx, got, d_c, (size_t)m * n * 4, XDT_COPY_DEVICE_TO_HOST);
    double err = nerr(got, c, (size_t)m * n);
    printf("  gemm with TF32 allowed: normalised error %.2e (bound 1e-2)\n", err);
    CHECK(err <= 1e-2);
    xdt_device_free(tf, d_a);
    xdt_device_free(tf, d_b);
    xdt_device_free(tf, d_c);
    xdt_device_destroy(tf);
    HFREE(a, b, c, got);
}

/* GEMM precision bf16 on the CPU (the reference) against fp32: rounded inputs, so about 1e-3
 * normalised error; the mode must be live (not fp32 in disguise) and within bf16's precision.
 * k = 600 spans three of the CPU's 256-deep panels (the last partial), under every transpose
 * and with padded leading dimensions; inputs already in bf16 lose nothing, so there the two
 * modes agree to fp32 summation, which checks the panels' indexing. */
static void test_cpu_bf16_gemm(env *e, xdt_device *cpu16) {
    const int m = 96, n = 80, k = 600;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 1;
            const size_t na = (size_t)(ta ? k : m) * lda, nb = (size_t)(tb ? n : k) * ldb;
            float *a = host_rand(e, na, 1), *b = host_rand(e, nb, 1);
            float *c32 = calloc((size_t)m * ldc, 4), *c16 = calloc((size_t)m * ldc, 4);
            for (int exact = 0; exact < 2; exact++) {
                if (exact) {
                    for (size_t i = 0; i < na; i++)
                        a[i] = xdt_bf16_round(a[i]);
                    for (size_t i = 0; i < nb; i++)
                        b[i] = xdt_bf16_round(b[i]);
                }
                CPU(e, gemm, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c32, ldc);
                cpu16->ops->gemm(cpu16->ctx, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c16, ldc);
                CHECK(xdt_device_sync(cpu16) == XDT_OK);
                const double err = nerr(c16, c32, (size_t)m * ldc);
                printf("  cpu gemm bf16 %c%c k=%d, %s inputs: %.2e from fp32\n", ta ? 'T' : 'N',
                       tb ? 'T' : 'N', k, exact ? "bf16-exact" : "random", err);
                if (exact)
                    CHECK_MSG(err <= 1e-6, "bf16-exact inputs: %.3e from fp32", err);
                else
                    CHECK_MSG(err >= 1e-4 && err <= 1e-2, "cpu bf16 gemm: %.3e from fp32", err);
            }
            HFREE(a, b, c32, c16);
        }
}

#if !defined(XDT_TEST_EMU) || defined(XDT_TEST_EMU_BLAS) /* a BLAS (or its emulation) */
/* cuBLAS in bf16 on a product made for tensor cores (contiguous, every side a multiple of 64):
 * the CPU's bf16 result to 1e-4, and visibly not fp32's. */
static void test_bf16_live(env *e) {
    const int m = 256, n = 256, k = 512;
    float *a = host_rand(e, (size_t)m * k, 1), *b = host_rand(e, (size_t)k * n, 1);
    float *c16 = calloc((size_t)m * n, 4), *c32 = calloc((size_t)m * n, 4);
    float *da = up(e, a, (size_t)m * k * 4), *db = up(e, b, (size_t)k * n * 4);
    float *dc = up_fill(e, (size_t)m * n, NAN);
    CPU(e, gemm, false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c16, n); /* e->cpu: bf16 */
    e->cpu_fp32->ops->gemm(e->cpu_fp32->ctx, false, false, m, n, k, 1.0f, a, k, b, n, 0.0f, c32, n);
    GPU(e, gemm, false, false, m, n, k, 1.0f, da, k, db, n, 0.0f, dc, n);
    CHECK(xdt_device_sync(e->gpu) == XDT_OK);
    float *got = down(e, dc, (size_t)m * n);
    const double e16 = nerr(got, c16, (size_t)m * n), e32 = nerr(got, c32, (size_t)m * n);
    printf("  cuBLAS bf16 256x256x512: %.2e from the CPU's bf16, %.2e from fp32\n", e16, e32);
    CHECK_MSG(e16 <= 1e-4 && e32 >= 1e-4, "cuBLAS bf16 mode not live: %.3e / %.3e", e16, e32);
    DFREE(e, da, db, dc);
    HFREE(a, b, c16, c32, got);
}
#endif

/* A linear layer's backward: two products in a row reading the same matrix (dout: rows of the
 * first, transposed in the second), which cuBLAS's bf16 path copies once; then the same after
 * dout was changed in between by another op, so the second product must copy it again. */
static void test_gemm_shared_a_sized(env *e, int n, int oc, int ic) {
    float *dout = host_rand(e, (size_t)n * oc, 1), *w = host_rand(e, (size_t)oc * ic, 1);
    float *inp = host_rand(e, (size_t)n * ic, 1), *dw = host_rand(e, (size_t)oc * ic, 1);
    float *dinp = calloc((size_t)n * ic, 4);
    float *d_dout = up(e, dout, (size_t)n * oc * 4), *d_w = up(e, w, (size_t)oc * ic * 4);
    float *d_inp = up(e, inp, (size_t)n * ic * 4), *d_dw = up(e, dw, (size_t)oc * ic * 4);
    float *d_dinp = up_fill(e, (size_t)n * ic, NAN);
    for (int changed = 0; changed < 2; changed++) {
        CPU(e, gemm, false, false, n, ic, oc, 1.0f, dout, oc, w, ic, 0.0f, dinp, ic);
        GPU(e, gemm, false, false, n, ic, oc, 1.0f, d_dout, oc, d_w, ic, 0.0f, d_dinp, ic);
        if (changed) {
            CPU(e, scale, dout, -2.0f, (size_t)n * oc);
            GPU(e, scale, d_dout, -2.0f, (size_t)n * oc);
        }
        CPU(e, gemm, true, false, oc, ic, n, 1.0f, dout, oc, inp, ic, 1.0f, dw, ic);
        GPU(e, gemm, true, false, oc, ic, n, 1.0f, d_dout, oc, d_inp, ic, 1.0f, d_dw, ic);
        CHECK(xdt_device_sync(e->gpu) == XDT_OK);
        float *g_dinp = down(e, d_dinp, (size_t)n * ic), *g_dw = down(e, d_dw, (size_t)oc * ic);
        const double e1 = nerr(g_dinp, dinp, (size_t)n * ic), e2 = nerr(g_dw, dw, (size_t)oc * ic);
        printf("  gemm NN then TN on one %dx%d dout%s: normalised error %.2e, %.2e\n", n, oc,
               changed ? ", scaled between" : "", e1, e2);
        CHECK_MSG(e1 <= e->gemm_tol && e2 <= e->gemm_tol, "shared-a products: %.3e, %.3e", e1, e2);
        HFREE(g_dinp, g_dw);
    }
    DFREE(e, d_dout, d_w, d_inp, d_dw, d_dinp);
    HFREE(dout, w, inp, dw, dinp);
}

static void test_gemm_shared_a(env *e) {
    test_gemm_shared_a_sized(e, 256, 192, 128);
}

/* The bf16 GEMM's splits, on small products: with a copy chunk of 4096 values
 * (XDT_GPU_BF16_CHUNK) every product below is split into parts by rows of c (column blocks of a
 * transposed a), with and without a bias, and the copy of a split a is not reused. A bad chunk
 * setting is refused when the device opens. e: the bf16 pass's env. */
static void test_bf16_chunks(env *e, const char *name, const xdt_device_options *o16) {
    xdt_device *small = NULL;
    const xdt_status st = open_with_env(name, o16, "XDT_GPU_BF16_CHUNK", "4096", &small);
    CHECK_MSG(st == XDT_OK, "cannot open %s with XDT_GPU_BF16_CHUNK=4096", name);
    if (st != XDT_OK) return;
    printf("device %s, bf16, copy chunk of 4096 values\n", name);
    env es = *e;
    es.gpu = small;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            /* 64-row parts and 44 left; one part deeper than a chunk; 64-row parts with a bias */
            test_gemm_case(&es, ta, tb, 300, 40, 100, 1.0f, 0.5f, 1);
            test_gemm_case(&es, ta, tb, 5, 7, 3000, 1.0f, 0.0f, 1);
            test_gemm_bias_case(&es, ta, tb, 200, 48, 64, 1.0f, 0);
        }
    test_gemm_case(&es, false, false, 40, 24, 32, 1.0f, 0.0f, 9); /* batch split by matrices */
    test_gemm_shared_a(&es);                                      /* dout split: no reuse */
    e->rng = es.rng;
    xdt_device_destroy(small);
    /* malformed settings are refused with one line each, never read as something else */
    const struct {
        const char *var, *value;
    } malformed[] = {
        {"XDT_GPU_BF16_CHUNK", "12"},                   /* below the least chunk */
        {"XDT_GPU_BF16_CHUNK", " 4096"},                /* not only digits */
        {"XDT_GPU_BF16_CHUNK", "+4096"},                /* ... */
        {"XDT_GPU_BF16_CHUNK", "99999999999999999999"}, /* past 64 bits */
        {"XDT_GPU_BF16_SIDECAR", "off"},                /* switches are 0 or 1 */
        {"XDT_GPU_BLASLT", "no"},
        {"XDT_GPU_FLASH_MMA", "2"},
        {"XDT_CUDA_TF32", "yes"},
        {"XDT_GPU_ATTENTION", "flsh"}, /* flash or explicit */
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        xdt_device *bad = NULL;
        fprintf(stderr, "(an error about %s expected next)\n", malformed[i].var);
        const xdt_status st = open_with_env(name, o16, malformed[i].var, malformed[i].value, &bad);
        CHECK_MSG(st == XDT_ERR_INVALID_ARG, "%s='%s' opened with status %d", malformed[i].var,
                  malformed[i].value, st);
        xdt_device_destroy(bad);
    }
}

#if !defined(XDT_TEST_EMU) || defined(XDT_TEST_EMU_BLAS) /* bf16 copies need a BLAS */
/* workspace_bytes against what the backend allocates for itself: a bf16 GEMM whose copies need
 * more than the workspace's first 16 MiB grows it by exactly the reported bytes (on a GPU,
 * cuBLAS may also allocate its own workspace on a handle's first product: up to 96 MiB more is
 * allowed there). */
static void test_workspace_bytes(env *e, const char *name, const xdt_device_options *o16) {
    xdt_device *dev = NULL;
    if (OPEN_DEVICE(name, o16, &dev) != XDT_OK) {
        CHECK_MSG(0, "cannot open %s in bf16", name);
        return;
    }
    const int m = 4096, n = 8, k = 4096;
    const xdt_gemm_shape shape = {false, false, m, n, k, 1};
    const xdt_op_shapes shapes = {.gemms = &shape, .n_gemms = 1};
    CHECK_MSG(dev->ops->workspace_bytes, "%s has no workspace_bytes", name);
    const size_t want =
        dev->ops->workspace_bytes ? dev->ops->workspace_bytes(dev->ctx, &shapes) : 0;
    float *a = host_rand(e, (size_t)m * k, 1), *b = host_rand(e, (size_t)k * n, 1);
    void *da = NULL, *db = NULL, *dc = NULL;
    CHECK(xdt_device_alloc(dev, (size_t)m * k * 4, &da) == XDT_OK);
    CHECK(xdt_device_alloc(dev, (size_t)k * n * 4, &db) == XDT_OK);
    CHECK(xdt_device_alloc(dev, (size_t)m * n * 4, &dc) == XDT_OK);
    size_t free0 = 0, free1 = 0, total = 0;
    if (da && db && dc && dev->ops->mem_info) {
        dev->ops->copy(dev->ctx, da, a, (size_t)m * k * 4, XDT_COPY_HOST_TO_DEVICE);
        dev->ops->copy(dev->ctx, db, b, (size_t)k * n * 4, XDT_COPY_HOST_TO_DEVICE);
        CHECK(xdt_device_sync(dev) == XDT_OK);
        CHECK(dev->ops->mem_info(dev->ctx, &free0, &total) == XDT_OK);
        dev->ops->gemm(dev->ctx, false, false, m, n, k, 1.0f, da, k, db, n, 0.0f, dc, n);
        CHECK(xdt_device_sync(dev) == XDT_OK);
        CHECK(dev->ops->mem_info(dev->ctx, &free1, &total) == XDT_OK);
        const size_t grew = free0 > free1 ? free0 - free1 : 0;
        printf("  workspace for a bf16 gemm %dx%dx%d: reported %zu bytes, allocated %zu\n", m, n, k,
               want, grew);
        CHECK_MSG(want > ((size_t)16 << 20), "the reported workspace (%zu) is not the copies'",
                  want);
#ifdef XDT_TEST_EMU
        CHECK_MSG(grew == want, "allocated %zu bytes, reported %zu", grew, want);
#else
        CHECK_MSG(grew >= want && grew <= want + ((size_t)96 << 20),
                  "allocated %zu bytes, reported %zu", grew, want);
#endif
        /* a linear layer's backward whose dout (64M values) is twice the copy chunk: copied whole
         * (its workspace is within a sixteenth of the device), reported so, and reused by the
         * second product */
        const xdt_gemm_shape lin[2] = {{false, false, 16384, 1, 4096, 1},
                                       {true, false, 4096, 1, 16384, 1}};
        const xdt_op_shapes lin_shapes = {.gemms = lin, .n_gemms = 2};
        const size_t want2 = dev->ops->workspace_bytes(dev->ctx, &lin_shapes);
        env ew = *e;
        ew.gpu = dev;
        test_gemm_shared_a_sized(&ew, 16384, 4096, 1);
        e->rng = ew.rng;
        size_t free2 = 0;
        CHECK(dev->ops->mem_info(dev->ctx, &free2, &total) == XDT_OK);
        const size_t grew2 = free0 > free2 ? free0 - free2 : 0, whole = (size_t)16384 * 4096 * 2;
        printf("  workspace after a 16384x4096 dout: %zu bytes (reported %zu; its whole copy: "
               "%zu)\n",
               grew2, want2, whole);
        /* the same with rows not a multiple of 64: still whole, one pass (the workspace is grown
         * to its need and a quarter: gpu_device.cu's rule) */
        const xdt_gemm_shape odd = {false, false, 16383, 1, 4096, 1};
        const xdt_op_shapes odd_shapes = {.gemms = &odd, .n_gemms = 1};
        const size_t want3 = dev->ops->workspace_bytes(dev->ctx, &odd_shapes);
        CHECK_MSG(want3 >= (size_t)16383 * 4096 * 2 / 4 * 5,
                  "16383 rows: %zu bytes, not a whole copy", want3);
#ifdef XDT_TEST_EMU /* the first product grew it; the second, a little larger, fit in its room */
        CHECK_MSG(grew2 <= want2, "allocated %zu bytes, more than the reported %zu", grew2, want2);
#endif
        CHECK_MSG(want2 >= whole && grew2 >= whole && grew2 <= want2 + ((size_t)96 << 20),
                  "the workspace holds %zu bytes, not the whole copy of %zu", grew2, whole);
    }
    xdt_device_free(dev, da);
    xdt_device_free(dev, db);
    xdt_device_free(dev, dc);
    HFREE(a, b);
    xdt_device_destroy(dev);
}
#endif

/* The bf16 GEMM mode on both devices: the GPU's GEMMs against the CPU's bf16 GEMMs (the same
 * rounded products, summed in another order: 1e-5 in the tiled kernel; 1e-4 for cuBLAS, whose
 * tensor cores add in their own order and width), and attention, explicit and flash (on tensor
 * cores where the device has them), whose products the GPU rounds and the CPU's fused kernel
 * does not, within bf16's precision. */
static void test_bf16(env *e, const char *name, bool tiled) {
    xdt_device_options o16 = {
        .threads = 2, .gemm_precision = XDT_PRECISION_BF16, .tiled_gemm = tiled};
    xdt_device *cpu16 = NULL, *gpu16 = NULL;
    if (xdt_device_create("cpu", &o16, &cpu16) != XDT_OK ||
        OPEN_DEVICE(name, &o16, &gpu16) != XDT_OK) {
        CHECK_MSG(0, "cannot open cpu and %s with GEMM precision bf16", name);
        xdt_device_destroy(cpu16);
        return;
    }
    printf("device %s, GEMM precision bf16%s, against cpu in bf16\n", name,
           tiled ? " (tiled kernel)" : "");
    test_cpu_bf16_gemm(e, cpu16);
    env e16 = *e;
    e16.gpu = gpu16;
    e16.cpu = cpu16;
#ifdef XDT_TEST_EMU
    e16.gemm_tol = 1e-5;
#else
    e16.gemm_tol = tiled ? 1e-5 : 1e-4;
#endif
#if !defined(XDT_TEST_EMU) || defined(XDT_TEST_EMU_BLAS)
    if (!tiled) e16.cpu_fp32 = e->cpu;
    if (!tiled) test_bf16_live(&e16);
#endif
    test_gemm(&e16);
    test_gemm_bias(&e16);
    if (!tiled) test_gemm_bias_no_lt(&e16, name, &o16);
    test_gemm_shared_a(&e16);
    if (!tiled) test_bf16_chunks(&e16, name, &o16);
#if !defined(XDT_TEST_EMU) || defined(XDT_TEST_EMU_BLAS)
    if (!tiled) test_workspace_bytes(&e16, name, &o16);
#endif
#ifndef XDT_TEST_EMU
    if (!tiled) {
        /* products whose a is larger than cuBLAS's bf16 copy chunk (32M values): split by rows
         * of c (column blocks of a transposed a), at the real chunk size */
        test_gemm_case(&e16, false, false, 40000, 64, 1024, 1.0f, 0.5f, 1);
        test_gemm_case(&e16, true, false, 40000, 64, 1024, 1.0f, 0.5f, 1);
        test_gemm_case(&e16, true, true, 40000, 64, 1024, 0.5f, 0.0f, 1);
    }
#endif
    e16.cpu = e->cpu; /* the CPU's attention is fp32 in every mode */
    e16.cpu_fp32 = NULL;
    e16.attn_tol = 2e-2;
    test_attention(&e16);
    xdt_device_options f16 = o16;
    f16.flash_attention = true;
    xdt_device *flash16 = NULL;
    if (OPEN_DEVICE(name, &f16, &flash16) == XDT_OK) {
        printf("device %s, GEMM precision bf16%s, flash attention, against cpu in fp32\n", name,
               tiled ? " (tiled kernel)" : "");
        e16.gpu = flash16;
        test_attention(&e16);
        test_attention_case(&e16, 2, 70, 128, 2); /* 64 dims, t not a multiple of the tiles */
        test_attention_case(&e16, 1, 33, 18, 3);  /* 6 dims, padded */
        test_attention_case(&e16, 2, 150, 64, 1); /* 64 dims, three key tiles of 64 */
        /* query blocks of 128 wholly past some key tiles: the forward's unmasked path */
        test_attention_case(&e16, 1, 300, 64, 1);
        xdt_device_destroy(flash16);
    } else {
        CHECK_MSG(0, "cannot open %s with bf16 and flash attention", name);
    }
    e->rng = e16.rng;
    xdt_device_destroy(gpu16);
    xdt_device_destroy(cpu16);
}

static int open_gpu(char *name, size_t cap, const xdt_device_options *o, xdt_device **out) {
#ifdef XDT_TEST_EMU
    snprintf(name, cap, "emu:0");
    return OPEN_DEVICE(name, o, out) == XDT_OK ? 0 : -1;
#else
    const char *want = getenv("XDT_TEST_GPU");
    const char *names[] = {want, "cuda:0", "hip:0"};
    for (int i = want && *want ? 0 : 1; i < 3; i++) {
        if (xdt_device_create(names[i], o, out) == XDT_OK) {
            snprintf(name, cap, "%s", names[i]);
            return 0;
        }
        if (i == 0) break; /* an explicit choice is not replaced */
    }
    return -1;
#endif
}

int main(void) {
    env e = {.gemm_tol = TOL, .attn_tol = TOL};
    xdt_rng_seed(&e.rng, 2024, 6);
    xdt_device_options cpu_o = {.threads = 2};
    if (xdt_device_create("cpu", &cpu_o, &e.cpu) != XDT_OK) return 1;
    char name[32];
    xdt_device_options o = {0};
    if (open_gpu(name, sizeof name, &o, &e.gpu) != 0) {
        printf("SKIP: no GPU device could be opened (tried %s; see the errors above): this test "
               "needs a CUDA or HIP build and a GPU\n",
               getenv("XDT_TEST_GPU") && *getenv("XDT_TEST_GPU") ? getenv("XDT_TEST_GPU")
                                                                 : "cuda:0, hip:0");
        xdt_device_destroy(e.cpu);
        return 77;
    }
    printf("device %s against cpu\n", name);
    test_gemm(&e);
    test_gemm_bias(&e);
    test_gemm_bias_no_lt(&e, name, &o);
    test_bias(&e);
    test_layernorm_case(&e, 37, 768, false);
    test_layernorm_case(&e, 64, 67, true);
    test_attention(&e);
    test_elementwise(&e);
    test_embedding(&e);
    test_softmax_xent(&e);
    test_adamw(&e);
    test_reductions(&e);
    test_memory_and_errors(&e);
    test_tf32(&e, name);
    test_flash_attention(&e, name);
    xdt_device_destroy(e.gpu);
    test_bf16(&e, name, false);

    /* the tiled GEMM kernel (HIP without hipBLAS) on the same products and on attention (the
     * 64-lane emulation has no BLAS: there the runs above already used it) */
#if !defined(XDT_TEST_EMU) || defined(XDT_TEST_EMU_BLAS)
    xdt_device_options tiled = {.tiled_gemm = true};
    if (OPEN_DEVICE(name, &tiled, &e.gpu) == XDT_OK) {
        printf("device %s with the tiled GEMM kernel\n", name);
        test_gemm(&e);
        test_gemm_bias(&e);
        test_attention(&e);
        xdt_device_destroy(e.gpu);
        test_bf16(&e, name, true);
    } else {
        CHECK_MSG(0, "cannot open %s with tiled_gemm", name);
    }
#endif
    xdt_device_destroy(e.cpu);
    return test_exit_code("test_device_ops");
}
