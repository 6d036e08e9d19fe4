/* partition.c: the exact bottleneck split by dynamic programming, and the fast bisection-greedy
 * split for large searches. Both read per-unit figures tabulated once per (class, stage). */
#include "planner/partition.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct unit_table {
    int U, P, C;
    double *ms;   /* [c][k][u]: forward + backward of unit u on class c's stage-k device */
    double *mem;  /* [c][k][u]: its memory, the head's tied copy excluded */
    double *have; /* [c][k]: bytes the stage may use */
    double tied;  /* bytes of the head's copy of the embedding when it sits apart from it */
} unit_table;

static void table_free(unit_table *tb) {
    free(tb->ms);
    free(tb->mem);
    free(tb->have);
}

static xdt_status table_build(const xdt_partition_request *rq, unit_table *tb) {
    const int U = xdt_gpt_num_units(rq->cfg), P = rq->P, C = rq->classes;
    memset(tb, 0, sizeof *tb);
    tb->U = U;
    tb->P = P;
    tb->C = C;
    const size_t n = (size_t)C * P * U;
    tb->ms = malloc(sizeof(double) * n);
    tb->mem = malloc(sizeof(double) * n);
    tb->have = malloc(sizeof(double) * (size_t)C * P);
    if (!tb->ms || !tb->mem || !tb->have) {
        table_free(tb);
        return xdt_fail(XDT_ERR_NO_MEMORY, "partition: out of memory");
    }
    xdt_unit_info hi;
    xdt_gpt_unit_info(rq->cfg, U - 1, rq->b, rq->t, &hi);
    tb->tied = 16.0 * (double)hi.tied_params;
    /* per-unit time, fixed memory and one microbatch's activations, computed once per
     * (device type, slowdown): long chains hold few distinct devices */
    enum { TYPES = 16 };
    const xdt_device_type *type_of[TYPES];
    double slowdown_of[TYPES];
    double *per_type = malloc(sizeof(double) * 3 * TYPES * (size_t)U);
    if (!per_type) {
        table_free(tb);
        return xdt_fail(XDT_ERR_NO_MEMORY, "partition: out of memory");
    }
    int n_types = 0;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < P; k++) {
            const xdt_chain_device *d = &rq->chain[(size_t)c * P + k];
            const double share = d->memory_share > 0 ? d->memory_share : 1;
            tb->have[(size_t)c * P + k] = d->type->memory_gib * 1073741824.0 * share;
            int ty = 0;
            while (ty < n_types && !(type_of[ty] == d->type && slowdown_of[ty] == d->slowdown))
                ty++;
            if (ty == n_types) {
                if (n_types == TYPES)
                    ty = n_types - 1; /* recycle the last slot */
                else
                    n_types++;
                type_of[ty] = d->type;
                slowdown_of[ty] = d->slowdown;
                for (int u = 0; u < U; u++) {
                    xdt_stage_cost sc;
                    xdt_stage_cost_estimate(rq->cfg, u, u, rq->b, rq->t, 1, d->type, d->slowdown,
                                            rq->cost, &sc);
                    double *row = &per_type[((size_t)ty * U + u) * 3];
                    row[0] = sc.fwd_ms + sc.bwd_ms;
                    row[1] = 16 * sc.params;
                    row[2] = sc.memory_bytes - 16 * sc.params;
                }
            }
            const double inflight = d->inflight > 0 ? d->inflight : 1;
            for (int u = 0; u < U; u++) {
                const double *row = &per_type[((size_t)ty * U + u) * 3];
                const size_t i = ((size_t)c * P + k) * U + u;
                tb->ms[i] = row[0];
                /* a one-unit head stage counts the tied copy; it is added back below */
                tb->mem[i] = row[1] + row[2] * inflight - (u == U - 1 && u > 0 ? tb->tied : 0);
            }
        }
    free(per_type);
    return XDT_OK;
}

static void describe_misfit(const xdt_partition_request *rq, const unit_table *tb, int c, int k,
                            double need, char *why, size_t cap) {
    const xdt_chain_device *d = &rq->chain[(size_t)c * tb->P + k];
    snprintf(why, cap, "stage %d on %s needs %.1f GiB, has %.1f GiB", k, d->type->name,
             need / 1073741824.0, tb->have[(size_t)c * tb->P + k] / 1073741824.0);
}

/* Stage k holding units [j, i): its time (slowest class) and whether it fits every class.
 * Sums are accumulated by the callers; this adds the tied head copy where it applies. */
static bool stage_fits(const unit_table *tb, int k, int j, int i, const double *mem_c) {
    for (int c = 0; c < tb->C; c++) {
        double m = mem_c[c] + (i == tb->U && j > 0 ? tb->tied : 0);
        if (m > tb->have[(size_t)c * tb->P + k]) return false;
    }
    return true;
}

static xdt_status solve_dp(const xdt_partition_request *rq, const unit_table *tb, double *best,
                           int *cut, char *why, size_t cap) {
    const int U = tb->U, P = tb->P, C = tb->C;
    const size_t U1 = (size_t)U + 1;
    double ms_c[64], mem_c[64];
    for (size_t i = 0; i < (size_t)(P + 1) * U1; i++) {
        best[i] = DBL_MAX;
        cut[i] = -1;
    }
    best[0] = 0;
    for (int k = 1; k <= P; k++) {
        for (int i = k; i <= U - (P - k); i++) {
            for (int c = 0; c < C; c++)
                ms_c[c] = mem_c[c] = 0;
            for (int j = i - 1; j >= k - 1; j--) { /* stage k - 1 holds units [j, i) */
                double ms = 0;
                for (int c = 0; c < C; c++) {
                    const size_t at = ((size_t)c * P + (k - 1)) * U + j;
                    ms_c[c] += tb->ms[at];
                    mem_c[c] += tb->mem[at];
                    ms = ms_c[c] > ms ? ms_c[c] : ms;
                }
                if (!stage_fits(tb, k - 1, j, i, mem_c)) {
                    if (!why[0] || k == 1) {
                        for (int c = 0; c < C; c++)
                            describe_misfit(rq, tb, c, k - 1,
                                            mem_c[c] + (i == U && j > 0 ? tb->tied : 0), why, cap);
                    }
                    break; /* wider ranges only need more */
                }
                const double prev = best[(size_t)(k - 1) * U1 + j];
                if (prev == DBL_MAX) continue;
                const double v = prev > ms ? prev : ms;
                if (v < best[(size_t)k * U1 + i]) {
                    best[(size_t)k * U1 + i] = v;
                    cut[(size_t)k * U1 + i] = j;
                }
            }
        }
    }
    return best[(size_t)P * U1 + U] == DBL_MAX ? XDT_ERR_CONFIG : XDT_OK;
}

/* Greedy fill under bottleneck `tau`: each stage takes the longest prefix that stays within tau
 * and fits, leaving one unit for each later stage. Writes first[] and returns whether all units
 * were placed. */
static bool greedy_fill(const unit_table *tb, double tau, int *first, char *why, size_t cap,
                        const xdt_partition_request *rq) {
    const int U = tb->U, P = tb->P, C = tb->C;
    double ms_c[64], mem_c[64];
    int j = 0;
    for (int k = 0; k < P; k++) {
        first[k] = j;
        const int limit = U - (P - 1 - k); /* the stage may end at most here (exclusive) */
        for (int c = 0; c < C; c++)
            ms_c[c] = mem_c[c] = 0;
        int i = j;
        while (i < limit) {
            bool ok = true;
            for (int c = 0; c < C; c++) {
                const size_t at = ((size_t)c * P + k) * U + i;
                if (ms_c[c] + tb->ms[at] > tau) ok = false;
                mem_c[c] += tb->mem[at];
                ms_c[c] += tb->ms[at];
            }
            if (ok && !stage_fits(tb, k, j, i + 1, mem_c)) {
                if (why && i == j) describe_misfit(rq, tb, 0, k, mem_c[0], why, cap);
                ok = false;
            }
            if (!ok) break;
            i++;
        }
        if (i == j) return false; /* not even one unit */
        j = i;
    }
    first[P] = U;
    return j == U;
}

static xdt_status solve_greedy(const xdt_partition_request *rq, const unit_table *tb, int *first,
                               char *why, size_t cap) {
    const int U = tb->U, P = tb->P, C = tb->C;
    double lo = 0, hi = 0;
    for (int c = 0; c < C; c++)
        for (int k = 0; k < P; k++) {
            double all = 0;
            for (int u = 0; u < U; u++)
                all += tb->ms[((size_t)c * P + k) * U + u];
            hi = all > hi ? all : hi;
        }
    if (!greedy_fill(tb, hi, first, why, cap, rq)) return XDT_ERR_CONFIG;
    for (int it = 0; it < 60 && hi - lo > 1e-12 * hi; it++) {
        const double mid = (lo + hi) / 2;
        if (greedy_fill(tb, mid, first, NULL, 0, rq))
            hi = mid;
        else
            lo = mid;
    }
    greedy_fill(tb, hi, first, NULL, 0, rq);
    return XDT_OK;
}

xdt_status xdt_partition_solve(const xdt_partition_request *rq, xdt_partition *out, char *why_out,
                               size_t why_cap) {
    const int U = xdt_gpt_num_units(rq->cfg), P = rq->P;
    if (P < 1 || P > 1024 || rq->classes < 1 || rq->classes > 64)
        return xdt_fail(XDT_ERR_CONFIG,
                        "partition: %d stages x %d device classes (1..1024 x 1..64 supported)", P,
                        rq->classes);
    if (P > U)
        return xdt_fail(XDT_ERR_CONFIG,
                        "the model has %d units (embedding, %d blocks, head), "
                        "fewer than the %d pipeline stages",
                        U, rq->cfg->n_layer, P);
    unit_table tb;
    xdt_status st = table_build(rq, &tb);
    if (st) return st;
    const size_t U1 = (size_t)U + 1;
    char why[160] = "";
    xdt_partition p;
    memset(&p, 0, sizeof p);
    if (rq->fast) {
        st = solve_greedy(rq, &tb, p.first, why, sizeof why);
    } else {
        double *best = malloc(sizeof(double) * (size_t)(P + 1) * U1);
        int *cut = malloc(sizeof(int) * (size_t)(P + 1) * U1);
        st = best && cut ? solve_dp(rq, &tb, best, cut, why, sizeof why) : XDT_ERR_NO_MEMORY;
        if (st == XDT_OK) {
            int i = U;
            for (int k = P; k >= 1; k--) {
                p.first[k - 1] = cut[(size_t)k * U1 + i];
                i = p.first[k - 1];
            }
            p.first[P] = U;
        }
        free(best);
        free(cut);
    }
    if (st == XDT_OK) {
        for (int k = 0; k < P; k++) {
            for (int c = 0; c < rq->classes; c++) {
                double ms = 0;
                for (int u = p.first[k]; u < p.first[k + 1]; u++)
                    ms += tb.ms[((size_t)c * P + k) * U + u];
                p.stage_ms[k] = ms > p.stage_ms[k] ? ms : p.stage_ms[k];
            }
            p.bottleneck_ms = p.stage_ms[k] > p.bottleneck_ms ? p.stage_ms[k] : p.bottleneck_ms;
        }
        *out = p;
    } else if (st == XDT_ERR_CONFIG) {
        if (why_out)
            snprintf(why_out, why_cap, "the model fits no placement on these %d stages: %s", P,
                     why[0] ? why : "no split fits");
        else
            xdt_fail(XDT_ERR_CONFIG, "the model fits no placement on these %d stages: %s", P,
                     why[0] ? why : "no split fits");
    } else if (st == XDT_ERR_NO_MEMORY) {
        xdt_fail(st, "partition: out of memory");
    }
    table_free(&tb);
    return st;
}

xdt_status xdt_partition_units(const xdt_model_config *cfg, int b, int t,
                               const xdt_chain_device *chain, int P, const xdt_cost_params *cp,
                               xdt_partition *out, char *why, size_t cap) {
    xdt_partition_request rq = {cfg, b, t, chain, P, 1, cp, false};
    return xdt_partition_solve(&rq, out, why, cap);
}
