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
    xdt_sim_input in = {s, f, b, x, links, 0, 0};
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
    return test_exit_code("test_simulator");
}
