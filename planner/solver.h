/* solver.h: chooses a pipeline for a cluster and a model: how many stages, which devices in which
 * order (so the pipeline crosses slow links as rarely and as cheaply as possible), the uneven
 * layer split on them (partition.h), the microbatch size and the schedule (GPipe or 1F1B), and
 * predicts the step with the simulator over the cluster's links. This first solver builds a single
 * pipeline (no data-parallel replicas yet) and searches exactly: every ordered choice of devices,
 * with the devices of one node treated as interchangeable, so small clusters are solved to the
 * optimum under the cost model. */
#ifndef XDT_SOLVER_H
#define XDT_SOLVER_H

#include "core/schedule.h"
#include "planner/partition.h"
#include "planner/topology.h"

#define XDT_SOLVER_MAX_DEVICES 12

typedef struct xdt_solver_input {
    const xdt_topology *topo;
    const xdt_model_config *cfg;
    int global_batch; /* sequences per step */
    int seq;          /* tokens per sequence */
    int microbatch;   /* sequences per microbatch; 0 = the best of 1, 2, 4, 8 that divides */
    int schedule;     /* XDT_SCHEDULE_GPIPE or XDT_SCHEDULE_1F1B; -1 = the faster of the two */
    xdt_cost_params cost;
} xdt_solver_input;

typedef struct xdt_solution {
    int stages;
    int device[XDT_SOLVER_MAX_DEVICES]; /* flat device index of each stage */
    int node[XDT_SOLVER_MAX_DEVICES];   /* its node in topo->nodes */
    xdt_partition split;
    int microbatch, microbatches;
    xdt_schedule_kind kind;
    int inflight[XDT_SOLVER_MAX_DEVICES]; /* microbatches of activations each stage holds */
    double step_ms, tokens_per_s, bubble; /* predicted */
} xdt_solution;

/* Best plan, or XDT_ERR_CONFIG with a reason (too many devices for the exact search, nothing
 * fits, batch not divisible). */
xdt_status xdt_solve(const xdt_solver_input *in, xdt_solution *out);

/* Predicted step of one given chain (flat device indices) and microbatch size; used by the
 * solver and by tests that enumerate on their own. XDT_ERR_CONFIG when it does not fit. */
xdt_status xdt_solver_evaluate(const xdt_solver_input *in, const int *chain, int stages,
                               int microbatch, xdt_schedule_kind kind, xdt_solution *out);

/* The schedule a solution runs (generated for its kind, stages and microbatches). */
xdt_status xdt_solution_schedule(const xdt_solution *s, xdt_schedule **out);

/* Flat device indices: node n's devices are [first_device(n), first_device(n) + devices). */
int xdt_solver_num_devices(const xdt_topology *t);
int xdt_solver_node_of(const xdt_topology *t, int device);

#endif
