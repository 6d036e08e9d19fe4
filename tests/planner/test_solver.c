/* test_solver.c: on 24 random small clusters (1-2 sites, up to 6 devices of at least 2 types,
 * up to 10 units) the solver's plan is as fast as the best of an exhaustive enumeration of every
 * ordered device chain and microbatch size under the same cost model; and lowering the WAN
 * bandwidth never raises the bytes the plan sends over it. */
#include <float.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "planner/solver.h"
#include "tests/unit/test_util.h"

static xdt_device_catalog cat;

/* Every ordered chain of distinct devices, every microbatch size, both schedules. */
static double exhaustive(const xdt_solver_input *in, int n, int *chain, bool *used, int len, int mb,
                         double best) {
    const xdt_schedule_kind kinds[2] = {XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_1F1B};
    for (int k = 0; k < 2 && len > 0; k++) {
        xdt_solution s;
        if (xdt_solver_evaluate(in, chain, len, mb, kinds[k], &s) == XDT_OK && s.step_ms < best)
            best = s.step_ms;
    }
    if (len == n || len == xdt_gpt_num_units(in->cfg)) return best;
    for (int d = 0; d < n; d++) {
        if (used[d]) continue;
        used[d] = true;
        chain[len] = d;
        best = exhaustive(in, n, chain, used, len + 1, mb, best);
        used[d] = false;
    }
    return best;
}

/* Bytes a solution sends between sites per step: activations forward and gradients back. */
static double wan_bytes(const xdt_topology *t, const xdt_solver_input *in, const xdt_solution *s) {
    double bytes = 0;
    for (int k = 0; k + 1 < s->stages; k++)
        if (t->nodes[s->node[k]].site != t->nodes[s->node[k + 1]].site)
            bytes += 2.0 * s->microbatches * s->microbatch * in->seq * in->cfg->n_embd * 4;
    return bytes;
}

int main(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root ? root : ".");
    CHECK(xdt_device_catalog_load(path, &cat) == XDT_OK);
    const char *types[] = {"H100-SXM", "A100-40GB", "V100", "T4"};
    xdt_rng rng;
    xdt_rng_seed(&rng, 77, 0);
    int compared = 0, devices_seen[7] = {0};
    for (int inst = 0; inst < 24; inst++) {
        char text[4096];
        int len = 0, total = 0;
        const int sites = 1 + (int)xdt_rng_below(&rng, 2);
        const double gbps[] = {1, 10, 100}, lat[] = {5, 25};
        int first_type = -1;
        bool two_types = false;
        len += snprintf(text + len, sizeof text - len, "name: r%d\nsites:\n", inst);
        for (int s = 0; s < sites; s++) {
            len += snprintf(text + len, sizeof text - len,
                            "  - name: s%d\n    network: {gbps: "
                            "100, latency_us: 5}\n    nodes:\n",
                            s);
            int nodes = 1 + (int)xdt_rng_below(&rng, 2);
            for (int n = 0; n < nodes && total < 6; n++) {
                int ty = (int)xdt_rng_below(&rng, 4), devs = 1 + (int)xdt_rng_below(&rng, 2);
                if (total + devs > 6) devs = 6 - total;
                if (first_type < 0) first_type = ty;
                if (ty != first_type) two_types = true;
                if (!two_types && s == sites - 1 && n == nodes - 1) ty = (first_type + 1) % 4;
                total += devs;
                len += snprintf(text + len, sizeof text - len,
                                "      - {name: n%d%d, type: %s, "
                                "devices: %d}\n",
                                s, n, types[ty], devs);
            }
        }
        if (sites == 2)
            len += snprintf(text + len, sizeof text - len,
                            "links:\n  - {from: s0, to: s1, gbps: "
                            "%g, latency_ms: %g}\n",
                            gbps[xdt_rng_below(&rng, 3)], lat[xdt_rng_below(&rng, 2)]);
        char file[64];
        CHECK(test_write_temp(text, file) == 0);
        xdt_topology topo;
        xdt_status st = xdt_topology_load(file, &cat, &topo);
        unlink(file);
        CHECK_MSG(st == XDT_OK, "instance %d: cluster did not load:\n%s", inst, text);
        if (st) continue;
        xdt_model_config cfg = {"rand", 50257, 50304, 1024, 2 + (int)xdt_rng_below(&rng, 7),
                                12,     768};
        xdt_solver_input in = {&topo, &cfg, 8, 1024, 0, -1, {XDT_MATH_BF16, 0.5}};
        xdt_solution sol;
        st = xdt_solve(&in, &sol);
        int n = xdt_solver_num_devices(&topo), chain[16];
        devices_seen[n]++;
        bool used[16] = {0};
        double best = DBL_MAX;
        for (int mb = 1; mb <= 8; mb *= 2)
            best = exhaustive(&in, n, chain, used, 0, mb, best);
        if (best == DBL_MAX) {
            CHECK(st == XDT_ERR_CONFIG);
        } else {
            CHECK_MSG(st == XDT_OK, "instance %d: solver found nothing", inst);
            CHECK_MSG(st == XDT_OK && fabs(sol.step_ms - best) <= 1e-9 * best,
                      "instance %d: solver %.6f ms, exhaustive %.6f ms", inst, sol.step_ms, best);
            compared++;
        }
        xdt_topology_free(&topo);
    }
    printf("solver: %d random clusters solved to the exhaustive optimum (clusters of 1..6 devices:"
           " %d %d %d %d %d %d)\n",
           compared, devices_seen[1], devices_seen[2], devices_seen[3], devices_seen[4],
           devices_seen[5], devices_seen[6]);
    CHECK(compared >= 20);

    /* lowering the WAN bandwidth never raises the bytes over it (and a fast WAN is used) */
    double prev = DBL_MAX, first_bytes = -1;
    for (int g = 0; g < 4; g++) {
        const double bw[] = {400, 40, 4, 0.4};
        char text[1024], file[64];
        snprintf(text, sizeof text,
                 "name: w\nsites:\n  - name: a\n    nodes:\n      - {name: x, type: A100-40GB, "
                 "devices: 2}\n  - name: b\n    nodes:\n      - {name: y, type: A100-40GB, "
                 "devices: 2}\nlinks:\n  - {from: a, to: b, gbps: %g, latency_ms: 0.05}\n",
                 bw[g]);
        CHECK(test_write_temp(text, file) == 0);
        xdt_topology topo;
        CHECK(xdt_topology_load(file, &cat, &topo) == XDT_OK);
        unlink(file);
        xdt_model_config cfg = {"w", 50257, 50304, 1024, 8, 12, 768};
        xdt_solver_input in = {&topo, &cfg, 16, 1024, 0, -1, {XDT_MATH_BF16, 0.5}};
        xdt_solution sol;
        CHECK(xdt_solve(&in, &sol) == XDT_OK);
        double bytes = wan_bytes(&topo, &in, &sol);
        printf("WAN %g Gbps: %d stages, %.1f MB over the WAN, step %.2f ms\n", bw[g], sol.stages,
               bytes / 1e6, sol.step_ms);
        CHECK_MSG(bytes <= prev, "WAN bytes rose from %.0f to %.0f when bandwidth fell", prev,
                  bytes);
        prev = bytes;
        if (first_bytes < 0) first_bytes = bytes;
        xdt_topology_free(&topo);
    }
    CHECK_MSG(first_bytes > 0, "a 400 Gbps WAN was not used at all");
    CHECK_MSG(prev < first_bytes, "a 0.4 Gbps WAN carries as much as a 400 Gbps one");
    return test_exit_code("test_solver");
}
