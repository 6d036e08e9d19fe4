/* trace_compare.h: a measured run's trace (`xdt launch --trace`, tools/run_trace.h) against the
 * simulator's prediction of the same plan: the step time, each compute op's duration, and each
 * rank's receive waits and busy time per step.
 *
 * The measured trace is the Chrome trace format of planner/trace_writer.h; only its complete
 * events ("ph":"X") on pid 0 count, and each must carry args.step and args.chunk (args.microbatch
 * on compute ops and waits), its rank in "tid". Steps overlap a little across ranks (rank 0
 * starts step s + 1 while the last rank still finishes step s), so a step is measured from the
 * earliest start of any op of step s to the earliest start of any op of step s + 1 -- the
 * period at which the pipeline starts steps; the last step, which has no successor, runs to its
 * latest end. The measured step is the median of these spans. Step 0 (the warm-up: first
 * touches, allocator, connection set-up) is left out when the trace has at least 3 steps; the
 * per-op means are taken over the same steps.
 *
 * Differences are prediction errors: 100 (predicted - measured) / measured, negative when the
 * simulator is optimistic. */
#ifndef XDT_TRACE_COMPARE_H
#define XDT_TRACE_COMPARE_H

#include <stdio.h>

#include "planner/plan_io.h"
#include "planner/simulator.h"

typedef enum xdt_compare_what {
    XDT_COMPARE_OP = 0,   /* one compute op's mean duration: (rank, kind, chunk) */
    XDT_COMPARE_WAIT = 1, /* a rank's total receive wait per step */
    XDT_COMPARE_BUSY = 2, /* a rank's total compute time per step */
} xdt_compare_what;

typedef struct xdt_compare_item {
    xdt_compare_what what;
    int rank;         /* global rank */
    xdt_op_kind kind; /* XDT_COMPARE_OP: FWD, BWD, BWD_INPUT or BWD_WEIGHT */
    int chunk;        /* XDT_COMPARE_OP */
    double predicted_ms, measured_ms;
    double error_pct; /* 100 (predicted - measured) / measured; NAN when measured is 0 */
} xdt_compare_item;

typedef struct xdt_trace_compare {
    int steps;                /* distinct steps in the trace */
    int steps_used;           /* steps in the median and the means (step 0 left out if >= 3) */
    int first_step_used;      /* the first of them */
    double measured_step_ms;  /* median of the used steps' spans */
    double predicted_step_ms; /* the simulator's step */
    double error_pct;         /* 100 (predicted - measured) / measured */
    /* every compared quantity, largest |predicted - measured| first */
    xdt_compare_item *items;
    int n_items;
} xdt_trace_compare;

/* Reads the measured trace at `path` and compares it with `sim`, the simulation of `plan`.
 * Errors are one line naming the file and what is wrong (not JSON, no traceEvents, an event
 * without args.step, a rank or chunk the plan does not have, an op the plan never runs...) and
 * return XDT_ERR_IO (cannot read) or XDT_ERR_FORMAT. Free with xdt_trace_compare_free. */
xdt_status xdt_trace_compare_load(const char *path, const xdt_loaded_plan *plan,
                                  const xdt_sim_result *sim, xdt_trace_compare *out);
void xdt_trace_compare_free(xdt_trace_compare *c);

/* Prints the summary line "measured step 163.2 ms (median of 9 steps), predicted 158.4 ms,
 * error -2.9 %", then the `top` largest differences, one per line, such as
 * "rank 1 B chunk 0: predicted 41.2 ms, measured 38.9 ms (5.9 %)". */
void xdt_trace_compare_print(const xdt_trace_compare *c, int top, FILE *f);

#endif
