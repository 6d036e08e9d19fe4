/* cmd_plan.c: `xdt plan`: reads a cluster and a model, solves for the layout (planner/solver.h),
 * prints the plan -- one row per pipeline rank of each distinct replica: site/node/device, layer
 * range, memory predicted/limit, compute ms, the codec on its outgoing link -- and the
 * prediction, and writes plan.json (format in planner/plan_io.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/model_config.h"
#include "core/schedule.h"
#include "planner/plan_io.h"
#include "planner/profile.h"
#include "planner/solver.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

typedef struct plan_args {
    const char *cluster, *model, *out, *catalog, *codec, *profile, *search, *precision;
    const char *attention;
    int global_batch, microbatch, seq, schedule, max_replicas, stages, replicas, split;
} plan_args;

static void print_plan(const xdt_topology *t, const xdt_model_config *cfg,
                       const xdt_solver_input *in, const xdt_solution *s) {
    const int P = s->stages, V = s->chunks;
    printf("plan for %s on %s: %d replica%s x %d stages%s, microbatch %d, %d microbatches, %s, "
           "%s GEMMs%s\n",
           cfg->name, t->name, s->replicas, s->replicas == 1 ? "" : "s", P,
           V > 1 ? " (2 chunks each)" : "", s->microbatch, s->microbatches,
           xdt_schedule_kind_name(s->kind), xdt_precision_name(in->cost.dtype),
           in->cost.fused_attention ? ", flash attention on GPUs" : "");
    printf("%-5s %-5s %-10s %-12s %-10s %-9s %-16s %-16s %s\n", "rank", "repl", "site", "node",
           "device", "units", "memory GiB", "compute ms", "link codec");
    int skipped = 0;
    for (int g = 0; g < s->ranks; g++) {
        const int d = g / P, p = g % P;
        /* a replica laid out like the one before it (device types, microbatches) is counted,
         * not printed, when there are many */
        bool alike =
            s->ranks > 32 && d > 0 && s->replica_microbatches[d] == s->replica_microbatches[d - 1];
        for (int q = 0; alike && q < P; q++)
            alike = t->nodes[s->node[d * P + q]].type == t->nodes[s->node[(d - 1) * P + q]].type;
        if (alike) {
            skipped += p == 0;
            continue;
        }
        const xdt_topo_node *n = &t->nodes[s->node[g]];
        double fwd = 0, bwd = 0;
        char units[48] = "";
        for (int v = 0; v < V; v++) {
            const int st = v * P + p;
            xdt_stage_cost c;
            xdt_stage_cost_estimate(cfg, s->split.first[st], s->split.first[st + 1] - 1,
                                    s->microbatch, in->seq, 1, n->type, n->slowdown, &in->cost, &c);
            fwd += c.fwd_ms;
            bwd += c.bwd_ms;
            const size_t len = strlen(units);
            snprintf(units + len, sizeof units - len, "%s%d-%d", v ? "," : "", s->split.first[st],
                     s->split.first[st + 1] - 1);
        }
        char mem[40], ms[40];
        snprintf(mem, sizeof mem, "%.2f / %.0f", s->peak_bytes[g] / 1073741824.0,
                 n->type->memory_gib);
        snprintf(ms, sizeof ms, "%.3f + %.3f", fwd, bwd);
        const bool has_link = P > 1 && (p + 1 < P || V > 1);
        printf("%-5d %-5d %-10s %-12s %-10s %-9s %-16s %-16s %s\n", g, d, t->sites[n->site].name,
               n->name, n->type->name, units, mem, ms,
               has_link ? xdt_link_codec_name(s->link_codec[g]) : "-");
    }
    if (skipped) printf("(%d more replicas laid out like the one printed before them)\n", skipped);
    if (s->replicas > 1) {
        printf("gradient all-reduce codec per pipeline rank:");
        for (int p = 0; p < P; p++)
            printf(" %s", xdt_link_codec_name(s->dp_codec[p]));
        printf("\nmicrobatches per replica:");
        for (int d = 0; d < s->replicas; d++)
            printf(" %d", s->replica_microbatches[d]);
        printf("\n");
    }
    if (s->kind == XDT_SCHEDULE_XDC) {
        printf("xdc extra warm-up per pipeline rank:");
        for (int p = 0; p < P; p++)
            printf(" %d", s->extra[p]);
        printf("\n");
    }
    printf("predicted: step %.3f ms, %.0f tokens/s, bubble %.1f %%, %.3f MB between sites per "
           "step\n",
           s->step_ms, s->tokens_per_s, 100 * s->bubble, s->wan_bytes / 1e6);
}

int xdt_cmd_plan(int argc, char **argv) {
    plan_args a = {.catalog = "configs/devices.yaml",
                   .codec = "auto",
                   .search = "auto",
                   .precision = "auto",
                   .attention = "auto"};
    xdt_cli_opt opts[] = {
        XDT_OPT_REQUIRED("cluster", &a.cluster, "C.yaml", "cluster file"),
        XDT_OPT_REQUIRED("model", &a.model, "M.yaml", "model config"),
        XDT_OPT_INT("global-batch", &a.global_batch, "N", "sequences per step", 1, 1 << 24),
        XDT_OPT_INT("microbatch", &a.microbatch, "N", "sequences per microbatch [auto]", 0,
                    1 << 20),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per sequence [max_seq_len]", 0, 1 << 20),
        XDT_OPT_STRING("catalog", &a.catalog, "FILE", "device catalog [configs/devices.yaml]"),
        XDT_OPT_CHOICE("schedule", &a.schedule, "auto|gpipe|1f1b|interleaved|xdc",
                       "pipeline schedule; auto picks the fastest [auto]"),
        XDT_OPT_STRING("codec", &a.codec, "auto|NAME",
                       "wire codec: auto chooses per link; a name (none, bf16, fp16, int8, int4, "
                       "zstd) goes on every link between sites [auto]"),
        XDT_OPT_INT("max-replicas", &a.max_replicas, "N",
                    "at most N data-parallel replicas (1: one pipeline) [any]", 0, 1 << 20),
        XDT_OPT_INT("stages", &a.stages, "N", "exactly N pipeline ranks per replica [any]", 0,
                    1 << 20),
        XDT_OPT_INT("replicas", &a.replicas, "N", "exactly N data-parallel replicas [any]", 0,
                    1 << 20),
        XDT_OPT_CHOICE("split", &a.split, "balanced|even",
                       "layers by device speed, or evenly (for comparisons) [balanced]"),
        XDT_OPT_STRING("profile", &a.profile, "FILE",
                       "measured unit times (xdt profile) used for their device type"),
        XDT_OPT_STRING("search", &a.search, "auto|exact|pruned",
                       "search: exact up to 8 devices, pruned beyond [auto]"),
        XDT_OPT_STRING("precision", &a.precision, "auto|fp32|tf32|bf16",
                       "GEMM precision the devices compute in; auto: bf16 when every rank is a "
                       "GPU, fp32 when CPU ranks take part [auto]"),
        XDT_OPT_STRING("attention", &a.attention, "auto|explicit|flash",
                       "how GPU ranks run attention: keeping the t x t probabilities, or fused "
                       "kernels keeping per-row statistics (long sequences; heads <= 64 dims); "
                       "the memory figures follow; auto: fused in bf16 [auto]"),
        XDT_OPT_STRING("o", &a.out, "plan.json", "write the plan"),
    };
    opts[2].required = true;
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("plan", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "plan",
                      "Places a model on a cluster (pipeline stages, data-parallel replicas, "
                      "layer split, microbatches, schedule, codec per link) and predicts the "
                      "step.",
                      opts, n_opts);
        return 0;
    }
    const int codec = xdt_link_codec_parse(a.codec);
    if (codec < XDT_LINK_CODEC_AUTO) {
        xdt_log_error("xdt plan: --codec %s: not a codec (auto, none, bf16, fp16, int8, int4, "
                      "zstd)",
                      a.codec);
        return 2;
    }
    const xdt_search_mode search = !strcmp(a.search, "exact")    ? XDT_SEARCH_EXACT
                                   : !strcmp(a.search, "pruned") ? XDT_SEARCH_PRUNED
                                                                 : XDT_SEARCH_AUTO;
    if (search == XDT_SEARCH_AUTO && strcmp(a.search, "auto")) {
        xdt_log_error("xdt plan: --search %s: expected auto, exact or pruned", a.search);
        return 2;
    }
    xdt_precision precision = XDT_PRECISION_FP32;
    const bool auto_precision = !strcmp(a.precision, "auto");
    if (!auto_precision && !xdt_precision_parse(a.precision, &precision)) {
        xdt_log_error("xdt plan: --precision %s: expected auto, fp32, tf32 or bf16", a.precision);
        return 2;
    }
    if (strcmp(a.attention, "auto") && strcmp(a.attention, "explicit") &&
        strcmp(a.attention, "flash")) {
        xdt_log_error("xdt plan: --attention %s: expected auto, explicit or flash", a.attention);
        return 2;
    }
    xdt_device_catalog cat;
    xdt_topology topo;
    xdt_model_config cfg;
    if (xdt_device_catalog_load(a.catalog, &cat) || xdt_model_config_load(a.model, &cfg)) return 1;
    if (xdt_topology_load(a.cluster, &cat, &topo)) return 1;
    /* --schedule choice index 0 is auto; 1.. follow xdt_schedule_kind */
    static const int kinds[] = {-1, XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_1F1B, XDT_SCHEDULE_INTERLEAVED,
                                XDT_SCHEDULE_XDC};
    xdt_solver_input in = {.topo = &topo,
                           .cfg = &cfg,
                           .global_batch = a.global_batch,
                           .seq = a.seq ? a.seq : cfg.max_seq_len,
                           .microbatch = a.microbatch,
                           .schedule = kinds[a.schedule],
                           .codec = codec,
                           .max_replicas = a.max_replicas,
                           .stages = a.stages,
                           .replicas = a.replicas,
                           .even_split = a.split == 1,
                           .search = search,
                           .cost = {.dtype = XDT_PRECISION_BF16,
                                    .efficiency = 0.5,
                                    .fused_attention = !strcmp(a.attention, "flash")}};
    int rc = 1;
    xdt_profile prof;
    bool have_profile = false;
    if (in.seq > cfg.max_seq_len) {
        xdt_fail(XDT_ERR_CONFIG, "--seq %d exceeds max_seq_len %d", in.seq, cfg.max_seq_len);
        rc = 2;
        goto out;
    }
    if (a.profile) {
        if (xdt_profile_load(a.profile, &prof) != XDT_OK) goto out;
        have_profile = true;
        if (!xdt_profile_matches(&prof, &cfg, in.seq)) {
            xdt_fail(XDT_ERR_CONFIG,
                     "%s: measured for another model or sequence length than %s at seq %d",
                     a.profile, cfg.name, in.seq);
            goto out;
        }
        bool used = false; /* a profile of a type no node has would be silently ignored */
        for (int n = 0; n < topo.n_nodes && !used; n++)
            used = !strcmp(topo.nodes[n].type->name, prof.device_type);
        if (!used) {
            xdt_fail(XDT_ERR_CONFIG,
                     "%s: measured on device type '%s', which no node of %s has (the profile "
                     "would go unused)",
                     a.profile, prof.device_type, a.cluster);
            goto out;
        }
        in.cost.profile = &prof;
    }
    if (!auto_precision)
        in.cost.dtype = precision;
    else
        for (int n = 0; n < topo.n_nodes; n++)
            if (topo.nodes[n].type->backend == XDT_BACKEND_CPU) in.cost.dtype = XDT_PRECISION_FP32;
    /* auto attention: the fused kernels in bf16 (on tensor cores there), the explicit path
     * otherwise, as measured on an H200 (docs/BENCHMARKS.md) */
    if (!strcmp(a.attention, "auto")) in.cost.fused_attention = in.cost.dtype == XDT_PRECISION_BF16;
    xdt_solution *s = malloc(sizeof *s);
    if (s && xdt_solve(&in, s) == XDT_OK) {
        print_plan(&topo, &cfg, &in, s);
        rc = a.out && xdt_plan_write(a.out, &in, s, &topo) ? 1 : 0;
        if (!rc && a.out) printf("wrote %s\n", a.out);
    }
    free(s);
out:
    if (have_profile) xdt_profile_free(&prof);
    xdt_topology_free(&topo);
    return rc;
}
