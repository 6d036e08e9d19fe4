/* solver_internal.h: what the search (solver.c) and the layout evaluation (layout_eval.c) share
 * and nothing else needs. */
#ifndef XDT_SOLVER_INTERNAL_H
#define XDT_SOLVER_INTERNAL_H

#include "planner/solver.h"

typedef struct xdt_eval_options {
    bool fast_split; /* bisection-greedy split instead of the exact DP (large searches) */
    bool estimate;   /* closed-form step estimate instead of a simulation */
} xdt_eval_options;

/* xdt_solver_evaluate with options. */
xdt_status xdt_layout_evaluate(const xdt_solver_input *in, const int *grid, int P, int D, int mb,
                               xdt_schedule_kind kind, const xdt_eval_options *opt,
                               xdt_solution *out);

/* Forward + backward milliseconds of the whole model per microbatch on one device: the
 * device's speed, for giving faster replicas more microbatches and picking devices. */
double xdt_model_ms_on(const xdt_solver_input *in, const xdt_topo_node *n, int mb);

#endif
