/* optimizer.c: AdamW over a stage's parameter tensors, with clipping and the LR schedule. */
#include "core/optimizer.h"

#include <math.h>
#include <stdlib.h>

#include "core/log.h"

struct xdt_optimizer {
    xdt_optim_config cfg;
    xdt_stage *stage;
    xdt_device *dev;
    float *m, *v;
};

double xdt_lr_at(const xdt_optim_config *c, int step) {
    if (step < c->warmup_steps) return c->lr * (double)(step + 1) / c->warmup_steps;
    if (c->decay == XDT_LR_CONSTANT || c->total_steps <= c->warmup_steps) return c->lr;
    double ratio = (double)(step - c->warmup_steps) / (c->total_steps - c->warmup_steps);
    if (ratio > 1) ratio = 1;
    double min_lr = c->lr * XDT_LR_MIN_FRACTION;
    return min_lr + 0.5 * (1.0 + cos(M_PI * ratio)) * (c->lr - min_lr);
}

xdt_status xdt_optimizer_create(const xdt_optim_config *cfg, xdt_stage *stage,
                                xdt_optimizer **out) {
    xdt_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt) return xdt_fail(XDT_ERR_NO_MEMORY, "optimizer: out of memory");
    opt->cfg = *cfg;
    opt->stage = stage;
    opt->dev = xdt_stage_device(stage);
    size_t bytes = xdt_stage_num_params(stage) * sizeof(float);
    xdt_status st;
    if ((st = xdt_device_alloc(opt->dev, bytes, (void **)&opt->m)) ||
        (st = xdt_device_alloc(opt->dev, bytes, (void **)&opt->v))) {
        xdt_optimizer_destroy(opt);
        return st;
    }
    opt->dev->ops->memset(opt->dev->ctx, opt->m, 0, bytes);
    opt->dev->ops->memset(opt->dev->ctx, opt->v, 0, bytes);
    *out = opt;
    return XDT_OK;
}

void xdt_optimizer_destroy(xdt_optimizer *opt) {
    if (!opt) return;
    xdt_device_free(opt->dev, opt->m);
    xdt_device_free(opt->dev, opt->v);
    free(opt);
}

float *xdt_optimizer_m(xdt_optimizer *opt) {
    return opt->m;
}
float *xdt_optimizer_v(xdt_optimizer *opt) {
    return opt->v;
}

xdt_status xdt_optimizer_grad_sumsq(xdt_optimizer *opt, double *out) {
    return opt->dev->ops->sum_squares(opt->dev->ctx, xdt_stage_grads(opt->stage),
                                      xdt_stage_num_params(opt->stage), out);
}

xdt_status xdt_optimizer_step(xdt_optimizer *opt, int step, double grad_norm) {
    if (!isfinite(grad_norm))
        return xdt_fail(XDT_ERR_NUMERIC,
                        "step %d: gradient norm is %g; training diverged "
                        "(lower --lr or enable --grad-clip)",
                        step + 1, grad_norm);
    const xdt_optim_config *c = &opt->cfg;
    xdt_adamw_args a = {
        .lr = (float)xdt_lr_at(c, step),
        .beta1 = c->beta1,
        .beta2 = c->beta2,
        .eps = c->eps,
        .grad_scale = 1.0f,
        .bias_correction1 = (float)(1.0 - pow(c->beta1, step + 1)),
        .bias_correction2 = (float)(1.0 - pow(c->beta2, step + 1)),
    };
    if (c->grad_clip > 0 && grad_norm > c->grad_clip)
        a.grad_scale = (float)(c->grad_clip / grad_norm);
    int n = 0;
    const xdt_param_tensor *t = xdt_stage_tensors(opt->stage, &n);
    float *p = xdt_stage_params(opt->stage), *g = xdt_stage_grads(opt->stage);
    for (int i = 0; i < n; i++) {
        a.weight_decay = t[i].decay ? c->weight_decay : 0.0f;
        size_t o = t[i].offset;
        opt->dev->ops->adamw(opt->dev->ctx, p + o, g + o, opt->m + o, opt->v + o, t[i].count, &a);
    }
    return xdt_device_sync(opt->dev);
}
