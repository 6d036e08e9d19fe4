/* cost_model.h: what a pipeline unit or stage costs on a device type: forward and backward
 * milliseconds, memory (parameters + gradients + AdamW state + retained activations x
 * microbatches in flight, plus the LM head's copy of the embedding when the head sits apart from
 * it), and the bytes a stage sends at its boundary.
 *
 * Times come from a measured profile (planner/profile.h, written by `xdt profile`) when the
 * parameters carry one whose device type is the device's catalog name and whose model
 * dimensions and seq match; otherwise from a roofline: the larger of FLOPs at a stated fraction
 * of peak and bytes at memory bandwidth. Either way they are stretched by the node's slowdown.
 * Memory and boundary bytes never come from the profile. */
#ifndef XDT_COST_MODEL_H
#define XDT_COST_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/gpt.h"
#include "core/precision.h"
#include "planner/device_catalog.h"

struct xdt_profile;

typedef struct xdt_cost_params {
    xdt_precision dtype;
    double efficiency; /* fraction of peak the roofline assumes reached; 0 = 0.5 */
    /* measured unit times used instead of the roofline where they apply (see above), or NULL;
     * not owned */
    const struct xdt_profile *profile;
    /* GPU ranks run attention fused (flash): their blocks keep per-row statistics, not the
     * t x t probabilities (xdt_gpt_attention_state_floats); CPU ranks keep the probabilities */
    bool fused_attention;
} xdt_cost_params;

typedef struct xdt_stage_cost {
    double fwd_ms, bwd_ms; /* one microbatch */
    double memory_bytes;   /* with `inflight` microbatches' activations */
    double boundary_bytes; /* activations sent to the next stage per microbatch (0 for the last) */
    double params;         /* parameters held, the head's embedding copy included */
} xdt_stage_cost;

/* Peak TFLOP/s of a type for a dtype. */
double xdt_device_peak_tflops(const xdt_device_type *d, xdt_precision dtype);

/* Cost of units [first, last] of `cfg` for microbatches of b x t on device type d, holding
 * `inflight` microbatches of activations, on a node with the given slowdown (>= 1). With
 * params->profile set, for d->name and matching cfg and t, each unit's time is the profile's
 * (xdt_profile_unit_ms) times the slowdown. */
void xdt_stage_cost_estimate(const xdt_model_config *cfg, int first, int last, int b, int t,
                             int inflight, const xdt_device_type *d, double slowdown,
                             const xdt_cost_params *params, xdt_stage_cost *out);

/* Whether the stage fits the device's memory; if not, writes a one-line reason such as
 * "stage 3 on T4 needs 21.4 GiB, has 16.0 GiB" into why. */
bool xdt_stage_fits(const xdt_stage_cost *c, const xdt_device_type *d, int stage_index, char *why,
                    size_t cap);

#endif
