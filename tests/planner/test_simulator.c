/* test_simulator.c: the simulator against closed forms. On P identical stages with M
 * microbatches, forward F and backward B:
 *   GPipe and 1F1B, free links:            (M + P - 1)(F + B)
 *   GPipe, links of latency L, wire time w: (M + P - 1)(F + B) + 2 (P - 1)(L + w)   (w <= F, B)
 *   interleaved 1F1B with V chunks of F/V, B/V each: M (F + B) + (P - 1)(F + B) / V
 * and the bubble of 1F1B is (P - 1) / (M + P - 1); links carry M boundaries each way. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "planner/simulator.h"
#include "planner/timeline_svg.h"
#include "planner/trace_writer.h"
#include "tests/unit/test_util.h"

static double simulate(xdt_schedule *s, double F, double B, double L, double bytes, double rate,
                       xdt_sim_result *res) {
    const int P = xdt_schedule_ranks(s), V = xdt_schedule_chunks(s), S = P * V;
    double *f = malloc(sizeof(double) * S), *b = malloc(sizeof(double) * S);
    double *x = malloc(sizeof(double) * S);
    xdt_sim_link *links = calloc((size_t)P * P, sizeof *links);
    for (int i = 0; i < S; i++) {
        f[i] = F / V;
        b[i] = B / V;
        x[i] = bytes;
    }
    for (int i = 0; i < P * P; i++)
        links[i] = (xdt_sim_link){L, rate};
    xdt_sim_input in = {
        .schedule = s, .fwd_ms = f, .bwd_ms = b, .boundary_bytes = x, .links = links};
    double step = -1;
    if (xdt_simulate(&in, res) == XDT_OK) step = res->step_ms;
    free(f);
    free(b);
    free(x);
    free(links);
    return step;
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* The Chrome trace of a simulated 1F1B step: every forward, backward and transfer appears, and
 * the file is valid JSON (checked with python3's json module when python3 exists). */
static void check_trace(void) {
    const int P = 3, M = 4;
    xdt_schedule *s = NULL;
    xdt_sim_result r;
    CHECK(xdt_schedule_1f1b(P, M, &s) == XDT_OK);
    if (!s) return;
    simulate(s, 1.0, 2.0, 0.5, 100, 1000, &r);
    char path[] = "/tmp/xdt-trace-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(xdt_trace_write_sim(path, "1f1b test", s, &r) == XDT_OK);
    FILE *f = fopen(path, "r");
    char *text = calloc(1, 1 << 20);
    size_t n = f ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    CHECK(n > 0 && strstr(text, "\"traceEvents\""));
    CHECK_MSG(count(text, "\"cat\":\"forward\"") == P * M, "forwards: %d",
              count(text, "\"cat\":\"forward\""));
    CHECK(count(text, "\"cat\":\"backward\"") == P * M);
    CHECK(count(text, "\"cat\":\"link\"") == 2 * M * (P - 1));
    if (system("command -v python3 >/dev/null 2>&1") == 0) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "python3 -c 'import json,sys; json.load(open(sys.argv[1]))' %s",
                 path);
        CHECK_MSG(system(cmd) == 0, "the trace is not valid JSON");
    }
    unlink(path);
    /* the SVG timeline: one labelled block per forward and backward, a row per link */
    const char *keep = getenv("XDT_KEEP_SVG");
    char svg[] = "/tmp/xdt-timeline-XXXXXX";
    fd = mkstemp(svg);
    close(fd);
    CHECK(xdt_timeline_write_svg(keep ? keep : svg, "1F1B, 3 ranks, 4 microbatches", s, &r) ==
          XDT_OK);
    f = fopen(keep ? keep : svg, "r");
    memset(text, 0, 1 << 20);
    n = f ? fread(text, 1, (1 << 20) - 1, f) : 0;
    if (f) fclose(f);
    CHECK(n > 0 && strstr(text, "<svg") && strstr(text, "</svg>"));
    CHECK(count(text, "fill=\"#4e79a7\" stroke") == P * M); /* forwards */
    CHECK(count(text, "fill=\"#f28e2b\" stroke") == P * M); /* backwards */
    CHECK(count(text, ">link ") == 2 * (P - 1));
    CHECK(strstr(text, "step ") != NULL);
    unlink(svg);
    free(text);
    xdt_sim_result_free(&r);
    xdt_schedule_destroy(s);
}

static void close_to(const char *what, double got, double want) {
    CHECK_MSG(fabs(got - want) <= 1e-9 * (fabs(want) + 1), "%s: %.6f, want %.6f", what, got, want);
}

/* Data-parallel replicas: two identical 1F1B pipelines with an all-reduce of A ms per rank take
 * the single pipeline's (M + P - 1)(F + B) plus A; a replica whose stages are twice as slow
 * makes every all-reduce wait for it; peak memory is the static bytes plus min(P - p, M)
 * activations on rank p; a codec halving the wire halves the wire time and costs its time. */
static void check_replicas_memory_codec(void) {
    const int P = 3, M = 4;
    const double F = 1.0, B = 2.0, A = 0.7;
    xdt_schedule *s = NULL;
    CHECK(xdt_schedule_1f1b(P, M, &s) == XDT_OK);
    if (!s) return;
    double f[2 * 3], b[2 * 3], x[2 * 3], stat[2 * 3], act[2 * 3], ar[3] = {A, A, A};
    xdt_sim_link links[6 * 6];
    memset(links, 0, sizeof links);
    for (int i = 0; i < 6; i++) {
        f[i] = F;
        b[i] = B;
        x[i] = 100;
        stat[i] = 1000 * (i % 3 + 1);
        act[i] = 10;
    }
    xdt_sim_input in = {.schedule = s,
                        .replicas = 2,
                        .fwd_ms = f,
                        .bwd_ms = b,
                        .boundary_bytes = x,
                        .static_bytes = stat,
                        .activation_bytes = act,
                        .links = links,
                        .allreduce_ms = ar};
    xdt_sim_result r;
    CHECK(xdt_simulate(&in, &r) == XDT_OK);
    close_to("two identical replicas + all-reduce", r.step_ms, (M + P - 1) * (F + B) + A);
    CHECK(r.ranks == 6 && r.stages == 3);
    for (int g = 0; g < 6; g++) {
        const int p = g % 3, held = P - p < M ? P - p : M;
        char name[64];
        snprintf(name, sizeof name, "peak memory of rank %d", g);
        close_to(name, r.peak_bytes[g], stat[g] + 10.0 * held);
    }
    xdt_sim_result_free(&r);
    for (int i = 3; i < 6; i++) { /* replica 1 twice as slow */
        f[i] = 2 * F;
        b[i] = 2 * B;
    }
    CHECK(xdt_simulate(&in, &r) == XDT_OK);
    close_to("a slow replica holds the all-reduce", r.step_ms, 2 * (M + P - 1) * (F + B) + A);
    xdt_sim_result_free(&r);
    /* one replica, links of latency L and 200 bytes/ms: wire 0.5 ms per message; bf16-like
     * codec: 0.25 ms on the wire plus 0.1 ms of codec time */
    const double L = 0.3;
    for (int i = 0; i < 36; i++)
        links[i] = (xdt_sim_link){L, 200, 0, 0};
    in.replicas = 1;
    for (int i = 0; i < 3; i++) {
        f[i] = F;
        b[i] = B;
    }
    xdt_schedule *g = NULL;
    CHECK(xdt_schedule_gpipe(P, M, &g) == XDT_OK);
    in.schedule = g;
    in.allreduce_ms = NULL;
    CHECK(xdt_simulate(&in, &r) == XDT_OK);
    close_to("gpipe without codec", r.step_ms, (M + P - 1) * (F + B) + 2 * (P - 1) * (L + 0.5));
    xdt_sim_result_free(&r);
    for (int i = 0; i < 36; i++)
        links[i] = (xdt_sim_link){L, 200, 0.5, 0.1 / 100};
    CHECK(xdt_simulate(&in, &r) == XDT_OK);
    close_to("gpipe with a halving codec", r.step_ms,
             (M + P - 1) * (F + B) + 2 * (P - 1) * (L + 0.25 + 0.1));
    CHECK(r.link_bytes[0 * 3 + 1] == M * 50.0 && r.payload_bytes[0 * 3 + 1] == M * 100.0);
    xdt_sim_result_free(&r);
    xdt_schedule_destroy(g);
    xdt_schedule_destroy(s);
}

int main(void) {
    const double F = 1.0, B = 2.0;
    char name[96];
    for (int P = 1; P <= 5; P++)
        for (int M = 1; M <= 9; M += 2) {
            xdt_schedule *g = NULL, *o = NULL;
            xdt_sim_result r;
            CHECK(xdt_schedule_gpipe(P, M, &g) == XDT_OK);
            CHECK(xdt_schedule_1f1b(P, M, &o) == XDT_OK);
            if (!g || !o) continue;
            snprintf(name, sizeof name, "gpipe P=%d M=%d free links", P, M);
            close_to(name, simulate(g, F, B, 0, 1000, 0, &r), (M + P - 1) * (F + B));
            if (P > 1) {
                CHECK(r.link_bytes[0 * P + 1] == M * 1000.0 &&
                      r.link_bytes[1 * P + 0] == M * 1000.0);
            }
            xdt_sim_result_free(&r);
            snprintf(name, sizeof name, "1f1b P=%d M=%d free links", P, M);
            close_to(name, simulate(o, F, B, 0, 1000, 0, &r), (M + P - 1) * (F + B));
            snprintf(name, sizeof name, "1f1b P=%d M=%d bubble", P, M);
            close_to(name, r.bubble[0], (double)(P - 1) / (M + P - 1));
            xdt_sim_result_free(&r);
            /* latency 0.3 and 0.25 ms on the wire (500 bytes at 2000 bytes/ms) per hop */
            snprintf(name, sizeof name, "gpipe P=%d M=%d latency+bandwidth", P, M);
            close_to(name, simulate(g, F, B, 0.3, 500, 2000, &r),
                     (M + P - 1) * (F + B) + 2 * (P - 1) * (0.3 + 0.25));
            xdt_sim_result_free(&r);
            xdt_schedule_destroy(g);
            xdt_schedule_destroy(o);
        }
    for (int P = 2; P <= 4; P++)
        for (int V = 2; V <= 3; V++) {
            const int M = 2 * P;
            xdt_schedule *s = NULL;
            xdt_sim_result r;
            CHECK(xdt_schedule_interleaved(P, M, V, &s) == XDT_OK);
            if (!s) continue;
            snprintf(name, sizeof name, "interleaved P=%d V=%d M=%d", P, V, M);
            close_to(name, simulate(s, F, B, 0, 1000, 0, &r), M * (F + B) + (P - 1) * (F + B) / V);
            xdt_sim_result_free(&r);
            xdt_schedule_destroy(s);
        }
    check_trace();
    check_replicas_memory_codec();
    return test_exit_code("test_simulator");
}
