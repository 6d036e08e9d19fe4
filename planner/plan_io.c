/* plan_io.c: plan.json through cJSON. */
#include "planner/plan_io.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && n < (1L << 30) && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
                buf[n] = 0;
                *len = (size_t)n;
            } else {
                free(buf);
                buf = NULL;
            }
        }
    }
    fclose(f);
    return buf;
}

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

xdt_status xdt_plan_load(const char *path, xdt_loaded_plan *out) {
    size_t len = 0;
    char *text = read_all(path, &len);
    if (!text) return xdt_fail(XDT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root) return xdt_fail(XDT_ERR_FORMAT, "%s: not valid JSON", path);
    xdt_loaded_plan p;
    memset(&p, 0, sizeof p);
    xdt_status st = XDT_OK;
    double version = 0, seq = 0, c = 0, mb = 0, mbs = 0, step = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(root, "schedule");
    const cJSON *pred = cJSON_GetObjectItemCaseSensitive(root, "predicted");
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(root, "stages");
    const cJSON *links = cJSON_GetObjectItemCaseSensitive(root, "links");
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(root, "ops");
    if ((st = num(path, root, "", "version", &version))) goto out;
    if (version != XDT_PLAN_VERSION) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'version' is %g, this build reads %d", path,
                      version, XDT_PLAN_VERSION);
        goto out;
    }
    if (!cJSON_IsObject(model) || !cJSON_IsObject(sched) || !cJSON_IsArray(stages) ||
        !cJSON_IsArray(links) || !cJSON_IsArray(ops)) {
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: needs objects 'model', 'schedule' and arrays "
                      "'stages', 'links', 'ops'",
                      path);
        goto out;
    }
    if ((st = num(path, root, "", "seq", &seq)) || (st = num(path, model, "model", "n_embd", &c)) ||
        (st = num(path, sched, "schedule", "microbatch", &mb)) ||
        (st = num(path, sched, "schedule", "microbatches", &mbs)))
        goto out;
    if (cJSON_IsObject(pred)) num(path, pred, "predicted", "step_ms", &step);
    const int P = cJSON_GetArraySize(stages), M = (int)mbs;
    if (P < 1 || P > 1024 || M < 1 || cJSON_GetArraySize(ops) != P ||
        cJSON_GetArraySize(links) != P - 1) {
        st = xdt_fail(XDT_ERR_FORMAT,
                      "%s: %d stages, %d op lists, %d links and %d microbatches "
                      "do not agree",
                      path, P, cJSON_GetArraySize(ops), cJSON_GetArraySize(links), M);
        goto out;
    }
    p.stages = P;
    p.predicted_step_ms = step;
    p.fwd_ms = calloc((size_t)P, sizeof(double));
    p.bwd_ms = calloc((size_t)P, sizeof(double));
    p.boundary_bytes = calloc((size_t)P, sizeof(double));
    p.links = calloc((size_t)P * P, sizeof *p.links);
    if (!p.fwd_ms || !p.bwd_ms || !p.boundary_bytes || !p.links) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    char where[48];
    for (int k = 0; k < P && !st; k++) {
        const cJSON *s = cJSON_GetArrayItem(stages, k);
        snprintf(where, sizeof where, "stages[%d]", k);
        if ((st = num(path, s, where, "fwd_ms", &p.fwd_ms[k])) ||
            (st = num(path, s, where, "bwd_ms", &p.bwd_ms[k])))
            break;
        p.boundary_bytes[k] = k + 1 < P ? mb * seq * c * 4 : 0;
    }
    for (int k = 0; k + 1 < P && !st; k++) {
        const cJSON *l = cJSON_GetArrayItem(links, k);
        double gbps = 0, lat = 0;
        snprintf(where, sizeof where, "links[%d]", k);
        if ((st = num(path, l, where, "gbps", &gbps)) ||
            (st = num(path, l, where, "latency_ms", &lat)))
            break;
        if (!(gbps > 0) || lat < 0) {
            st = xdt_fail(XDT_ERR_FORMAT,
                          "%s: %s: bandwidth must be positive and latency not "
                          "negative",
                          path, where);
            break;
        }
        xdt_sim_link sl = xdt_sim_link_from_gbps(gbps, lat);
        p.links[k * P + k + 1] = p.links[(k + 1) * P + k] = sl;
    }
    if (!st && (st = xdt_schedule_create(XDT_SCHEDULE_CUSTOM, P, M, 1, &p.schedule))) goto out;
    for (int r = 0; r < P && !st; r++) {
        const cJSON *list = cJSON_GetArrayItem(ops, r);
        const int n = cJSON_GetArraySize(list);
        for (int i = 0; i < n && !st; i++) {
            const cJSON *o = cJSON_GetArrayItem(list, i);
            const cJSON *k = cJSON_GetArrayItem(o, 0);
            int kind = cJSON_IsString(k) ? kind_of(k->valuestring) : -1;
            if (!cJSON_IsArray(o) || cJSON_GetArraySize(o) != 4 || kind < 0 ||
                !cJSON_IsNumber(cJSON_GetArrayItem(o, 1)) ||
                !cJSON_IsNumber(cJSON_GetArrayItem(o, 2)) ||
                !cJSON_IsNumber(cJSON_GetArrayItem(o, 3))) {
                st = xdt_fail(XDT_ERR_FORMAT,
                              "%s: ops[%d][%d] is not [kind, microbatch, chunk, "
                              "peer]",
                              path, r, i);
                break;
            }
            xdt_op op = {(xdt_op_kind)kind, cJSON_GetArrayItem(o, 1)->valueint,
                         cJSON_GetArrayItem(o, 2)->valueint, cJSON_GetArrayItem(o, 3)->valueint,
                         kind == XDT_OP_ALLREDUCE ? 0 : -1};
            st = xdt_schedule_append(p.schedule, r, op);
        }
    }
    if (!st) {
        char why[256];
        if (xdt_schedule_validate(p.schedule, why, sizeof why) != XDT_OK)
            st = xdt_fail(XDT_ERR_FORMAT, "%s: the schedule fails validation: %s", path, why);
    }
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
    xdt_schedule_destroy(p->schedule);
    free(p->fwd_ms);
    free(p->bwd_ms);
    free(p->boundary_bytes);
    free(p->links);
    memset(p, 0, sizeof *p);
}
