/* cmd_demo.c: `xdt demo [--out DIR] [--steps N] [--data PATH]`: the whole story in one or two
 * minutes on this host. It measures this machine (xdt profile), plans gpt-small-cpu on the
 * bundled two-site cluster (configs/clusters/local-two-sites.yaml: two sites joined by an
 * emulated 1 Gbit/s, 25 ms link), predicts the step (xdt simulate: trace and SVG timeline),
 * trains it with one process per rank and the WAN emulated (xdt launch), compares predicted and
 * measured timelines, and leaves everything in DIR with a short summary. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file_util.h"
#include "core/log.h"
#include "planner/plan_io.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

typedef struct demo_args {
    const char *out, *data, *root;
    int steps, batch, seq;
} demo_args;

/* Runs an xdt command in this process with the given arguments (NULL-terminated). */
static int run_command(int (*cmd)(int, char **), const char *name, char **args) {
    int n = 0;
    while (args[n])
        n++;
    printf("\n$ xdt %s", name);
    for (int i = 0; i < n; i++)
        printf(" %s", args[i]);
    printf("\n");
    fflush(stdout);
    return cmd(n, args);
}

/* Medians of a metrics file's step_ms and tokens_per_s (steps after the first two), its first
 * and last loss, and the WAN bytes (wire and pre-codec) summed over all steps. */
typedef struct run_summary {
    int steps;
    double step_ms, tokens_per_s, first_loss, last_loss, wan_bytes, wan_raw_bytes;
} run_summary;

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double field(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

static xdt_status summarize(const char *metrics, run_summary *s) {
    FILE *f = fopen(metrics, "r");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot read: %s", metrics, strerror(errno));
    memset(s, 0, sizeof *s);
    double ms[100000], tps[100000];
    int n = 0;
    char line[1024];
    while (fgets(line, sizeof line, f) && n < 100000) {
        const double loss = field(line, "loss");
        if (s->steps == 0) s->first_loss = loss;
        s->last_loss = loss;
        s->wan_bytes += field(line, "wan_bytes");
        s->wan_raw_bytes += field(line, "wan_raw_bytes");
        if (s->steps++ >= 2) { /* the first steps warm up */
            ms[n] = field(line, "step_ms");
            tps[n++] = field(line, "tokens_per_s");
        }
    }
    fclose(f);
    if (n == 0) return xdt_fail(XDT_ERR_FORMAT, "%s: fewer than 3 steps to summarize", metrics);
    qsort(ms, (size_t)n, sizeof ms[0], cmp_double);
    qsort(tps, (size_t)n, sizeof tps[0], cmp_double);
    s->step_ms = ms[n / 2];
    s->tokens_per_s = tps[n / 2];
    return XDT_OK;
}

static xdt_status write_summary(const demo_args *a, const char *dir, const xdt_loaded_plan *plan,
                                const run_summary *r) {
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/summary.txt", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    const double err = 100 * (plan->predicted_step_ms - r->step_ms) / r->step_ms;
    fprintf(f, "xdt demo: %s on %s (%d replica%s x %d stages, %s), %d steps of %d x %d tokens\n",
            plan->model.name, plan->cluster, plan->replicas, plan->replicas == 1 ? "" : "s",
            plan->stages, xdt_schedule_kind_name(plan->kind), r->steps, plan->global_batch,
            plan->seq);
    fprintf(f, "loss: %.4f -> %.4f\n", r->first_loss, r->last_loss);
    fprintf(f, "throughput: %.0f tokens/s (median step)\n", r->tokens_per_s);
    fprintf(f, "step time: predicted %.1f ms, measured %.1f ms (median), error %+.1f %%\n",
            plan->predicted_step_ms, r->step_ms, err);
    fprintf(f,
            "between the sites: %.2f MB sent, %.2f MB before the codecs (%.2f MB saved, %.1fx)\n",
            r->wan_bytes / 1e6, r->wan_raw_bytes / 1e6, (r->wan_raw_bytes - r->wan_bytes) / 1e6,
            r->wan_bytes > 0 ? r->wan_raw_bytes / r->wan_bytes : 1.0);
    fprintf(f, "files: plan.json, profile.json, sim.trace.json, timeline.svg, run.trace.json, "
               "metrics.jsonl, compare.txt, summary.txt\n");
    (void)a;
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        remove(tmp);
        return xdt_fail(XDT_ERR_IO, "%s: cannot write", path);
    }
    return XDT_OK;
}

static int demo(const demo_args *a) {
    const char *dir = a->out;
    if (xdt_mkdir_p(dir) != XDT_OK) return 1;
    char cluster[4096], model[4096], catalog[4096], prof[4096], plan[4096], sim[4096], svg[4096],
        run[4096], metrics[4096], steps[32], batch[32], seq[32];
    snprintf(cluster, sizeof cluster, "%s/configs/clusters/local-two-sites.yaml", a->root);
    snprintf(model, sizeof model, "%s/configs/models/gpt-small-cpu.yaml", a->root);
    snprintf(catalog, sizeof catalog, "%s/configs/devices.yaml", a->root);
    snprintf(prof, sizeof prof, "%s/profile.json", dir);
    snprintf(plan, sizeof plan, "%s/plan.json", dir);
    snprintf(sim, sizeof sim, "%s/sim.trace.json", dir);
    snprintf(svg, sizeof svg, "%s/timeline.svg", dir);
    snprintf(run, sizeof run, "%s/run.trace.json", dir);
    snprintf(metrics, sizeof metrics, "%s/metrics.jsonl", dir);
    snprintf(steps, sizeof steps, "%d", a->steps);
    snprintf(batch, sizeof batch, "%d", a->batch);
    snprintf(seq, sizeof seq, "%d", a->seq);
    if (access(cluster, R_OK) != 0 || access(model, R_OK) != 0) {
        xdt_log_error("xdt demo: %s or %s is missing: run it from the repository (or --root)",
                      cluster, model);
        return 1;
    }
    if (access(a->data, R_OK) != 0) {
        xdt_log_error("xdt demo: %s: cannot read the text to train on (--data)", a->data);
        return 1;
    }
    printf("xdt demo: two emulated datacenters on this host, joined by 1 Gbit/s with 25 ms "
           "one-way latency.\n1. measure this machine, 2. plan, 3. predict, 4. train, 5. "
           "compare -- results in %s/\n",
           dir);
    /* one rank per site, one core each; measured while another process trains beside it, as
     * the other rank will */
    char *profile_args[] = {"--model",      model, "--device",     "cpu",     "--threads", "1",
                            "--seq",        seq,   "--microbatch", "1,2,4,8", "--reps",    "3",
                            "--co-runners", "1",   "-o",           prof,      NULL};
    char *plan_args[] = {
        "--cluster", cluster, "--catalog", catalog,     "--model", model, "--global-batch",
        batch,       "--seq", seq,         "--profile", prof,      "-o",  plan,
        NULL};
    char *sim_args[] = {plan, "--trace", sim, "--svg", svg, NULL};
    char data[4096];
    snprintf(data, sizeof data, "%s", a->data);
    char *launch_args[] = {plan,        "--data",    data,      "--steps",     steps,
                           "--warmup",  "10",        "--lr",    "3e-3",        "--eval-every",
                           "40",        "--threads", "1",       "--log-every", "10",
                           "--metrics", metrics,     "--trace", run,           NULL};
    if (run_command(xdt_cmd_profile, "profile", profile_args) ||
        run_command(xdt_cmd_plan, "plan", plan_args) ||
        run_command(xdt_cmd_simulate, "simulate", sim_args) ||
        run_command(xdt_cmd_launch, "launch", launch_args))
        return 1;
    /* predicted against measured, into compare.txt */
    char compare[4096];
    snprintf(compare, sizeof compare, "%s/compare.txt", dir);
    fflush(stdout);
    char *cmp_args[] = {plan, "--compare", run, NULL};
    const int saved = dup(STDOUT_FILENO);
    FILE *cf = fopen(compare, "w");
    if (cf && saved >= 0) {
        dup2(fileno(cf), STDOUT_FILENO);
        run_command(xdt_cmd_simulate, "simulate", cmp_args);
        fflush(stdout);
        dup2(saved, STDOUT_FILENO);
    }
    if (cf) fclose(cf);
    if (saved >= 0) close(saved);
    xdt_loaded_plan p;
    run_summary r;
    if (xdt_plan_load(plan, &p) != XDT_OK) return 1;
    xdt_status st = summarize(metrics, &r);
    if (!st) st = write_summary(a, dir, &p, &r);
    xdt_plan_free(&p);
    if (st) return 1;
    char summary[4096];
    snprintf(summary, sizeof summary, "%s/summary.txt", dir);
    FILE *f = fopen(summary, "r");
    char line[512];
    printf("\n");
    while (f && fgets(line, sizeof line, f))
        fputs(line, stdout);
    if (f) fclose(f);
    return 0;
}

int xdt_cmd_demo(int argc, char **argv) {
    demo_args a = {.out = "xdt-demo",
                   .data = "/usr/share/common-licenses/GPL-3",
                   .root = ".",
                   .steps = 120,
                   .batch = 16,
                   .seq = 128};
    xdt_cli_opt opts[] = {
        XDT_OPT_STRING("out", &a.out, "DIR", "where the results go [xdt-demo]"),
        XDT_OPT_STRING("data", &a.data, "PATH",
                       "text to train on [/usr/share/common-licenses/GPL-3]"),
        XDT_OPT_STRING("root", &a.root, "DIR", "the repository (configs/) [.]"),
        XDT_OPT_INT("steps", &a.steps, "N", "training steps [120]", 3, 1000000),
        XDT_OPT_INT("global-batch", &a.batch, "N", "sequences per step [16]", 1, 4096),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per sequence [128]", 8, 256),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("demo", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "demo",
                      "Plans, predicts and trains gpt-small-cpu across two emulated datacenters "
                      "on this host, and summarizes.",
                      opts, n_opts);
        return 0;
    }
    return demo(&a);
}
