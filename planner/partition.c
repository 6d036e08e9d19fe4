/* partition.c: the exact bottleneck split by dynamic programming. */
#include "planner/partition.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

xdt_status xdt_partition_units(const xdt_model_config *cfg, int b, int t,
                               const xdt_chain_device *chain, int P, const xdt_cost_params *cp,
                               xdt_partition *out, char *why_out, size_t why_cap) {
    const int U = xdt_gpt_num_units(cfg);
    if (P < 1 || P > 1024)
        return xdt_fail(XDT_ERR_CONFIG, "partition: %d stages (1..1024 supported)", P);
    if (P > U)
        return xdt_fail(XDT_ERR_CONFIG,
                        "the model has %d units (embedding, %d blocks, head), "
                        "fewer than the %d pipeline stages",
                        U, cfg->n_layer, P);
    /* cost[k][j][i]: stage k holding units [j, i); computed on demand from per-unit figures */
    const size_t U1 = (size_t)U + 1;
    double *best = malloc(sizeof(double) * (size_t)(P + 1) * U1);
    int *cut = malloc(sizeof(int) * (size_t)(P + 1) * U1);
    double *unit_ms = malloc(sizeof(double) * (size_t)P * U),
           *unit_mem = malloc(sizeof(double) * (size_t)P * U);
    if (!best || !cut || !unit_ms || !unit_mem) {
        free(best);
        free(cut);
        free(unit_ms);
        free(unit_mem);
        return xdt_fail(XDT_ERR_NO_MEMORY, "partition: out of memory");
    }
    for (int k = 0; k < P; k++)
        for (int u = 0; u < U; u++) {
            xdt_stage_cost c;
            xdt_stage_cost_estimate(cfg, u, u, b, t, chain[k].inflight, chain[k].type,
                                    chain[k].slowdown, cp, &c);
            unit_ms[(size_t)k * U + u] = c.fwd_ms + c.bwd_ms;
            unit_mem[(size_t)k * U + u] = c.memory_bytes;
            if (u == U - 1) { /* counted below, only when the head sits apart from wte */
                xdt_unit_info hi;
                xdt_gpt_unit_info(cfg, u, b, t, &hi);
                unit_mem[(size_t)k * U + u] -= 16.0 * (double)hi.tied_params;
            }
        }
    for (size_t i = 0; i < (size_t)(P + 1) * U1; i++) {
        best[i] = DBL_MAX;
        cut[i] = -1;
    }
    best[0] = 0;
    char why[160] = "";
    for (int k = 1; k <= P; k++) {
        const xdt_chain_device *d = &chain[k - 1];
        const double have = d->type->memory_gib * 1073741824.0;
        for (int i = k; i <= U - (P - k); i++) {
            double ms = 0, mem = 0;
            for (int j = i - 1; j >= k - 1; j--) { /* stage k holds units [j, i) */
                ms += unit_ms[(size_t)(k - 1) * U + j];
                mem += unit_mem[(size_t)(k - 1) * U + j];
                double stage_mem = mem;
                if (i == U && j > 0) { /* the head apart from the embedding: its tied copy */
                    xdt_unit_info hi;
                    xdt_gpt_unit_info(cfg, U - 1, b, t, &hi);
                    stage_mem += 16.0 * (double)hi.tied_params;
                }
                if (stage_mem > have) {
                    if (!why[0] || k == 1)
                        snprintf(why, sizeof why, "stage %d on %s needs %.1f GiB, has %.1f GiB",
                                 k - 1, d->type->name, stage_mem / 1073741824.0,
                                 d->type->memory_gib);
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
    xdt_status st = XDT_OK;
    if (best[(size_t)P * U1 + U] == DBL_MAX) {
        if (why_out) {
            snprintf(why_out, why_cap, "the model fits no placement on these %d stages: %s", P,
                     why[0] ? why : "no split fits");
            st = XDT_ERR_CONFIG;
        } else {
            st = xdt_fail(XDT_ERR_CONFIG, "the model fits no placement on these %d stages: %s", P,
                          why[0] ? why : "no split fits");
        }
    } else {
        xdt_partition p;
        memset(&p, 0, sizeof p);
        p.bottleneck_ms = best[(size_t)P * U1 + U];
        int i = U;
        for (int k = P; k >= 1; k--) {
            int j = cut[(size_t)k * U1 + i];
            p.first[k - 1] = j;
            double ms = 0;
            for (int u = j; u < i; u++)
                ms += unit_ms[(size_t)(k - 1) * U + u];
            p.stage_ms[k - 1] = ms;
            i = j;
        }
        p.first[P] = U;
        *out = p;
    }
    free(best);
    free(cut);
    free(unit_ms);
    free(unit_mem);
    return st;
}
