/* simulator.h: runs a schedule against costs and links without running anything real, and
 * predicts the step time, each rank's busy and bubble fractions, and the bytes on each link.
 * Compute ops take their stage's forward or backward time (a split backward takes half for the
 * input part and half for the weights); a send puts its message on the directed link, where
 * messages go one after another at the link's bandwidth and arrive one latency later; a receive
 * waits for its message. Sends never block, as in the runtime. */
#ifndef XDT_SIMULATOR_H
#define XDT_SIMULATOR_H

#include "core/schedule.h"
#include "core/status.h"

typedef struct xdt_sim_link {
    double latency_ms;   /* one-way */
    double bytes_per_ms; /* 0 = unlimited */
} xdt_sim_link;

/* A link from Gbit/s and one-way milliseconds. */
static inline xdt_sim_link xdt_sim_link_from_gbps(double gbps, double latency_ms) {
    return (xdt_sim_link){latency_ms, gbps * 1e9 / 8 / 1e3};
}

typedef struct xdt_sim_input {
    const xdt_schedule *schedule;
    const double *fwd_ms, *bwd_ms; /* per global stage (ranks x chunks of them) */
    const double *boundary_bytes;  /* per global stage: activation bytes it sends forward; its
                                      input gradient going back has the size of its input */
    const xdt_sim_link *links;     /* ranks x ranks, [src * ranks + dst] */
    double allreduce_ms, opt_step_ms;
} xdt_sim_input;

/* One executed op, for traces and timelines. */
typedef struct xdt_sim_event {
    int rank;
    xdt_op op;
    double start_ms, end_ms;                      /* a receive's span is its wait */
    double wire_start_ms, wire_end_ms, arrive_ms; /* sends: on the link, and when it lands */
} xdt_sim_event;

typedef struct xdt_sim_result {
    double step_ms;
    double *busy_ms;    /* per rank: time computing */
    double *bubble;     /* per rank: 1 - busy / step */
    double *link_bytes; /* ranks x ranks */
    xdt_sim_event *events;
    int n_events;
} xdt_sim_result;

/* Simulates; the schedule must have passed xdt_schedule_validate (a stuck simulation is reported
 * as XDT_ERR_INVALID_ARG naming the rank and op). Free the result with xdt_sim_result_free. */
xdt_status xdt_simulate(const xdt_sim_input *in, xdt_sim_result *out);
void xdt_sim_result_free(xdt_sim_result *r);

#endif
