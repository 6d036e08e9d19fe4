/* solver.c: exact single-pipeline search over device chains, predicted by the simulator. */
#include "planner/solver.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/schedule.h"
#include "planner/simulator.h"

int xdt_solver_num_devices(const xdt_topology *t) {
    return t->total_devices;
}

int xdt_solver_node_of(const xdt_topology *t, int device) {
    for (int n = 0; n < t->n_nodes; n++) {
        if (device < t->nodes[n].devices) return n;
        device -= t->nodes[n].devices;
    }
    return -1;
}

/* The path between the devices of two nodes, as the simulator wants it (bytes per ms). */
static xdt_sim_link link_between(const xdt_topology *t, int na, int nb) {
    double gbps, latency_ms;
    xdt_topology_node_path(t, na, nb, &gbps, &latency_ms);
    return xdt_sim_link_from_gbps(gbps, latency_ms);
}

xdt_status xdt_solution_schedule(const xdt_solution *s, xdt_schedule **out) {
    return s->kind == XDT_SCHEDULE_GPIPE ? xdt_schedule_gpipe(s->stages, s->microbatches, out)
                                         : xdt_schedule_1f1b(s->stages, s->microbatches, out);
}

xdt_status xdt_solver_evaluate(const xdt_solver_input *in, const int *chain, int P, int mb,
                               xdt_schedule_kind kind, xdt_solution *out) {
    const xdt_topology *t = in->topo;
    if (P < 1 || P > XDT_SOLVER_MAX_DEVICES || mb < 1 || in->global_batch % mb ||
        (kind != XDT_SCHEDULE_GPIPE && kind != XDT_SCHEDULE_1F1B))
        return XDT_ERR_CONFIG;
    const int M = in->global_batch / mb;
    xdt_solution s;
    memset(&s, 0, sizeof s);
    xdt_chain_device cd[XDT_SOLVER_MAX_DEVICES];
    for (int k = 0; k < P; k++) {
        s.device[k] = chain[k];
        s.node[k] = xdt_solver_node_of(t, chain[k]);
        const xdt_topo_node *n = &t->nodes[s.node[k]];
        /* GPipe keeps every microbatch's activations until the backwards; 1F1B at most P - k */
        s.inflight[k] = kind == XDT_SCHEDULE_GPIPE ? M : (P - k < M ? P - k : M);
        cd[k] = (xdt_chain_device){n->type, n->slowdown, s.inflight[k]};
    }
    char why[200];
    xdt_status st =
        xdt_partition_units(in->cfg, mb, in->seq, cd, P, &in->cost, &s.split, why, sizeof why);
    if (st) return st;
    double fwd[XDT_SOLVER_MAX_DEVICES], bwd[XDT_SOLVER_MAX_DEVICES], bytes[XDT_SOLVER_MAX_DEVICES];
    for (int k = 0; k < P; k++) {
        xdt_stage_cost c;
        xdt_stage_cost_estimate(in->cfg, s.split.first[k], s.split.first[k + 1] - 1, mb, in->seq,
                                cd[k].inflight, cd[k].type, cd[k].slowdown, &in->cost, &c);
        fwd[k] = c.fwd_ms;
        bwd[k] = c.bwd_ms;
        bytes[k] = c.boundary_bytes;
    }
    xdt_sim_link links[XDT_SOLVER_MAX_DEVICES * XDT_SOLVER_MAX_DEVICES];
    memset(links, 0, sizeof links);
    for (int a = 0; a < P; a++)
        for (int b = 0; b < P; b++)
            links[a * P + b] = link_between(t, s.node[a], s.node[b]);
    xdt_schedule *sched = NULL;
    xdt_sim_result r;
    s.kind = kind;
    s.stages = P;
    s.microbatches = M;
    if ((st = xdt_solution_schedule(&s, &sched))) return st;
    xdt_sim_input si = {sched, fwd, bwd, bytes, links, 0, 0};
    st = xdt_simulate(&si, &r);
    xdt_schedule_destroy(sched);
    if (st) return st;
    s.stages = P;
    s.microbatch = mb;
    s.microbatches = M;
    s.step_ms = r.step_ms;
    s.tokens_per_s = (double)in->global_batch * in->seq / (r.step_ms * 1e-3);
    double busy = 0;
    for (int k = 0; k < P; k++)
        busy += r.busy_ms[k];
    s.bubble = 1 - busy / (P * r.step_ms);
    xdt_sim_result_free(&r);
    *out = s;
    return XDT_OK;
}

typedef struct search {
    const xdt_solver_input *in;
    int n_dev, mb;
    xdt_schedule_kind kind;
    int chain[XDT_SOLVER_MAX_DEVICES];
    bool used[XDT_SOLVER_MAX_DEVICES];
    xdt_solution best;
    bool found;
} search;

/* Extends the chain; a device is taken only if every lower-indexed device of its node is taken
 * already (devices of a node are interchangeable: this keeps one of each equivalent order). */
static void extend(search *s, int len) {
    if (len > 0) {
        xdt_solution sol;
        if (xdt_solver_evaluate(s->in, s->chain, len, s->mb, s->kind, &sol) == XDT_OK &&
            (!s->found || sol.step_ms < s->best.step_ms - 1e-12)) {
            s->best = sol;
            s->found = true;
        }
    }
    const int units = xdt_gpt_num_units(s->in->cfg);
    if (len == s->n_dev || len == units) return;
    for (int d = 0; d < s->n_dev; d++) {
        if (s->used[d]) continue;
        int node = xdt_solver_node_of(s->in->topo, d);
        if (d > 0 && xdt_solver_node_of(s->in->topo, d - 1) == node && !s->used[d - 1]) continue;
        s->used[d] = true;
        s->chain[len] = d;
        extend(s, len + 1);
        s->used[d] = false;
    }
}

/* Searches chains under each schedule kind the input allows. */
static void search_kinds(search *s) {
    const xdt_schedule_kind kinds[] = {XDT_SCHEDULE_1F1B, XDT_SCHEDULE_GPIPE};
    for (int i = 0; i < 2; i++) {
        if (s->in->schedule >= 0 && (int)kinds[i] != s->in->schedule) continue;
        s->kind = kinds[i];
        extend(s, 0);
    }
}

xdt_status xdt_solve(const xdt_solver_input *in, xdt_solution *out) {
    const int n = xdt_solver_num_devices(in->topo);
    if (in->schedule >= 0 && in->schedule != XDT_SCHEDULE_GPIPE &&
        in->schedule != XDT_SCHEDULE_1F1B)
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "solver: schedule %s is not chosen by this solver "
                        "yet (gpipe, 1f1b)",
                        xdt_schedule_kind_name((xdt_schedule_kind)in->schedule));
    if (n > XDT_SOLVER_MAX_DEVICES)
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "solver: %d devices; the exact search handles up to "
                        "%d (the pruned search for large clusters is not built yet)",
                        n, XDT_SOLVER_MAX_DEVICES);
    const int sizes[] = {1, 2, 4, 8};
    search s;
    memset(&s, 0, sizeof s);
    s.in = in;
    s.n_dev = n;
    bool any_size = false;
    for (int i = 0; i < 4; i++) {
        if (in->microbatch && sizes[i] != in->microbatch) continue;
        if (in->global_batch % sizes[i]) continue;
        any_size = true;
        s.mb = sizes[i];
        search_kinds(&s);
    }
    if (in->microbatch && !any_size && in->global_batch % in->microbatch == 0) {
        s.mb = in->microbatch;
        search_kinds(&s);
        any_size = true;
    }
    if (!any_size)
        return xdt_fail(XDT_ERR_CONFIG, "global batch %d is not divisible by the microbatch size",
                        in->global_batch);
    if (!s.found)
        return xdt_fail(XDT_ERR_CONFIG, "the model fits no placement on this cluster (%d devices)",
                        n);
    *out = s.best;
    return XDT_OK;
}
