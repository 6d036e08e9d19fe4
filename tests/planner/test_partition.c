/* test_partition.c: the dynamic-programming split against exhaustive enumeration of every
 * composition of the units over random device chains (30 instances), plus: the faster device
 * takes more layers, a model too big for its devices is refused naming the stage, and more
 * stages than units is refused. */
#include <float.h>
#include <string.h>

#include "core/rng.h"
#include "planner/partition.h"
#include "tests/unit/test_util.h"

static xdt_device_catalog cat;

/* Exhaustive: every way to cut U units into P non-empty ranges. */
static double brute(const xdt_model_config *cfg, int b, int t, const xdt_chain_device *chain, int P,
                    const xdt_cost_params *cp) {
    const int U = xdt_gpt_num_units(cfg);
    int cuts[16];
    double best = DBL_MAX;
    /* cuts[0] = 0 < cuts[1] < ... < cuts[P] = U, enumerated like an odometer */
    for (int k = 0; k <= P; k++)
        cuts[k] = k;
    cuts[P] = U;
    for (;;) {
        double worst = 0;
        bool fits = true;
        for (int k = 0; k < P && fits; k++) {
            xdt_stage_cost range;
            xdt_stage_cost_estimate(cfg, cuts[k], cuts[k + 1] - 1, b, t, chain[k].inflight,
                                    chain[k].type, chain[k].slowdown, cp, &range);
            fits = xdt_stage_fits(&range, chain[k].type, k, NULL, 0);
            double ms = 0;
            for (int u = cuts[k]; u < cuts[k + 1]; u++) {
                xdt_stage_cost one;
                xdt_stage_cost_estimate(cfg, u, u, b, t, chain[k].inflight, chain[k].type,
                                        chain[k].slowdown, cp, &one);
                ms += one.fwd_ms + one.bwd_ms;
            }
            worst = ms > worst ? ms : worst;
        }
        if (fits && worst < best) best = worst;
        int k = P - 1;
        while (k >= 1 && cuts[k] == U - (P - k))
            k--;
        if (k < 1) break;
        cuts[k]++;
        for (int q = k + 1; q < P; q++)
            cuts[q] = cuts[q - 1] + 1;
    }
    return best;
}

int main(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root ? root : ".");
    CHECK(xdt_device_catalog_load(path, &cat) == XDT_OK);
    const char *types[] = {"H100-SXM", "A100-40GB", "V100", "T4", "L40S", "MI250X"};
    xdt_cost_params cp = {XDT_PRECISION_BF16, 0.5};
    xdt_rng rng;
    xdt_rng_seed(&rng, 2024, 0);
    int agree = 0, infeasible = 0;
    for (int inst = 0; inst < 30; inst++) {
        xdt_model_config cfg = {"rand", 50257, 50304, 1024, 2 + (int)xdt_rng_below(&rng, 7),
                                12,     768};
        const int U = xdt_gpt_num_units(&cfg);
        const int P = 1 + (int)xdt_rng_below(&rng, U < 5 ? (uint64_t)U : 5);
        xdt_chain_device chain[8];
        for (int k = 0; k < P; k++)
            chain[k] =
                (xdt_chain_device){xdt_device_catalog_find(&cat, types[xdt_rng_below(&rng, 6)]),
                                   1.0 + (double)xdt_rng_below(&rng, 2), P - k, 1};
        const int b = 1 << xdt_rng_below(&rng, 5), t = 1024;
        xdt_partition part;
        xdt_status st = xdt_partition_units(&cfg, b, t, chain, P, &cp, &part, NULL, 0);
        double want = brute(&cfg, b, t, chain, P, &cp);
        if (want == DBL_MAX) {
            CHECK_MSG(st == XDT_ERR_CONFIG, "instance %d: brute force finds no fit, DP does", inst);
            infeasible++;
            continue;
        }
        CHECK_MSG(st == XDT_OK, "instance %d: DP finds no split, brute force does", inst);
        if (st) continue;
        CHECK_MSG(fabs(part.bottleneck_ms - want) <= 1e-9 * want,
                  "instance %d (L=%d P=%d b=%d): DP %.6f ms, exhaustive %.6f ms", inst, cfg.n_layer,
                  P, b, part.bottleneck_ms, want);
        CHECK(part.first[0] == 0 && part.first[P] == U);
        for (int k = 0; k < P; k++)
            CHECK(part.first[k] < part.first[k + 1]);
        agree++;
        /* the fast bisection-greedy split reaches the same bottleneck */
        xdt_partition fast;
        xdt_partition_request rq = {&cfg, b, t, chain, P, 1, &cp, true};
        CHECK_MSG(xdt_partition_solve(&rq, &fast, NULL, 0) == XDT_OK &&
                      fabs(fast.bottleneck_ms - want) <= 1e-9 * want,
                  "instance %d: fast split %.6f ms, exhaustive %.6f ms", inst, fast.bottleneck_ms,
                  want);
        /* two classes (replicas on other devices): each stage as slow as its slowest class */
        xdt_chain_device two_classes[16];
        for (int k = 0; k < P; k++) {
            two_classes[k] = chain[k];
            two_classes[P + k] = chain[P - 1 - k];
            two_classes[P + k].inflight = chain[k].inflight;
        }
        xdt_partition_request rq2 = {&cfg, b, t, two_classes, P, 2, &cp, false};
        xdt_partition both;
        if (xdt_partition_solve(&rq2, &both, NULL, 0) == XDT_OK) {
            for (int k = 0; k < P; k++) {
                xdt_stage_cost c0, c1;
                xdt_stage_cost_estimate(&cfg, both.first[k], both.first[k + 1] - 1, b, t, 1,
                                        two_classes[k].type, two_classes[k].slowdown, &cp, &c0);
                xdt_stage_cost_estimate(&cfg, both.first[k], both.first[k + 1] - 1, b, t, 1,
                                        two_classes[P + k].type, two_classes[P + k].slowdown, &cp,
                                        &c1);
                const double slow = fmax(c0.fwd_ms + c0.bwd_ms, c1.fwd_ms + c1.bwd_ms);
                CHECK(fabs(both.stage_ms[k] - slow) <= 1e-9 * slow);
            }
            CHECK(both.bottleneck_ms >= part.bottleneck_ms * (1 - 1e-12));
        }
    }
    printf("partition: %d instances agree with exhaustive search, %d infeasible for both\n", agree,
           infeasible);
    CHECK(agree >= 20);

    /* a faster device takes more layers */
    xdt_model_config g2;
    snprintf(path, sizeof path, "%s/configs/models/gpt2-124M.yaml", root ? root : ".");
    CHECK(xdt_model_config_load(path, &g2) == XDT_OK);
    xdt_chain_device two[2] = {{xdt_device_catalog_find(&cat, "V100"), 1, 2},
                               {xdt_device_catalog_find(&cat, "H100-SXM"), 1, 1}};
    xdt_partition part;
    CHECK(xdt_partition_units(&g2, 8, 1024, two, 2, &cp, &part, NULL, 0) == XDT_OK);
    int on_v100 = part.first[1] - part.first[0], on_h100 = part.first[2] - part.first[1];
    CHECK_MSG(on_h100 > on_v100, "H100 holds %d units, V100 %d", on_h100, on_v100);
    /* too big to fit; more stages than units */
    xdt_chain_device t4 = {xdt_device_catalog_find(&cat, "T4"), 1, 8};
    CHECK(xdt_partition_units(&g2, 64, 1024, &t4, 1, &cp, &part, NULL, 0) == XDT_ERR_CONFIG);
    xdt_chain_device many[20];
    for (int k = 0; k < 20; k++)
        many[k] = two[1];
    CHECK(xdt_partition_units(&g2, 8, 1024, many, 20, &cp, &part, NULL, 0) == XDT_ERR_CONFIG);
    return test_exit_code("test_partition");
}
