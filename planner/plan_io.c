/* plan_io.c: reading plan.json (format in plan_io.h) through cJSON, every field checked. */
#include "planner/plan_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "devices/device.h" /* XDT_DEVICE_INDEX_MAX */
#include "planner/json_file.h"

/* A number field of obj, or an error naming it. */
static xdt_status num(const char *path, const cJSON *obj, const char *where, const char *key,
                      double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is missing or not a number", path,
                        where, *where ? "." : "", key);
    *out = v->valuedouble;
    return XDT_OK;
}

static int kind_of(const char *name) {
    for (int k = 0; k < XDT_OP_KIND_COUNT; k++)
        if (!strcmp(xdt_op_kind_name((xdt_op_kind)k), name)) return k;
    return -1;
}

/* A string field copied into out[cap], or an error naming it. */
static xdt_status str(const char *path, const cJSON *obj, const char *where, const char *key,
                      char *out, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is missing, not a string or too long",
                        path, where, *where ? "." : "", key);
    snprintf(out, cap, "%s", v->valuestring);
    return XDT_OK;
}

/* An integer field within [lo, hi]. */
static xdt_status integer(const char *path, const cJSON *obj, const char *where, const char *key,
                          int lo, int hi, int *out) {
    double v = 0;
    xdt_status st = num(path, obj, where, key, &v);
    if (st) return st;
    if (v != (double)(long)v || v < lo || v > hi)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is %g, expected an integer in [%d, %d]",
                        path, where, *where ? "." : "", key, v, lo, hi);
    *out = (int)v;
    return XDT_OK;
}

/* [first, last] within the model's units. */
static xdt_status unit_range(const char *path, const cJSON *a, const char *where, int U, int *out) {
    if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(a, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(a, 1)))
        return xdt_fail(XDT_ERR_FORMAT, "%s: %s.units is not [first, last]", path, where);
    out[0] = cJSON_GetArrayItem(a, 0)->valueint;
    out[1] = cJSON_GetArrayItem(a, 1)->valueint;
    if (out[0] < 0 || out[1] < out[0] || out[1] >= U)
        return xdt_fail(XDT_ERR_FORMAT, "%s: %s.units [%d, %d] is not a range of the %d units",
                        path, where, out[0], out[1], U);
    return XDT_OK;
}

static xdt_schedule_kind kind_named(const char *name) {
    for (int k = 0; k <= XDT_SCHEDULE_CUSTOM; k++)
        if (!strcmp(xdt_schedule_kind_name((xdt_schedule_kind)k), name)) return k;
    return XDT_SCHEDULE_CUSTOM;
}

static xdt_status load_model(const char *path, const cJSON *m, xdt_model_config *cfg) {
    xdt_status st;
    memset(cfg, 0, sizeof *cfg);
    if ((st = str(path, m, "model", "name", cfg->name, sizeof cfg->name)) ||
        (st = integer(path, m, "model", "vocab_size", 1, 1 << 30, &cfg->vocab_size)) ||
        (st =
             integer(path, m, "model", "padded_vocab_size", 1, 1 << 30, &cfg->padded_vocab_size)) ||
        (st = integer(path, m, "model", "max_seq_len", 1, 1 << 24, &cfg->max_seq_len)) ||
        (st = integer(path, m, "model", "n_layer", 1, 1 << 16, &cfg->n_layer)) ||
        (st = integer(path, m, "model", "n_head", 1, 1 << 16, &cfg->n_head)) ||
        (st = integer(path, m, "model", "n_embd", 1, 1 << 20, &cfg->n_embd)))
        return st;
    return xdt_model_config_check(cfg, path) ? XDT_ERR_FORMAT : XDT_OK;
}

static int site_named(const xdt_loaded_plan *p, const char *name) {
    for (int i = 0; i < p->n_sites; i++)
        if (!strcmp(p->sites[i], name)) return i;
    return -1;
}

static xdt_status load_sites(const char *path, const cJSON *root, xdt_loaded_plan *p) {
    const cJSON *sites = cJSON_GetObjectItemCaseSensitive(root, "sites");
    const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "site_links");
    if (!cJSON_IsArray(sites) || !cJSON_IsArray(links) || cJSON_GetArraySize(sites) < 1 ||
        cJSON_GetArraySize(sites) > XDT_PLAN_MAX_SITES ||
        cJSON_GetArraySize(links) > XDT_PLAN_MAX_SITES * (XDT_PLAN_MAX_SITES - 1) / 2)
        return xdt_fail(XDT_ERR_FORMAT, "%s: needs 'sites' (1 to %d names) and 'site_links' arrays",
                        path, XDT_PLAN_MAX_SITES);
    for (int i = 0; i < cJSON_GetArraySize(sites); i++) {
        const cJSON *s = cJSON_GetArrayItem(sites, i);
        if (!cJSON_IsString(s) || strlen(s->valuestring) >= sizeof p->sites[0] ||
            site_named(p, s->valuestring) >= 0)
            return xdt_fail(XDT_ERR_FORMAT, "%s: sites[%d] is not a new site name", path, i);
        snprintf(p->sites[p->n_sites++], sizeof p->sites[0], "%s", s->valuestring);
    }
    char where[48], a[64], b[64];
    for (int i = 0; i < cJSON_GetArraySize(links); i++) {
        const cJSON *l = cJSON_GetArrayItem(links, i);
        xdt_plan_site_link *sl = &p->site_links[p->n_site_links];
        snprintf(where, sizeof where, "site_links[%d]", i);
        xdt_status st;
        if ((st = str(path, l, where, "a", a, sizeof a)) ||
            (st = str(path, l, where, "b", b, sizeof b)) ||
            (st = num(path, l, where, "gbps", &sl->gbps)) ||
            (st = num(path, l, where, "latency_ms", &sl->latency_ms)) ||
            (st = num(path, l, where, "jitter_ms", &sl->jitter_ms)))
            return st;
        sl->a = site_named(p, a);
        sl->b = site_named(p, b);
        if (sl->a < 0 || sl->b < 0 || sl->a == sl->b || !(sl->gbps > 0) || sl->latency_ms < 0 ||
            sl->jitter_ms < 0)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: %s must join two listed sites with positive bandwidth and "
                            "non-negative latency and jitter",
                            path, where);
        p->n_site_links++;
    }
    return XDT_OK;
}

/* A codec field of plan.json: one the planner can choose. */
static xdt_status known_codec(const char *path, const char *where, const char *codec) {
    if (xdt_link_codec_parse(codec) >= 0) return XDT_OK;
    return xdt_fail(XDT_ERR_FORMAT, "%s: %s.codec '%s' is not a known codec", path, where, codec);
}

/* The link between two sites, or NULL. */
const xdt_plan_site_link *xdt_plan_site_link_between(const xdt_loaded_plan *p, int a, int b) {
    for (int i = 0; i < p->n_site_links; i++) {
        const xdt_plan_site_link *l = &p->site_links[i];
        if ((l->a == a && l->b == b) || (l->a == b && l->b == a)) return l;
    }
    return NULL;
}

static xdt_status load_stages(const char *path, const cJSON *stages, xdt_loaded_plan *p) {
    const int P = p->stages, V = p->chunks, S = P * V, U = p->model.n_layer + 2;
    char where[64];
    for (int g = 0; g < p->ranks; g++) {
        const cJSON *o = cJSON_GetArrayItem(stages, g);
        xdt_plan_rank *r = &p->rank[g];
        snprintf(where, sizeof where, "stages[%d]", g);
        int rank = -1;
        xdt_status st;
        if ((st = integer(path, o, where, "rank", 0, p->ranks - 1, &rank)) ||
            (st = integer(path, o, where, "replica", 0, p->replicas - 1, &r->replica)) ||
            (st = integer(path, o, where, "pipeline_rank", 0, P - 1, &r->pipeline_rank)) ||
            (st = integer(path, o, where, "device", 0, XDT_DEVICE_INDEX_MAX, &r->device)) ||
            (st = str(path, o, where, "site", r->site, sizeof r->site)) ||
            (st = str(path, o, where, "node", r->node, sizeof r->node)) ||
            (st = str(path, o, where, "device_type", r->device_type, sizeof r->device_type)) ||
            (st = str(path, o, where, "backend", r->backend, sizeof r->backend)))
            return st;
        if ((st = num(path, o, where, "slowdown", &r->slowdown))) return st;
        if (!(r->slowdown >= 1) || r->slowdown > 1000)
            return xdt_fail(XDT_ERR_FORMAT, "%s: %s.slowdown is %g; it must be in [1, 1000]", path,
                            where, r->slowdown);
        r->site_index = site_named(p, r->site);
        if (r->site_index < 0)
            return xdt_fail(XDT_ERR_FORMAT, "%s: %s.site '%s' is not in 'sites'", path, where,
                            r->site);
        if (rank != g || r->replica * P + r->pipeline_rank != g)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: %s: rank %d, replica %d, pipeline_rank %d do not match its "
                            "position (rank = replica x %d + pipeline_rank)",
                            path, where, rank, r->replica, r->pipeline_rank, P);
        const cJSON *chunks = cJSON_GetObjectItemCaseSensitive(o, "chunks");
        if (!cJSON_IsArray(chunks) || cJSON_GetArraySize(chunks) != V)
            return xdt_fail(XDT_ERR_FORMAT, "%s: %s.chunks must list %d chunks", path, where, V);
        for (int v = 0; v < V; v++) {
            const cJSON *c = cJSON_GetArrayItem(chunks, v);
            char cw[96];
            snprintf(cw, sizeof cw, "%s.chunks[%d]", where, v);
            const size_t i = (size_t)r->replica * S + (size_t)v * P + r->pipeline_rank;
            if ((st = unit_range(path, cJSON_GetObjectItemCaseSensitive(c, "units"), cw, U,
                                 r->units[v])) ||
                (st = num(path, c, cw, "fwd_ms", &p->costs.fwd_ms[i])) ||
                (st = num(path, c, cw, "bwd_ms", &p->costs.bwd_ms[i])) ||
                (st = num(path, c, cw, "static_bytes", &p->costs.static_bytes[i])) ||
                (st = num(path, c, cw, "activation_bytes", &p->costs.activation_bytes[i])))
                return st;
            if (p->costs.fwd_ms[i] < 0 || p->costs.bwd_ms[i] < 0 || p->costs.static_bytes[i] < 0 ||
                p->costs.activation_bytes[i] < 0)
                return xdt_fail(XDT_ERR_FORMAT, "%s: %s has a negative time or size", path, cw);
        }
    }
    /* every replica's global stages cover the units in order */
    for (int d = 0; d < p->replicas; d++) {
        int next = 0;
        for (int s = 0; s < S; s++) {
            const int *u = p->rank[d * P + s % P].units[s / P];
            if (u[0] != next)
                return xdt_fail(XDT_ERR_FORMAT,
                                "%s: replica %d's stage %d starts at unit %d, expected %d", path, d,
                                s, u[0], next);
            next = u[1] + 1;
        }
        if (next != U)
            return xdt_fail(XDT_ERR_FORMAT, "%s: replica %d's stages end at unit %d of %d", path, d,
                            next - 1, U);
    }
    const double act = (double)p->microbatch * p->seq * p->model.n_embd * 4;
    for (size_t i = 0; i < (size_t)p->replicas * S; i++)
        p->costs.boundary_bytes[i] = (int)(i % S) + 1 < S ? act : 0;
    return XDT_OK;
}

static xdt_status load_links(const char *path, const cJSON *links, xdt_loaded_plan *p) {
    const int R = p->ranks;
    char where[48];
    for (int i = 0; i < cJSON_GetArraySize(links); i++) {
        const cJSON *l = cJSON_GetArrayItem(links, i);
        snprintf(where, sizeof where, "links[%d]", i);
        int a, b;
        double gbps = 0, lat = 0, ratio = 0, codec_ms = 0;
        char codec[16];
        xdt_status st;
        if ((st = integer(path, l, where, "from", 0, R - 1, &a)) ||
            (st = integer(path, l, where, "to", 0, R - 1, &b)) ||
            (st = num(path, l, where, "gbps", &gbps)) ||
            (st = num(path, l, where, "latency_ms", &lat)) ||
            (st = num(path, l, where, "wire_ratio", &ratio)) ||
            (st = num(path, l, where, "codec_ms_per_mb", &codec_ms)) ||
            (st = str(path, l, where, "codec", codec, sizeof codec)))
            return st;
        if (!(gbps > 0) || lat < 0 || !(ratio > 0) || ratio > 1 || codec_ms < 0)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: %s: bandwidth and wire ratio must be positive (ratio at most 1), "
                            "latency and codec time not negative",
                            path, where);
        if ((st = known_codec(path, where, codec))) return st;
        if (a / p->stages != b / p->stages || a == b)
            return xdt_fail(XDT_ERR_FORMAT, "%s: %s joins ranks %d and %d of different replicas",
                            path, where, a, b);
        xdt_sim_link sl = xdt_sim_link_from_gbps(gbps, lat);
        sl.wire_ratio = ratio;
        sl.codec_ms_per_byte = codec_ms / 1e6;
        p->costs.links[(size_t)a * R + b] = p->costs.links[(size_t)b * R + a] = sl;
        snprintf(p->rank[a].link_codec, sizeof p->rank[a].link_codec, "%s", codec);
    }
    return XDT_OK;
}

static xdt_status load_ops(const char *path, const cJSON *ops, xdt_loaded_plan *p) {
    const int P = p->stages;
    xdt_status st = XDT_OK;
    for (int d = 0; d < p->replicas && !st; d++) {
        st = xdt_schedule_create(p->kind, P, p->replica_microbatches[d], p->chunks,
                                 &p->costs.schedules[d]);
        for (int q = 0; q < P && !st; q++) {
            const int g = d * P + q;
            const cJSON *list = cJSON_GetArrayItem(ops, g);
            if (!cJSON_IsArray(list))
                return xdt_fail(XDT_ERR_FORMAT, "%s: ops[%d] is not a list", path, g);
            for (int i = 0; i < cJSON_GetArraySize(list) && !st; i++) {
                const cJSON *o = cJSON_GetArrayItem(list, i);
                const cJSON *k = cJSON_GetArrayItem(o, 0);
                const int kind = cJSON_IsString(k) ? kind_of(k->valuestring) : -1;
                if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 4 || kind < 0 ||
                    !cJSON_IsNumber(cJSON_GetArrayItem(o, 1)) ||
                    !cJSON_IsNumber(cJSON_GetArrayItem(o, 2)) ||
                    !cJSON_IsNumber(cJSON_GetArrayItem(o, 3)))
                    return xdt_fail(XDT_ERR_FORMAT,
                                    "%s: ops[%d][%d] is not [kind, microbatch, chunk, peer]", path,
                                    g, i);
                int peer = cJSON_GetArrayItem(o, 3)->valueint;
                if (peer >= 0) {
                    if (peer / P != d)
                        return xdt_fail(XDT_ERR_FORMAT,
                                        "%s: ops[%d][%d]: peer %d is outside replica %d", path, g,
                                        i, peer, d);
                    peer %= P;
                }
                xdt_op op = {(xdt_op_kind)kind, cJSON_GetArrayItem(o, 1)->valueint,
                             cJSON_GetArrayItem(o, 2)->valueint, peer,
                             kind == XDT_OP_ALLREDUCE ? 0 : -1};
                st = xdt_schedule_append(p->costs.schedules[d], q, op);
            }
        }
        char why[256];
        if (!st && xdt_schedule_validate(p->costs.schedules[d], why, sizeof why) != XDT_OK)
            return xdt_fail(XDT_ERR_FORMAT, "%s: replica %d's schedule fails validation: %s", path,
                            d, why);
    }
    return st;
}

/* Every send of the schedules travels a link the plan lists: without one the simulator would
 * take the transfer as free and the prediction would be silently wrong. */
static xdt_status sends_have_links(const char *path, const xdt_loaded_plan *p) {
    const int P = p->stages, R = p->ranks;
    for (int d = 0; d < p->costs.replicas; d++)
        for (int r = 0; r < P; r++) {
            const xdt_schedule *s = p->costs.schedules[d];
            const xdt_op *ops = xdt_schedule_ops(s, r);
            for (int i = 0; i < xdt_schedule_num_ops(s, r); i++) {
                if (ops[i].kind != XDT_OP_SEND_ACT && ops[i].kind != XDT_OP_SEND_GRAD) continue;
                const int src = d * P + r, dst = d * P + ops[i].peer;
                if (!(p->costs.links[(size_t)src * R + dst].bytes_per_ms > 0))
                    return xdt_fail(XDT_ERR_FORMAT,
                                    "%s: rank %d sends to rank %d, but 'links' has no link from %d "
                                    "to %d",
                                    path, src, dst, src, dst);
            }
        }
    return XDT_OK;
}

xdt_status xdt_plan_load(const char *path, xdt_loaded_plan *out) {
    cJSON *root = NULL;
    xdt_status st = xdt_json_load(path, &root);
    if (st) return st;
    xdt_loaded_plan p;
    memset(&p, 0, sizeof p);
    double version = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(root, "schedule");
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(root, "predicted");
    const cJSON *reps = cJSON_GetObjectItemCaseSensitive(root, "replicas");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");
    const cJSON *ar = cJSON_GetObjectItemCaseSensitive(root, "allreduce");
    const cJSON *tied = cJSON_GetObjectItemCaseSensitive(root, "tied_embedding");
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "ops");
    if ((st = num(path, root, "", "version", &version))) goto out;
    if (version != XDT_PLAN_VERSION) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'version' is %g, this build reads %d", path,
                      version, XDT_PLAN_VERSION);
        goto out;
    }
    if (!cJSON_IsObject(model) || !cJSON_IsObject(sched) || !cJSON_IsObject(pred) ||
        !cJSON_IsObject(tied) || !cJSON_IsArray(reps) || !cJSON_IsArray(stages) ||
        !cJSON_IsArray(links) || !cJSON_IsArray(ar) || !cJSON_IsArray(ops)) {
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: needs objects 'model', 'schedule', 'predicted', 'tied_embedding' and "
                      "arrays 'replicas', 'stages', 'links', 'allreduce', 'ops'",
                      path);
        goto out;
    }
    char kind[16];
    if ((st = str(path, root, "", "cluster", p.cluster, sizeof p.cluster)) ||
        (st = load_model(path, model, &p.model)) ||
        (st = integer(path, root, "", "global_batch", 1, 1 << 24, &p.global_batch)) ||
        (st = integer(path, root, "", "seq", 1, p.model.max_seq_len, &p.seq)) ||
        (st = integer(path, root, "", "microbatch", 1, p.global_batch, &p.microbatch)) ||
        (st = str(path, sched, "schedule", "kind", kind, sizeof kind)) ||
        (st = integer(path, sched, "schedule", "chunks", 1, XDT_PLAN_MAX_CHUNKS, &p.chunks)) ||
        (st = num(path, root, "", "opt_step_ms", &p.costs.opt_step_ms)) ||
        (st = str(path, tied, "tied_embedding", "codec", p.tied_codec, sizeof p.tied_codec)) ||
        (st = num(path, pred, "predicted", "step_ms", &p.predicted_step_ms)) ||
        (st = num(path, pred, "predicted", "tokens_per_s", &p.predicted_tokens_per_s)) ||
        (st = num(path, pred, "predicted", "wan_bytes", &p.predicted_wan_bytes)))
        goto out;
    p.kind = kind_named(kind);
    const cJSON *precision = cJSON_GetObjectItemCaseSensitive(root, "precision");
    if (precision && (!cJSON_IsString(precision) ||
                      !xdt_precision_parse(precision->valuestring, &p.precision))) {
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: field 'precision' must be \"fp32\", \"tf32\" or "
                      "\"bf16\"",
                      path);
        goto out;
    }
    const cJSON *attention = cJSON_GetObjectItemCaseSensitive(root, "attention");
    if (attention && (!cJSON_IsString(attention) || (strcmp(attention->valuestring, "explicit") &&
                                                     strcmp(attention->valuestring, "flash")))) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'attention' must be \"explicit\" or \"flash\"",
                      path);
        goto out;
    }
    p.fused_attention = attention && !strcmp(attention->valuestring, "flash");
    p.replicas = cJSON_GetArraySize(reps);
    p.ranks = cJSON_GetArraySize(stages);
    p.stages = p.replicas > 0 ? p.ranks / p.replicas : 0;
    if (p.replicas < 1 || p.stages < 1 || p.stages * p.replicas != p.ranks ||
        p.ranks > XDT_PLAN_MAX_RANKS || cJSON_GetArraySize(ops) != p.ranks ||
        cJSON_GetArraySize(ar) != p.stages || p.stages * p.chunks > p.model.n_layer + 2) {
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: %d replicas, %d stages, %d op lists, %d all-reduces and %d chunks "
                      "do not agree",
                      path, p.replicas, p.ranks, cJSON_GetArraySize(ops), cJSON_GetArraySize(ar),
                      p.chunks);
        goto out;
    }
    const size_t R = (size_t)p.ranks, DS = (size_t)p.ranks * p.chunks;
    p.replica_microbatches = calloc((size_t)p.replicas, sizeof(int));
    p.rank = calloc(R, sizeof *p.rank);
    p.costs.replicas = p.replicas; /* every replica is simulated */
    p.costs.schedules = calloc((size_t)p.replicas, sizeof *p.costs.schedules);
    p.costs.replica_of = malloc(sizeof(int) * (size_t)p.replicas);
    p.dp_codec = calloc((size_t)p.stages, sizeof *p.dp_codec);
    p.costs.fwd_ms = calloc(DS, sizeof(double));
    p.costs.bwd_ms = calloc(DS, sizeof(double));
    p.costs.boundary_bytes = calloc(DS, sizeof(double));
    p.costs.static_bytes = calloc(DS, sizeof(double));
    p.costs.activation_bytes = calloc(DS, sizeof(double));
    p.costs.links = calloc(R * R, sizeof *p.costs.links);
    p.costs.allreduce_ms = calloc((size_t)p.stages, sizeof(double));
    if (!p.replica_microbatches || !p.rank || !p.costs.schedules || !p.costs.replica_of ||
        !p.dp_codec || !p.costs.fwd_ms || !p.costs.bwd_ms || !p.costs.boundary_bytes ||
        !p.costs.static_bytes || !p.costs.activation_bytes || !p.costs.links ||
        !p.costs.allreduce_ms) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    for (int d = 0; d < p.replicas; d++)
        p.costs.replica_of[d] = d;
    char where[48];
    int total = 0;
    for (int d = 0; d < p.replicas && !st; d++) {
        snprintf(where, sizeof where, "replicas[%d]", d);
        st = integer(path, cJSON_GetArrayItem(reps, d), where, "microbatches", 1, 1 << 24,
                     &p.replica_microbatches[d]);
        total += p.replica_microbatches[d];
    }
    if (!st && total * p.microbatch != p.global_batch)
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: the replicas' %d microbatches of %d do not make the global batch %d",
                      path, total, p.microbatch, p.global_batch);
    for (int q = 0; q < p.stages && !st; q++) {
        const cJSON *o = cJSON_GetArrayItem(ar, q);
        snprintf(where, sizeof where, "allreduce[%d]", q);
        if (!(st = num(path, o, where, "ms", &p.costs.allreduce_ms[q])) &&
            !(st = str(path, o, where, "codec", p.dp_codec[q], sizeof p.dp_codec[q])))
            st = known_codec(path, where, p.dp_codec[q]);
    }
    if (!st) st = known_codec(path, "tied_embedding", p.tied_codec);
    if (!st) st = load_sites(path, root, &p);
    if (!st) st = load_stages(path, stages, &p);
    if (!st) st = load_links(path, links, &p);
    if (!st) st = load_ops(path, ops, &p);
    if (!st) st = sends_have_links(path, &p);
out:
    cJSON_Delete(root);
    if (st) {
        xdt_plan_free(&p);
        return st;
    }
    *out = p;
    return XDT_OK;
}

void xdt_plan_free(xdt_loaded_plan *p) {
    if (!p) return;
    xdt_job_costs_free(&p->costs);
    free(p->replica_microbatches);
    free(p->rank);
    free(p->dp_codec);
    memset(p, 0, sizeof *p);
}
