/* cost_model.c: stage time (a measured profile's unit times, or a roofline) and memory
 * figures per stage, from the model's unit figures. */
#include "planner/cost_model.h"

#include <stdio.h>
#include <string.h>

#include "planner/profile.h"

double xdt_device_peak_tflops(const xdt_device_type *d, xdt_precision dtype) {
    switch (dtype) {
    case XDT_PRECISION_TF32:
        return d->tflops_tf32;
    case XDT_PRECISION_BF16:
        return d->tflops_bf16;
    case XDT_PRECISION_FP32:
        break;
    }
    return d->tflops_fp32;
}

/* Milliseconds for `flops` of math that also streams `bytes` through device memory. */
static double roofline_ms(double flops, double bytes, const xdt_device_type *d,
                          const xdt_cost_params *p, double slowdown) {
    const double eff = p && p->efficiency > 0 ? p->efficiency : 0.5;
    const double compute_s =
        flops / (xdt_device_peak_tflops(d, p ? p->dtype : XDT_PRECISION_FP32) * 1e12 * eff);
    const double memory_s = bytes / (d->memory_gbps * 1e9);
    return (compute_s > memory_s ? compute_s : memory_s) * 1e3 * slowdown;
}

void xdt_stage_cost_estimate(const xdt_model_config *cfg, int first, int last, int b, int t,
                             int inflight, const xdt_device_type *d, double slowdown,
                             const xdt_cost_params *params, xdt_stage_cost *out) {
    xdt_stage_cost c = {0};
    double retained = 0;
    const int head = cfg->n_layer + 1;
    const xdt_profile *prof = params ? params->profile : NULL;
    if (prof && (strcmp(prof->device_type, d->name) || !xdt_profile_matches(prof, cfg, t)))
        prof = NULL;
    /* what a block keeps less of when its attention runs fused on this device */
    const bool fused = params && params->fused_attention && d->backend != XDT_BACKEND_CPU;
    const size_t att_saved = fused ? (xdt_gpt_attention_state_floats(cfg, b, t, false) -
                                      xdt_gpt_attention_state_floats(cfg, b, t, true)) *
                                         sizeof(float)
                                   : 0;
    for (int u = first; u <= last; u++) {
        xdt_unit_info info;
        xdt_gpt_unit_info(cfg, u, b, t, &info);
        if (info.kind == XDT_UNIT_BLOCK) info.retained_bytes -= att_saved;
        double p = (double)info.params + (u == head && first > 0 ? (double)info.tied_params : 0);
        c.params += p;
        if (prof) {
            double fwd, bwd;
            xdt_profile_unit_ms(prof, u, b, &fwd, &bwd);
            c.fwd_ms += fwd * slowdown;
            c.bwd_ms += bwd * slowdown;
        } else {
            /* the weights are read once forward and twice backward (inputs and gradients), the
             * retained activations written forward and read backward */
            c.fwd_ms += roofline_ms(info.fwd_flops, 4 * p + (double)info.retained_bytes, d, params,
                                    slowdown);
            c.bwd_ms += roofline_ms(info.bwd_flops, 12 * p + (double)info.retained_bytes, d, params,
                                    slowdown);
        }
        retained += (double)info.retained_bytes;
        if (u == last) c.boundary_bytes = (double)info.boundary_bytes;
    }
    /* fp32 weights and gradients, AdamW m and v: 16 bytes a parameter */
    c.memory_bytes = 16 * c.params + retained * (inflight > 0 ? inflight : 1);
    *out = c;
}

bool xdt_stage_fits(const xdt_stage_cost *c, const xdt_device_type *d, int stage_index, char *why,
                    size_t cap) {
    const double have = d->memory_gib * 1073741824.0;
    if (c->memory_bytes <= have) return true;
    if (why)
        snprintf(why, cap, "stage %d on %s needs %.1f GiB, has %.1f GiB", stage_index, d->name,
                 c->memory_bytes / 1073741824.0, d->memory_gib);
    return false;
}
