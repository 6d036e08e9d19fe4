/* test_solver.c: the solver against exhaustive enumeration and in the situations it exists for.
 * - On 24 random small clusters (1-2 sites, up to 6 devices of at least 2 types, up to 10
 *   layers) the exact search's plan is as fast as the best of an enumeration of every
 *   assignment of devices to every P x D grid, every microbatch size and every schedule kind,
 *   under the same cost model; the pruned search's distance from it is printed.
 * - Lowering the WAN bandwidth never raises the bytes the plan sends over it.
 * - Data parallelism across sites and pipelining across sites are both weighed (with enough
 *   work that one site alone is slower): with a big model and short sequences the pipeline
 *   crosses the WAN, with a small model and long sequences each site runs its own replicas and
 *   only gradients cross; either way the plan is at least as fast as the best layout of each
 *   family.
 * - Codecs: a slow WAN link gets a compressing codec under auto, links inside a site none;
 *   --codec NAME puts NAME on links between sites only.
 * - xdc: before a high-latency link the rank gets extra warm-up and the step is no slower
 *   than 1F1B on the same layout.
 * - The pruned search solves a 40-device cluster deterministically within memory. */
#include <float.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "planner/solver.h"
#include "tests/planner/random_cluster.h"
#include "tests/unit/test_util.h"

static xdt_device_catalog cat;

typedef struct enum_state {
    const xdt_solver_input *in;
    int n, P, D, grid[16];
    bool used[16];
    double best;
    long evaluated;
} enum_state;

/* Every injective filling of the P x D grid, no symmetry used. */
static void enumerate(enum_state *e, int pos) {
    if (pos == e->P * e->D) {
        const xdt_schedule_kind kinds[4] = {XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_1F1B,
                                            XDT_SCHEDULE_INTERLEAVED, XDT_SCHEDULE_XDC};
        for (int mb = 1; mb <= 8; mb *= 2)
            for (int k = 0; k < 4; k++) {
                xdt_solution s;
                e->evaluated++;
                if (xdt_solver_evaluate(e->in, e->grid, e->P, e->D, mb, kinds[k], &s) == XDT_OK &&
                    s.step_ms < e->best)
                    e->best = s.step_ms;
            }
        return;
    }
    for (int d = 0; d < e->n; d++) {
        if (e->used[d]) continue;
        e->used[d] = true;
        e->grid[pos] = d;
        enumerate(e, pos + 1);
        e->used[d] = false;
    }
}

static double exhaustive(const xdt_solver_input *in, int n, long *evaluated) {
    enum_state e = {.in = in, .n = n, .best = DBL_MAX};
    const int U = xdt_gpt_num_units(in->cfg);
    for (e.D = 1; e.D <= n; e.D++)
        for (e.P = 1; e.P <= U && e.P * e.D <= n; e.P++)
            enumerate(&e, 0);
    *evaluated = e.evaluated;
    return e.best;
}

static bool load_text(const char *text, xdt_topology *topo) {
    char file[64];
    if (test_write_temp(text, file) != 0) return false;
    xdt_status st = xdt_topology_load(file, &cat, topo);
    unlink(file);
    return st == XDT_OK;
}

static bool crosses(const xdt_topology *t, const xdt_solution *s, int a, int b) {
    return t->nodes[s->node[a]].site != t->nodes[s->node[b]].site;
}

/* Whether any pipeline link of the solution joins two sites. */
static bool pipeline_crosses(const xdt_topology *t, const xdt_solution *s) {
    for (int g = 0; g < s->ranks; g++)
        if (g % s->stages + 1 < s->stages && crosses(t, s, g, g + 1)) return true;
    return false;
}

static void random_instances(void) {
    xdt_rng rng;
    xdt_rng_seed(&rng, 77, 0);
    int compared = 0, devices_seen[7] = {0};
    double gap_sum = 0, gap_max = 0;
    long evaluated = 0;
    for (int inst = 0; inst < 24; inst++) {
        char text[4096];
        xdt_random_cluster_text(&rng, inst, text, sizeof text);
        xdt_topology topo;
        const bool loaded = load_text(text, &topo);
        CHECK_MSG(loaded, "instance %d: cluster did not load:\n%s", inst, text);
        if (!loaded) continue;
        xdt_model_config cfg = {"rand", 50257, 50304, 1024, 2 + (int)xdt_rng_below(&rng, 7),
                                12,     768};
        xdt_solver_input in = {.topo = &topo,
                               .cfg = &cfg,
                               .global_batch = 8,
                               .seq = 1024,
                               .schedule = -1,
                               .codec = XDT_LINK_CODEC_AUTO,
                               .search = XDT_SEARCH_EXACT,
                               .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
        xdt_solution *sol = malloc(sizeof *sol), *pruned = malloc(sizeof *pruned);
        xdt_status st = xdt_solve(&in, sol);
        const int n = xdt_solver_num_devices(&topo);
        devices_seen[n]++;
        long count = 0;
        const double best = exhaustive(&in, n, &count);
        evaluated += count;
        if (best == DBL_MAX) {
            CHECK(st == XDT_ERR_CONFIG);
        } else {
            CHECK_MSG(st == XDT_OK, "instance %d: solver found nothing", inst);
            CHECK_MSG(st == XDT_OK && fabs(sol->step_ms - best) <= 1e-9 * best,
                      "instance %d: solver %.6f ms, exhaustive %.6f ms", inst, sol->step_ms, best);
            compared++;
            in.search = XDT_SEARCH_PRUNED;
            if (xdt_solve(&in, pruned) == XDT_OK) {
                const double gap = pruned->step_ms / best - 1;
                gap_sum += gap;
                gap_max = gap > gap_max ? gap : gap_max;
            } else {
                gap_max = INFINITY;
            }
        }
        free(sol);
        free(pruned);
        xdt_topology_free(&topo);
    }
    printf("solver: %d random clusters solved to the exhaustive optimum (%ld layouts enumerated; "
           "clusters of 1..6 devices: %d %d %d %d %d %d)\n",
           compared, evaluated, devices_seen[1], devices_seen[2], devices_seen[3], devices_seen[4],
           devices_seen[5], devices_seen[6]);
    printf("pruned search on the same clusters: mean gap %.2f %%, worst %.2f %%\n",
           compared ? 100 * gap_sum / compared : 0.0, 100 * gap_max);
    CHECK(compared >= 20);
}

static void wan_bandwidth(void) {
    double prev = DBL_MAX, first_bytes = -1;
    for (int g = 0; g < 4; g++) {
        const double bw[] = {400, 40, 4, 0.4};
        char text[1024];
        snprintf(text, sizeof text,
                 "name: w\nsites:\n  - name: a\n    nodes:\n      - {name: x, type: A100-40GB, "
                 "devices: 2}\n  - name: b\n    nodes:\n      - {name: y, type: A100-40GB, "
                 "devices: 2}\nlinks:\n  - {from: a, to: b, gbps: %g, latency_ms: 0.05}\n",
                 bw[g]);
        xdt_topology topo;
        CHECK(load_text(text, &topo));
        xdt_model_config cfg = {"w", 50257, 50304, 1024, 8, 12, 768};
        xdt_solver_input in = {.topo = &topo,
                               .cfg = &cfg,
                               .global_batch = 16,
                               .seq = 1024,
                               .schedule = -1,
                               .codec = XDT_LINK_CODEC_AUTO,
                               .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
        xdt_solution *sol = malloc(sizeof *sol);
        CHECK(xdt_solve(&in, sol) == XDT_OK);
        printf("WAN %g Gbps: %d x %d, %s, %.1f MB over the WAN, step %.2f ms\n", bw[g],
               sol->replicas, sol->stages, xdt_schedule_kind_name(sol->kind), sol->wan_bytes / 1e6,
               sol->step_ms);
        CHECK_MSG(sol->wan_bytes <= prev * (1 + 1e-12),
                  "WAN bytes rose from %.0f to %.0f when bandwidth fell", prev, sol->wan_bytes);
        prev = sol->wan_bytes;
        if (first_bytes < 0) first_bytes = sol->wan_bytes;
        free(sol);
        xdt_topology_free(&topo);
    }
    CHECK_MSG(first_bytes > 0, "a 400 Gbps WAN was not used at all");
    CHECK_MSG(prev < first_bytes, "a 0.4 Gbps WAN carries as much as a 400 Gbps one");
}

/* Two sites of two A100s: the best layout of each family, enumerated here. */
static void dp_versus_pipeline(void) {
    const char *text = "name: dp\nsites:\n  - name: a\n    nodes:\n      - {name: x, type: "
                       "A100-80GB, devices: 2}\n  - name: b\n    nodes:\n      - {name: y, type: "
                       "A100-80GB, devices: 2}\nlinks:\n  - {from: a, to: b, gbps: 10, "
                       "latency_ms: 10}\n";
    xdt_topology topo;
    CHECK(load_text(text, &topo));
    /* big weights, short sequences / small weights, long sequences */
    xdt_model_config big = {"big", 50257, 50304, 128, 8, 32, 4096};
    xdt_model_config small = {"small", 50257, 50304, 1024, 4, 4, 256};
    const int batch[2] = {512, 1024}, seq[2] = {128, 1024};
    xdt_model_config *cfgs[2] = {&big, &small};
    for (int regime = 0; regime < 2; regime++) {
        xdt_solver_input in = {.topo = &topo,
                               .cfg = cfgs[regime],
                               .global_batch = batch[regime],
                               .seq = seq[regime],
                               .schedule = -1,
                               .codec = XDT_LINK_CODEC_AUTO,
                               .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
        xdt_solution *sol = malloc(sizeof *sol), *t = malloc(sizeof *t);
        CHECK(xdt_solve(&in, sol) == XDT_OK);
        /* devices 0, 1 in site a; 2, 3 in site b. Pipelines across: stage 0 in a, stage 1 in
         * b. Data parallel across: each replica inside its site. */
        const int across[2][4] = {{0, 2, 1, 3}, {0, 1, 2, 3}};
        const int within[4] = {0, 1, 2, 3};
        double best_across = DBL_MAX, best_within = DBL_MAX;
        const xdt_schedule_kind kinds[4] = {XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_1F1B,
                                            XDT_SCHEDULE_INTERLEAVED, XDT_SCHEDULE_XDC};
        for (int mb = 1; mb <= 8; mb *= 2)
            for (int k = 0; k < 4; k++) {
                if (xdt_solver_evaluate(&in, across[0], 2, 2, mb, kinds[k], t) == XDT_OK)
                    best_across = fmin(best_across, t->step_ms);
                if (xdt_solver_evaluate(&in, across[1], 4, 1, mb, kinds[k], t) == XDT_OK)
                    best_across = fmin(best_across, t->step_ms);
                if (xdt_solver_evaluate(&in, within, 2, 2, mb, kinds[k], t) == XDT_OK)
                    best_within = fmin(best_within, t->step_ms);
                if (xdt_solver_evaluate(&in, within, 1, 4, mb, kinds[k], t) == XDT_OK)
                    best_within = fmin(best_within, t->step_ms);
            }
        printf("%s model: pipelines across sites %.2f ms, data parallel across sites %.2f ms; "
               "plan %d x %d %s %.2f ms, %.1f MB over the WAN\n",
               cfgs[regime]->name, best_across, best_within, sol->replicas, sol->stages,
               xdt_schedule_kind_name(sol->kind), sol->step_ms, sol->wan_bytes / 1e6);
        CHECK(sol->step_ms <= fmin(best_across, best_within) * (1 + 1e-9));
        if (regime == 0) {
            CHECK_MSG(best_across < best_within, "big model: pipelining across sites should win");
            CHECK(pipeline_crosses(&topo, sol));
        } else {
            CHECK_MSG(best_within < best_across, "small model: data parallel should win");
            CHECK(!pipeline_crosses(&topo, sol) && sol->replicas >= 2 && sol->wan_bytes > 0);
        }
        free(sol);
        free(t);
    }
    xdt_topology_free(&topo);
}

static void codecs_and_xdc(void) {
    const char *text = "name: c\nsites:\n  - name: a\n    network: {gbps: 40, latency_us: 10}\n"
                       "    nodes:\n      - {name: x, type: cpu, devices: 2}\n  - name: b\n"
                       "    network: {gbps: 40, latency_us: 10}\n    nodes:\n      - {name: y, "
                       "type: cpu, devices: 2}\nlinks:\n  - {from: a, to: b, gbps: 0.1, "
                       "latency_ms: 25}\n";
    xdt_topology topo;
    CHECK(load_text(text, &topo));
    xdt_model_config cfg = {"cpu", 256, 256, 256, 6, 8, 256};
    xdt_solver_input in = {.topo = &topo,
                           .cfg = &cfg,
                           .global_batch = 16,
                           .seq = 256,
                           .schedule = -1,
                           .codec = XDT_LINK_CODEC_AUTO,
                           .max_replicas = 1,
                           .cost = {.dtype = XDT_PRECISION_FP32, .efficiency = 0.5}};
    xdt_solution *s = malloc(sizeof *s), *x = malloc(sizeof *x), *f = malloc(sizeof *f);
    /* one pipeline a0 a1 b0 b1: the middle link crosses the WAN */
    const int chain[4] = {0, 1, 2, 3};
    CHECK(xdt_solver_evaluate(&in, chain, 4, 1, 2, XDT_SCHEDULE_1F1B, s) == XDT_OK);
    CHECK_MSG(s->link_codec[1] != XDT_LINK_CODEC_NONE, "the 0.1 Gbps WAN link got no codec");
    CHECK_MSG(s->link_codec[0] == XDT_LINK_CODEC_NONE && s->link_codec[2] == XDT_LINK_CODEC_NONE,
              "links inside a site got a codec");
    CHECK(xdt_solver_evaluate(&in, chain, 4, 1, 2, XDT_SCHEDULE_XDC, x) == XDT_OK);
    CHECK_MSG(x->extra[1] > 0, "no extra warm-up before the WAN link");
    CHECK_MSG(x->step_ms <= s->step_ms * (1 + 1e-9), "xdc %.2f ms slower than 1F1B %.2f ms",
              x->step_ms, s->step_ms);
    printf("WAN 0.1 Gbps / 25 ms: 1F1B %.1f ms, xdc (extra %d before the WAN) %.1f ms, codec %s\n",
           s->step_ms, x->extra[1], x->step_ms, xdt_link_codec_name(s->link_codec[1]));
    in.codec = XDT_LINK_CODEC_INT4;
    CHECK(xdt_solver_evaluate(&in, chain, 4, 1, 2, XDT_SCHEDULE_1F1B, f) == XDT_OK);
    CHECK(f->link_codec[1] == XDT_LINK_CODEC_INT4 && f->link_codec[0] == XDT_LINK_CODEC_NONE);
    in.codec = XDT_LINK_CODEC_NONE;
    CHECK(xdt_solver_evaluate(&in, chain, 4, 1, 2, XDT_SCHEDULE_1F1B, f) == XDT_OK);
    CHECK(f->link_codec[1] == XDT_LINK_CODEC_NONE);
    CHECK_MSG(f->step_ms > s->step_ms, "compression did not help a 0.1 Gbps link");
    free(s);
    free(x);
    free(f);
    xdt_topology_free(&topo);
}

static void pruned_large(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/clusters/mixed-generations.yaml", root ? root : ".");
    xdt_topology topo;
    CHECK(xdt_topology_load(path, &cat, &topo) == XDT_OK);
    xdt_model_config cfg = {"gpt2-xl", 50257, 50304, 1024, 48, 25, 1600};
    xdt_solver_input in = {.topo = &topo,
                           .cfg = &cfg,
                           .global_batch = 256,
                           .seq = 1024,
                           .schedule = -1,
                           .codec = XDT_LINK_CODEC_AUTO,
                           .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
    xdt_solution *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    CHECK(xdt_solve(&in, a) == XDT_OK);
    CHECK(xdt_solve(&in, b) == XDT_OK);
    CHECK_MSG(a->step_ms == b->step_ms && a->ranks == b->ranks &&
                  !memcmp(a->device, b->device, sizeof(int) * (size_t)a->ranks),
              "two solves of one input differ");
    for (int g = 0; g < a->ranks; g++)
        CHECK(a->peak_bytes[g] > 0 &&
              a->peak_bytes[g] <= topo.nodes[a->node[g]].type->memory_gib * 1073741824.0);
    printf("mixed-generations (40 GPUs), GPT-2 XL: %d x %d ranks, %s, step %.1f ms\n", a->replicas,
           a->stages, xdt_schedule_kind_name(a->kind), a->step_ms);
    free(a);
    free(b);
    xdt_topology_free(&topo);
}

int main(void) {
    char path[2048];
    const char *root = getenv("XDT_SOURCE_ROOT");
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root ? root : ".");
    CHECK(xdt_device_catalog_load(path, &cat) == XDT_OK);
    codecs_and_xdc();
    dp_versus_pipeline();
    wan_bandwidth();
    pruned_large();
    random_instances();
    return test_exit_code("test_solver");
}
