/* random_cluster.h: the small random clusters the solver is checked on (test_solver.c) and
 * measured on (bench/bench_planner.c): 1-2 sites of 1-2 nodes each, at most 6 devices of at
 * least 2 of the types H100-SXM, A100-40GB, V100, T4, sites joined by 1-100 Gbit/s at 5-25 ms.
 * Writes the cluster file's text into text[cap]. */
#ifndef XDT_RANDOM_CLUSTER_H
#define XDT_RANDOM_CLUSTER_H

#include <stdio.h>

#include "core/rng.h"

static inline void xdt_random_cluster_text(xdt_rng *rng, int index, char *text, size_t cap) {
    static const char *const types[] = {"H100-SXM", "A100-40GB", "V100", "T4"};
    static const double gbps[] = {1, 10, 100}, latency[] = {5, 25};
    int len = 0, total = 0, first = -1;
    const int sites = 1 + (int)xdt_rng_below(rng, 2);
    len += snprintf(text + len, cap - (size_t)len, "name: r%d\nsites:\n", index);
    for (int s = 0; s < sites; s++) {
        len += snprintf(text + len, cap - (size_t)len,
                        "  - name: s%d\n    network: {gbps: 100, latency_us: 5}\n    nodes:\n", s);
        const int nodes = 1 + (int)xdt_rng_below(rng, 2);
        for (int n = 0; n < nodes && total < 6; n++) {
            int ty = (int)xdt_rng_below(rng, 4), devs = 1 + (int)xdt_rng_below(rng, 2);
            if (total + devs > 6) devs = 6 - total;
            if (first < 0) first = ty;
            /* the last node differs from the first: two types at least */
            if (s == sites - 1 && n == nodes - 1 && ty == first) ty = (first + 1) % 4;
            total += devs;
            len +=
                snprintf(text + len, cap - (size_t)len,
                         "      - {name: n%d%d, type: %s, devices: %d}\n", s, n, types[ty], devs);
        }
    }
    if (sites == 2)
        snprintf(text + len, cap - (size_t)len,
                 "links:\n  - {from: s0, to: s1, gbps: %g, latency_ms: %g}\n",
                 gbps[xdt_rng_below(rng, 3)], latency[xdt_rng_below(rng, 2)]);
}

#endif
