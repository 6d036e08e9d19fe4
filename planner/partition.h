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
    double slowdown;     /* >= 1 */
    int inflight;        /* microbatches of activations this stage holds (from the schedule) */
    double memory_share; /* fraction of the device's memory the stage may use; 0 means 1 (a
                            rank holding V interleaved chunks gives each 1 / V) */
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

/* The general form: `classes` chains of P devices (chain[c * P + k]: data-parallel replicas
 * whose stage k runs on different device types) share one split; stage k takes as long as its
 * slowest class and must fit every class's device. `fast` replaces the exact DP by a bisection
 * on the bottleneck with a greedy fill (O(U log) per chain instead of O(P U^2)), for the pruned
 * search on large clusters; it can miss the optimum only where a single unit does not fit a
 * stage's threshold on one device type yet fits on the next stage's. */
typedef struct xdt_partition_request {
    const xdt_model_config *cfg;
    int b, t;
    const xdt_chain_device *chain;
    int P, classes;
    const xdt_cost_params *cost;
    bool fast;
} xdt_partition_request;

xdt_status xdt_partition_solve(const xdt_partition_request *rq, xdt_partition *out, char *why,
                               size_t cap);

#endif
