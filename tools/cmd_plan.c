/* cmd_plan.c: `xdt plan`: reads a cluster and a model, solves for a pipeline, prints the plan
 * (stage -> site/node/device, layer range, memory used/limit, compute ms, outgoing link) and the
 * prediction, and writes plan.json (format below) for the runtime and `xdt simulate`.
 *
 * plan.json, version 1: {"version":1, "cluster":..., "model":{...}, "global_batch":N, "seq":T,
 *   "stages":[{"rank":r, "site":..., "node":..., "device_type":..., "units":[first,last],
 *              "fwd_ms":..., "bwd_ms":..., "memory_gib":...}],
 *   "schedule":{"kind":"1f1b" or "gpipe", "microbatches":M, "microbatch":b},
 *   "links":[{"from":r, "to":r+1, "gbps":..., "latency_ms":..., "codec":"none"}],
 *   "predicted":{"step_ms":..., "tokens_per_s":..., "bubble":...},
 *   "ops":[[["FWD", mb, chunk, peer], ["SEND_ACT", 0, 0, 1], ...] per rank]}
 * Op kinds are core/schedule.h's names; mb, chunk and peer are -1 where they do not apply. */
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/model_config.h"
#include "core/schedule.h"
#include "planner/solver.h"
#include "tools/cli_args.h"
#include "tools/commands.h"

typedef struct plan_args {
    const char *cluster, *model, *out, *catalog;
    int global_batch, microbatch, seq, schedule;
} plan_args;

static xdt_status write_json(const plan_args *a, const xdt_topology *t, const xdt_model_config *cfg,
                             const xdt_solver_input *in, const xdt_solution *s) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", a->out);
    FILE *f = fopen(tmp, "w");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot create", tmp);
    fprintf(f, "{\n  \"version\": 1,\n  \"cluster\": \"%s\",\n", t->name);
    fprintf(f,
            "  \"model\": {\"name\": \"%s\", \"vocab_size\": %d, \"padded_vocab_size\": %d, "
            "\"max_seq_len\": %d, \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d},\n",
            cfg->name, cfg->vocab_size, cfg->padded_vocab_size, cfg->max_seq_len, cfg->n_layer,
            cfg->n_head, cfg->n_embd);
    fprintf(f, "  \"global_batch\": %d,\n  \"seq\": %d,\n  \"stages\": [\n", in->global_batch,
            in->seq);
    for (int k = 0; k < s->stages; k++) {
        const xdt_topo_node *n = &t->nodes[s->node[k]];
        xdt_stage_cost c;
        xdt_stage_cost_estimate(cfg, s->split.first[k], s->split.first[k + 1] - 1, s->microbatch,
                                in->seq,
                                s->stages - k < s->microbatches ? s->stages - k : s->microbatches,
                                n->type, n->slowdown, &in->cost, &c);
        fprintf(f,
                "    {\"rank\": %d, \"site\": \"%s\", \"node\": \"%s\", \"device_type\": "
                "\"%s\", \"units\": [%d, %d], \"fwd_ms\": %.17g, \"bwd_ms\": %.17g, "
                "\"memory_gib\": %.4g}%s\n",
                k, t->sites[n->site].name, n->name, n->type->name, s->split.first[k],
                s->split.first[k + 1] - 1, c.fwd_ms, c.bwd_ms, c.memory_bytes / 1073741824.0,
                k + 1 < s->stages ? "," : "");
    }
    fprintf(f,
            "  ],\n  \"schedule\": {\"kind\": \"%s\", \"microbatches\": %d, \"microbatch\": "
            "%d},\n  \"links\": [",
            xdt_schedule_kind_name(s->kind), s->microbatches, s->microbatch);
    for (int k = 0; k + 1 < s->stages; k++) {
        double gbps, lat;
        xdt_topology_node_path(t, s->node[k], s->node[k + 1], &gbps, &lat);
        fprintf(f,
                "%s\n    {\"from\": %d, \"to\": %d, \"gbps\": %.17g, \"latency_ms\": %.17g, "
                "\"codec\": \"none\"}",
                k ? "," : "", k, k + 1, gbps, lat);
    }
    fprintf(f,
            "\n  ],\n  \"predicted\": {\"step_ms\": %.6g, \"tokens_per_s\": %.6g, \"bubble\": "
            "%.4f},\n  \"ops\": [\n",
            s->step_ms, s->tokens_per_s, s->bubble);
    xdt_schedule *sched = NULL;
    xdt_status st = xdt_solution_schedule(s, &sched);
    for (int r = 0; !st && r < s->stages; r++) {
        fprintf(f, "    [");
        const xdt_op *ops = xdt_schedule_ops(sched, r);
        for (int i = 0; i < xdt_schedule_num_ops(sched, r); i++)
            fprintf(f, "%s[\"%s\", %d, %d, %d]", i ? ", " : "", xdt_op_kind_name(ops[i].kind),
                    ops[i].microbatch, ops[i].chunk, ops[i].peer);
        fprintf(f, "]%s\n", r + 1 < s->stages ? "," : "");
    }
    xdt_schedule_destroy(sched);
    fprintf(f, "  ]\n}\n");
    if (fclose(f) != 0 || st || rename(tmp, a->out) != 0) {
        remove(tmp);
        return st ? st : xdt_fail(XDT_ERR_IO, "%s: cannot write", a->out);
    }
    return XDT_OK;
}

int xdt_cmd_plan(int argc, char **argv) {
    plan_args a = {.catalog = "configs/devices.yaml", .seq = 0};
    xdt_cli_opt opts[] = {
        XDT_OPT_REQUIRED("cluster", &a.cluster, "C.yaml", "cluster file"),
        XDT_OPT_REQUIRED("model", &a.model, "M.yaml", "model config"),
        XDT_OPT_INT("global-batch", &a.global_batch, "N", "sequences per step", 1, 1 << 24),
        XDT_OPT_INT("microbatch", &a.microbatch, "N", "sequences per microbatch [auto]", 0,
                    1 << 20),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per sequence [max_seq_len]", 0, 1 << 20),
        XDT_OPT_STRING("catalog", &a.catalog, "FILE", "device catalog [configs/devices.yaml]"),
        XDT_OPT_CHOICE("schedule", &a.schedule, "auto|gpipe|1f1b|interleaved|xdc",
                       "pipeline schedule; auto picks the faster of gpipe and 1f1b [auto]"),
        XDT_OPT_STRING("o", &a.out, "plan.json", "write the plan"),
    };
    opts[2].required = true;
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("plan", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "plan",
                      "Places a model's pipeline stages on a cluster and predicts "
                      "the step (single pipeline, GPipe or 1F1B; replicas, interleaving and codec "
                      "choice are next).",
                      opts, n_opts);
        return 0;
    }
    xdt_device_catalog cat;
    xdt_topology topo;
    xdt_model_config cfg;
    if (xdt_device_catalog_load(a.catalog, &cat) || xdt_model_config_load(a.model, &cfg)) return 1;
    if (xdt_topology_load(a.cluster, &cat, &topo)) return 1;
    /* --schedule choice index 0 is auto; 1.. follow xdt_schedule_kind */
    static const int kinds[] = {-1, XDT_SCHEDULE_GPIPE, XDT_SCHEDULE_1F1B, XDT_SCHEDULE_INTERLEAVED,
                                XDT_SCHEDULE_XDC};
    xdt_solver_input in = {&topo,
                           &cfg,
                           a.global_batch,
                           a.seq ? a.seq : cfg.max_seq_len,
                           a.microbatch,
                           kinds[a.schedule],
                           {XDT_MATH_BF16, 0.5}};
    if (in.seq > cfg.max_seq_len) {
        xdt_topology_free(&topo);
        return xdt_fail(XDT_ERR_CONFIG, "--seq %d exceeds max_seq_len %d", in.seq, cfg.max_seq_len),
               2;
    }
    for (int n = 0; n < topo.n_nodes; n++)
        if (topo.nodes[n].type->backend == XDT_BACKEND_CPU) in.cost.dtype = XDT_MATH_FP32;
    xdt_solution s;
    int rc = 1;
    if (xdt_solve(&in, &s) == XDT_OK) {
        printf("plan for %s on %s: %d stages, microbatch %d x %d, %s\n", cfg.name, topo.name,
               s.stages, s.microbatch, s.microbatches, xdt_schedule_kind_name(s.kind));
        printf("%-6s %-12s %-12s %-10s %-9s %-16s %-12s\n", "stage", "site", "node", "device",
               "units", "memory GiB", "compute ms");
        for (int k = 0; k < s.stages; k++) {
            const xdt_topo_node *n = &topo.nodes[s.node[k]];
            xdt_stage_cost c;
            xdt_stage_cost_estimate(&cfg, s.split.first[k], s.split.first[k + 1] - 1, s.microbatch,
                                    in.seq, s.inflight[k], n->type, n->slowdown, &in.cost, &c);
            char units[24], mem[32];
            snprintf(units, sizeof units, "%d-%d", s.split.first[k], s.split.first[k + 1] - 1);
            snprintf(mem, sizeof mem, "%.2f / %.0f", c.memory_bytes / 1073741824.0,
                     n->type->memory_gib);
            printf("%-6d %-12s %-12s %-10s %-9s %-16s %.3f + %.3f\n", k, topo.sites[n->site].name,
                   n->name, n->type->name, units, mem, c.fwd_ms, c.bwd_ms);
        }
        printf("predicted: step %.3f ms, %.0f tokens/s, bubble %.1f %%\n", s.step_ms,
               s.tokens_per_s, 100 * s.bubble);
        rc = a.out && write_json(&a, &topo, &cfg, &in, &s) ? 1 : 0;
        if (!rc && a.out) printf("wrote %s\n", a.out);
    }
    xdt_topology_free(&topo);
    return rc;
}
