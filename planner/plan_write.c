/* plan_write.c: a solution as plan.json (format in plan_io.h), built with cJSON. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/log.h"
#include "planner/plan_io.h"

static cJSON *pair(int a, int b) {
    cJSON *x = cJSON_CreateArray();
    cJSON_AddItemToArray(x, cJSON_CreateNumber(a));
    cJSON_AddItemToArray(x, cJSON_CreateNumber(b));
    return x;
}

static const char *backend_name(xdt_backend_kind b) {
    return b == XDT_BACKEND_CUDA ? "cuda" : b == XDT_BACKEND_HIP ? "hip" : "cpu";
}

static cJSON *build(const xdt_solver_input *in, const xdt_solution *s, const xdt_topology *t,
                    const xdt_job_costs *jc) {
    const xdt_model_config *cfg = in->cfg;
    const int P = s->stages, V = s->chunks, D = s->replicas, S = P * V, R = s->ranks;
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "version", XDT_PLAN_VERSION);
    cJSON_AddStringToObject(root, "cluster", t->name);
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "name", cfg->name);
    cJSON_AddNumberToObject(m, "vocab_size", cfg->vocab_size);
    cJSON_AddNumberToObject(m, "padded_vocab_size", cfg->padded_vocab_size);
    cJSON_AddNumberToObject(m, "max_seq_len", cfg->max_seq_len);
    cJSON_AddNumberToObject(m, "n_layer", cfg->n_layer);
    cJSON_AddNumberToObject(m, "n_head", cfg->n_head);
    cJSON_AddNumberToObject(m, "n_embd", cfg->n_embd);
    cJSON_AddNumberToObject(root, "global_batch", in->global_batch);
    cJSON_AddNumberToObject(root, "seq", in->seq);
    cJSON_AddNumberToObject(root, "microbatch", s->microbatch);
    cJSON_AddStringToObject(root, "precision", xdt_precision_name(in->cost.dtype));
    cJSON_AddStringToObject(root, "attention", in->cost.fused_attention ? "flash" : "explicit");
    cJSON *sc = cJSON_AddObjectToObject(root, "schedule");
    cJSON_AddStringToObject(sc, "kind", xdt_schedule_kind_name(s->kind));
    cJSON_AddNumberToObject(sc, "microbatches", s->microbatches);
    cJSON_AddNumberToObject(sc, "chunks", V);
    cJSON *extra = cJSON_AddArrayToObject(sc, "extra");
    for (int p = 0; p < P; p++)
        cJSON_AddItemToArray(extra,
                             cJSON_CreateNumber(s->kind == XDT_SCHEDULE_XDC ? s->extra[p] : 0));
    cJSON *reps = cJSON_AddArrayToObject(root, "replicas");
    for (int d = 0; d < D; d++) {
        cJSON *r = cJSON_CreateObject();
        cJSON_AddNumberToObject(r, "microbatches", s->replica_microbatches[d]);
        cJSON *ranks = cJSON_AddArrayToObject(r, "ranks");
        for (int p = 0; p < P; p++)
            cJSON_AddItemToArray(ranks, cJSON_CreateNumber(d * P + p));
        cJSON_AddItemToArray(reps, r);
    }
    cJSON *stages = cJSON_AddArrayToObject(root, "stages");
    for (int g = 0; g < R; g++) {
        const int d = g / P, p = g % P;
        const xdt_topo_node *n = &t->nodes[s->node[g]];
        int first_dev = 0; /* the node's first flat device */
        while (xdt_solver_node_of(t, first_dev) != s->node[g])
            first_dev++;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "rank", g);
        cJSON_AddNumberToObject(o, "replica", d);
        cJSON_AddNumberToObject(o, "pipeline_rank", p);
        cJSON_AddStringToObject(o, "site", t->sites[n->site].name);
        cJSON_AddStringToObject(o, "node", n->name);
        cJSON_AddStringToObject(o, "device_type", n->type->name);
        cJSON_AddStringToObject(o, "backend", backend_name(n->type->backend));
        cJSON_AddNumberToObject(o, "device", s->device[g] - first_dev);
        cJSON_AddItemToObject(o, "units", pair(s->split.first[p], s->split.first[p + 1] - 1));
        cJSON *chunks = cJSON_AddArrayToObject(o, "chunks");
        for (int v = 0; v < V; v++) { /* jc holds every replica, in order */
            const int st = v * P + p;
            const size_t i = (size_t)d * S + st;
            cJSON *c = cJSON_CreateObject();
            cJSON_AddItemToObject(c, "units", pair(s->split.first[st], s->split.first[st + 1] - 1));
            cJSON_AddNumberToObject(c, "fwd_ms", jc->fwd_ms[i]);
            cJSON_AddNumberToObject(c, "bwd_ms", jc->bwd_ms[i]);
            cJSON_AddNumberToObject(c, "static_bytes", jc->static_bytes[i]);
            cJSON_AddNumberToObject(c, "activation_bytes", jc->activation_bytes[i]);
            cJSON_AddItemToArray(chunks, c);
        }
        cJSON_AddNumberToObject(o, "slowdown", n->slowdown);
        cJSON_AddNumberToObject(o, "memory_gib", s->peak_bytes[g] / 1073741824.0);
        cJSON_AddNumberToObject(o, "memory_limit_gib", n->type->memory_gib);
        cJSON_AddItemToArray(stages, o);
    }
    cJSON *sites = cJSON_AddArrayToObject(root, "sites");
    for (int i = 0; i < t->n_sites; i++)
        cJSON_AddItemToArray(sites, cJSON_CreateString(t->sites[i].name));
    cJSON *site_links = cJSON_AddArrayToObject(root, "site_links");
    for (int i = 0; i < t->n_links; i++) {
        const xdt_topo_link *l = &t->links[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "a", t->sites[l->a].name);
        cJSON_AddStringToObject(o, "b", t->sites[l->b].name);
        cJSON_AddNumberToObject(o, "gbps", l->gbps);
        cJSON_AddNumberToObject(o, "latency_ms", l->latency_ms);
        cJSON_AddNumberToObject(o, "jitter_ms", l->jitter_ms);
        cJSON_AddItemToArray(site_links, o);
    }
    cJSON *links = cJSON_AddArrayToObject(root, "links");
    for (int g = 0; g < R; g++) {
        const int d = g / P, p = g % P;
        if (P < 2 || (p + 1 == P && V == 1)) continue;
        const int h = d * P + (p + 1) % P;
        double gbps, lat;
        xdt_topology_node_path(t, s->node[g], s->node[h], &gbps, &lat);
        const xdt_sim_link *l = &jc->links[(size_t)g * R + h];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "from", g);
        cJSON_AddNumberToObject(o, "to", h);
        cJSON_AddNumberToObject(o, "gbps", gbps);
        cJSON_AddNumberToObject(o, "latency_ms", lat);
        cJSON_AddStringToObject(o, "codec", xdt_link_codec_name(s->link_codec[g]));
        cJSON_AddNumberToObject(o, "wire_ratio", l->wire_ratio);
        cJSON_AddNumberToObject(o, "codec_ms_per_mb", l->codec_ms_per_byte * 1e6);
        cJSON_AddBoolToObject(o, "between_sites",
                              t->nodes[s->node[g]].site != t->nodes[s->node[h]].site);
        cJSON_AddItemToArray(links, o);
    }
    cJSON *ar = cJSON_AddArrayToObject(root, "allreduce");
    for (int p = 0; p < P; p++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pipeline_rank", p);
        cJSON *ranks = cJSON_AddArrayToObject(o, "ranks");
        for (int d = 0; d < D; d++)
            cJSON_AddItemToArray(ranks, cJSON_CreateNumber(d * P + p));
        cJSON_AddStringToObject(o, "codec", xdt_link_codec_name(s->dp_codec[p]));
        cJSON_AddNumberToObject(o, "ms", jc->allreduce_ms[p]);
        cJSON_AddItemToArray(ar, o);
    }
    cJSON *tied = cJSON_AddObjectToObject(root, "tied_embedding");
    cJSON_AddStringToObject(tied, "codec", xdt_link_codec_name(s->tied_codec));
    cJSON_AddNumberToObject(tied, "bytes", P > 1 ? 4.0 * cfg->padded_vocab_size * cfg->n_embd : 0);
    cJSON_AddNumberToObject(root, "opt_step_ms", jc->opt_step_ms);
    cJSON *pr = cJSON_AddObjectToObject(root, "predicted");
    cJSON_AddNumberToObject(pr, "step_ms", s->step_ms);
    cJSON_AddNumberToObject(pr, "tokens_per_s", s->tokens_per_s);
    cJSON_AddNumberToObject(pr, "bubble", s->bubble);
    cJSON_AddNumberToObject(pr, "wan_bytes", s->wan_bytes);
    cJSON *ops = cJSON_AddArrayToObject(root, "ops");
    for (int g = 0; g < R; g++) {
        const int d = g / P, p = g % P;
        const xdt_schedule *sched = jc->schedules[d];
        const xdt_op *op = xdt_schedule_ops(sched, p);
        cJSON *list = cJSON_CreateArray();
        for (int i = 0; i < xdt_schedule_num_ops(sched, p); i++) {
            cJSON *o = cJSON_CreateArray();
            cJSON_AddItemToArray(o, cJSON_CreateString(xdt_op_kind_name(op[i].kind)));
            cJSON_AddItemToArray(o, cJSON_CreateNumber(op[i].microbatch));
            cJSON_AddItemToArray(o, cJSON_CreateNumber(op[i].chunk));
            cJSON_AddItemToArray(o, cJSON_CreateNumber(op[i].peer >= 0 ? d * P + op[i].peer : -1));
            cJSON_AddItemToArray(list, o);
        }
        cJSON_AddItemToArray(ops, list);
    }
    return root;
}

xdt_status xdt_plan_write(const char *path, const xdt_solver_input *in, const xdt_solution *s,
                          const xdt_topology *topo) {
    xdt_job_costs jc;
    xdt_status st = xdt_job_costs_build(in, s, true, &jc);
    if (st) return st;
    cJSON *root = build(in, s, topo, &jc);
    xdt_job_costs_free(&jc);
    char *text = root ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (!text) return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory writing the plan", path);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        free(text);
        return xdt_fail(XDT_ERR_IO, "%s: cannot create", tmp);
    }
    const bool ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    free(text);
    if (fclose(f) != 0 || !ok || rename(tmp, path) != 0) {
        remove(tmp);
        return xdt_fail(XDT_ERR_IO, "%s: cannot write", path);
    }
    return XDT_OK;
}
