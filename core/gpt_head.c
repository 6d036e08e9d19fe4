/* gpt_head.c: the last unit: final layernorm, LM head tied to the token embedding, and the
 * cross-entropy loss.
 * forward: inp (N,C) -> lnf = LN(inp) -> logits = lnf wte^T (N,Vp) -> losses (N)
 *          when training, the logits are replaced in place by dloss_scale * (softmax - onehot)
 * backward: dlnf = dlogits wte; dwte += dlogits^T lnf; dinp = LNf'(dlnf) */
#include "core/gpt_internal.h"

void gpt_head_forward(xdt_stage *st, gpt_slot *sl, const float *inp, bool want_grad,
                      float dloss_scale) {
    xdt_device *dev = st->dev;
    const int N = st->b * st->t, C = st->cfg.n_embd, V = st->cfg.vocab_size;
    const int Vp = st->cfg.padded_vocab_size;
    dev->ops->layernorm_forward(dev->ctx, sl->lnf, sl->lnf_mean, sl->lnf_rstd, inp, st->lnfw,
                                st->lnfb, N, C);
    gpt_linear_forward(dev, sl->logits, sl->lnf, st->lm, NULL, N, C, Vp);
    dev->ops->softmax_xent(dev->ctx, sl->logits, sl->losses, sl->targets, N, V, Vp, dloss_scale,
                           want_grad);
}

void gpt_head_backward(xdt_stage *st, gpt_slot *sl, const float *inp, float *dinp) {
    xdt_device *dev = st->dev;
    const int N = st->b * st->t, C = st->cfg.n_embd, Vp = st->cfg.padded_vocab_size;
    gpt_linear_backward(dev, st->s.dln, st->dlm, NULL, sl->logits, sl->lnf, st->lm, N, C, Vp);
    dev->ops->layernorm_backward(dev->ctx, dinp, st->dlnfw, st->dlnfb, st->s.dln, inp, st->lnfw,
                                 sl->lnf_mean, sl->lnf_rstd, N, C, false);
}
