/* gpt_block.c: one pre-LN transformer block.
 * forward, inp (N,C) with N = B*T:
 *   ln1 = LN(inp); qkv = ln1 Wqkv^T + b (N,3C); atty = causal_attention(qkv) (N,C)
 *   res2 = inp + atty Wproj^T + b
 *   ln2 = LN(res2); fch = ln2 Wfc^T + b (N,4C); fch_gelu = GELU(fch)
 *   out = res2 + fch_gelu Wfcproj^T + b
 * backward walks the same steps in reverse; the residual stream's gradient passes straight
 * through both additions. */
#include "core/gpt_internal.h"

void gpt_block_forward(xdt_stage *st, int i, const float *inp, gpt_block_acts *a) {
    xdt_device *dev = st->dev;
    const gpt_block_weights *w = &st->bw[i];
    const int N = st->b * st->t, C = st->cfg.n_embd, NH = st->cfg.n_head;
    const size_t NC = (size_t)N * C;
    dev->ops->layernorm_forward(dev->ctx, a->ln1, a->ln1_mean, a->ln1_rstd, inp, w->ln1w, w->ln1b,
                                N, C);
    gpt_linear_forward(dev, a->qkv, a->ln1, w->qkvw, w->qkvb, N, C, 3 * C);
    /* res2 = inp + (atty Wproj^T + b): the residual copied in first, then accumulated with
     * beta = 1 (each GEMM right after the op that wrote its input: a GPU's bf16 mode hands that
     * op's copy of it on) */
    dev->ops->copy(dev->ctx, a->res2, inp, NC * sizeof(float), XDT_COPY_DEVICE_TO_DEVICE);
    dev->ops->attention_forward(dev->ctx, a->atty, a->att, a->qkv, st->b, st->t, C, NH);
    xdt_device_gemm_bias(dev, false, true, N, C, C, 1.0f, a->atty, C, w->attprojw, C, 1.0f, a->res2,
                         C, w->attprojb);
    dev->ops->layernorm_forward(dev->ctx, a->ln2, a->ln2_mean, a->ln2_rstd, a->res2, w->ln2w,
                                w->ln2b, N, C);
    gpt_linear_forward(dev, a->fch, a->ln2, w->fcw, w->fcb, N, C, 4 * C);
    dev->ops->copy(dev->ctx, a->out, a->res2, NC * sizeof(float), XDT_COPY_DEVICE_TO_DEVICE);
    dev->ops->gelu_forward(dev->ctx, a->fch_gelu, a->fch, 4 * NC);
    xdt_device_gemm_bias(dev, false, true, N, C, 4 * C, 1.0f, a->fch_gelu, 4 * C, w->fcprojw, 4 * C,
                         1.0f, a->out, C, w->fcprojb);
}

/* dout (N,C) is the gradient of the block output; it is modified in place (it becomes the
 * gradient of res2). dinp (N,C) is overwritten with the gradient of the block input. */
void gpt_block_backward(xdt_stage *st, int i, const float *inp, gpt_block_acts *a, float *dout,
                        float *dinp) {
    xdt_device *dev = st->dev;
    const gpt_block_weights *w = &st->bw[i];
    gpt_block_weights *g = &st->bg[i];
    gpt_scratch *s = &st->s;
    const int N = st->b * st->t, C = st->cfg.n_embd, NH = st->cfg.n_head;
    const size_t NC = (size_t)N * C;
    /* MLP branch */
    gpt_linear_backward(dev, s->d4c, g->fcprojw, g->fcprojb, dout, a->fch_gelu, w->fcprojw, N,
                        4 * C, C);
    dev->ops->gelu_backward(dev->ctx, s->d4c, a->fch, s->d4c, 4 * NC);
    gpt_linear_backward(dev, s->dln, g->fcw, g->fcb, s->d4c, a->ln2, w->fcw, N, C, 4 * C);
    /* dres2 = dout + LN2'(dln), accumulated into dout */
    dev->ops->layernorm_backward(dev->ctx, dout, g->ln2w, g->ln2b, s->dln, a->res2, w->ln2w,
                                 a->ln2_mean, a->ln2_rstd, N, C, true);
    /* attention branch */
    gpt_linear_backward(dev, s->datty, g->attprojw, g->attprojb, dout, a->atty, w->attprojw, N, C,
                        C);
    dev->ops->attention_backward(dev->ctx, s->dqkv, s->attn_ws, s->datty, a->qkv, a->att, a->atty,
                                 st->b, st->t, C, NH);
    gpt_linear_backward(dev, s->dln, g->qkvw, g->qkvb, s->dqkv, a->ln1, w->qkvw, N, C, 3 * C);
    /* dinp = dres2 + LN1'(dln) */
    dev->ops->copy(dev->ctx, dinp, dout, NC * sizeof(float), XDT_COPY_DEVICE_TO_DEVICE);
    dev->ops->layernorm_backward(dev->ctx, dinp, g->ln1w, g->ln1b, s->dln, inp, w->ln1w,
                                 a->ln1_mean, a->ln1_rstd, N, C, true);
}
