/* model_setup.c: memory checks, batch upload and windowed evaluation for the commands. */
#include "tools/model_setup.h"

#include "core/log.h"
#include "core/mem_info.h"

/* Bytes the whole-model stage needs, and its model-state and activation parts. */
static double stage_need(const xdt_model_config *cfg, xdt_device *dev, int b, int t, bool training,
                         xdt_stage_memory *m) {
    xdt_stage_memory_estimate(cfg, dev, 0, cfg->n_layer + 1, b, t, 1, m);
    return xdt_stage_memory_total(m, training);
}

xdt_status xdt_check_device_memory_fits(xdt_device *dev, const xdt_model_config *cfg, int b, int t,
                                        bool training) {
    if (!dev->ops->mem_info) return XDT_OK; /* host memory: xdt_check_memory_fits */
    size_t free_bytes = 0, total_bytes = 0;
    xdt_status st = dev->ops->mem_info(dev->ctx, &free_bytes, &total_bytes);
    if (st != XDT_OK) return st;
    xdt_stage_memory m;
    double need = stage_need(cfg, dev, b, t, training, &m);
    if (need > (double)free_bytes)
        return xdt_fail(XDT_ERR_NO_MEMORY,
                        "device %s: --batch %d --seq %d needs %.2f GiB (weights+grads+"
                        "optimizer %.2f, activations %.2f, the backend's workspace %.2f) but "
                        "%.2f GiB of its %.2f GiB is free; lower --batch or --seq",
                        dev->name, b, t, need / 1073741824.0,
                        (double)(m.params_bytes + m.grads_bytes + m.optimizer_bytes) / 1073741824.0,
                        (double)(m.activation_bytes + m.scratch_bytes) / 1073741824.0,
                        (double)m.device_workspace_bytes / 1073741824.0,
                        (double)free_bytes / 1073741824.0, (double)total_bytes / 1073741824.0);
    return XDT_OK;
}

xdt_status xdt_check_memory_fits(const xdt_model_config *cfg, int b, int t, bool training) {
    xdt_stage_memory m;
    double need = stage_need(cfg, NULL, b, t, training, &m);
    size_t avail = xdt_mem_available_bytes();
    if (avail && need > (double)avail)
        return xdt_fail(XDT_ERR_NO_MEMORY,
                        "--batch %d --seq %d needs %.2f GiB (weights+grads+"
                        "optimizer %.2f, activations %.2f) but %.2f GiB is available; lower "
                        "--batch or --seq",
                        b, t, need / 1073741824.0,
                        (double)(m.params_bytes + m.grads_bytes + m.optimizer_bytes) / 1073741824.0,
                        (double)(m.activation_bytes + m.scratch_bytes) / 1073741824.0,
                        (double)avail / 1073741824.0);
    return XDT_OK;
}

void xdt_stage_load_batch(xdt_stage *stage, const int32_t *inputs, const int32_t *targets) {
    xdt_device *dev = xdt_stage_device(stage);
    int b, t;
    xdt_stage_batch_shape(stage, &b, &t);
    const size_t bytes = (size_t)b * t * sizeof(int32_t);
    dev->ops->copy(dev->ctx, xdt_stage_tokens(stage, 0), inputs, bytes, XDT_COPY_HOST_TO_DEVICE);
    dev->ops->copy(dev->ctx, xdt_stage_targets(stage, 0), targets, bytes, XDT_COPY_HOST_TO_DEVICE);
}

xdt_status xdt_mean_loss(xdt_stage *stage, int n, xdt_window_fn window, void *arg, int32_t *inputs,
                         int32_t *targets, double *out) {
    double total = 0;
    for (int i = 0; i < n; i++) {
        window(arg, i, inputs, targets);
        xdt_stage_load_batch(stage, inputs, targets);
        double loss = 0;
        xdt_status st = xdt_stage_forward(stage, 0, false, 0.0f);
        if (st == XDT_OK) st = xdt_stage_loss(stage, 0, &loss);
        if (st != XDT_OK) return st;
        total += loss;
    }
    *out = n ? total / n : 0;
    return XDT_OK;
}
