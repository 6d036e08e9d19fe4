/* train_options.c: the shared training option table and its defaults. */
#include "tools/train_options.h"

void xdt_train_hparams_defaults(xdt_train_hparams *h) {
    *h = (xdt_train_hparams){
        .steps = 200,
        .warmup = 10,
        .eval_every = 50,
        .eval_batches = 8,
        .log_every = 10,
        .lr = 1e-3,
        .weight_decay = 0.1,
        .grad_clip = 1.0,
        .beta1 = 0.9,
        .beta2 = 0.95,
        .adam_eps = 1e-8,
        .val_fraction = 0.1,
        .seed = 1337,
    };
}

void xdt_train_hparams_options(xdt_train_hparams *h, xdt_cli_opt *opts) {
    const double big = 1e9;
    const xdt_cli_opt table[XDT_TRAIN_OPTION_COUNT] = {
        XDT_OPT_INT("steps", &h->steps, "N", "total training steps [200]", 0, big),
        XDT_OPT_DOUBLE("lr", &h->lr, "LR", "peak learning rate [1e-3]", 0, 10),
        XDT_OPT_INT("warmup", &h->warmup, "N", "linear warm-up steps [10]", 0, big),
        XDT_OPT_CHOICE("lr-decay", &h->lr_decay, "cosine|none",
                       "after warm-up: cosine to 0.1 x lr at --steps, or constant [cosine]"),
        XDT_OPT_DOUBLE("weight-decay", &h->weight_decay, "W", "AdamW decoupled decay [0.1]", 0, 10),
        XDT_OPT_DOUBLE("grad-clip", &h->grad_clip, "G", "global grad-norm clip, 0 = off [1.0]", 0,
                       1e12),
        XDT_OPT_DOUBLE("beta1", &h->beta1, "B1", "AdamW beta1 [0.9]", 0, 0.999999),
        XDT_OPT_DOUBLE("beta2", &h->beta2, "B2", "AdamW beta2 [0.95]", 0, 0.999999),
        XDT_OPT_DOUBLE("adam-eps", &h->adam_eps, "E", "AdamW epsilon [1e-8]", 0, 1),
        XDT_OPT_DOUBLE("seed", &h->seed, "S", "seed for init and data order [1337]", 0, 9e15),
        XDT_OPT_INT("eval-every", &h->eval_every, "N", "validate every N steps, 0 = never [50]", 0,
                    big),
        XDT_OPT_INT("eval-batches", &h->eval_batches, "N", "validation batches per eval [8]", 1,
                    big),
        XDT_OPT_DOUBLE("val-fraction", &h->val_fraction, "F", "held-out tail of the data [0.1]", 0,
                       0.99),
        XDT_OPT_CHOICE("data-order", &h->data_order, "random|sequential",
                       "random windows, or llm.c's sequential batches [random]"),
        XDT_OPT_INT("log-every", &h->log_every, "N", "plain log line interval [10]", 1, big),
    };
    for (int i = 0; i < XDT_TRAIN_OPTION_COUNT; i++)
        opts[i] = table[i];
}

xdt_optim_config xdt_train_hparams_optim(const xdt_train_hparams *h) {
    return (xdt_optim_config){
        .lr = (float)h->lr,
        .beta1 = (float)h->beta1,
        .beta2 = (float)h->beta2,
        .eps = (float)h->adam_eps,
        .weight_decay = (float)h->weight_decay,
        .grad_clip = (float)h->grad_clip,
        .warmup_steps = h->warmup,
        .total_steps = h->steps,
        .decay = (xdt_lr_decay)h->lr_decay,
    };
}
