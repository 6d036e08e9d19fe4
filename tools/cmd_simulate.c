/* cmd_simulate.c: `xdt simulate plan.json [--trace sim.trace.json] [--svg timeline.svg]`:
 * replays a plan's schedule through the simulator, prints the predicted step, each rank's bubble
 * and the bytes on each link, and writes the Chrome trace and the SVG timeline. */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "planner/plan_io.h"
#include "planner/timeline_svg.h"
#include "planner/trace_writer.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

int xdt_cmd_simulate(int argc, char **argv) {
    const char *trace = NULL, *svg = NULL;
    xdt_cli_opt opts[] = {
        XDT_OPT_STRING("trace", &trace, "FILE.json", "write the Chrome trace"),
        XDT_OPT_STRING("svg", &svg, "FILE.svg", "write the SVG timeline"),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    const char *plan_path = argc >= 1 && argv[0][0] != '-' ? argv[0] : NULL;
    bool help = false;
    if (xdt_cli_parse("simulate", argc - (plan_path ? 1 : 0), argv + (plan_path ? 1 : 0), opts,
                      n_opts, &help) != XDT_OK)
        return 2;
    if (help || !plan_path) {
        if (!help) xdt_log_error("xdt simulate: give the plan file (xdt simulate plan.json)");
        xdt_cli_usage(help ? stdout : stderr, "simulate plan.json",
                      "Predicts a plan's step with the simulator and draws its timeline.", opts,
                      n_opts);
        return help ? 0 : 2;
    }
    xdt_loaded_plan p;
    if (xdt_plan_load(plan_path, &p) != XDT_OK) return 1;
    xdt_sim_input in = {p.schedule, p.fwd_ms, p.bwd_ms, p.boundary_bytes, p.links, 0, 0};
    xdt_sim_result r;
    int rc = 1;
    if (xdt_simulate(&in, &r) == XDT_OK) {
        printf("predicted step %.3f ms (the plan recorded %.3f ms)\n", r.step_ms,
               p.predicted_step_ms);
        for (int k = 0; k < p.stages; k++)
            printf("rank %d: busy %.3f ms, bubble %.1f %%\n", k, r.busy_ms[k], 100 * r.bubble[k]);
        for (int a = 0; a < p.stages; a++)
            for (int b = 0; b < p.stages; b++)
                if (r.link_bytes[a * p.stages + b] > 0)
                    printf("link %d->%d: %.3f MB per step\n", a, b,
                           r.link_bytes[a * p.stages + b] / 1e6);
        rc = 0;
        if (trace && xdt_trace_write_sim(trace, plan_path, p.schedule, &r)) rc = 1;
        if (svg && xdt_timeline_write_svg(svg, plan_path, p.schedule, &r)) rc = 1;
        xdt_sim_result_free(&r);
    }
    xdt_plan_free(&p);
    return rc;
}
