/* gpt_embedding.c: unit 0, token + position embedding.
 * forward: tokens (B,T) -> out (B,T,C) = wte[token] + wpe[t]
 * backward: dwte[token] += dout, dwpe[t] += dout */
#include "core/gpt_internal.h"

void gpt_embedding_forward(xdt_stage *st, gpt_slot *sl) {
    xdt_device *dev = st->dev;
    dev->ops->embedding_forward(dev->ctx, sl->emb_out, sl->tokens, st->wte, st->wpe, st->b, st->t,
                                st->cfg.n_embd);
}

void gpt_embedding_backward(xdt_stage *st, gpt_slot *sl, const float *dout) {
    xdt_device *dev = st->dev;
    dev->ops->embedding_backward(dev->ctx, st->dwte, st->dwpe, dout, sl->tokens, st->b, st->t,
                                 st->cfg.n_embd);
}
