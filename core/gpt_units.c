/* gpt_units.c: what each pipeline unit holds and costs: parameter tensors, FLOPs, boundary and
 * retained activation bytes. Pure arithmetic on the config; the planner reads these figures. */
#include <math.h>

#include "core/gpt.h"
#include "core/gpt_internal.h"

int xdt_gpt_num_units(const xdt_model_config *cfg) {
    return cfg->n_layer + 2;
}

static const char *const role_names[XDT_P_ROLE_COUNT] = {
    "wte",  "wpe", "ln1w", "ln1b",    "qkvw",    "qkvb", "attprojw", "attprojb", "ln2w",
    "ln2b", "fcw", "fcb",  "fcprojw", "fcprojb", "lnfw", "lnfb",     "lm_head",
};

const char *xdt_param_role_name(xdt_param_role role) {
    return role >= 0 && role < XDT_P_ROLE_COUNT ? role_names[role] : "?";
}

xdt_unit_kind xdt_gpt_unit_kind(const xdt_model_config *cfg, int unit) {
    if (unit == 0) return XDT_UNIT_EMBEDDING;
    if (unit == cfg->n_layer + 1) return XDT_UNIT_HEAD;
    return XDT_UNIT_BLOCK;
}

int xdt_gpt_unit_tensors(const xdt_model_config *cfg, int unit, bool with_lm_head,
                         xdt_param_tensor out[XDT_MAX_UNIT_TENSORS]) {
    const size_t C = (size_t)cfg->n_embd, Vp = (size_t)cfg->padded_vocab_size;
    const size_t maxT = (size_t)cfg->max_seq_len;
    int n = 0;
    size_t off = 0;
#define ADD(role_, layer_, count_, decay_)                                                         \
    do {                                                                                           \
        out[n] = (xdt_param_tensor){(role_), (layer_), off, (count_), (decay_)};                   \
        off += (count_);                                                                           \
        n++;                                                                                       \
    } while (0)
    switch (xdt_gpt_unit_kind(cfg, unit)) {
    case XDT_UNIT_EMBEDDING:
        ADD(XDT_P_WTE, -1, Vp * C, true);
        ADD(XDT_P_WPE, -1, maxT * C, true);
        break;
    case XDT_UNIT_BLOCK: {
        int l = unit - 1;
        ADD(XDT_P_LN1W, l, C, false);
        ADD(XDT_P_LN1B, l, C, false);
        ADD(XDT_P_QKVW, l, 3 * C * C, true);
        ADD(XDT_P_QKVB, l, 3 * C, false);
        ADD(XDT_P_ATTPROJW, l, C * C, true);
        ADD(XDT_P_ATTPROJB, l, C, false);
        ADD(XDT_P_LN2W, l, C, false);
        ADD(XDT_P_LN2B, l, C, false);
        ADD(XDT_P_FCW, l, 4 * C * C, true);
        ADD(XDT_P_FCB, l, 4 * C, false);
        ADD(XDT_P_FCPROJW, l, 4 * C * C, true);
        ADD(XDT_P_FCPROJB, l, C, false);
        break;
    }
    case XDT_UNIT_HEAD:
        ADD(XDT_P_LNFW, -1, C, false);
        ADD(XDT_P_LNFB, -1, C, false);
        if (with_lm_head) ADD(XDT_P_LM_HEAD, -1, Vp * C, true);
        break;
    }
#undef ADD
    return n;
}

size_t xdt_gpt_attention_state_floats(const xdt_model_config *cfg, int b, int t, bool fused) {
    const size_t nh = (size_t)cfg->n_head, c = (size_t)cfg->n_embd;
    if (fused && cfg->n_head > 0 && c / nh <= XDT_FUSED_ATTENTION_HEAD_MAX)
        return (size_t)b * nh * t;
    return (size_t)b * nh * t * t;
}

size_t xdt_gpt_block_retained_floats(const xdt_model_config *cfg, int b, int t) {
    const size_t N = (size_t)b * t, C = (size_t)cfg->n_embd;
    /* ln1, qkv(3), atty, res2, ln2, fch(4), fch_gelu(4), out: 16 x NC; 4 row statistics; the
     * attention probabilities B x NH x T x T */
    return 16 * N * C + 4 * N + xdt_gpt_attention_state_floats(cfg, b, t, false);
}

void xdt_gpt_unit_info(const xdt_model_config *cfg, int unit, int b, int t, xdt_unit_info *out) {
    const double N = (double)b * t, C = cfg->n_embd, Vp = cfg->padded_vocab_size;
    xdt_param_tensor tensors[XDT_MAX_UNIT_TENSORS];
    int n = xdt_gpt_unit_tensors(cfg, unit, false, tensors);
    xdt_unit_info info = {0};
    info.kind = xdt_gpt_unit_kind(cfg, unit);
    info.layer = info.kind == XDT_UNIT_BLOCK ? unit - 1 : -1;
    for (int i = 0; i < n; i++)
        info.params += tensors[i].count;
    const size_t boundary = (size_t)b * t * cfg->n_embd * sizeof(float);
    switch (info.kind) {
    case XDT_UNIT_EMBEDDING:
        info.fwd_flops = N * C;
        info.bwd_flops = 2 * N * C;
        info.boundary_bytes = boundary;
        info.retained_bytes = boundary + (size_t)N * sizeof(int32_t);
        break;
    case XDT_UNIT_BLOCK:
        /* matmuls 24 N C^2 (qkv 6, proj 2, fc 8, fcproj 8); causal attention: scores and their
         * product with V over the (T+1)/2 visible keys on average: 2 N (T+1) C */
        info.fwd_flops = 24 * N * C * C + 2 * N * (t + 1) * C;
        info.bwd_flops = 2 * info.fwd_flops;
        info.boundary_bytes = boundary;
        info.retained_bytes = xdt_gpt_block_retained_floats(cfg, b, t) * sizeof(float);
        break;
    case XDT_UNIT_HEAD:
        info.tied_params = (size_t)Vp * cfg->n_embd;
        info.fwd_flops = 2 * N * C * Vp;
        info.bwd_flops = 4 * N * C * Vp;
        info.boundary_bytes = 0;
        /* lnf, its statistics, logits (turned into their gradient), losses, targets */
        info.retained_bytes =
            (size_t)(N * C + 2 * N + N * Vp + N) * sizeof(float) + (size_t)N * sizeof(int32_t);
        break;
    }
    *out = info;
}
