/* gpt_internal.h: the stage's private layout, shared by gpt_stage.c and the per-unit files
 * (gpt_embedding.c, gpt_block.c, gpt_head.c). Not for use outside core/gpt_*. */
#ifndef XDT_GPT_INTERNAL_H
#define XDT_GPT_INTERNAL_H

#include "core/gpt.h"

#define XDT_MAX_UNIT_TENSORS 12

xdt_unit_kind xdt_gpt_unit_kind(const xdt_model_config *cfg, int unit);
/* Tensors of one unit with offsets relative to the unit's start; returns how many. */
int xdt_gpt_unit_tensors(const xdt_model_config *cfg, int unit, bool with_lm_head,
                         xdt_param_tensor out[XDT_MAX_UNIT_TENSORS]);
size_t xdt_gpt_block_retained_floats(const xdt_model_config *cfg, int b, int t);

/* Pointers to one block's tensors, in the parameter or in the gradient allocation. */
typedef struct gpt_block_weights {
    float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb;
} gpt_block_weights;

/* What one block keeps from forward to backward for one microbatch. */
typedef struct gpt_block_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* (N,C), (N), (N) */
    float *qkv;                       /* (N,3C) */
    float *atty;                      /* (N,C) attention output before projection */
    float *att;  /* attention state: (B,NH,T,T) probabilities, or what the device keeps instead */
    float *res2; /* (N,C) input + attention branch */
    float *ln2, *ln2_mean, *ln2_rstd; /* (N,C), (N), (N) */
    float *fch, *fch_gelu;            /* (N,4C) */
    float *out;                       /* (N,C) res2 + MLP branch */
} gpt_block_acts;

typedef struct gpt_slot {
    int32_t *tokens, *targets;        /* (N) */
    float *input;                     /* (N,C) received activations, stages without the embedding */
    float *emb_out;                   /* (N,C) */
    gpt_block_acts *blocks;           /* one per block in the stage */
    float *lnf, *lnf_mean, *lnf_rstd; /* (N,C), (N), (N) */
    float *logits;                    /* (N,Vp), replaced by their gradient when training */
    float *losses;                    /* (N) */
} gpt_slot;

/* Backward scratch, shared by all units and slots (one backward runs at a time). */
typedef struct gpt_scratch {
    float *g[2];    /* (N,C) gradient ping-pong between units */
    float *dln;     /* (N,C) */
    float *datty;   /* (N,C) */
    float *dqkv;    /* (N,3C) */
    float *d4c;     /* (N,4C) */
    float *attn_ws; /* the attention backward's workspace (B,NH,T,T unless the device keeps less) */
} gpt_scratch;

struct xdt_stage {
    xdt_model_config cfg;
    xdt_device *dev;
    int first_unit, last_unit, b, t, n_slots;
    bool has_embedding, has_head;
    int first_layer, n_blocks;
    size_t att_floats, attn_ws_floats; /* per block: attention state, backward workspace */

    float *params, *grads;
    size_t n_params;
    xdt_param_tensor *tensors;
    int n_tensors;

    float *wte, *wpe, *dwte, *dwpe;     /* embedding */
    gpt_block_weights *bw, *bg;         /* per block: weights, gradients */
    float *lnfw, *lnfb, *dlnfw, *dlnfb; /* head */
    float *lm, *dlm;                    /* head's LM weight: wte itself or its copy */

    void *act_mem, *scratch_mem;
    gpt_slot *slots;
    gpt_scratch s;
    float *grad_input; /* set by backward */
};

/* Per-unit forward and backward (one file each). N = b * t rows. */
void gpt_embedding_forward(xdt_stage *st, gpt_slot *sl);
void gpt_embedding_backward(xdt_stage *st, gpt_slot *sl, const float *dout);
void gpt_block_forward(xdt_stage *st, int i, const float *inp, gpt_block_acts *a);
void gpt_block_backward(xdt_stage *st, int i, const float *inp, gpt_block_acts *a, float *dout,
                        float *dinp);
void gpt_head_forward(xdt_stage *st, gpt_slot *sl, const float *inp, bool want_grad,
                      float dloss_scale);
void gpt_head_backward(xdt_stage *st, gpt_slot *sl, const float *inp, float *dinp);

/* Linear layer helpers over the device: out (N,OC) = inp (N,IC) W^T + bias, W is (OC,IC). */
/* The three GEMMs of one linear layer (forward, input gradient, weight gradient), in the order and
 * shapes gpt_linear_forward and gpt_linear_backward call them; returns 3. */
int gpt_linear_gemm_shapes(int n, int ic, int oc, xdt_gemm_shape out[3]);
void gpt_linear_forward(xdt_device *dev, float *out, const float *inp, const float *w,
                        const float *bias, int n, int ic, int oc);
/* dinp (N,IC) = dout W (overwritten, skipped when NULL); dw += dout^T inp; dbias += colsum. */
void gpt_linear_backward(xdt_device *dev, float *dinp, float *dw, float *dbias, const float *dout,
                         const float *inp, const float *w, int n, int ic, int oc);

#endif
