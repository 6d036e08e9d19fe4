/* solver.c: the searches over layouts -- exact for small clusters, pruned for large ones. */
#include "planner/solver.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "planner/solver_internal.h"

typedef struct search {
    const xdt_solver_input *in;
    int n, P, D;
    int mbs[8], n_mbs;
    xdt_schedule_kind kinds[4];
    int n_kinds;
    int grid[XDT_PLAN_MAX_RANKS];
    bool used[XDT_PLAN_MAX_RANKS];
    xdt_solution *best, *trial;
    bool found;
    xdt_eval_options opt;
} search;

/* Keeps `trial` when it beats the best (ties keep the earlier: the search is deterministic). */
static void consider(search *s) {
    if (!s->found || s->trial->step_ms < s->best->step_ms * (1 - 1e-12)) {
        *s->best = *s->trial;
        s->found = true;
    }
}

static void evaluate_grid(search *s, const int *grid, int P, int D) {
    for (int i = 0; i < s->n_mbs; i++)
        for (int k = 0; k < s->n_kinds; k++)
            if (xdt_layout_evaluate(s->in, grid, P, D, s->mbs[i], s->kinds[k], &s->opt, s->trial) ==
                XDT_OK)
                consider(s);
}

/* Fills grid positions in replica-major order. A device is taken only when every lower device
 * of its node is taken (a node's devices are interchangeable), and replicas come in
 * non-decreasing order of their first rank's node (replicas are unordered). */
static void fill(search *s, int pos) {
    const int P = s->P, D = s->D;
    if (pos == P * D) {
        evaluate_grid(s, s->grid, P, D);
        return;
    }
    const xdt_topology *t = s->in->topo;
    for (int dev = 0; dev < s->n; dev++) {
        if (s->used[dev]) continue;
        const int node = xdt_solver_node_of(t, dev);
        if (dev > 0 && xdt_solver_node_of(t, dev - 1) == node && !s->used[dev - 1]) continue;
        if (pos % P == 0 && pos > 0 && node < xdt_solver_node_of(t, s->grid[pos - P])) continue;
        s->used[dev] = true;
        s->grid[pos] = dev;
        fill(s, pos + 1);
        s->used[dev] = false;
    }
}

static void exact_search(search *s) {
    const int U = xdt_gpt_num_units(s->in->cfg);
    for (int D = 1; D <= s->n; D++) {
        if (s->in->max_replicas && D > s->in->max_replicas) break;
        for (int P = 1; P <= U && P * D <= s->n; P++) {
            s->P = P;
            s->D = D;
            fill(s, 0);
        }
    }
}

/* --- pruned search --- */

typedef struct ranked {
    int P, D, mb;
    double step_ms;
    int *grid;
} ranked;

enum { KEEP = 8 };

/* Devices in a site order: sites as given, inside a site nodes by memory (early stages hold
 * the most activations), then speed, then position; devices of a node together. */
typedef struct dev_key {
    int device, site_rank, node;
    double memory, speed;
} dev_key;

static int by_site_then_type(const void *pa, const void *pb) {
    const dev_key *a = pa, *b = pb;
    if (a->site_rank != b->site_rank) return a->site_rank - b->site_rank;
    if (a->memory != b->memory) return a->memory > b->memory ? -1 : 1;
    if (a->speed != b->speed) return a->speed > b->speed ? -1 : 1;
    return a->device - b->device;
}

static int by_speed(const void *pa, const void *pb) {
    const dev_key *a = pa, *b = pb;
    if (a->speed != b->speed) return a->speed > b->speed ? -1 : 1;
    return a->device - b->device;
}

static void remember(ranked *top, int *n_top, const xdt_solution *s, const int *grid) {
    int at = *n_top;
    while (at > 0 && top[at - 1].step_ms > s->step_ms)
        at--;
    if (at >= KEEP) return;
    int *g = *n_top == KEEP ? top[KEEP - 1].grid : malloc(sizeof(int) * XDT_PLAN_MAX_RANKS);
    if (!g) return;
    if (*n_top < KEEP) (*n_top)++;
    memmove(&top[at + 1], &top[at], sizeof *top * (size_t)(*n_top - 1 - at));
    memcpy(g, grid, sizeof(int) * (size_t)(s->stages * s->replicas));
    top[at] = (ranked){s->stages, s->replicas, s->microbatch, s->step_ms, g};
}

static void pruned_search(search *s) {
    const xdt_solver_input *in = s->in;
    const xdt_topology *t = in->topo;
    const int n = s->n, U = xdt_gpt_num_units(in->cfg);
    dev_key *keys = malloc(sizeof *keys * (size_t)n), *chosen = malloc(sizeof *chosen * (size_t)n);
    int *grid = malloc(sizeof(int) * XDT_PLAN_MAX_RANKS);
    ranked top[KEEP];
    int n_top = 0;
    if (!keys || !chosen || !grid) goto out;
    /* site orders: every permutation for up to 3 sites, else as listed and reversed */
    int orders[6][XDT_MAX_SITES], n_orders = 0;
    const int ns = t->n_sites;
    if (ns <= 3) {
        static const int perm3[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                        {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        static const int perm2[2][2] = {{0, 1}, {1, 0}};
        const int count = ns == 1 ? 1 : ns == 2 ? 2 : 6;
        for (int o = 0; o < count; o++)
            for (int i = 0; i < ns; i++)
                orders[n_orders][i] = ns == 1 ? 0 : ns == 2 ? perm2[o][i] : perm3[o][i];
        n_orders = count;
    } else {
        for (int i = 0; i < ns; i++) {
            orders[0][i] = i;
            orders[1][i] = ns - 1 - i;
        }
        n_orders = 2;
    }
    static const int widths[] = {1,  2,  3,   4,   6,   8,   12,  16,  24,   32,   48,
                                 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048};
    const xdt_eval_options estimate = {true, true};
    for (int o = 0; o < n_orders; o++) {
        for (int i = 0; i < n; i++) {
            const int node = xdt_solver_node_of(t, i);
            const xdt_topo_node *nd = &t->nodes[node];
            int rank = 0;
            while (orders[o][rank] != nd->site)
                rank++;
            keys[i] =
                (dev_key){i, rank, node, nd->type->memory_gib, 1 / xdt_model_ms_on(in, nd, 1)};
        }
        qsort(keys, (size_t)n, sizeof *keys, by_site_then_type);
        for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
            const int D = widths[w];
            if (D > n || (in->max_replicas && D > in->max_replicas)) break;
            for (int P = 1; P <= U && P * D <= n; P++) {
                /* the fastest P x D devices, kept in site order */
                memcpy(chosen, keys, sizeof *keys * (size_t)n);
                for (int i = 0; i < n; i++)
                    chosen[i].site_rank = chosen[i].site_rank * n + i; /* remember the order */
                qsort(chosen, (size_t)n, sizeof *chosen, by_speed);
                qsort(chosen, (size_t)(P * D), sizeof *chosen, by_site_then_type);
                for (int layout = 0; layout < (P > 1 && D > 1 ? 2 : 1); layout++) {
                    /* 0: stage-major (stage p of every replica on neighbouring devices, so
                     * pipelines cross sites), 1: replica-major (each replica on neighbouring
                     * devices, so replicas stay in their sites and all-reduce across them) */
                    for (int d = 0; d < D; d++)
                        for (int p = 0; p < P; p++)
                            grid[d * P + p] =
                                layout == 0 ? chosen[p * D + d].device : chosen[d * P + p].device;
                    for (int i = 0; i < s->n_mbs; i++) {
                        const xdt_schedule_kind kind = in->schedule == XDT_SCHEDULE_GPIPE
                                                           ? XDT_SCHEDULE_GPIPE
                                                           : XDT_SCHEDULE_1F1B;
                        if (xdt_layout_evaluate(in, grid, P, D, s->mbs[i], kind, &estimate,
                                                s->trial) == XDT_OK)
                            remember(top, &n_top, s->trial, grid);
                    }
                }
            }
        }
    }
    for (int i = 0; i < n_top; i++) { /* the few best, simulated under every schedule kind */
        const int saved_n = s->n_mbs, saved_mb = s->mbs[0];
        s->n_mbs = 1;
        s->mbs[0] = top[i].mb;
        evaluate_grid(s, top[i].grid, top[i].P, top[i].D);
        s->n_mbs = saved_n;
        s->mbs[0] = saved_mb;
    }
out:
    for (int i = 0; i < n_top; i++)
        free(top[i].grid);
    free(keys);
    free(chosen);
    free(grid);
}

xdt_status xdt_solve(const xdt_solver_input *in, xdt_solution *out) {
    const int n = xdt_solver_num_devices(in->topo);
    search *s = calloc(1, sizeof *s);
    if (!s) return xdt_fail(XDT_ERR_NO_MEMORY, "solver: out of memory");
    s->in = in;
    s->n = n < XDT_PLAN_MAX_RANKS ? n : XDT_PLAN_MAX_RANKS;
    s->best = malloc(sizeof *s->best);
    s->trial = malloc(sizeof *s->trial);
    xdt_status st = XDT_OK;
    if (!s->best || !s->trial) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "solver: out of memory");
        goto out;
    }
    if (n > XDT_PLAN_MAX_RANKS) {
        st = xdt_fail(XDT_ERR_UNSUPPORTED, "solver: %d devices; plans hold up to %d ranks", n,
                      XDT_PLAN_MAX_RANKS);
        goto out;
    }
    const int sizes[] = {1, 2, 4, 8};
    for (int i = 0; i < 4; i++)
        if (!in->microbatch && in->global_batch % sizes[i] == 0) s->mbs[s->n_mbs++] = sizes[i];
    if (in->microbatch && in->global_batch % in->microbatch == 0)
        s->mbs[s->n_mbs++] = in->microbatch;
    if (!s->n_mbs) {
        st = xdt_fail(XDT_ERR_CONFIG, "global batch %d is not divisible by the microbatch size %d",
                      in->global_batch, in->microbatch ? in->microbatch : 1);
        goto out;
    }
    const xdt_schedule_kind all[] = {XDT_SCHEDULE_1F1B, XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_XDC,
                                     XDT_SCHEDULE_INTERLEAVED};
    for (int k = 0; k < 4; k++)
        if (in->schedule < 0 || in->schedule == (int)all[k]) s->kinds[s->n_kinds++] = all[k];
    if (!s->n_kinds) {
        st = xdt_fail(XDT_ERR_CONFIG, "solver: unknown schedule kind %d", in->schedule);
        goto out;
    }
    const bool exact = in->search == XDT_SEARCH_EXACT ||
                       (in->search == XDT_SEARCH_AUTO && n <= XDT_SOLVER_EXACT_DEVICES);
    s->opt.fast_split = !exact;
    if (exact)
        exact_search(s);
    else
        pruned_search(s);
    if (!s->found) {
        st = xdt_fail(
            XDT_ERR_CONFIG, "the model fits no placement on this cluster (%d devices, schedule %s)",
            n, in->schedule < 0 ? "any" : xdt_schedule_kind_name((xdt_schedule_kind)in->schedule));
        goto out;
    }
    *out = *s->best;
out:
    free(s->best);
    free(s->trial);
    free(s);
    return st;
}
