/* profile.c: reading profile.json (through cJSON) and looking up a unit's measured times. */
#include "planner/profile.h"

#include <assert.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "planner/json_file.h"

#define MAX_DIM (1 << 24)

/* The number field `key` of obj (named where.key in messages), finite and >= min. */
static xdt_status get_num(const char *path, const cJSON *obj, const char *where, const char *key,
                          double min, double *out) {
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    const char *dot = *where ? "." : "";
    if (!cJSON_IsNumber(v))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is missing or not a number", path,
                        where, dot, key);
    if (!isfinite(v->valuedouble) || v->valuedouble < min)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is %g, must be >= %g", path, where, dot,
                        key, v->valuedouble, min);
    *out = v->valuedouble;
    return XDT_OK;
}

/* The integer field `key` of obj, within [min, max]. */
static xdt_status get_int(const char *path, const cJSON *obj, const char *where, const char *key,
                          int min, int max, int *out) {
    double d = 0;
    xdt_status st = get_num(path, obj, where, key, min, &d);
    if (st) return st;
    const char *dot = *where ? "." : "";
    if (d != floor(d) || d > max)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is %g, must be an integer <= %d", path,
                        where, dot, key, d, max);
    *out = (int)d;
    return XDT_OK;
}

/* The string field `key` of obj, non-empty and shorter than cap. */
static xdt_status get_str(const char *path, const cJSON *obj, const char *where, const char *key,
                          char *dst, size_t cap) {
    const cJSON *v = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
    const char *dot = *where ? "." : "";
    if (!cJSON_IsString(v) || !v->valuestring[0])
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is missing or not a non-empty string",
                        path, where, dot, key);
    if (strlen(v->valuestring) >= cap)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s%s' is longer than %zu characters", path,
                        where, dot, key, cap - 1);
    strcpy(dst, v->valuestring);
    return XDT_OK;
}

/* Reads microbatches[i] into row i of p (b[i], fwd_ms and bwd_ms rows). */
static xdt_status read_microbatch(const char *path, const cJSON *mb, int i, xdt_profile *p) {
    char where[80];
    snprintf(where, sizeof where, "microbatches[%d]", i);
    if (!cJSON_IsObject(mb))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s' is not an object", path, where);
    xdt_status st = get_int(path, mb, where, "b", 1, MAX_DIM, &p->b[i]);
    if (st) return st;
    const cJSON *units = cJSON_GetObjectItemCaseSensitive(mb, "units");
    if (!cJSON_IsArray(units))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s.units' is missing or not an array", path,
                        where);
    if (cJSON_GetArraySize(units) != p->n_units)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: field '%s.units' has %d entries, the model has n_layer + 2 = %d "
                        "units",
                        path, where, cJSON_GetArraySize(units), p->n_units);
    int u = 0;
    const cJSON *unit;
    cJSON_ArrayForEach(unit, units) {
        char uw[112];
        int index = -1;
        snprintf(uw, sizeof uw, "%s.units[%d]", where, u);
        double *fwd = &p->fwd_ms[(size_t)i * p->n_units + u];
        double *bwd = &p->bwd_ms[(size_t)i * p->n_units + u];
        if ((st = get_int(path, unit, uw, "unit", 0, MAX_DIM, &index)) ||
            (st = get_num(path, unit, uw, "fwd_ms", 0, fwd)) ||
            (st = get_num(path, unit, uw, "bwd_ms", 0, bwd)))
            return st;
        if (index != u)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: field '%s.unit' is %d, units must be listed in "
                            "order (want %d)",
                            path, uw, index, u);
        u++;
    }
    return XDT_OK;
}

/* Orders the rows by b (insertion sort: a handful of rows); fails on a repeated b. */
static xdt_status sort_rows(const char *path, xdt_profile *p) {
    const size_t n = (size_t)p->n_units;
    for (int i = 1; i < p->n_mb; i++)
        for (int j = i; j > 0 && p->b[j - 1] >= p->b[j]; j--) {
            if (p->b[j - 1] == p->b[j])
                return xdt_fail(XDT_ERR_FORMAT, "%s: microbatch size b = %d is listed twice", path,
                                p->b[j]);
            int tb = p->b[j];
            p->b[j] = p->b[j - 1];
            p->b[j - 1] = tb;
            for (size_t k = 0; k < n; k++) {
                double *f = p->fwd_ms, *g = p->bwd_ms, t;
                t = f[j * n + k], f[j * n + k] = f[(j - 1) * n + k], f[(j - 1) * n + k] = t;
                t = g[j * n + k], g[j * n + k] = g[(j - 1) * n + k], g[(j - 1) * n + k] = t;
            }
        }
    return XDT_OK;
}

xdt_status xdt_profile_load(const char *path, xdt_profile *out) {
    cJSON *root = NULL;
    xdt_status st0 = xdt_json_load(path, &root);
    if (st0) return st0;
    xdt_profile p;
    memset(&p, 0, sizeof p);
    xdt_status st = XDT_OK;
    int version = 0;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mbs = cJSON_GetObjectItemCaseSensitive(root, "microbatches");
    xdt_model_config *m = &p.model;
    if ((st = get_int(path, root, "", "version", 0, MAX_DIM, &version))) goto out;
    if (version != XDT_PROFILE_VERSION) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'version' is %d, this build reads %d", path,
                      version, XDT_PROFILE_VERSION);
        goto out;
    }
    if ((st = get_str(path, root, "", "device_type", p.device_type, sizeof p.device_type)))
        goto out;
    if (!cJSON_IsObject(model)) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'model' is missing or not an object", path);
        goto out;
    }
    if ((st = get_str(path, model, "model", "name", m->name, sizeof m->name)) ||
        (st = get_int(path, model, "model", "n_layer", 1, MAX_DIM, &m->n_layer)) ||
        (st = get_int(path, model, "model", "n_embd", 1, MAX_DIM, &m->n_embd)) ||
        (st = get_int(path, model, "model", "n_head", 1, MAX_DIM, &m->n_head)) ||
        (st = get_int(path, model, "model", "vocab_size", 1, MAX_DIM, &m->vocab_size)) ||
        (st = get_int(path, model, "model", "padded_vocab_size", 1, MAX_DIM,
                      &m->padded_vocab_size)) ||
        (st = get_int(path, root, "", "seq", 1, MAX_DIM, &p.seq)) ||
        (st = get_int(path, root, "", "threads", 1, MAX_DIM, &p.threads)) ||
        (st = get_num(path, root, "", "sgemm_tflops", 0, &p.sgemm_tflops)))
        goto out;
    if (!cJSON_IsArray(mbs) || cJSON_GetArraySize(mbs) < 1) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: field 'microbatches' is missing or empty", path);
        goto out;
    }
    p.n_units = m->n_layer + 2;
    p.n_mb = cJSON_GetArraySize(mbs);
    p.b = calloc((size_t)p.n_mb, sizeof *p.b);
    p.fwd_ms = calloc((size_t)p.n_mb * p.n_units, sizeof *p.fwd_ms);
    p.bwd_ms = calloc((size_t)p.n_mb * p.n_units, sizeof *p.bwd_ms);
    if (!p.b || !p.fwd_ms || !p.bwd_ms) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    int i = 0;
    const cJSON *mb;
    cJSON_ArrayForEach(mb, mbs) {
        if ((st = read_microbatch(path, mb, i++, &p))) goto out;
    }
    st = sort_rows(path, &p);
out:
    cJSON_Delete(root);
    if (st == XDT_OK)
        *out = p;
    else
        xdt_profile_free(&p);
    return st;
}

void xdt_profile_free(xdt_profile *p) {
    if (!p) return;
    free(p->b);
    free(p->fwd_ms);
    free(p->bwd_ms);
    p->b = NULL;
    p->fwd_ms = p->bwd_ms = NULL;
    p->n_mb = 0;
}

bool xdt_profile_matches(const xdt_profile *p, const xdt_model_config *cfg, int seq) {
    const xdt_model_config *m = &p->model;
    return p->n_mb > 0 && m->n_layer == cfg->n_layer && m->n_embd == cfg->n_embd &&
           m->n_head == cfg->n_head && m->vocab_size == cfg->vocab_size &&
           m->padded_vocab_size == cfg->padded_vocab_size && p->seq == seq;
}

void xdt_profile_unit_ms(const xdt_profile *p, int unit, int b, double *fwd_ms, double *bwd_ms) {
    assert(p->n_mb > 0 && unit >= 0 && unit < p->n_units && b >= 1);
    int best = 0;
    for (int i = 1; i < p->n_mb; i++)
        if (abs(p->b[i] - b) <= abs(p->b[best] - b)) best = i; /* rows ascend: ties go larger */
    const double scale = (double)b / p->b[best];
    const size_t k = (size_t)best * p->n_units + (size_t)unit;
    *fwd_ms = p->fwd_ms[k] * scale;
    *bwd_ms = p->bwd_ms[k] * scale;
}
