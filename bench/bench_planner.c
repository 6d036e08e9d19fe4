/* bench_planner.c: the planner's speed and the pruned search's quality.
 *   bench_planner [ROOT] [REPS]
 * (1) Solve time of `xdt plan`'s solver for configs/clusters/two-dc-1024.yaml (2 sites x 512
 *     GPUs of 4 types) and GPT-3 175B (96 layers), global batch 1536 x 2048 tokens: the median
 *     of REPS solves on one core (the solver is single-threaded).
 * (2) On 24 random small clusters (1-2 sites, up to 6 devices of at least 2 types, up to 10
 *     layers; the same generator family as tests/planner/test_solver.c, another seed) the step
 *     of the pruned search's plan against the exact search's (which the test proves equal to
 *     exhaustive enumeration): mean and worst gap; XDT_BENCH_VERBOSE=1 prints the instances
 *     where they differ. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "planner/solver.h"
#include "tests/planner/random_cluster.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int solve_time(const char *root, const xdt_device_catalog *cat, int reps) {
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/clusters/two-dc-1024.yaml", root);
    xdt_topology topo;
    if (xdt_topology_load(path, cat, &topo)) return 1;
    snprintf(path, sizeof path, "%s/configs/models/gpt3-175B.yaml", root);
    xdt_model_config cfg;
    if (xdt_model_config_load(path, &cfg)) return 1;
    xdt_solver_input in = {.topo = &topo,
                           .cfg = &cfg,
                           .global_batch = 1536,
                           .seq = 2048,
                           .schedule = -1,
                           .codec = XDT_LINK_CODEC_AUTO,
                           .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
    xdt_solution *s = malloc(sizeof *s);
    double times[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) {
        const double t0 = now_s();
        if (xdt_solve(&in, s) != XDT_OK) return 1;
        times[i] = now_s() - t0;
    }
    qsort(times, (size_t)reps, sizeof times[0], by_value);
    printf("solve two-dc-1024 (%d GPUs, 4 types) x gpt3-175B, batch 1536 x 2048: median %.3f s "
           "(min %.3f, max %.3f, %d runs)\n",
           topo.total_devices, times[reps / 2], times[0], times[reps - 1], reps);
    printf("  plan: %d replicas x %d stages, %s, microbatch %d, step %.0f ms, %.0f tokens/s\n",
           s->replicas, s->stages, xdt_schedule_kind_name(s->kind), s->microbatch, s->step_ms,
           s->tokens_per_s);
    free(s);
    xdt_topology_free(&topo);
    return 0;
}

static int pruned_gap(const xdt_device_catalog *cat) {
    xdt_rng rng;
    xdt_rng_seed(&rng, 4242, 0);
    int compared = 0, exact_hits = 0;
    double sum = 0, worst = 0, exact_s = 0, pruned_s = 0;
    xdt_solution *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    for (int inst = 0; inst < 24; inst++) {
        char text[4096];
        xdt_random_cluster_text(&rng, inst, text, sizeof text);
        char file[] = "/tmp/xdt-bench-planner-XXXXXX";
        const int fd = mkstemp(file);
        if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) return 1;
        close(fd);
        xdt_topology topo;
        const xdt_status st = xdt_topology_load(file, cat, &topo);
        unlink(file);
        if (st) return 1;
        xdt_model_config cfg = {"rand", 50257, 50304, 1024, 2 + (int)xdt_rng_below(&rng, 9),
                                12,     768};
        xdt_solver_input in = {.topo = &topo,
                               .cfg = &cfg,
                               .global_batch = 8,
                               .seq = 1024,
                               .schedule = -1,
                               .codec = XDT_LINK_CODEC_AUTO,
                               .search = XDT_SEARCH_EXACT,
                               .cost = {.dtype = XDT_PRECISION_BF16, .efficiency = 0.5}};
        double t0 = now_s();
        const xdt_status sa = xdt_solve(&in, a);
        exact_s += now_s() - t0;
        in.search = XDT_SEARCH_PRUNED;
        t0 = now_s();
        const xdt_status sb = xdt_solve(&in, b);
        pruned_s += now_s() - t0;
        if (sa == XDT_OK && sb == XDT_OK) {
            const double gap = b->step_ms / a->step_ms - 1;
            sum += gap;
            worst = gap > worst ? gap : worst;
            exact_hits += gap <= 1e-9;
            if (getenv("XDT_BENCH_VERBOSE") && gap > 1e-9) {
                printf("instance %d gap %.2f %%: exact %dx%d %s mb %d %.2f ms [", inst, 100 * gap,
                       a->replicas, a->stages, xdt_schedule_kind_name(a->kind), a->microbatch,
                       a->step_ms);
                for (int g = 0; g < a->ranks; g++)
                    printf(" %s", topo.nodes[a->node[g]].name);
                printf(" ]; pruned %dx%d %s mb %d %.2f ms [", b->replicas, b->stages,
                       xdt_schedule_kind_name(b->kind), b->microbatch, b->step_ms);
                for (int g = 0; g < b->ranks; g++)
                    printf(" %s", topo.nodes[b->node[g]].name);
                printf(" ]\n%s", text);
            }
            compared++;
        }
        xdt_topology_free(&topo);
    }
    printf("pruned vs exact search on %d random small clusters: mean gap %.2f %%, worst %.2f %%, "
           "%d equal; time %.3f s exact, %.3f s pruned in all\n",
           compared, compared ? 100 * sum / compared : 0.0, 100 * worst, exact_hits, exact_s,
           pruned_s);
    free(a);
    free(b);
    return 0;
}

int main(int argc, char **argv) {
    const char *root = argc > 1 ? argv[1] : ".";
    const int reps = argc > 2 ? atoi(argv[2]) : 5;
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/devices.yaml", root);
    xdt_device_catalog cat;
    if (xdt_device_catalog_load(path, &cat)) return 1;
    if (solve_time(root, &cat, reps > 0 ? reps : 5)) return 1;
    return pruned_gap(&cat);
}
