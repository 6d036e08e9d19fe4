/* optimizer.h: AdamW with decoupled weight decay (none on biases and layernorm weights), global
 * grad-norm clipping, and a learning rate with linear warm-up then cosine decay. */
#ifndef XDT_OPTIMIZER_H
#define XDT_OPTIMIZER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/gpt.h"
#include "core/status.h"

typedef enum xdt_lr_decay {
    XDT_LR_COSINE = 0, /* from lr down to lr * XDT_LR_MIN_FRACTION at total_steps */
    XDT_LR_CONSTANT = 1,
} xdt_lr_decay;

#define XDT_LR_MIN_FRACTION 0.1

typedef struct xdt_optim_config {
    float lr, beta1, beta2, eps, weight_decay;
    float grad_clip; /* clip the global gradient norm to this; 0 = off */
    int warmup_steps, total_steps;
    xdt_lr_decay decay;
} xdt_optim_config;

typedef struct xdt_optimizer xdt_optimizer;

/* Learning rate at 0-based step `step`. */
double xdt_lr_at(const xdt_optim_config *cfg, int step);

/* AdamW state (m, v) for every parameter of `stage`, on the stage's device, zeroed. */
xdt_status xdt_optimizer_create(const xdt_optim_config *cfg, xdt_stage *stage, xdt_optimizer **out);
void xdt_optimizer_destroy(xdt_optimizer *opt);

/* Sum of squared gradients of this stage's parameters. */
xdt_status xdt_optimizer_grad_sumsq(xdt_optimizer *opt, double *out);

/* One update at 0-based step `step` given the global gradient norm (all stages together).
 * A non-finite norm is reported and returns XDT_ERR_NUMERIC without touching the weights. */
xdt_status xdt_optimizer_step(xdt_optimizer *opt, int step, double grad_norm);

/* The m and v buffers (device memory, xdt_stage_num_params elements each), for checkpoints. */
float *xdt_optimizer_m(xdt_optimizer *opt);
float *xdt_optimizer_v(xdt_optimizer *opt);

#endif
