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

/* Whether the input allows a P x D layout. */
static bool shape_allowed(const xdt_solver_input *in, int P, int D) {
    return (!in->stages || P == in->stages) && (!in->replicas || D == in->replicas) &&
           (!in->max_replicas || D <= in->max_replicas);
}

static void evaluate_grid(search *s, const int *grid, int P, int D) {
    if (!shape_allowed(s->in, P, D)) return;
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
            if (!shape_allowed(s->in, P, D)) continue;
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

enum { KEEP = 12 };

/* A device's place in an arrangement: its site's position in the arrangement, then its node's
 * memory (early stages hold the most activations) descending or ascending, speed, position. */
typedef struct dev_key {
    int device, site_rank;
    double memory, speed, rate; /* rate: best sequences per ms over the microbatch sizes */
} dev_key;

static int by_arrangement(const void *pa, const void *pb) {
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

/* Site arrangements: ordered choices of sites the layout uses. Up to 3 sites every ordered
 * non-empty subset; beyond, each site alone, all in order and all reversed. Returns the count;
 * arr[i][0..len[i]) are site indices. */
static int site_arrangements(int ns, int arr[][XDT_MAX_SITES], int *len) {
    int n = 0;
    if (ns <= 3) {
        static const int perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                        {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
        for (int mask = 1; mask < (1 << ns); mask++) {
            int members[3], k = 0;
            for (int i = 0; i < ns; i++)
                if (mask & (1 << i)) members[k++] = i;
            for (int p = 0; p < 6; p++) { /* distinct orders of the members */
                int order[3], m = 0;
                for (int i = 0; i < 3; i++)
                    if (perms[p][i] < k) order[m++] = members[perms[p][i]];
                bool seen = false;
                for (int q = 0; q < n && !seen; q++)
                    seen = len[q] == k && !memcmp(arr[q], order, sizeof(int) * (size_t)k);
                if (seen) continue;
                memcpy(arr[n], order, sizeof(int) * (size_t)k);
                len[n++] = k;
            }
        }
        return n;
    }
    for (int s = 0; s < ns; s++) {
        arr[n][0] = s;
        len[n++] = 1;
    }
    for (int i = 0; i < ns; i++) {
        arr[n][i] = i;
        arr[n + 1][i] = ns - 1 - i;
    }
    len[n] = len[n + 1] = ns;
    return n + 2;
}

/* Ranks layouts of the devices `keys` (in arrangement order) for every depth and width by the
 * closed-form estimate, keeping the best KEEP. */
static void rank_layouts(search *s, const dev_key *keys, int n, dev_key *chosen, int *grid,
                         ranked *top, int *n_top) {
    const xdt_solver_input *in = s->in;
    const int U = xdt_gpt_num_units(in->cfg);
    static const int common[] = {1,  2,  3,   4,   6,   8,   12,  16,  24,   32,   48,
                                 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048};
    /* a width the input fixes is searched alone */
    const int *widths = in->replicas ? &in->replicas : common;
    const size_t n_widths = in->replicas ? 1 : sizeof common / sizeof common[0];
    const xdt_eval_options estimate = {true, true};
    const xdt_schedule_kind kind =
        in->schedule == XDT_SCHEDULE_GPIPE ? XDT_SCHEDULE_GPIPE : XDT_SCHEDULE_1F1B;
    for (size_t w = 0; w < n_widths; w++) {
        const int D = widths[w];
        if (D > n || (in->max_replicas && D > in->max_replicas)) break;
        for (int P = 1; P <= U && P * D <= n; P++) {
            if (!shape_allowed(in, P, D)) continue;
            /* the fastest P x D devices, kept in arrangement order (site_rank is rewritten to
             * the arrangement position so the second sort restores it) */
            memcpy(chosen, keys, sizeof *keys * (size_t)n);
            for (int i = 0; i < n; i++)
                chosen[i].site_rank = i;
            qsort(chosen, (size_t)n, sizeof *chosen, by_speed);
            double rate = 0;
            for (int i = 0; i < P * D; i++)
                rate += chosen[i].rate;
            /* no layout of these devices beats every sequence computed in parallel */
            if (*n_top == KEEP && in->global_batch / rate >= top[KEEP - 1].step_ms) continue;
            qsort(chosen, (size_t)(P * D), sizeof *chosen, by_arrangement);
            for (int layout = 0; layout < (P > 1 && D > 1 ? 2 : 1); layout++) {
                /* 0: stage-major (stage p of every replica on neighbouring devices, so
                 * pipelines cross sites), 1: replica-major (each replica on neighbouring
                 * devices, so replicas stay in their sites and all-reduce across them) */
                for (int d = 0; d < D; d++)
                    for (int p = 0; p < P; p++)
                        grid[d * P + p] =
                            layout == 0 ? chosen[p * D + d].device : chosen[d * P + p].device;
                for (int i = 0; i < s->n_mbs; i++)
                    if (xdt_layout_evaluate(in, grid, P, D, s->mbs[i], kind, &estimate, s->trial) ==
                        XDT_OK)
                        remember(top, n_top, s->trial, grid);
            }
        }
    }
}

static void pruned_search(search *s) {
    const xdt_solver_input *in = s->in;
    const xdt_topology *t = in->topo;
    const int n = s->n;
    dev_key *all = malloc(sizeof *all * (size_t)n), *keys = malloc(sizeof *keys * (size_t)n);
    dev_key *chosen = malloc(sizeof *chosen * (size_t)n);
    int *grid = malloc(sizeof(int) * XDT_PLAN_MAX_RANKS);
    int(*arr)[XDT_MAX_SITES] = malloc(sizeof *arr * 64), len[64];
    ranked top[KEEP];
    int n_top = 0;
    if (!all || !keys || !chosen || !grid || !arr) goto out;
    /* speeds once per (type, slowdown): nodes of a kind share them */
    for (int i = 0; i < n; i++) {
        const xdt_topo_node *nd = &t->nodes[xdt_solver_node_of(t, i)];
        int j = 0;
        while (j < i && !(t->nodes[xdt_solver_node_of(t, all[j].device)].type == nd->type &&
                          t->nodes[xdt_solver_node_of(t, all[j].device)].slowdown == nd->slowdown))
            j++;
        all[i] = (dev_key){i, nd->site, nd->type->memory_gib, 0, 0};
        if (j < i) {
            all[i].speed = all[j].speed;
            all[i].rate = all[j].rate;
            continue;
        }
        all[i].speed = 1 / xdt_model_ms_on(in, nd, 1);
        for (int m = 0; m < s->n_mbs; m++) {
            const double r = s->mbs[m] / xdt_model_ms_on(in, nd, s->mbs[m]);
            all[i].rate = r > all[i].rate ? r : all[i].rate;
        }
    }
    const int n_arr = site_arrangements(t->n_sites, arr, len);
    for (int a = 0; a < n_arr; a++)
        for (int memory_order = 0; memory_order < 2; memory_order++) {
            int m = 0;
            for (int i = 0; i < n; i++)
                for (int k = 0; k < len[a]; k++)
                    if (all[i].site_rank == arr[a][k]) {
                        keys[m] = all[i];
                        keys[m].site_rank = k;
                        /* the second pass puts small memories (and slow devices) first */
                        if (memory_order) keys[m].memory = -keys[m].memory;
                        m++;
                    }
            qsort(keys, (size_t)m, sizeof *keys, by_arrangement);
            for (int i = 0; memory_order && i < m; i++)
                keys[i].memory = -keys[i].memory;
            rank_layouts(s, keys, m, chosen, grid, top, &n_top);
        }
    for (int i = 0; i < n_top; i++) { /* the best few, simulated under every schedule kind */
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
    free(all);
    free(keys);
    free(chosen);
    free(grid);
    free(arr);
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
