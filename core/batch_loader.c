/* batch_loader.c: train/validation splits and deterministic batch order. */
#include "core/batch_loader.h"

#include <math.h>

#include "core/log.h"

void xdt_token_window(const xdt_token_data *d, size_t start, int b, int t, int32_t *inputs,
                      int32_t *targets) {
    const size_t n = (size_t)b * t;
    const uint16_t *src = d->tokens + start;
    for (size_t i = 0; i < n; i++) {
        inputs[i] = src[i];
        targets[i] = src[i + 1];
    }
}

int xdt_token_windows(const xdt_token_data *d, int b, int t) {
    const size_t bt = (size_t)b * t;
    return d->n < bt + 1 ? 0 : (int)((d->n - 1) / bt);
}

xdt_status xdt_batch_loader_init(xdt_batch_loader *l, const xdt_token_data *data, int b, int t,
                                 double val_fraction, xdt_data_order order, uint64_t seed) {
    if (!(val_fraction >= 0 && val_fraction < 1))
        return xdt_fail(XDT_ERR_CONFIG, "--val-fraction %g must be in [0, 1)", val_fraction);
    const size_t need = (size_t)b * t + 1;
    size_t val_n = (size_t)floor((double)data->n * val_fraction);
    size_t train_n = data->n - val_n;
    if (train_n < need)
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s: the training split holds %zu tokens, fewer than one "
                        "batch (--batch %d x --seq %d + 1 = %zu)",
                        data->path, train_n, b, t, need);
    if (val_fraction > 0 && val_n < need)
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s: the validation split (--val-fraction %g) holds %zu "
                        "tokens, fewer than one batch of %zu; raise --val-fraction or set it to 0",
                        data->path, val_fraction, val_n, need);
    l->data = data;
    l->b = b;
    l->t = t;
    l->order = order;
    l->train_n = train_n;
    l->val_start = train_n;
    l->val_n = val_n;
    xdt_rng_seed(&l->state.rng, seed, 0x64617461 /* "data" */);
    l->state.cursor = 0;
    return XDT_OK;
}

void xdt_batch_loader_next(xdt_batch_loader *l, int32_t *inputs, int32_t *targets) {
    const size_t bt = (size_t)l->b * l->t;
    if (l->order == XDT_ORDER_SEQUENTIAL) {
        if (l->state.cursor + bt + 1 > l->train_n) l->state.cursor = 0;
        xdt_token_window(l->data, l->state.cursor, l->b, l->t, inputs, targets);
        l->state.cursor += bt;
        /* like llm.c: move back to the start once the next batch would not fit */
        if (l->state.cursor + bt + 1 > l->train_n) l->state.cursor = 0;
        return;
    }
    const size_t span = l->train_n - (size_t)l->t; /* starts in [0, span) leave room for T+1 */
    for (int r = 0; r < l->b; r++) {
        size_t start = (size_t)xdt_rng_below(&l->state.rng, span);
        xdt_token_window(l->data, start, 1, l->t, inputs + (size_t)r * l->t,
                         targets + (size_t)r * l->t);
    }
}

int xdt_batch_loader_val_batches(const xdt_batch_loader *l) {
    const size_t bt = (size_t)l->b * l->t;
    return l->val_n < bt + 1 ? 0 : (int)((l->val_n - 1) / bt);
}

void xdt_batch_loader_val(const xdt_batch_loader *l, int i, int32_t *inputs, int32_t *targets) {
    const size_t bt = (size_t)l->b * l->t;
    xdt_token_window(l->data, l->val_start + (size_t)i * bt, l->b, l->t, inputs, targets);
}
