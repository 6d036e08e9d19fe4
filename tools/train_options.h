/* train_options.h: the training hyperparameters and data options that `xdt train` (one
 * process) and `xdt worker` / `xdt launch` (a pipeline) share, with one option table, so a
 * pipelined run and its single-process reference take the same flags and defaults. */
#ifndef XDT_TRAIN_OPTIONS_H
#define XDT_TRAIN_OPTIONS_H

#include "core/optimizer.h"
#include "tools/cli_args.h"

typedef struct xdt_train_hparams {
    int steps, warmup, lr_decay, data_order, log_every, eval_every, eval_batches;
    double lr, weight_decay, grad_clip, beta1, beta2, adam_eps, val_fraction, seed;
} xdt_train_hparams;

#define XDT_TRAIN_OPTION_COUNT 15

/* The defaults (`xdt train --help` lists them). */
void xdt_train_hparams_defaults(xdt_train_hparams *h);

/* Writes the XDT_TRAIN_OPTION_COUNT shared options into opts[], pointing into h. */
void xdt_train_hparams_options(xdt_train_hparams *h, xdt_cli_opt *opts);

/* The optimizer configuration they describe. */
xdt_optim_config xdt_train_hparams_optim(const xdt_train_hparams *h);

#endif
