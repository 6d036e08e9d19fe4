/* gpt_stage.c: building a stage (a contiguous range of units) on a device: parameter table and
 * allocation, activation slots, scratch, initialisation, and the forward/backward drivers that
 * walk the units. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt_internal.h"
#include "core/log.h"
#include "core/rng.h"

/* Hands out 64-byte aligned pieces of one allocation; with base == NULL it only measures. */
typedef struct carver {
    char *base;
    size_t off;
} carver;

static void *take(carver *c, size_t bytes) {
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) / 64 * 64;
    return p;
}

static float *takef(carver *c, size_t n) {
    return take(c, n * sizeof(float));
}

static void layout_slot(const xdt_stage *st, carver *c, gpt_slot *sl) {
    const size_t N = (size_t)st->b * st->t, C = (size_t)st->cfg.n_embd;
    memset(sl, 0, offsetof(gpt_slot, blocks));
    if (st->has_embedding) {
        sl->tokens = take(c, N * sizeof(int32_t));
        sl->emb_out = takef(c, N * C);
    } else {
        sl->input = takef(c, N * C);
    }
    for (int i = 0; i < st->n_blocks; i++) {
        gpt_block_acts *a = &sl->blocks[i];
        a->ln1 = takef(c, N * C);
        a->ln1_mean = takef(c, N);
        a->ln1_rstd = takef(c, N);
        a->qkv = takef(c, 3 * N * C);
        a->atty = takef(c, N * C);
        a->att = takef(c, st->att_floats);
        a->res2 = takef(c, N * C);
        a->ln2 = takef(c, N * C);
        a->ln2_mean = takef(c, N);
        a->ln2_rstd = takef(c, N);
        a->fch = takef(c, 4 * N * C);
        a->fch_gelu = takef(c, 4 * N * C);
        a->out = takef(c, N * C);
    }
    sl->lnf = sl->lnf_mean = sl->lnf_rstd = sl->logits = sl->losses = NULL;
    sl->targets = NULL;
    if (st->has_head) {
        sl->targets = take(c, N * sizeof(int32_t));
        sl->lnf = takef(c, N * C);
        sl->lnf_mean = takef(c, N);
        sl->lnf_rstd = takef(c, N);
        sl->logits = takef(c, N * (size_t)st->cfg.padded_vocab_size);
        sl->losses = takef(c, N);
    }
}

static void layout_scratch(const xdt_stage *st, carver *c, gpt_scratch *s) {
    const size_t N = (size_t)st->b * st->t, C = (size_t)st->cfg.n_embd;
    s->g[0] = takef(c, N * C);
    s->g[1] = takef(c, N * C);
    s->dln = takef(c, N * C);
    s->datty = st->n_blocks ? takef(c, N * C) : NULL;
    s->dqkv = st->n_blocks ? takef(c, 3 * N * C) : NULL;
    s->d4c = st->n_blocks ? takef(c, 4 * N * C) : NULL;
    s->attn_ws = st->n_blocks ? takef(c, st->attn_ws_floats) : NULL;
}

/* Fills the shape fields of a stage (no allocation). */
static void describe(xdt_stage *st, const xdt_model_config *cfg, int first, int last, int b, int t,
                     int n_slots) {
    st->cfg = *cfg;
    st->first_unit = first;
    st->last_unit = last;
    st->b = b;
    st->t = t;
    st->n_slots = n_slots;
    st->has_embedding = first == 0;
    st->has_head = last == cfg->n_layer + 1;
    int lo = first < 1 ? 1 : first, hi = last > cfg->n_layer ? cfg->n_layer : last;
    st->n_blocks = hi >= lo ? hi - lo + 1 : 0;
    st->first_layer = lo - 1;
    /* the probabilities and the backward's workspace, unless the device keeps less
     * (xdt_stage_create asks it; estimates without a device assume this upper bound) */
    st->att_floats = st->attn_ws_floats = xdt_gpt_attention_state_floats(cfg, b, t, false);
}

static size_t count_params(const xdt_stage *st) {
    size_t n = 0;
    xdt_param_tensor t[XDT_MAX_UNIT_TENSORS];
    for (int u = st->first_unit; u <= st->last_unit; u++) {
        int k = xdt_gpt_unit_tensors(&st->cfg, u, !st->has_embedding, t);
        for (int i = 0; i < k; i++)
            n += t[i].count;
    }
    return n;
}

static size_t slot_bytes(xdt_stage *st) {
    gpt_block_acts blocks[1];
    gpt_slot probe = {0};
    carver c = {NULL, 0};
    /* measure with one block, then scale the per-block part */
    int n_blocks = st->n_blocks;
    st->n_blocks = 0;
    probe.blocks = blocks;
    layout_slot(st, &c, &probe);
    size_t base = c.off;
    st->n_blocks = 1;
    c.off = 0;
    layout_slot(st, &c, &probe);
    size_t per_block = c.off - base;
    st->n_blocks = n_blocks;
    return base + per_block * (size_t)n_blocks;
}

/* What the device's backend allocates for itself to run this stage's ops (0 when it says
 * nothing): its answer for the stage's GEMMs (four linear layers a block, the LM head) and
 * row-wise ops. */
static size_t device_workspace(const xdt_stage *st, xdt_device *dev) {
    if (!dev || !dev->ops->workspace_bytes) return 0;
    const int N = st->b * st->t, C = st->cfg.n_embd, Vp = st->cfg.padded_vocab_size;
    xdt_gemm_shape gemms[15];
    int n = 0;
    if (st->n_blocks > 0) {
        n += gpt_linear_gemm_shapes(N, C, 3 * C, gemms + n); /* qkv */
        n += gpt_linear_gemm_shapes(N, C, C, gemms + n);     /* attention projection */
        n += gpt_linear_gemm_shapes(N, C, 4 * C, gemms + n); /* fc */
        n += gpt_linear_gemm_shapes(N, 4 * C, C, gemms + n); /* fc projection */
    }
    if (st->has_head) n += gpt_linear_gemm_shapes(N, C, Vp, gemms + n);
    const xdt_op_shapes shapes = {
        .gemms = gemms,
        .n_gemms = n,
        .rows = N,
        .widest_row = st->n_blocks > 0 ? 4 * C : C,
        .att_b = st->n_blocks > 0 ? st->b : 0,
        .att_t = st->t,
        .att_c = C,
        .att_nh = st->cfg.n_head,
    };
    return dev->ops->workspace_bytes(dev->ctx, &shapes);
}

void xdt_stage_memory_estimate(const xdt_model_config *cfg, xdt_device *dev, int first_unit,
                               int last_unit, int b, int t, int n_slots, xdt_stage_memory *out) {
    xdt_stage st = {0};
    describe(&st, cfg, first_unit, last_unit, b, t, n_slots);
    if (dev)
        xdt_device_attention_sizes(dev, b, t, cfg->n_embd, cfg->n_head, &st.att_floats,
                                   &st.attn_ws_floats);
    size_t p = count_params(&st) * sizeof(float);
    carver c = {NULL, 0};
    gpt_scratch s;
    layout_scratch(&st, &c, &s);
    out->params_bytes = p;
    out->grads_bytes = p;
    out->optimizer_bytes = 2 * p;
    out->activation_bytes = slot_bytes(&st) * (size_t)n_slots;
    out->scratch_bytes = c.off;
    out->device_workspace_bytes = device_workspace(&st, dev);
}

double xdt_stage_memory_total(const xdt_stage_memory *m, bool training) {
    return (double)m->params_bytes + m->grads_bytes + m->activation_bytes + m->scratch_bytes +
           m->device_workspace_bytes + (training ? m->optimizer_bytes : 0);
}

xdt_status xdt_stage_create(const xdt_model_config *cfg, xdt_device *dev, int first_unit,
                            int last_unit, int b, int t, int n_slots, xdt_stage **out) {
    const int n_units = xdt_gpt_num_units(cfg);
    if (first_unit < 0 || last_unit >= n_units || first_unit > last_unit)
        return xdt_fail(XDT_ERR_INVALID_ARG, "stage: unit range [%d, %d] outside [0, %d]",
                        first_unit, last_unit, n_units - 1);
    if (b < 1 || t < 1 || n_slots < 1)
        return xdt_fail(XDT_ERR_INVALID_ARG, "stage: batch %d, sequence %d, slots %d must be >= 1",
                        b, t, n_slots);
    if (t > cfg->max_seq_len)
        return xdt_fail(XDT_ERR_CONFIG, "--seq %d exceeds the model's max_seq_len %d", t,
                        cfg->max_seq_len);
    if ((double)b * t *
            (cfg->padded_vocab_size > 4 * cfg->n_embd ? cfg->padded_vocab_size : 4 * cfg->n_embd) >
        (double)INT32_MAX)
        return xdt_fail(XDT_ERR_CONFIG, "batch %d x seq %d is too large for 32-bit indexing", b, t);
    xdt_stage *st = calloc(1, sizeof *st);
    if (!st) return xdt_fail(XDT_ERR_NO_MEMORY, "stage: out of memory");
    describe(st, cfg, first_unit, last_unit, b, t, n_slots);
    xdt_device_attention_sizes(dev, b, t, cfg->n_embd, cfg->n_head, &st->att_floats,
                               &st->attn_ws_floats);
    st->dev = dev;
    xdt_status status = XDT_ERR_NO_MEMORY;

    /* parameter table: units in order, offsets made absolute */
    st->tensors =
        calloc((size_t)(last_unit - first_unit + 1) * XDT_MAX_UNIT_TENSORS, sizeof *st->tensors);
    st->bw = calloc((size_t)(st->n_blocks ? st->n_blocks : 1), sizeof *st->bw);
    st->bg = calloc((size_t)(st->n_blocks ? st->n_blocks : 1), sizeof *st->bg);
    st->slots = calloc((size_t)n_slots, sizeof *st->slots);
    if (!st->tensors || !st->bw || !st->bg || !st->slots) goto err;
    for (int s = 0; s < n_slots; s++) {
        st->slots[s].blocks =
            calloc((size_t)(st->n_blocks ? st->n_blocks : 1), sizeof(gpt_block_acts));
        if (!st->slots[s].blocks) goto err;
    }
    size_t off = 0;
    for (int u = first_unit; u <= last_unit; u++) {
        xdt_param_tensor tt[XDT_MAX_UNIT_TENSORS];
        int k = xdt_gpt_unit_tensors(cfg, u, !st->has_embedding, tt);
        for (int i = 0; i < k; i++) {
            tt[i].offset += off;
            st->tensors[st->n_tensors++] = tt[i];
        }
        off = tt[k - 1].offset + tt[k - 1].count;
    }
    st->n_params = off;

    if ((status = xdt_device_alloc(dev, off * sizeof(float), (void **)&st->params)) ||
        (status = xdt_device_alloc(dev, off * sizeof(float), (void **)&st->grads)))
        goto err;
    dev->ops->memset(dev->ctx, st->params, 0, off * sizeof(float));
    dev->ops->memset(dev->ctx, st->grads, 0, off * sizeof(float));

    /* name every tensor's pointer, in parameters and gradients */
    for (int i = 0; i < st->n_tensors; i++) {
        const xdt_param_tensor *pt = &st->tensors[i];
        float *p = st->params + pt->offset, *g = st->grads + pt->offset;
        gpt_block_weights *w = pt->layer >= 0 ? &st->bw[pt->layer - st->first_layer] : NULL;
        gpt_block_weights *wg = pt->layer >= 0 ? &st->bg[pt->layer - st->first_layer] : NULL;
        switch (pt->role) {
        case XDT_P_WTE:
            st->wte = p;
            st->dwte = g;
            break;
        case XDT_P_WPE:
            st->wpe = p;
            st->dwpe = g;
            break;
        case XDT_P_LN1W:
            w->ln1w = p;
            wg->ln1w = g;
            break;
        case XDT_P_LN1B:
            w->ln1b = p;
            wg->ln1b = g;
            break;
        case XDT_P_QKVW:
            w->qkvw = p;
            wg->qkvw = g;
            break;
        case XDT_P_QKVB:
            w->qkvb = p;
            wg->qkvb = g;
            break;
        case XDT_P_ATTPROJW:
            w->attprojw = p;
            wg->attprojw = g;
            break;
        case XDT_P_ATTPROJB:
            w->attprojb = p;
            wg->attprojb = g;
            break;
        case XDT_P_LN2W:
            w->ln2w = p;
            wg->ln2w = g;
            break;
        case XDT_P_LN2B:
            w->ln2b = p;
            wg->ln2b = g;
            break;
        case XDT_P_FCW:
            w->fcw = p;
            wg->fcw = g;
            break;
        case XDT_P_FCB:
            w->fcb = p;
            wg->fcb = g;
            break;
        case XDT_P_FCPROJW:
            w->fcprojw = p;
            wg->fcprojw = g;
            break;
        case XDT_P_FCPROJB:
            w->fcprojb = p;
            wg->fcprojb = g;
            break;
        case XDT_P_LNFW:
            st->lnfw = p;
            st->dlnfw = g;
            break;
        case XDT_P_LNFB:
            st->lnfb = p;
            st->dlnfb = g;
            break;
        case XDT_P_LM_HEAD:
            st->lm = p;
            st->dlm = g;
            break;
        case XDT_P_ROLE_COUNT:
            break;
        }
    }
    if (st->has_head && st->has_embedding) {
        st->lm = st->wte; /* tied: the LM head is the token embedding itself */
        st->dlm = st->dwte;
    }

    /* activations: all slots in one allocation */
    size_t per_slot = slot_bytes(st);
    if ((status = xdt_device_alloc(dev, per_slot * (size_t)n_slots, &st->act_mem))) goto err;
    for (int s = 0; s < n_slots; s++) {
        carver c = {(char *)st->act_mem + per_slot * (size_t)s, 0};
        layout_slot(st, &c, &st->slots[s]);
    }
    carver m = {NULL, 0};
    layout_scratch(st, &m, &st->s);
    if ((status = xdt_device_alloc(dev, m.off, &st->scratch_mem))) goto err;
    carver sc = {st->scratch_mem, 0};
    layout_scratch(st, &sc, &st->s);
    *out = st;
    return XDT_OK;
err:
    if (status == XDT_ERR_NO_MEMORY && !st->params)
        xdt_log_error("stage: out of host memory for its tables");
    xdt_stage_destroy(st);
    return status;
}

void xdt_stage_destroy(xdt_stage *st) {
    if (!st) return;
    if (st->dev) {
        xdt_device_free(st->dev, st->params);
        xdt_device_free(st->dev, st->grads);
        xdt_device_free(st->dev, st->act_mem);
        xdt_device_free(st->dev, st->scratch_mem);
    }
    if (st->slots)
        for (int s = 0; s < st->n_slots; s++)
            free(st->slots[s].blocks);
    free(st->slots);
    free(st->tensors);
    free(st->bw);
    free(st->bg);
    free(st);
}

/* A stable stream id per tensor, independent of how the model is split into stages. The head's
 * copy of wte uses wte's stream so the two start equal. */
static uint64_t init_stream(const xdt_param_tensor *pt) {
    xdt_param_role role = pt->role == XDT_P_LM_HEAD ? XDT_P_WTE : pt->role;
    return (uint64_t)(pt->layer + 1) * XDT_P_ROLE_COUNT + (uint64_t)role;
}

xdt_status xdt_stage_init_params(xdt_stage *st, uint64_t seed) {
    size_t max_count = 0;
    for (int i = 0; i < st->n_tensors; i++)
        if (st->tensors[i].count > max_count) max_count = st->tensors[i].count;
    float *host = malloc(max_count * sizeof(float));
    if (!host) return xdt_fail(XDT_ERR_NO_MEMORY, "init: out of host memory");
    const double residual_std = 0.02 / sqrt(2.0 * st->cfg.n_layer);
    for (int i = 0; i < st->n_tensors; i++) {
        const xdt_param_tensor *pt = &st->tensors[i];
        xdt_rng rng;
        xdt_rng_seed(&rng, seed, init_stream(pt));
        double std = 0, fill = 0;
        switch (pt->role) {
        case XDT_P_LN1W:
        case XDT_P_LN2W:
        case XDT_P_LNFW:
            fill = 1;
            break;
        case XDT_P_ATTPROJW:
        case XDT_P_FCPROJW:
            std = residual_std;
            break;
        case XDT_P_WTE:
        case XDT_P_WPE:
        case XDT_P_QKVW:
        case XDT_P_FCW:
        case XDT_P_LM_HEAD:
            std = 0.02;
            break;
        default:
            break; /* biases */
        }
        for (size_t j = 0; j < pt->count; j++)
            host[j] = std > 0 ? (float)(std * xdt_rng_normal(&rng)) : (float)fill;
        st->dev->ops->copy(st->dev->ctx, st->params + pt->offset, host, pt->count * sizeof(float),
                           XDT_COPY_HOST_TO_DEVICE);
    }
    free(host);
    return xdt_device_sync(st->dev);
}

void xdt_stage_unit_range(const xdt_stage *st, int *first, int *last) {
    *first = st->first_unit;
    *last = st->last_unit;
}

void xdt_stage_batch_shape(const xdt_stage *st, int *b, int *t) {
    *b = st->b;
    *t = st->t;
}

bool xdt_stage_has_embedding(const xdt_stage *st) {
    return st->has_embedding;
}
bool xdt_stage_has_head(const xdt_stage *st) {
    return st->has_head;
}
const xdt_model_config *xdt_stage_config(const xdt_stage *st) {
    return &st->cfg;
}
xdt_device *xdt_stage_device(const xdt_stage *st) {
    return st->dev;
}
float *xdt_stage_params(xdt_stage *st) {
    return st->params;
}
float *xdt_stage_grads(xdt_stage *st) {
    return st->grads;
}
size_t xdt_stage_num_params(const xdt_stage *st) {
    return st->n_params;
}

const xdt_param_tensor *xdt_stage_tensors(const xdt_stage *st, int *count) {
    *count = st->n_tensors;
    return st->tensors;
}

int32_t *xdt_stage_tokens(xdt_stage *st, int slot) {
    return st->slots[slot].tokens;
}
int32_t *xdt_stage_targets(xdt_stage *st, int slot) {
    return st->slots[slot].targets;
}
float *xdt_stage_input(xdt_stage *st, int slot) {
    return st->slots[slot].input;
}
float *xdt_stage_grad_output(xdt_stage *st) {
    return st->s.g[0];
}
const float *xdt_stage_grad_input(xdt_stage *st) {
    return st->grad_input;
}

const float *xdt_stage_output(xdt_stage *st, int slot) {
    gpt_slot *sl = &st->slots[slot];
    return st->n_blocks ? sl->blocks[st->n_blocks - 1].out : sl->emb_out;
}

/* The activations entering block i (or the head when i == n_blocks). */
static const float *block_input(xdt_stage *st, gpt_slot *sl, int i) {
    if (i > 0) return sl->blocks[i - 1].out;
    return st->has_embedding ? sl->emb_out : sl->input;
}

xdt_status xdt_stage_forward(xdt_stage *st, int slot, bool want_grad, float dloss_scale) {
    if (slot < 0 || slot >= st->n_slots)
        return xdt_fail(XDT_ERR_INVALID_ARG, "stage forward: slot %d outside [0, %d)", slot,
                        st->n_slots);
    gpt_slot *sl = &st->slots[slot];
    if (st->has_embedding) gpt_embedding_forward(st, sl);
    for (int i = 0; i < st->n_blocks; i++)
        gpt_block_forward(st, i, block_input(st, sl, i), &sl->blocks[i]);
    if (st->has_head)
        gpt_head_forward(st, sl, block_input(st, sl, st->n_blocks), want_grad, dloss_scale);
    return xdt_device_sync(st->dev);
}

xdt_status xdt_stage_loss(xdt_stage *st, int slot, double *mean_loss) {
    if (!st->has_head) return xdt_fail(XDT_ERR_INVALID_ARG, "stage loss: this stage has no head");
    const size_t n = (size_t)st->b * st->t;
    double sum = 0;
    xdt_status status = st->dev->ops->sum(st->dev->ctx, st->slots[slot].losses, n, &sum);
    if (status != XDT_OK) return xdt_fail(status, "device %s: loss reduction", st->dev->name);
    *mean_loss = sum / (double)n;
    return XDT_OK;
}

xdt_status xdt_stage_backward(xdt_stage *st, int slot) {
    if (slot < 0 || slot >= st->n_slots)
        return xdt_fail(XDT_ERR_INVALID_ARG, "stage backward: slot %d outside [0, %d)", slot,
                        st->n_slots);
    gpt_slot *sl = &st->slots[slot];
    int cur = 0; /* g[cur] holds the gradient of the current unit's output */
    if (st->has_head) gpt_head_backward(st, sl, block_input(st, sl, st->n_blocks), st->s.g[0]);
    for (int i = st->n_blocks - 1; i >= 0; i--) {
        gpt_block_backward(st, i, block_input(st, sl, i), &sl->blocks[i], st->s.g[cur],
                           st->s.g[1 - cur]);
        cur = 1 - cur;
    }
    if (st->has_embedding) gpt_embedding_backward(st, sl, st->s.g[cur]);
    st->grad_input = st->s.g[cur];
    return xdt_device_sync(st->dev);
}

void xdt_stage_zero_grads(xdt_stage *st) {
    st->dev->ops->memset(st->dev->ctx, st->grads, 0, st->n_params * sizeof(float));
}
