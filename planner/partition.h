/* partition.h: uneven layer splits. Given a chain of P devices (the pipeline's stages in order),
 * cut the model's units into P contiguous non-empty ranges, range k on device k, so that the
 * slowest stage (forward + backward per microbatch) is as fast as possible and every stage fits
 * its device's memory. Exact: dynamic programming over unit prefixes, O(P U^2) with per-unit
 * costs summed by prefix sums (stage costs are additive over units in the cost model). */
#ifndef XDT_PARTITION_H
#define XDT_PARTITION_H

#include "planner/cost_model.h"

typedef struct xdt_chain_device {
    const xdt_device_type *type;
    double slowdown; /* >= 1 */
    int inflight;    /* microbatches of activations this stage holds (from the schedule) */
} xdt_chain_device;

typedef struct xdt_partition {
    int first[1025]; /* stage k holds units [first[k], first[k + 1] - 1]; first[P] = U */
    double stage_ms[1024];
    double bottleneck_ms;
} xdt_partition;

/* Best split of all units of cfg over chain[0..P) for microbatches of b x t. XDT_ERR_CONFIG
 * with a one-line reason when P exceeds the units or no split fits memory (naming the tightest
 * stage, e.g. "stage 0 on T4 needs 21.4 GiB, has 16.0 GiB"): logged, or written to why[cap]
 * instead when why is not NULL (searches try many chains that do not fit). */
xdt_status xdt_partition_units(const xdt_model_config *cfg, int b, int t,
                               const xdt_chain_device *chain, int P, const xdt_cost_params *cp,
                               xdt_partition *out, char *why, size_t cap);

#endif
