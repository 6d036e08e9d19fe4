/* simulator.h: runs a job's schedule against costs and links without running anything real,
 * and predicts the step time, each rank's busy and bubble fractions, its peak memory and the
 * bytes on each link.
 *
 * A job is `replicas` data-parallel copies of one pipeline of P ranks; replica d's pipeline rank
 * p is global rank d * P + p. Every replica runs the same schedule kind (replicas may differ in
 * their number of microbatches, hence one schedule each). Compute ops take their stage's forward
 * or backward time (a split backward takes half for the input part and half for the weights); a
 * send puts its message on the directed link, where the link's codec encodes it (half the codec
 * time), messages go one after another at the link's bandwidth at the codec's wire size, and
 * arrive one latency plus the decode later; a receive waits for its message. Sends never block,
 * as in the runtime. ALLREDUCE of pipeline rank p starts when every replica's rank p has reached
 * it and takes allreduce_ms[p] (the gradient all-reduce of that stage's replicas, and the tied
 * embedding's exchange between the first and last stages). */
#ifndef XDT_SIMULATOR_H
#define XDT_SIMULATOR_H

#include "core/schedule.h"
#include "core/status.h"

typedef struct xdt_sim_link {
    double latency_ms;        /* one-way */
    double bytes_per_ms;      /* 0 = unlimited */
    double wire_ratio;        /* bytes on the wire per payload byte under the link's codec; 0 = 1 */
    double codec_ms_per_byte; /* encode + decode time per payload byte; 0 = no codec work */
} xdt_sim_link;

/* A link from Gbit/s and one-way milliseconds, without a codec. */
static inline xdt_sim_link xdt_sim_link_from_gbps(double gbps, double latency_ms) {
    return (xdt_sim_link){latency_ms, gbps * 1e9 / 8 / 1e3, 0, 0};
}

typedef struct xdt_sim_input {
    const xdt_schedule *schedule;         /* what every replica runs, unless `schedules` */
    const xdt_schedule *const *schedules; /* one per replica (same P, V, kind), or NULL */
    int replicas;                         /* data-parallel replicas; 0 means 1 */
    /* per replica and global stage, [d * S + s] with S = P x chunks: */
    const double *fwd_ms, *bwd_ms;
    const double *boundary_bytes;   /* activation bytes stage s sends forward; its input gradient
                                       going back has the size of its input */
    const double *static_bytes;     /* weights + gradients + optimizer state; NULL: no memory */
    const double *activation_bytes; /* one microbatch's retained activations */
    const xdt_sim_link *links;      /* R x R over global ranks, [src * R + dst] */
    const double *allreduce_ms;     /* per pipeline rank p; NULL = none */
    double opt_step_ms;
} xdt_sim_input;

/* One executed op, for traces and timelines. */
typedef struct xdt_sim_event {
    int rank; /* global rank d * P + p */
    xdt_op op;
    double start_ms, end_ms;                      /* a receive's span is its wait */
    double wire_start_ms, wire_end_ms, arrive_ms; /* sends: on the link, and when it lands */
} xdt_sim_event;

typedef struct xdt_sim_result {
    int ranks;  /* R = replicas x P */
    int stages; /* P, pipeline ranks per replica */
    double step_ms;
    double *busy_ms;       /* per rank: time computing */
    double *bubble;        /* per rank: 1 - busy / step */
    double *peak_bytes;    /* per rank: static + most retained activations at once (0 w/o memory) */
    double *link_bytes;    /* R x R: bytes on the wire (after the codec) */
    double *payload_bytes; /* R x R: bytes before the codec */
    xdt_sim_event *events;
    int n_events;
} xdt_sim_result;

/* Simulates; the schedules must have passed xdt_schedule_validate (a stuck simulation is
 * reported as XDT_ERR_INVALID_ARG naming the rank and op). Free with xdt_sim_result_free. */
xdt_status xdt_simulate(const xdt_sim_input *in, xdt_sim_result *out);
void xdt_sim_result_free(xdt_sim_result *r);

#endif
