/* batch_loader.h: deterministic batches from a token stream: a training split (the first
 * 1 - val_fraction of the tokens) read in random or sequential order, and a held-out validation
 * split (the rest) read in consecutive windows from its start. */
#ifndef XDT_BATCH_LOADER_H
#define XDT_BATCH_LOADER_H

#include <stdint.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/token_data.h"

typedef enum xdt_data_order {
    XDT_ORDER_RANDOM = 0,     /* each row a window at a uniformly drawn offset */
    XDT_ORDER_SEQUENTIAL = 1, /* llm.c's loader: batch i starts at token i*B*T, wrapping */
} xdt_data_order;

/* Everything needed to continue exactly where a run stopped (saved in checkpoints). */
typedef struct xdt_loader_state {
    xdt_rng rng;
    uint64_t cursor; /* sequential: token offset of the next batch */
} xdt_loader_state;

typedef struct xdt_batch_loader {
    const xdt_token_data *data;
    int b, t;
    xdt_data_order order;
    size_t train_n;          /* tokens [0, train_n) */
    size_t val_start, val_n; /* tokens [val_start, val_start + val_n) */
    xdt_loader_state state;
} xdt_batch_loader;

/* Splits `data` and checks both splits hold at least one batch of b*t+1 tokens (val_fraction 0
 * means no validation). Errors name the file and the flag to change. */
xdt_status xdt_batch_loader_init(xdt_batch_loader *l, const xdt_token_data *data, int b, int t,
                                 double val_fraction, xdt_data_order order, uint64_t seed);

/* Next training batch: inputs and targets, b*t int32 each (targets = inputs shifted by one). */
void xdt_batch_loader_next(xdt_batch_loader *l, int32_t *inputs, int32_t *targets);

/* Number of validation batches available (consecutive, non-overlapping windows). */
int xdt_batch_loader_val_batches(const xdt_batch_loader *l);
/* Validation batch i (0-based, i < xdt_batch_loader_val_batches). */
void xdt_batch_loader_val(const xdt_batch_loader *l, int i, int32_t *inputs, int32_t *targets);

/* Consecutive windows from the very start of the data (for `xdt eval`): window i covers tokens
 * [i*b*t, i*b*t + b*t]. Returns how many whole windows exist. */
int xdt_token_windows(const xdt_token_data *d, int b, int t);
void xdt_token_window(const xdt_token_data *d, size_t start, int b, int t, int32_t *inputs,
                      int32_t *targets);

#endif
