/* test_model_grads.c: the whole GPT model (gpt-tiny) against finite differences of a double
 * precision forward composed from the double kernels; and a model cut into two stages against
 * the whole model (same losses, same gradients, the tied embedding's two halves summed). */
#include <string.h>

#include "core/gpt_internal.h"
#include "core/model_config.h"
#include "core/rng.h"
#include "devices/cpu/cpu_kernels.h"
#include "tests/unit/test_util.h"

#define B 2
#define T 12
#define H 1e-5

typedef struct model_case {
    xdt_model_config cfg;
    const xdt_param_tensor *tensors;
    int n_tensors;
    double *p; /* parameters in the stage's layout */
    int32_t tok[B * T], tgt[B * T];
} model_case;

static const double *tensor64(const model_case *m, xdt_param_role role, int layer) {
    for (int i = 0; i < m->n_tensors; i++)
        if (m->tensors[i].role == role && m->tensors[i].layer == layer)
            return m->p + m->tensors[i].offset;
    return NULL;
}

static void linear64(double *out, const double *x, const double *w, const double *b, int n, int ic,
                     int oc) {
    xdt_cpu_gemm_f64(1, 0, 1, n, oc, ic, 1.0, x, ic, w, ic, 0.0, out, oc);
    if (b) xdt_cpu_bias_add_f64(1, out, b, n, oc);
}

/* The model's forward in double: mean cross-entropy. */
static double ref_loss(void *arg) {
    const model_case *m = arg;
    const int N = B * T, C = m->cfg.n_embd, NH = m->cfg.n_head, Vp = m->cfg.padded_vocab_size;
    double *x = malloc(sizeof(double) * N * C), *ln = malloc(sizeof(double) * N * C);
    double *mean = malloc(sizeof(double) * N), *rstd = malloc(sizeof(double) * N);
    double *qkv = malloc(sizeof(double) * N * 3 * C), *y = malloc(sizeof(double) * N * C);
    double *att = malloc(sizeof(double) * B * NH * T * T), *tmp = malloc(sizeof(double) * N * C);
    double *h = malloc(sizeof(double) * N * 4 * C), *hg = malloc(sizeof(double) * N * 4 * C);
    double *logits = malloc(sizeof(double) * N * Vp), *losses = malloc(sizeof(double) * N);
    const double *wte = tensor64(m, XDT_P_WTE, -1);
    xdt_cpu_embedding_forward_f64(1, x, m->tok, wte, tensor64(m, XDT_P_WPE, -1), B, T, C);
    for (int l = 0; l < m->cfg.n_layer; l++) {
        xdt_cpu_layernorm_forward_f64(1, ln, mean, rstd, x, tensor64(m, XDT_P_LN1W, l),
                                      tensor64(m, XDT_P_LN1B, l), N, C);
        linear64(qkv, ln, tensor64(m, XDT_P_QKVW, l), tensor64(m, XDT_P_QKVB, l), N, C, 3 * C);
        xdt_cpu_attention_forward_f64(1, y, att, qkv, B, T, C, NH);
        linear64(tmp, y, tensor64(m, XDT_P_ATTPROJW, l), tensor64(m, XDT_P_ATTPROJB, l), N, C, C);
        xdt_cpu_add_f64(1, x, x, tmp, (size_t)N * C);
        xdt_cpu_layernorm_forward_f64(1, ln, mean, rstd, x, tensor64(m, XDT_P_LN2W, l),
                                      tensor64(m, XDT_P_LN2B, l), N, C);
        linear64(h, ln, tensor64(m, XDT_P_FCW, l), tensor64(m, XDT_P_FCB, l), N, C, 4 * C);
        xdt_cpu_gelu_forward_f64(1, hg, h, (size_t)N * 4 * C);
        linear64(tmp, hg, tensor64(m, XDT_P_FCPROJW, l), tensor64(m, XDT_P_FCPROJB, l), N, 4 * C,
                 C);
        xdt_cpu_add_f64(1, x, x, tmp, (size_t)N * C);
    }
    xdt_cpu_layernorm_forward_f64(1, ln, mean, rstd, x, tensor64(m, XDT_P_LNFW, -1),
                                  tensor64(m, XDT_P_LNFB, -1), N, C);
    linear64(logits, ln, wte, NULL, N, C, Vp);
    xdt_cpu_softmax_xent_f64(1, logits, losses, m->tgt, N, m->cfg.vocab_size, Vp, 0, 0);
    double loss = 0;
    for (int i = 0; i < N; i++)
        loss += losses[i];
    free(x);
    free(ln);
    free(mean);
    free(rstd);
    free(qkv);
    free(y);
    free(att);
    free(tmp);
    free(h);
    free(hg);
    free(logits);
    free(losses);
    return loss / N;
}

static xdt_stage *build(const xdt_model_config *cfg, xdt_device *dev, int first, int last) {
    xdt_stage *s = NULL;
    CHECK(xdt_stage_create(cfg, dev, first, last, B, T, 2, &s) == XDT_OK);
    return s;
}

/* Copies every tensor of `from` that `to` also holds (the LM head copy takes wte). */
static void copy_params(xdt_stage *to, xdt_stage *from) {
    int nt, nf;
    const xdt_param_tensor *tt = xdt_stage_tensors(to, &nt), *tf = xdt_stage_tensors(from, &nf);
    for (int i = 0; i < nt; i++) {
        xdt_param_role want = tt[i].role == XDT_P_LM_HEAD ? XDT_P_WTE : tt[i].role;
        for (int j = 0; j < nf; j++)
            if (tf[j].role == want && tf[j].layer == tt[i].layer)
                memcpy(xdt_stage_params(to) + tt[i].offset, xdt_stage_params(from) + tf[j].offset,
                       tt[i].count * sizeof(float));
    }
}

static const float *grad_of(xdt_stage *s, xdt_param_role role, int layer, size_t *count) {
    int n;
    const xdt_param_tensor *t = xdt_stage_tensors(s, &n);
    for (int i = 0; i < n; i++)
        if (t[i].role == role && t[i].layer == layer) {
            *count = t[i].count;
            return xdt_stage_grads(s) + t[i].offset;
        }
    return NULL;
}

static void run_step(xdt_stage *s, const int32_t *tok, const int32_t *tgt, int slot, double *loss) {
    if (xdt_stage_has_embedding(s)) memcpy(xdt_stage_tokens(s, slot), tok, sizeof(int32_t) * B * T);
    if (xdt_stage_has_head(s)) memcpy(xdt_stage_targets(s, slot), tgt, sizeof(int32_t) * B * T);
    CHECK(xdt_stage_forward(s, slot, true, 1.0f / (B * T)) == XDT_OK);
    if (loss) CHECK(xdt_stage_loss(s, slot, loss) == XDT_OK);
}

int main(void) {
    const char *root = getenv("XDT_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/models/gpt-tiny.yaml", root ? root : ".");
    model_case m = {0};
    if (xdt_model_config_load(path, &m.cfg) != XDT_OK) return 1;
    xdt_device *dev = NULL;
    xdt_device_options o = {.threads = 2};
    if (xdt_device_create("cpu", &o, &dev) != XDT_OK) return 1;
    const int L = m.cfg.n_layer;
    xdt_stage *whole = build(&m.cfg, dev, 0, L + 1);
    if (!whole) return 1;
    CHECK(xdt_stage_init_params(whole, 7) == XDT_OK);
    /* perturb every parameter so biases and LN are not at their trivial init */
    xdt_rng rng;
    xdt_rng_seed(&rng, 99, 1);
    size_t np = xdt_stage_num_params(whole);
    float *pw = xdt_stage_params(whole);
    for (size_t i = 0; i < np; i++)
        pw[i] += (float)(0.05 * xdt_rng_normal(&rng));
    for (int i = 0; i < B * T; i++) {
        m.tok[i] = (int32_t)xdt_rng_below(&rng, 40); /* repeats exercise the scatter-add */
        m.tgt[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)m.cfg.vocab_size);
    }
    m.tensors = xdt_stage_tensors(whole, &m.n_tensors);
    m.p = malloc(np * sizeof(double));
    for (size_t i = 0; i < np; i++)
        m.p[i] = pw[i];

    /* fp32 model: loss and gradients */
    double loss32 = 0;
    xdt_stage_zero_grads(whole);
    run_step(whole, m.tok, m.tgt, 1, &loss32);
    CHECK(xdt_stage_backward(whole, 1) == XDT_OK);
    double loss64 = ref_loss(&m);
    CHECK_MSG(fabs(loss32 - loss64) < 1e-5 * loss64, "loss fp32 %.9g vs double %.9g", loss32,
              loss64);

    /* finite differences on a sample of every tensor */
    const float *g = xdt_stage_grads(whole);
    double worst = 0;
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const xdt_param_tensor *t = &m.tensors[ti];
        enum { SAMPLES = 24 };
        double got[SAMPLES], want[SAMPLES];
        int k = 0;
        for (; k < SAMPLES && (size_t)k < t->count; k++) {
            size_t idx = t->offset + (size_t)xdt_rng_below(&rng, t->count);
            if (t->role == XDT_P_WTE && k % 2 == 0) /* rows of tokens in the batch */
                idx = t->offset + (size_t)m.tok[k % (B * T)] * m.cfg.n_embd +
                      (size_t)xdt_rng_below(&rng, (uint64_t)m.cfg.n_embd);
            double keep = m.p[idx];
            m.p[idx] = keep + H;
            double lp = ref_loss(&m);
            m.p[idx] = keep - H;
            double lm = ref_loss(&m);
            m.p[idx] = keep;
            want[k] = (lp - lm) / (2 * H);
            got[k] = g[idx];
        }
        double e = test_norm_err(got, want, (size_t)k);
        worst = fmax(worst, e);
        CHECK_MSG(e < 1e-4, "tensor %s layer %d: normalised gradient error %.3e",
                  xdt_param_role_name(t->role), t->layer, e);
    }
    printf("model gradient: worst normalised error %.3e over %d tensors\n", worst, m.n_tensors);

    /* two stages: units [0, 1] and [2, L+1], activations and gradients handed across */
    xdt_stage *s0 = build(&m.cfg, dev, 0, 1), *s1 = build(&m.cfg, dev, 2, L + 1);
    if (!s0 || !s1) return 1;
    copy_params(s0, whole);
    copy_params(s1, whole);
    xdt_stage_zero_grads(s0);
    xdt_stage_zero_grads(s1);
    const size_t nc = (size_t)B * T * m.cfg.n_embd;
    run_step(s0, m.tok, m.tgt, 0, NULL);
    memcpy(xdt_stage_input(s1, 1), xdt_stage_output(s0, 0), nc * sizeof(float));
    double loss_split = 0;
    run_step(s1, m.tok, m.tgt, 1, &loss_split);
    CHECK_MSG(loss_split == loss32, "split loss %.17g vs whole %.17g", loss_split, loss32);
    CHECK(xdt_stage_backward(s1, 1) == XDT_OK);
    memcpy(xdt_stage_grad_output(s0), xdt_stage_grad_input(s1), nc * sizeof(float));
    CHECK(xdt_stage_backward(s0, 0) == XDT_OK);
    for (int ti = 0; ti < m.n_tensors; ti++) {
        const xdt_param_tensor *t = &m.tensors[ti];
        size_t n0 = 0, n1 = 0;
        const float *a = grad_of(s0, t->role, t->layer, &n0);
        const float *b = grad_of(s1, t->role, t->layer, &n1);
        const float *lm = t->role == XDT_P_WTE ? grad_of(s1, XDT_P_LM_HEAD, -1, &n1) : NULL;
        const float *want = g + t->offset;
        double err = 0, scale = 0;
        for (size_t i = 0; i < t->count; i++) {
            double v = (a ? a[i] : 0) + (b ? b[i] : 0) + (lm ? lm[i] : 0);
            err = fmax(err, fabs(v - want[i]));
            scale = fmax(scale, fabs(want[i]));
        }
        CHECK_MSG(err <= 1e-6 * scale, "split gradient %s layer %d differs by %.3e (scale %.3e)",
                  xdt_param_role_name(t->role), t->layer, err, scale);
    }
    xdt_stage_destroy(s0);
    xdt_stage_destroy(s1);
    xdt_stage_destroy(whole);
    xdt_device_destroy(dev);
    free(m.p);
    return test_exit_code("test_model_grads");
}
