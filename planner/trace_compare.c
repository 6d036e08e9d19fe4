/* trace_compare.c: a measured trace (cJSON) against the simulated step of the same plan. */
#include "planner/trace_compare.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "planner/json_file.h"

#define N_COMPUTE 4 /* FWD, BWD, BWD_INPUT, BWD_WEIGHT: the op kinds 0..3 */
#define IS_WAIT   (-2)
#define IS_OTHER  (-1)

/* One complete event of the measured trace, times in ms. */
typedef struct mevent {
    int rank, step, kind, chunk; /* kind: an xdt_op_kind 0..3, IS_WAIT or IS_OTHER */
    double start, end;
} mevent;

/* An integer member of obj, or false. */
static bool int_item(const cJSON *obj, const char *key, int *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble) return false;
    *out = (int)v->valuedouble;
    return true;
}

static bool num_item(const cJSON *obj, const char *key, double *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return false;
    *out = v->valuedouble;
    return true;
}

/* The compute kind of an event name (F3, B3, Bi3, Bw3, with ".chunk" when chunked), or -1. */
static int compute_kind(const char *name) {
    int kind;
    const char *p = name;
    if (p[0] == 'F') {
        kind = XDT_OP_FWD, p += 1;
    } else if (p[0] == 'B' && p[1] == 'i') {
        kind = XDT_OP_BWD_INPUT, p += 2;
    } else if (p[0] == 'B' && p[1] == 'w') {
        kind = XDT_OP_BWD_WEIGHT, p += 2;
    } else if (p[0] == 'B') {
        kind = XDT_OP_BWD, p += 1;
    } else {
        return -1;
    }
    return *p >= '0' && *p <= '9' ? kind : -1;
}

static const char *kind_label(int kind) {
    static const char *const labels[N_COMPUTE] = {"F", "B", "Bi", "Bw"};
    return kind >= 0 && kind < N_COMPUTE ? labels[kind] : "?";
}

/* Reads one "ph":"X" event of pid 0; the plan bounds its rank, chunk and microbatch. */
static xdt_status read_event(const char *path, int index, const cJSON *e,
                             const xdt_loaded_plan *plan, mevent *out) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
    const cJSON *cat = cJSON_GetObjectItemCaseSensitive(e, "cat");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(e, "args");
    const char *nm = cJSON_IsString(name) ? name->valuestring : "?";
    double ts, dur;
    int mb = -1;
    if (!cJSON_IsString(name) || !cJSON_IsString(cat))
        return xdt_fail(XDT_ERR_FORMAT, "%s: traceEvents[%d] has no \"name\" or \"cat\" string",
                        path, index);
    if (!int_item(e, "tid", &out->rank) || !num_item(e, "ts", &ts) || !num_item(e, "dur", &dur) ||
        dur < 0)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: traceEvents[%d] ('%s') needs an integer \"tid\" and numbers \"ts\" "
                        "and \"dur\" >= 0",
                        path, index, nm);
    if (!cJSON_IsObject(args) || !int_item(args, "step", &out->step) || out->step < 0)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: traceEvents[%d] ('%s') has no args.step (not a measured trace from "
                        "xdt launch --trace?)",
                        path, index, nm);
    if (out->rank < 0 || out->rank >= plan->ranks)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: traceEvents[%d] ('%s') is on rank %d, but the plan has %d ranks (a "
                        "trace of a different plan?)",
                        path, index, nm, out->rank, plan->ranks);
    out->start = ts * 1e-3;
    out->end = (ts + dur) * 1e-3;
    out->chunk = 0;
    const char *c = cat->valuestring;
    if (!strcmp(c, "forward") || !strcmp(c, "backward")) {
        out->kind = compute_kind(nm);
        if (out->kind < 0 || (out->kind == XDT_OP_FWD) != (c[0] == 'f'))
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: traceEvents[%d] is a %s op named '%s' (want F, B, Bi or Bw and "
                            "the microbatch)",
                            path, index, c, nm);
    } else {
        out->kind = !strcmp(c, "wait") ? IS_WAIT : IS_OTHER;
    }
    if (out->kind == IS_OTHER) return XDT_OK;
    const int replica = out->rank / plan->stages;
    const int M = plan->replica_microbatches[replica];
    if (!int_item(args, "chunk", &out->chunk) || !int_item(args, "microbatch", &mb))
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: traceEvents[%d] ('%s') has no args.chunk or "
                        "args.microbatch",
                        path, index, nm);
    if (out->chunk < 0 || out->chunk >= plan->chunks || mb < 0 || mb >= M)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: traceEvents[%d] ('%s' on rank %d) has chunk %d, microbatch %d; the "
                        "plan has %d chunks and %d microbatches there (a trace of a different "
                        "plan?)",
                        path, index, nm, out->rank, out->chunk, mb, plan->chunks, M);
    return XDT_OK;
}

static int cmp_int(const void *a, const void *b) {
    const int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Largest |predicted - measured| first; ties in rank, what, kind, chunk order. */
static int cmp_item(const void *a, const void *b) {
    const xdt_compare_item *x = a, *y = b;
    const double dx = fabs(x->predicted_ms - x->measured_ms);
    const double dy = fabs(y->predicted_ms - y->measured_ms);
    if (dx != dy) return dx < dy ? 1 : -1;
    if (x->rank != y->rank) return x->rank - y->rank;
    if (x->what != y->what) return (int)x->what - (int)y->what;
    if (x->kind != y->kind) return (int)x->kind - (int)y->kind;
    return x->chunk - y->chunk;
}

static double pct(double predicted, double measured) {
    return measured > 0 ? 100 * (predicted - measured) / measured : NAN;
}

/* Parses the trace into events; *n_out of them. */
static xdt_status load_events(const char *path, const xdt_loaded_plan *plan, mevent **out,
                              int *n_out) {
    cJSON *root = NULL;
    xdt_status st0 = xdt_json_load(path, &root);
    if (st0) return st0;
    const cJSON *evs = cJSON_GetObjectItemCaseSensitive(root, "traceEvents");
    xdt_status st = XDT_OK;
    if (!cJSON_IsArray(evs)) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: no \"traceEvents\" array (not a Chrome trace)", path);
        goto out;
    }
    const int total = cJSON_GetArraySize(evs);
    mevent *ev = malloc(sizeof *ev * (size_t)(total > 0 ? total : 1));
    if (!ev) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory for %d events", path, total);
        goto out;
    }
    int n = 0, index = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, evs) {
        const cJSON *ph = cJSON_GetObjectItemCaseSensitive(e, "ph");
        int pid = 0;
        if (cJSON_IsObject(e) && cJSON_IsString(ph) && !strcmp(ph->valuestring, "X") &&
            (!cJSON_GetObjectItemCaseSensitive(e, "pid") || (int_item(e, "pid", &pid) && !pid))) {
            if ((st = read_event(path, index, e, plan, &ev[n]))) break;
            n++;
        }
        index++;
    }
    if (!st && n == 0)
        st = xdt_fail(XDT_ERR_FORMAT, "%s: no op events (\"ph\":\"X\" on pid 0) in traceEvents",
                      path);
    if (st) {
        free(ev);
        goto out;
    }
    *out = ev;
    *n_out = n;
out:
    cJSON_Delete(root);
    return st;
}

xdt_status xdt_trace_compare_load(const char *path, const xdt_loaded_plan *plan,
                                  const xdt_sim_result *sim, xdt_trace_compare *out) {
    memset(out, 0, sizeof *out);
    const int R = plan->ranks, V = plan->chunks, K = R * V * N_COMPUTE;
    if (sim->ranks != R)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "%s: the simulation has %d ranks, "
                        "the plan %d",
                        path, sim->ranks, R);
    mevent *ev = NULL;
    int n = 0;
    xdt_status st = load_events(path, plan, &ev, &n);
    if (st) return st;

    /* the distinct steps, sorted; events then carry the step's index */
    int *steps = malloc(sizeof *steps * (size_t)n);
    int ns = 0;
    double *first = NULL, *last = NULL, *spans = NULL, *wait = NULL, *busy = NULL;
    double *m_sum = NULL, *p_sum = NULL, *p_wait = NULL;
    int *m_n = NULL, *p_n = NULL, *seen = NULL;
    if (!steps) goto nomem;
    for (int i = 0; i < n; i++)
        steps[i] = ev[i].step;
    qsort(steps, (size_t)n, sizeof *steps, cmp_int);
    for (int i = 0; i < n; i++)
        if (i == 0 || steps[i] != steps[ns - 1]) steps[ns++] = steps[i];
    first = malloc(sizeof *first * (size_t)ns);
    last = malloc(sizeof *last * (size_t)ns);
    spans = malloc(sizeof *spans * (size_t)ns);
    wait = calloc((size_t)R * (size_t)ns, sizeof *wait);
    busy = calloc((size_t)R * (size_t)ns, sizeof *busy);
    m_sum = calloc((size_t)K, sizeof *m_sum);
    p_sum = calloc((size_t)K, sizeof *p_sum);
    p_wait = calloc((size_t)R, sizeof *p_wait);
    m_n = calloc((size_t)K, sizeof *m_n);
    p_n = calloc((size_t)K, sizeof *p_n);
    seen = calloc((size_t)R, sizeof *seen);
    out->items = malloc(sizeof *out->items * (size_t)(K + 2 * R));
    if (!first || !last || !spans || !wait || !busy || !m_sum || !p_sum || !p_wait || !m_n ||
        !p_n || !seen || !out->items)
        goto nomem;
    for (int i = 0; i < ns; i++)
        first[i] = INFINITY, last[i] = -INFINITY;

    /* Step 0 warms up (first touches, connections): leave it out when there are >= 3 steps. */
    const int skip = ns >= 3 ? 1 : 0;
    for (int i = 0; i < n; i++) {
        const mevent *e = &ev[i];
        const int s =
            (int)((const int *)bsearch(&e->step, steps, (size_t)ns, sizeof *steps, cmp_int) -
                  steps);
        if (e->start < first[s]) first[s] = e->start;
        if (e->end > last[s]) last[s] = e->end;
        seen[e->rank] = 1;
        const double d = e->end - e->start;
        const size_t rs = (size_t)e->rank * (size_t)ns + (size_t)s;
        if (e->kind == IS_WAIT) wait[rs] += d;
        if (e->kind < 0) continue;
        busy[rs] += d;
        if (s < skip) continue;
        const int k = (e->rank * V + e->chunk) * N_COMPUTE + e->kind;
        m_sum[k] += d;
        m_n[k]++;
    }
    for (int r = 0; r < R; r++)
        if (!seen[r]) {
            st = xdt_fail(XDT_ERR_FORMAT,
                          "%s: no events of rank %d; the plan has %d ranks (a "
                          "trace of a different plan?)",
                          path, r, R);
            goto done;
        }

    /* A step runs from its earliest start to the next step's earliest start: steps overlap
     * across ranks, so the period at which steps begin is the step time. The last has no
     * successor and runs to its latest end. */
    const int used = ns - skip;
    for (int i = skip; i < ns; i++)
        spans[i - skip] = (i + 1 < ns ? first[i + 1] : last[i]) - first[i];
    qsort(spans, (size_t)used, sizeof *spans, cmp_double);
    const double median =
        used % 2 ? spans[used / 2] : 0.5 * (spans[used / 2 - 1] + spans[used / 2]);
    if (!(median > 0) || !isfinite(median)) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: the steps take no time (median span %g ms)", path,
                      median);
        goto done;
    }

    /* the simulated step: compute durations, receive spans */
    for (int i = 0; i < sim->n_events; i++) {
        const xdt_sim_event *e = &sim->events[i];
        if (e->rank < 0 || e->rank >= R) continue;
        const double d = e->end_ms - e->start_ms;
        if (e->op.kind == XDT_OP_RECV_ACT || e->op.kind == XDT_OP_RECV_GRAD) p_wait[e->rank] += d;
        if ((int)e->op.kind >= N_COMPUTE || e->op.chunk < 0 || e->op.chunk >= V) continue;
        const int k = (e->rank * V + e->op.chunk) * N_COMPUTE + (int)e->op.kind;
        p_sum[k] += d;
        p_n[k]++;
    }

    int ni = 0;
    for (int k = 0; k < K; k++) {
        if (!m_n[k] && !p_n[k]) continue;
        const int kind = k % N_COMPUTE, chunk = k / N_COMPUTE % V, rank = k / N_COMPUTE / V;
        if (!p_n[k]) {
            st = xdt_fail(XDT_ERR_FORMAT,
                          "%s: rank %d runs %s ops of chunk %d, which the plan "
                          "never runs there (a trace of a different plan?)",
                          path, rank, kind_label(kind), chunk);
            goto done;
        }
        if (!m_n[k]) {
            st = xdt_fail(XDT_ERR_FORMAT,
                          "%s: no %s ops of chunk %d on rank %d in the compared "
                          "steps, which the plan runs (a trace of a different plan?)",
                          path, kind_label(kind), chunk, rank);
            goto done;
        }
        const double p = p_sum[k] / p_n[k], m = m_sum[k] / m_n[k];
        out->items[ni++] =
            (xdt_compare_item){XDT_COMPARE_OP, rank, (xdt_op_kind)kind, chunk, p, m, pct(p, m)};
    }
    for (int r = 0; r < R; r++) {
        double w = 0, b = 0;
        for (int i = skip; i < ns; i++) {
            w += wait[(size_t)r * (size_t)ns + (size_t)i];
            b += busy[(size_t)r * (size_t)ns + (size_t)i];
        }
        w /= used, b /= used;
        out->items[ni++] = (xdt_compare_item){XDT_COMPARE_WAIT, r, XDT_OP_FWD,       -1,
                                              p_wait[r],        w, pct(p_wait[r], w)};
        out->items[ni++] = (xdt_compare_item){
            XDT_COMPARE_BUSY, r, XDT_OP_FWD, -1, sim->busy_ms[r], b, pct(sim->busy_ms[r], b)};
    }
    qsort(out->items, (size_t)ni, sizeof *out->items, cmp_item);
    out->n_items = ni;
    out->steps = ns;
    out->steps_used = used;
    out->first_step_used = steps[skip];
    out->measured_step_ms = median;
    out->predicted_step_ms = sim->step_ms;
    out->error_pct = pct(sim->step_ms, median);
    goto done;
nomem:
    st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory comparing %d events", path, n);
done:
    free(ev);
    free(steps);
    free(first);
    free(last);
    free(spans);
    free(wait);
    free(busy);
    free(m_sum);
    free(p_sum);
    free(p_wait);
    free(m_n);
    free(p_n);
    free(seen);
    if (st) xdt_trace_compare_free(out);
    return st;
}

void xdt_trace_compare_free(xdt_trace_compare *c) {
    free(c->items);
    memset(c, 0, sizeof *c);
}

/* Milliseconds with three significant-ish digits: 163.2, 41.2, 1.23, 0.169. */
static void fmt_ms(double v, char *buf, size_t cap) {
    const double a = fabs(v);
    snprintf(buf, cap, a >= 10 ? "%.1f" : a >= 1 ? "%.2f" : "%.3f", v);
}

void xdt_trace_compare_print(const xdt_trace_compare *c, int top, FILE *f) {
    char m[32], p[32];
    fmt_ms(c->measured_step_ms, m, sizeof m);
    fmt_ms(c->predicted_step_ms, p, sizeof p);
    fprintf(f, "measured step %s ms (median of %d steps), predicted %s ms, error %.1f %%\n", m,
            c->steps_used, p, c->error_pct);
    if (top > c->n_items) top = c->n_items;
    if (top <= 0) return;
    fprintf(f,
            "largest differences (means per step from step %d on; error = (predicted - measured) "
            "/ measured):\n",
            c->first_step_used);
    for (int i = 0; i < top; i++) {
        const xdt_compare_item *it = &c->items[i];
        fmt_ms(it->predicted_ms, p, sizeof p);
        fmt_ms(it->measured_ms, m, sizeof m);
        if (it->what == XDT_COMPARE_OP)
            fprintf(f, "rank %d %s chunk %d: ", it->rank, kind_label((int)it->kind), it->chunk);
        else
            fprintf(f, "rank %d %s per step: ", it->rank,
                    it->what == XDT_COMPARE_WAIT ? "receive wait" : "busy");
        fprintf(f, "predicted %s ms, measured %s ms", p, m);
        if (isfinite(it->error_pct))
            fprintf(f, " (%.1f %%)\n", it->error_pct);
        else
            fprintf(f, " (measured 0)\n");
    }
}
