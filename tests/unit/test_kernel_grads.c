/* test_kernel_grads.c: every backward kernel against central finite differences of its forward
 * in double precision. The double kernels are the same source as the fp32 backend
 * (cpu_kernels.inc); the fp32 backward must match the differences to fp32 accuracy and the
 * double backward to double accuracy. */
#include <stdint.h>
#include <string.h>

#include "core/gpt_internal.h"
#include "core/rng.h"
#include "devices/cpu/cpu_kernels.h"
#include "tests/unit/test_util.h"

#define H 1e-5 /* finite-difference step */

static xdt_rng rng;

static double *randn(size_t n, double scale) {
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++)
        x[i] = scale * xdt_rng_normal(&rng);
    return x;
}

static float *to_f32(const double *x, size_t n) {
    float *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = (float)x[i];
    return y;
}

static double *to_f64(const float *x, size_t n) {
    double *y = malloc(n * sizeof *y);
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
    return y;
}

/* The scalar whose gradient is checked: sum(out * r). */
static double dot(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Central differences of loss() with respect to every element of x. */
typedef double (*loss_fn)(void *ctx);
static double *finite_diff(double *x, size_t n, loss_fn loss, void *ctx) {
    double *g = malloc(n * sizeof *g);
    for (size_t i = 0; i < n; i++) {
        double keep = x[i];
        x[i] = keep + H;
        double lp = loss(ctx);
        x[i] = keep - H;
        double lm = loss(ctx);
        x[i] = keep;
        g[i] = (lp - lm) / (2 * H);
    }
    return g;
}

static void expect_close(const char *what, const double *got, const double *want, size_t n,
                         double tol) {
    double e = test_norm_err(got, want, n);
    CHECK_MSG(e < tol, "%s: normalised error %.3e >= %.1e", what, e, tol);
}

/* ---- layernorm ---- */
typedef struct ln_case {
    int n, c;
    double *x, *w, *b, *r, *out, *mean, *rstd;
} ln_case;

static double ln_loss(void *p) {
    ln_case *k = p;
    xdt_cpu_layernorm_forward_f64(1, k->out, k->mean, k->rstd, k->x, k->w, k->b, k->n, k->c);
    return dot(k->out, k->r, (size_t)k->n * k->c);
}

static void test_layernorm(void) {
    ln_case k = {.n = 6, .c = 16};
    size_t nc = (size_t)k.n * k.c;
    k.x = randn(nc, 1.0);
    k.w = randn(k.c, 1.0);
    k.b = randn(k.c, 1.0);
    k.r = randn(nc, 1.0);
    k.out = malloc(nc * sizeof(double));
    k.mean = malloc(k.n * sizeof(double));
    k.rstd = malloc(k.n * sizeof(double));
    double *fx = finite_diff(k.x, nc, ln_loss, &k);
    double *fw = finite_diff(k.w, k.c, ln_loss, &k);
    double *fb = finite_diff(k.b, k.c, ln_loss, &k);
    ln_loss(&k);
    /* double backward */
    double *dx = calloc(nc, sizeof(double)), *dw = calloc(k.c, sizeof(double)),
           *db = calloc(k.c, sizeof(double));
    xdt_cpu_layernorm_backward_f64(1, dx, dw, db, k.r, k.x, k.w, k.mean, k.rstd, k.n, k.c, 0);
    expect_close("layernorm f64 dx", dx, fx, nc, 1e-7);
    expect_close("layernorm f64 dw", dw, fw, k.c, 1e-7);
    expect_close("layernorm f64 db", db, fb, k.c, 1e-7);
    /* fp32 forward and backward (2 threads) */
    float *x = to_f32(k.x, nc), *w = to_f32(k.w, k.c), *b = to_f32(k.b, k.c), *r = to_f32(k.r, nc);
    float *out = malloc(nc * 4), *mean = malloc(k.n * 4), *rstd = malloc(k.n * 4);
    float *gx = malloc(nc * 4), *gw = calloc(k.c, 4), *gb = calloc(k.c, 4);
    xdt_cpu_layernorm_forward_f32(2, out, mean, rstd, x, w, b, k.n, k.c);
    for (size_t i = 0; i < nc; i++)
        gx[i] = 1.0f; /* accumulate onto ones */
    xdt_cpu_layernorm_backward_f32(2, gx, gw, gb, r, x, w, mean, rstd, k.n, k.c, 1);
    for (size_t i = 0; i < nc; i++)
        gx[i] -= 1.0f;
    double *gx64 = to_f64(gx, nc), *gw64 = to_f64(gw, k.c), *gb64 = to_f64(gb, k.c);
    double *out64 = to_f64(out, nc);
    expect_close("layernorm f32 forward", out64, k.out, nc, 1e-6);
    expect_close("layernorm f32 dx", gx64, fx, nc, 1e-5);
    expect_close("layernorm f32 dw", gw64, fw, k.c, 1e-5);
    expect_close("layernorm f32 db", gb64, fb, k.c, 1e-5);
    free(k.x);
    free(k.w);
    free(k.b);
    free(k.r);
    free(k.out);
    free(k.mean);
    free(k.rstd);
    free(fx);
    free(fw);
    free(fb);
    free(dx);
    free(dw);
    free(db);
    free(x);
    free(w);
    free(b);
    free(r);
    free(out);
    free(mean);
    free(rstd);
    free(gx);
    free(gw);
    free(gb);
    free(gx64);
    free(gw64);
    free(gb64);
    free(out64);
}

/* ---- attention ---- */
typedef struct attn_case {
    int b, t, c, nh;
    double *qkv, *r, *out, *att;
} attn_case;

static double attn_loss(void *p) {
    attn_case *k = p;
    xdt_cpu_attention_forward_f64(1, k->out, k->att, k->qkv, k->b, k->t, k->c, k->nh);
    return dot(k->out, k->r, (size_t)k->b * k->t * k->c);
}

static void test_attention(void) {
    attn_case k = {.b = 1, .t = 67, .c = 12, .nh = 3}; /* two row blocks of 64 */
    size_t nq = (size_t)k.b * k.t * 3 * k.c, no = (size_t)k.b * k.t * k.c;
    size_t na = (size_t)k.b * k.nh * k.t * k.t;
    k.qkv = randn(nq, 1.0);
    k.r = randn(no, 1.0);
    k.out = malloc(no * sizeof(double));
    k.att = malloc(na * sizeof(double));
    double *fd = finite_diff(k.qkv, nq, attn_loss, &k);
    attn_loss(&k);
    double *dq = malloc(nq * sizeof(double)), *ws = malloc(na * sizeof(double));
    xdt_cpu_attention_backward_f64(1, dq, ws, k.r, k.qkv, k.att, k.b, k.t, k.c, k.nh);
    expect_close("attention f64 dqkv", dq, fd, nq, 1e-7);
    /* causality: the output at position t must not depend on later positions */
    double max_future = 0;
    for (int bi = 0; bi < k.b; bi++)
        for (int i = 0; i < k.t; i++)
            for (int j = i + 1; j < k.t; j++)
                max_future = fmax(
                    max_future, fabs(k.att[((size_t)bi * k.nh) * k.t * k.t + (size_t)i * k.t + j]));
    CHECK(max_future == 0);
    float *qkv = to_f32(k.qkv, nq), *r = to_f32(k.r, no), *out = malloc(no * 4);
    float *att = malloc(na * 4), *g = malloc(nq * 4), *ws32 = malloc(na * 4);
    xdt_cpu_attention_forward_f32(2, out, att, qkv, k.b, k.t, k.c, k.nh);
    xdt_cpu_attention_backward_f32(2, g, ws32, r, qkv, att, k.b, k.t, k.c, k.nh);
    double *g64 = to_f64(g, nq), *out64 = to_f64(out, no);
    expect_close("attention f32 forward", out64, k.out, no, 1e-6);
    expect_close("attention f32 dqkv", g64, fd, nq, 1e-5);
    free(k.qkv);
    free(k.r);
    free(k.out);
    free(k.att);
    free(fd);
    free(dq);
    free(ws);
    free(qkv);
    free(r);
    free(out);
    free(att);
    free(g);
    free(ws32);
    free(g64);
    free(out64);
}

/* ---- GELU ---- */
typedef struct gelu_case {
    size_t n;
    double *x, *r, *out;
} gelu_case;

static double gelu_loss(void *p) {
    gelu_case *k = p;
    xdt_cpu_gelu_forward_f64(1, k->out, k->x, k->n);
    return dot(k->out, k->r, k->n);
}

static void test_gelu(void) {
    gelu_case k = {.n = 200};
    k.x = randn(k.n, 2.0);
    k.r = randn(k.n, 1.0);
    k.out = malloc(k.n * sizeof(double));
    double *fd = finite_diff(k.x, k.n, gelu_loss, &k);
    double *d = malloc(k.n * sizeof(double));
    xdt_cpu_gelu_backward_f64(1, d, k.x, k.r, k.n);
    expect_close("gelu f64", d, fd, k.n, 1e-7);
    float *x = to_f32(k.x, k.n), *r = to_f32(k.r, k.n), *g = malloc(k.n * 4);
    xdt_cpu_gelu_backward_f32(2, g, x, r, k.n);
    double *g64 = to_f64(g, k.n);
    expect_close("gelu f32", g64, fd, k.n, 1e-5);
    /* GELU(0) = 0, GELU(x) ~ x for large x */
    double in[2] = {0.0, 10.0}, o[2];
    xdt_cpu_gelu_forward_f64(1, o, in, 2);
    CHECK(o[0] == 0 && fabs(o[1] - 10.0) < 1e-9);
    free(k.x);
    free(k.r);
    free(k.out);
    free(fd);
    free(d);
    free(x);
    free(r);
    free(g);
    free(g64);
}

/* ---- embedding ---- */
typedef struct emb_case {
    int b, t, c, v;
    int32_t *tok;
    double *wte, *wpe, *r, *out;
} emb_case;

static double emb_loss(void *p) {
    emb_case *k = p;
    xdt_cpu_embedding_forward_f64(1, k->out, k->tok, k->wte, k->wpe, k->b, k->t, k->c);
    return dot(k->out, k->r, (size_t)k->b * k->t * k->c);
}

static void test_embedding(void) {
    emb_case k = {.b = 2, .t = 5, .c = 6, .v = 7};
    size_t n = (size_t)k.b * k.t;
    k.tok = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        k.tok[i] = (int32_t)xdt_rng_below(&rng, 4); /* repeats */
    k.wte = randn((size_t)k.v * k.c, 1.0);
    k.wpe = randn((size_t)k.t * k.c, 1.0);
    k.r = randn(n * k.c, 1.0);
    k.out = malloc(n * k.c * sizeof(double));
    double *fte = finite_diff(k.wte, (size_t)k.v * k.c, emb_loss, &k);
    double *fpe = finite_diff(k.wpe, (size_t)k.t * k.c, emb_loss, &k);
    float *r = to_f32(k.r, n * k.c);
    float *gte = calloc((size_t)k.v * k.c, 4), *gpe = calloc((size_t)k.t * k.c, 4);
    xdt_cpu_embedding_backward_f32(2, gte, gpe, r, k.tok, k.b, k.t, k.c);
    double *gte64 = to_f64(gte, (size_t)k.v * k.c), *gpe64 = to_f64(gpe, (size_t)k.t * k.c);
    expect_close("embedding f32 dwte", gte64, fte, (size_t)k.v * k.c, 1e-6);
    expect_close("embedding f32 dwpe", gpe64, fpe, (size_t)k.t * k.c, 1e-6);
    /* rows of tokens that never occur get no gradient */
    for (int j = 0; j < k.c; j++)
        CHECK(gte[(size_t)6 * k.c + j] == 0);
    free(k.tok);
    free(k.wte);
    free(k.wpe);
    free(k.r);
    free(k.out);
    free(fte);
    free(fpe);
    free(r);
    free(gte);
    free(gpe);
    free(gte64);
    free(gpe64);
}

/* ---- softmax cross-entropy ---- */
typedef struct xent_case {
    int n, v, vp;
    int32_t *y;
    double *logits, *work, *losses;
} xent_case;

static double xent_loss(void *p) {
    xent_case *k = p;
    memcpy(k->work, k->logits, (size_t)k->n * k->vp * sizeof(double));
    xdt_cpu_softmax_xent_f64(1, k->work, k->losses, k->y, k->n, k->v, k->vp, 0, 0);
    double s = 0;
    for (int i = 0; i < k->n; i++)
        s += k->losses[i];
    return s / k->n;
}

static void test_softmax_xent(void) {
    xent_case k = {.n = 5, .v = 9, .vp = 12};
    size_t nl = (size_t)k.n * k.vp;
    k.y = malloc(k.n * sizeof(int32_t));
    for (int i = 0; i < k.n; i++)
        k.y[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)k.v);
    k.logits = randn(nl, 2.0);
    k.work = malloc(nl * sizeof(double));
    k.losses = malloc(k.n * sizeof(double));
    double *fd = finite_diff(k.logits, nl, xent_loss, &k);
    float *l = to_f32(k.logits, nl), *losses = malloc(k.n * 4);
    xdt_cpu_softmax_xent_f32(2, l, losses, k.y, k.n, k.v, k.vp, 1.0f / k.n, 1);
    double *g = to_f64(l, nl);
    expect_close("softmax_xent f32 dlogits", g, fd, nl, 1e-5);
    for (int i = 0; i < k.n; i++)
        for (int j = k.v; j < k.vp; j++)
            CHECK(l[(size_t)i * k.vp + j] == 0);
    /* the loss is -log softmax at the target */
    double mx = -1e300, s = 0;
    for (int j = 0; j < k.v; j++)
        mx = fmax(mx, k.logits[j]);
    for (int j = 0; j < k.v; j++)
        s += exp(k.logits[j] - mx);
    double want = -(k.logits[k.y[0]] - mx - log(s));
    CHECK_MSG(fabs(losses[0] - want) < 1e-5 * fabs(want) + 1e-6, "loss %g want %g", losses[0],
              want);
    free(k.y);
    free(k.logits);
    free(k.work);
    free(k.losses);
    free(fd);
    free(l);
    free(losses);
    free(g);
}

/* ---- linear layer (gemm + bias) as the model runs it ---- */
typedef struct lin_case {
    int n, ic, oc;
    double *x, *w, *b, *r, *out;
} lin_case;

static double lin_loss(void *p) {
    lin_case *k = p;
    xdt_cpu_gemm_f64(1, 0, 1, k->n, k->oc, k->ic, 1.0, k->x, k->ic, k->w, k->ic, 0.0, k->out,
                     k->oc);
    xdt_cpu_bias_add_f64(1, k->out, k->b, k->n, k->oc);
    return dot(k->out, k->r, (size_t)k->n * k->oc);
}

static void test_linear(void) {
    lin_case k = {.n = 6, .ic = 5, .oc = 7};
    k.x = randn((size_t)k.n * k.ic, 1.0);
    k.w = randn((size_t)k.oc * k.ic, 1.0);
    k.b = randn(k.oc, 1.0);
    k.r = randn((size_t)k.n * k.oc, 1.0);
    k.out = malloc((size_t)k.n * k.oc * sizeof(double));
    double *fx = finite_diff(k.x, (size_t)k.n * k.ic, lin_loss, &k);
    double *fw = finite_diff(k.w, (size_t)k.oc * k.ic, lin_loss, &k);
    double *fb = finite_diff(k.b, k.oc, lin_loss, &k);
    xdt_device *dev = NULL;
    xdt_device_options o = {.threads = 2};
    CHECK(xdt_device_create("cpu", &o, &dev) == XDT_OK);
    if (!dev) return;
    float *x = to_f32(k.x, (size_t)k.n * k.ic), *w = to_f32(k.w, (size_t)k.oc * k.ic);
    float *r = to_f32(k.r, (size_t)k.n * k.oc);
    float *dx = malloc((size_t)k.n * k.ic * 4), *dw = calloc((size_t)k.oc * k.ic, 4),
          *db = calloc(k.oc, 4);
    gpt_linear_backward(dev, dx, dw, db, r, x, w, k.n, k.ic, k.oc);
    double *dx64 = to_f64(dx, (size_t)k.n * k.ic), *dw64 = to_f64(dw, (size_t)k.oc * k.ic),
           *db64 = to_f64(db, k.oc);
    expect_close("linear dx", dx64, fx, (size_t)k.n * k.ic, 1e-5);
    expect_close("linear dw", dw64, fw, (size_t)k.oc * k.ic, 1e-5);
    expect_close("linear db", db64, fb, k.oc, 1e-5);
    xdt_device_destroy(dev);
    free(k.x);
    free(k.w);
    free(k.b);
    free(k.r);
    free(k.out);
    free(fx);
    free(fw);
    free(fb);
    free(x);
    free(w);
    free(r);
    free(dx);
    free(dw);
    free(db);
    free(dx64);
    free(dw64);
    free(db64);
}

/* ---- AdamW against the textbook update, written out in double ---- */
static void test_adamw(void) {
    const size_t n = 64;
    double *p = randn(n, 1.0), *g = randn(n, 1.0);
    float *pf = to_f32(p, n), *gf = to_f32(g, n), *m = calloc(n, 4), *v = calloc(n, 4);
    double *pm = calloc(n, 8), *pv = calloc(n, 8), *pp = malloc(n * 8);
    for (size_t i = 0; i < n; i++)
        pp[i] = pf[i];
    const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
    for (int t = 1; t <= 3; t++) {
        xdt_adamw_args a = {(float)lr,
                            (float)b1,
                            (float)b2,
                            (float)eps,
                            (float)wd,
                            (float)gs,
                            (float)(1 - pow(b1, t)),
                            (float)(1 - pow(b2, t))};
        xdt_cpu_adamw_f32(2, pf, gf, m, v, n, &a);
        for (size_t i = 0; i < n; i++) {
            double gi = (double)gf[i] * gs;
            pm[i] = b1 * pm[i] + (1 - b1) * gi;
            pv[i] = b2 * pv[i] + (1 - b2) * gi * gi;
            double mh = pm[i] / (1 - pow(b1, t)), vh = pv[i] / (1 - pow(b2, t));
            pp[i] -= lr * (mh / (sqrt(vh) + eps) + wd * pp[i]);
        }
    }
    double *got = to_f64(pf, n);
    expect_close("adamw parameters", got, pp, n, 1e-5);
    free(p);
    free(g);
    free(pf);
    free(gf);
    free(m);
    free(v);
    free(pm);
    free(pv);
    free(pp);
    free(got);
}

/* Reductions give the same bits for the same thread count and agree across counts. */
static void test_reductions(void) {
    const size_t n = 100003;
    double *x = randn(n, 1.0);
    float *xf = to_f32(x, n);
    double s1 = xdt_cpu_sum_squares_f32(1, xf, n), s2 = xdt_cpu_sum_squares_f32(2, xf, n);
    double s2b = xdt_cpu_sum_squares_f32(2, xf, n);
    double want = 0;
    for (size_t i = 0; i < n; i++)
        want += (double)xf[i] * xf[i];
    CHECK(s2 == s2b);
    CHECK(fabs(s1 - want) < 1e-9 * want && fabs(s2 - want) < 1e-9 * want);
    free(x);
    free(xf);
}

int main(void) {
    xdt_rng_seed(&rng, 1234, 0);
    test_layernorm();
    test_attention();
    test_gelu();
    test_embedding();
    test_softmax_xent();
    test_linear();
    test_adamw();
    test_reductions();
    return test_exit_code("test_kernel_grads");
}
