/* cmd_simulate.c: `xdt simulate plan.json [--trace sim.trace.json] [--svg timeline.svg]
 * [--compare run.trace.json [--top N]]`: replays a plan's schedules through the simulator, prints
 * the predicted step, each rank's busy and bubble fractions and peak memory, and the bytes on
 * each link, writes the Chrome trace and the SVG timeline, and compares the prediction with a
 * measured run's trace (`xdt launch --trace`, planner/trace_compare.h). */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "planner/plan_io.h"
#include "planner/timeline_svg.h"
#include "planner/trace_compare.h"
#include "planner/trace_writer.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

static void report(const xdt_loaded_plan *p, const xdt_sim_result *r) {
    const int R = p->ranks;
    printf("predicted step %.3f ms, %.0f tokens/s (the plan recorded %.3f ms)\n", r->step_ms,
           (double)p->global_batch * p->seq / (r->step_ms * 1e-3), p->predicted_step_ms);
    for (int g = 0; g < R; g++)
        printf("rank %d (%s, %s): busy %.3f ms, bubble %.1f %%, peak memory %.3f GiB\n", g,
               p->rank[g].site, p->rank[g].device_type, r->busy_ms[g], 100 * r->bubble[g],
               r->peak_bytes[g] / 1073741824.0);
    double wan = 0;
    for (int a = 0; a < R; a++)
        for (int b = 0; b < R; b++) {
            const double wire = r->link_bytes[(size_t)a * R + b];
            if (wire <= 0) continue;
            const bool between = strcmp(p->rank[a].site, p->rank[b].site) != 0;
            if (between) wan += wire;
            printf("link %d->%d%s: %.3f MB per step on the wire (%.3f MB before the codec)\n", a, b,
                   between ? " (between sites)" : "", wire / 1e6,
                   r->payload_bytes[(size_t)a * R + b] / 1e6);
        }
    printf("pipeline traffic between sites: %.3f MB per step\n", wan / 1e6);
}

int xdt_cmd_simulate(int argc, char **argv) {
    const char *trace = NULL, *svg = NULL, *compare = NULL;
    int top = 5;
    xdt_cli_opt opts[] = {
        XDT_OPT_STRING("trace", &trace, "FILE.json", "write the Chrome trace"),
        XDT_OPT_STRING("svg", &svg, "FILE.svg", "write the SVG timeline"),
        XDT_OPT_STRING("compare", &compare, "RUN.json",
                       "compare with a measured trace (xdt launch --trace): step time, error, "
                       "largest per-op differences"),
        XDT_OPT_INT("top", &top, "N", "with --compare: how many differences to print [5]", 0,
                    1000000),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *plan_path = argc >= 1 && argv[0][0] != '-' ? argv[0] : NULL;
    bool help = false;
    if (xdt_cli_parse("simulate", argc - (plan_path ? 1 : 0), argv + (plan_path ? 1 : 0), opts,
                      n_opts, &help) != XDT_OK)
        return 2;
    if (help || !plan_path) {
        if (!help) xdt_log_error("xdt simulate: give the plan file (xdt simulate plan.json)");
        xdt_cli_usage(
            help ? stdout : stderr, "simulate plan.json",
            "Predicts a plan's step with the simulator, draws its timeline, and compares it with a "
            "measured run's trace.",
            opts, n_opts);
        return help ? 0 : 2;
    }
    xdt_loaded_plan p;
    if (xdt_plan_load(plan_path, &p) != XDT_OK) return 1;
    xdt_sim_input in;
    xdt_job_costs_sim_input(&p.costs, &in);
    xdt_sim_result r;
    int rc = 1;
    if (xdt_simulate(&in, &r) == XDT_OK) {
        report(&p, &r);
        rc = 0;
        if (trace && xdt_trace_write_sim(trace, plan_path, p.costs.schedules[0], &r)) rc = 1;
        if (svg && xdt_timeline_write_svg(svg, plan_path, p.costs.schedules[0], &r)) rc = 1;
        xdt_trace_compare cmp;
        if (compare) {
            if (xdt_trace_compare_load(compare, &p, &r, &cmp) == XDT_OK) {
                xdt_trace_compare_print(&cmp, top, stdout);
                xdt_trace_compare_free(&cmp);
            } else {
                rc = 1;
            }
        }
        xdt_sim_result_free(&r);
    }
    xdt_plan_free(&p);
    return rc;
}
