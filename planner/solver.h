/* solver.h: chooses how a model trains on a cluster: D data-parallel replicas of a pipeline of P
 * ranks (which device runs each rank, so the pipelines cross slow links rarely and where
 * boundaries are cheap), the uneven layer split they share (partition.h), the microbatch size
 * and how many microbatches each replica takes (more to faster replicas), the schedule (GPipe,
 * 1F1B, interleaved 1F1B, or xdc with extra warm-up before slow links), and a codec on every link
 * and every gradient all-reduce. Each candidate is predicted by the simulator over the cluster's
 * links; the least step time that fits memory wins. Pipelines that cross sites and data
 * parallelism across sites (each site its own pipelines, gradients all-reduced over the WAN) are
 * both in the space, so the faster is picked.
 *
 * Small clusters are searched exactly: every assignment of devices to the P x D grid, up to the
 * symmetries that change nothing (devices of one node are interchangeable, replicas are
 * unordered). Large ones take a pruned search: devices ordered by site and type, laid out
 * stage-major (pipelines across sites) or replica-major (replicas within sites) for every depth
 * and width, ranked by a closed-form estimate, the best few simulated under every schedule. Both
 * are deterministic. */
#ifndef XDT_SOLVER_H
#define XDT_SOLVER_H

#include "core/schedule.h"
#include "planner/link_codec.h"
#include "planner/partition.h"
#include "planner/simulator.h"
#include "planner/topology.h"

#define XDT_PLAN_MAX_RANKS       2048
#define XDT_SOLVER_EXACT_DEVICES 8 /* clusters up to this many devices are searched exactly */

typedef enum xdt_search_mode {
    XDT_SEARCH_AUTO = 0, /* exact up to XDT_SOLVER_EXACT_DEVICES, pruned beyond */
    XDT_SEARCH_EXACT = 1,
    XDT_SEARCH_PRUNED = 2,
} xdt_search_mode;

typedef struct xdt_solver_input {
    const xdt_topology *topo;
    const xdt_model_config *cfg;
    int global_batch; /* sequences per step */
    int seq;          /* tokens per sequence */
    int microbatch;   /* sequences per microbatch; 0 = the best of 1, 2, 4, 8 that divides */
    int schedule;     /* an xdt_schedule_kind, or -1 for the fastest */
    int codec;        /* XDT_LINK_CODEC_AUTO: chosen per link; else this codec on every link
                         and all-reduce between sites, none inside a site */
    int max_replicas; /* 0: any; 1: a single pipeline */
    int stages;       /* pipeline ranks per replica: 0 = the solver's choice */
    int replicas;     /* data-parallel replicas: 0 = the solver's choice */
    bool even_split;  /* units split evenly instead of by speed (for comparisons) */
    xdt_search_mode search;
    xdt_cost_params cost;
} xdt_solver_input;

typedef struct xdt_solution {
    int stages;                     /* P: pipeline ranks per replica */
    int chunks;                     /* V: virtual stages per rank (interleaved), else 1 */
    int replicas;                   /* D */
    int ranks;                      /* D x P; global rank d * P + p */
    int device[XDT_PLAN_MAX_RANKS]; /* flat device index of each global rank */
    int node[XDT_PLAN_MAX_RANKS];   /* its node in topo->nodes */
    int replica_microbatches[XDT_PLAN_MAX_RANKS]; /* M_d */
    int microbatch, microbatches;                 /* size; total over the replicas */
    xdt_schedule_kind kind;
    int extra[XDT_PLAN_MAX_RANKS]; /* xdc: extra warm-up forwards per pipeline rank */
    xdt_partition split;           /* P x V global stages; stage s on pipeline rank s % P */
    xdt_link_codec link_codec[XDT_PLAN_MAX_RANKS]; /* rank -> the next rank of its replica */
    xdt_link_codec dp_codec[XDT_PLAN_MAX_RANKS];   /* pipeline rank p's all-reduce */
    xdt_link_codec tied_codec; /* the tied embedding's exchange between first and last ranks */
    double step_ms, tokens_per_s, bubble; /* predicted */
    double peak_bytes[XDT_PLAN_MAX_RANKS];
    double wan_bytes; /* per step on links between sites, pipeline and all-reduce traffic */
} xdt_solution;

/* Everything the simulator needs for a solution, with all D replicas (plans and `xdt simulate`)
 * or one replica per group of identical ones (the search). */
typedef struct xdt_job_costs {
    xdt_schedule **schedules; /* one per simulated replica */
    int replicas;             /* simulated replicas */
    int *replica_of;          /* per simulated replica: the solution's replica it stands for */
    double *fwd_ms, *bwd_ms, *boundary_bytes, *static_bytes, *activation_bytes; /* [d * S + s] */
    xdt_sim_link *links;  /* R x R over the simulated ranks */
    double *allreduce_ms; /* per pipeline rank */
    double opt_step_ms;
} xdt_job_costs;

/* Best plan, or XDT_ERR_CONFIG / XDT_ERR_UNSUPPORTED with a one-line reason (nothing fits, batch
 * not divisible, cluster too large). */
xdt_status xdt_solve(const xdt_solver_input *in, xdt_solution *out);

/* Predicted step of one layout: grid[d * P + p] is the flat device of replica d's rank p.
 * Chooses the replicas' microbatch counts, codecs, xdc extras and the split as the solver does;
 * XDT_ERR_CONFIG when it does not fit or the kind does not apply (logs nothing). Tests that
 * enumerate on their own call it. */
xdt_status xdt_solver_evaluate(const xdt_solver_input *in, const int *grid, int P, int D,
                               int microbatch, xdt_schedule_kind kind, xdt_solution *out);

/* The simulator's input for a solution; `all_replicas` false keeps one of each identical group. */
xdt_status xdt_job_costs_build(const xdt_solver_input *in, const xdt_solution *s, bool all_replicas,
                               xdt_job_costs *out);
void xdt_job_costs_free(xdt_job_costs *c);
void xdt_job_costs_sim_input(const xdt_job_costs *c, xdt_sim_input *out);

/* Flat device indices: node n's devices are [first_device(n), first_device(n) + devices). */
int xdt_solver_num_devices(const xdt_topology *t);
int xdt_solver_node_of(const xdt_topology *t, int device);

#endif
