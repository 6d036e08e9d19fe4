/* device_profiler.c: the timing device (device_profiler.h). Each timed call is bracketed: on a
 * backend with events, a start and an end event are recorded on the stream and kept pending
 * until the next sync resolves them; without events, the host clock is read around the call. */
#include "devices/device_profiler.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

typedef struct pending {
    void *start, *end;
    int row;
    double flops;
} pending;

typedef struct profiler {
    xdt_device *inner;
    xdt_device_ops ops; /* this instance's table: the inner's name, memory type and slots */
    bool events;        /* the inner backend times by events */
    xdt_op_profile *rows;
    int n_rows, cap_rows;
    pending *pend;
    int n_pend, cap_pend;
    void **spare; /* recorded-and-resolved events, reused */
    int n_spare, cap_spare;
    xdt_status err; /* a failure to time (an event could not be made), reported once */
} profiler;

static profiler *as_prof(void *ctx) {
    return (profiler *)ctx;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* The row named `name`, added when new; -1 when out of memory. */
static int row_of(profiler *p, const char *name) {
    for (int i = 0; i < p->n_rows; i++)
        if (!strcmp(p->rows[i].name, name)) return i;
    if (p->n_rows == p->cap_rows) {
        const int cap = p->cap_rows ? 2 * p->cap_rows : 32;
        xdt_op_profile *r = realloc(p->rows, sizeof *r * (size_t)cap);
        if (!r) return -1;
        p->rows = r;
        p->cap_rows = cap;
    }
    xdt_op_profile *r = &p->rows[p->n_rows];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    return p->n_rows++;
}

static void *take_event(profiler *p) {
    if (p->n_spare) return p->spare[--p->n_spare];
    void *ev = NULL;
    if (p->inner->ops->event_create(p->inner->ctx, &ev) != XDT_OK) {
        p->err = XDT_ERR_DEVICE;
        return NULL;
    }
    return ev;
}

static void put_event(profiler *p, void *ev) {
    if (!ev) return;
    if (p->n_spare == p->cap_spare) {
        const int cap = p->cap_spare ? 2 * p->cap_spare : 64;
        void **s = realloc(p->spare, sizeof *s * (size_t)cap);
        if (!s) {
            p->inner->ops->event_destroy(p->inner->ctx, ev);
            return;
        }
        p->spare = s;
        p->cap_spare = cap;
    }
    p->spare[p->n_spare++] = ev;
}

/* A timed call: `begin` before handing it to the inner device, `end` after. */
typedef struct timing {
    int row;
    double flops, t0;
    void *start;
} timing;

static timing begin(profiler *p, const char *name, double flops) {
    timing t = {.row = row_of(p, name), .flops = flops};
    if (p->events) {
        if ((t.start = take_event(p))) p->inner->ops->event_record(p->inner->ctx, t.start);
    } else {
        t.t0 = now_ms();
    }
    return t;
}

static void end(profiler *p, timing t) {
    if (t.row < 0) return;
    if (!p->events) {
        p->rows[t.row].calls++;
        p->rows[t.row].ms += now_ms() - t.t0;
        p->rows[t.row].flops += t.flops;
        return;
    }
    if (!t.start) return;
    void *stop = take_event(p);
    if (!stop) {
        put_event(p, t.start);
        return;
    }
    p->inner->ops->event_record(p->inner->ctx, stop);
    if (p->n_pend == p->cap_pend) {
        const int cap = p->cap_pend ? 2 * p->cap_pend : 256;
        pending *np = realloc(p->pend, sizeof *np * (size_t)cap);
        if (!np) {
            put_event(p, t.start);
            put_event(p, stop);
            return;
        }
        p->pend = np;
        p->cap_pend = cap;
    }
    p->pend[p->n_pend++] = (pending){t.start, stop, t.row, t.flops};
}

/* After a sync: every pending pair has passed. */
static xdt_status resolve(profiler *p) {
    xdt_status st = XDT_OK;
    for (int i = 0; i < p->n_pend; i++) {
        float ms = 0;
        const pending *q = &p->pend[i];
        if (!st) st = p->inner->ops->event_elapsed(p->inner->ctx, q->start, q->end, &ms);
        if (!st) {
            p->rows[q->row].calls++;
            p->rows[q->row].ms += ms;
            p->rows[q->row].flops += q->flops;
        }
        put_event(p, q->start);
        put_event(p, q->end);
    }
    p->n_pend = 0;
    if (!st && p->err) {
        st = xdt_fail(p->err, "device %s: the profiler could not make its events", p->inner->name);
        p->err = XDT_OK;
    }
    return st;
}

#define INNER(p) (p)->inner->ops
#define TIMED(p, name, flops, call)                                                                \
    do {                                                                                           \
        timing t_ = begin((p), (name), (flops));                                                   \
        call;                                                                                      \
        end((p), t_);                                                                              \
    } while (0)

/* ---- memory, sync and the optional slots: straight through (copies and memsets timed) ---- */

static void prof_destroy(void *ctx) {
    profiler *p = as_prof(ctx);
    if (!p) return;
    if (p->events) {
        (void)xdt_device_sync(p->inner);
        (void)resolve(p);
        for (int i = 0; i < p->n_spare; i++)
            INNER(p)->event_destroy(p->inner->ctx, p->spare[i]);
    }
    free(p->spare);
    free(p->pend);
    free(p->rows);
    free(p);
}

static xdt_status prof_alloc(void *ctx, size_t bytes, void **out) {
    profiler *p = as_prof(ctx);
    return INNER(p)->alloc(p->inner->ctx, bytes, out);
}

static void prof_free(void *ctx, void *ptr) {
    profiler *p = as_prof(ctx);
    INNER(p)->free(p->inner->ctx, ptr);
}

static xdt_status prof_alloc_pinned(void *ctx, size_t bytes, void **out) {
    profiler *p = as_prof(ctx);
    return INNER(p)->alloc_pinned(p->inner->ctx, bytes, out);
}

static void prof_free_pinned(void *ctx, void *ptr) {
    profiler *p = as_prof(ctx);
    INNER(p)->free_pinned(p->inner->ctx, ptr);
}

static void prof_copy(void *ctx, void *dst, const void *src, size_t bytes, xdt_copy_dir dir) {
    profiler *p = as_prof(ctx);
    static const char *const names[] = {"copy host->device", "copy device->host",
                                        "copy device->device"};
    TIMED(p, names[dir], 0, INNER(p)->copy(p->inner->ctx, dst, src, bytes, dir));
}

static void prof_memset(void *ctx, void *ptr, int value, size_t bytes) {
    profiler *p = as_prof(ctx);
    TIMED(p, "memset", 0, INNER(p)->memset(p->inner->ctx, ptr, value, bytes));
}

static xdt_status prof_sync(void *ctx) {
    profiler *p = as_prof(ctx);
    xdt_status st = INNER(p)->sync(p->inner->ctx);
    const xdt_status rs = resolve(p);
    return st ? st : rs;
}

static xdt_status prof_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
    profiler *p = as_prof(ctx);
    return INNER(p)->mem_info(p->inner->ctx, free_bytes, total_bytes);
}

static void prof_attention_sizes(void *ctx, int b, int t, int c, int nh, size_t *state,
                                 size_t *workspace) {
    profiler *p = as_prof(ctx);
    INNER(p)->attention_sizes(p->inner->ctx, b, t, c, nh, state, workspace);
}

static size_t prof_workspace_bytes(void *ctx, const xdt_op_shapes *shapes) {
    profiler *p = as_prof(ctx);
    return INNER(p)->workspace_bytes(p->inner->ctx, shapes);
}

static void prof_gpu_stream(void *ctx, xdt_gpu_stream *out) {
    profiler *p = as_prof(ctx);
    INNER(p)->gpu_stream(p->inner->ctx, out);
}

static xdt_status prof_event_create(void *ctx, void **out) {
    profiler *p = as_prof(ctx);
    return INNER(p)->event_create(p->inner->ctx, out);
}

static void prof_event_destroy(void *ctx, void *event) {
    profiler *p = as_prof(ctx);
    INNER(p)->event_destroy(p->inner->ctx, event);
}

static void prof_event_record(void *ctx, void *event) {
    profiler *p = as_prof(ctx);
    INNER(p)->event_record(p->inner->ctx, event);
}

static xdt_status prof_event_elapsed(void *ctx, const void *start, const void *end, float *ms) {
    profiler *p = as_prof(ctx);
    return INNER(p)->event_elapsed(p->inner->ctx, start, end, ms);
}

/* ---- kernels ---- */

static void gemm_name(char *buf, size_t cap, bool ta, bool tb, int m, int n, int k, int batch) {
    if (batch > 1)
        snprintf(buf, cap, "gemm %c%c %dx%dx%d x%d", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k,
                 batch);
    else
        snprintf(buf, cap, "gemm %c%c %dx%dx%d", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k);
}

static void prof_gemm(void *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                      const float *a, int lda, const float *b, int ldb, float beta, float *c,
                      int ldc) {
    profiler *p = as_prof(ctx);
    char name[64];
    gemm_name(name, sizeof name, trans_a, trans_b, m, n, k, 1);
    TIMED(p, name, 2.0 * m * n * k,
          INNER(p)->gemm(p->inner->ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                         ldc));
}

static void prof_gemm_strided_batched(void *ctx, bool trans_a, bool trans_b, int m, int n, int k,
                                      float alpha, const float *a, int lda, long stride_a,
                                      const float *b, int ldb, long stride_b, float beta, float *c,
                                      int ldc, long stride_c, int batch) {
    profiler *p = as_prof(ctx);
    char name[64];
    gemm_name(name, sizeof name, trans_a, trans_b, m, n, k, batch);
    TIMED(p, name, 2.0 * m * n * k * batch,
          INNER(p)->gemm_strided_batched(p->inner->ctx, trans_a, trans_b, m, n, k, alpha, a, lda,
                                         stride_a, b, ldb, stride_b, beta, c, ldc, stride_c,
                                         batch));
}

static void prof_gemm_bias(void *ctx, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                           const float *a, int lda, const float *b, int ldb, float beta, float *c,
                           int ldc, const float *bias) {
    profiler *p = as_prof(ctx);
    char name[80];
    gemm_name(name, sizeof name, trans_a, trans_b, m, n, k, 1);
    strncat(name, " + bias", sizeof name - strlen(name) - 1);
    TIMED(p, name, 2.0 * m * n * k,
          INNER(p)->gemm_bias(p->inner->ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta,
                              c, ldc, bias));
}

static void prof_bias_add(void *ctx, float *out, const float *bias, int n, int c) {
    profiler *p = as_prof(ctx);
    TIMED(p, "bias_add", 0, INNER(p)->bias_add(p->inner->ctx, out, bias, n, c));
}

static void prof_bias_grad(void *ctx, float *dbias, const float *dout, int n, int c) {
    profiler *p = as_prof(ctx);
    TIMED(p, "bias_grad", 0, INNER(p)->bias_grad(p->inner->ctx, dbias, dout, n, c));
}

static void prof_layernorm_forward(void *ctx, float *out, float *mean, float *rstd,
                                   const float *inp, const float *w, const float *b, int n, int c) {
    profiler *p = as_prof(ctx);
    TIMED(p, "layernorm_forward", 0,
          INNER(p)->layernorm_forward(p->inner->ctx, out, mean, rstd, inp, w, b, n, c));
}

static void prof_layernorm_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                                    const float *inp, const float *w, const float *mean,
                                    const float *rstd, int n, int c, bool accumulate) {
    profiler *p = as_prof(ctx);
    TIMED(p, "layernorm_backward", 0,
          INNER(p)->layernorm_backward(p->inner->ctx, dinp, dw, db, dout, inp, w, mean, rstd, n, c,
                                       accumulate));
}

static void prof_attention_forward(void *ctx, float *out, float *att, const float *qkv, int b,
                                   int t, int c, int nh) {
    profiler *p = as_prof(ctx);
    TIMED(p, "attention_forward", 4.0 * b * t * (double)t * c,
          INNER(p)->attention_forward(p->inner->ctx, out, att, qkv, b, t, c, nh));
}

static void prof_attention_backward(void *ctx, float *dqkv, float *workspace, const float *dout,
                                    const float *qkv, const float *att, const float *out, int b,
                                    int t, int c, int nh) {
    profiler *p = as_prof(ctx);
    TIMED(p, "attention_backward", 8.0 * b * t * (double)t * c,
          INNER(p)->attention_backward(p->inner->ctx, dqkv, workspace, dout, qkv, att, out, b, t, c,
                                       nh));
}

static void prof_gelu_forward(void *ctx, float *out, const float *inp, size_t n) {
    profiler *p = as_prof(ctx);
    TIMED(p, "gelu_forward", 0, INNER(p)->gelu_forward(p->inner->ctx, out, inp, n));
}

static void prof_gelu_backward(void *ctx, float *dinp, const float *inp, const float *dout,
                               size_t n) {
    profiler *p = as_prof(ctx);
    TIMED(p, "gelu_backward", 0, INNER(p)->gelu_backward(p->inner->ctx, dinp, inp, dout, n));
}

static void prof_add(void *ctx, float *out, const float *a, const float *b, size_t n) {
    profiler *p = as_prof(ctx);
    TIMED(p, "add", 0, INNER(p)->add(p->inner->ctx, out, a, b, n));
}

static void prof_scale(void *ctx, float *x, float s, size_t n) {
    profiler *p = as_prof(ctx);
    TIMED(p, "scale", 0, INNER(p)->scale(p->inner->ctx, x, s, n));
}

static void prof_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                                   const float *wpe, int b, int t, int c) {
    profiler *p = as_prof(ctx);
    TIMED(p, "embedding_forward", 0,
          INNER(p)->embedding_forward(p->inner->ctx, out, tokens, wte, wpe, b, t, c));
}

static void prof_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                                    const int32_t *tokens, int b, int t, int c) {
    profiler *p = as_prof(ctx);
    TIMED(p, "embedding_backward", 0,
          INNER(p)->embedding_backward(p->inner->ctx, dwte, dwpe, dout, tokens, b, t, c));
}

static void prof_softmax_xent(void *ctx, float *logits, float *losses, const int32_t *targets,
                              int n, int v, int vp, float dloss_scale, bool want_grad) {
    profiler *p = as_prof(ctx);
    TIMED(p, "softmax_xent", 0,
          INNER(p)->softmax_xent(p->inner->ctx, logits, losses, targets, n, v, vp, dloss_scale,
                                 want_grad));
}

static void prof_adamw(void *ctx, float *param, const float *grad, float *m, float *v, size_t n,
                       const xdt_adamw_args *args) {
    profiler *p = as_prof(ctx);
    TIMED(p, "adamw", 0, INNER(p)->adamw(p->inner->ctx, param, grad, m, v, n, args));
}

static xdt_status prof_sum(void *ctx, const float *x, size_t n, double *out) {
    profiler *p = as_prof(ctx);
    xdt_status st;
    TIMED(p, "sum", 0, st = INNER(p)->sum(p->inner->ctx, x, n, out));
    return st;
}

static xdt_status prof_sum_squares(void *ctx, const float *x, size_t n, double *out) {
    profiler *p = as_prof(ctx);
    xdt_status st;
    TIMED(p, "sum_squares", 0, st = INNER(p)->sum_squares(p->inner->ctx, x, n, out));
    return st;
}

static const xdt_device_ops template_ops = {
    .destroy = prof_destroy,
    .alloc = prof_alloc,
    .free = prof_free,
    .alloc_pinned = prof_alloc_pinned,
    .free_pinned = prof_free_pinned,
    .copy = prof_copy,
    .memset = prof_memset,
    .sync = prof_sync,
    .gemm = prof_gemm,
    .gemm_strided_batched = prof_gemm_strided_batched,
    .gemm_bias = prof_gemm_bias,
    .bias_add = prof_bias_add,
    .bias_grad = prof_bias_grad,
    .layernorm_forward = prof_layernorm_forward,
    .layernorm_backward = prof_layernorm_backward,
    .attention_forward = prof_attention_forward,
    .attention_backward = prof_attention_backward,
    .gelu_forward = prof_gelu_forward,
    .gelu_backward = prof_gelu_backward,
    .add = prof_add,
    .scale = prof_scale,
    .embedding_forward = prof_embedding_forward,
    .embedding_backward = prof_embedding_backward,
    .softmax_xent = prof_softmax_xent,
    .adamw = prof_adamw,
    .sum = prof_sum,
    .sum_squares = prof_sum_squares,
    .attention_sizes = prof_attention_sizes,
    .workspace_bytes = prof_workspace_bytes,
    .mem_info = prof_mem_info,
    .gpu_stream = prof_gpu_stream,
    .event_create = prof_event_create,
    .event_destroy = prof_event_destroy,
    .event_record = prof_event_record,
    .event_elapsed = prof_event_elapsed,
};

xdt_status xdt_device_profiler_create(xdt_device *inner, xdt_device **out) {
    xdt_device *dev = calloc(1, sizeof *dev);
    profiler *p = calloc(1, sizeof *p);
    if (!dev || !p) {
        free(dev);
        free(p);
        return xdt_fail(XDT_ERR_NO_MEMORY, "device %s: out of memory for its profiler",
                        inner->name);
    }
    const xdt_device_ops *in = inner->ops;
    p->inner = inner;
    p->ops = template_ops;
    p->ops.name = in->name;
    p->ops.mem_type = in->mem_type;
    /* the inner's optional slots stay optional: the wrappers' fallbacks must act alike */
    if (!in->alloc_pinned) p->ops.alloc_pinned = NULL;
    if (!in->free_pinned) p->ops.free_pinned = NULL;
    if (!in->gemm_strided_batched) p->ops.gemm_strided_batched = NULL;
    if (!in->gemm_bias) p->ops.gemm_bias = NULL;
    if (!in->mem_info) p->ops.mem_info = NULL;
    if (!in->attention_sizes) p->ops.attention_sizes = NULL;
    if (!in->workspace_bytes) p->ops.workspace_bytes = NULL;
    if (!in->gpu_stream) p->ops.gpu_stream = NULL;
    p->events = in->event_create && in->event_destroy && in->event_record && in->event_elapsed;
    if (!p->events) {
        p->ops.event_create = NULL;
        p->ops.event_destroy = NULL;
        p->ops.event_record = NULL;
        p->ops.event_elapsed = NULL;
    }
    dev->ops = &p->ops;
    dev->ctx = p;
    snprintf(dev->name, sizeof dev->name, "%s", inner->name);
    *out = dev;
    return XDT_OK;
}

static profiler *of(xdt_device *prof) {
    return prof->ops->destroy == prof_destroy ? as_prof(prof->ctx) : NULL;
}

static int by_time(const void *a, const void *b) {
    const double x = ((const xdt_op_profile *)a)->ms, y = ((const xdt_op_profile *)b)->ms;
    return (x < y) - (x > y);
}

xdt_status xdt_device_profiler_rows(xdt_device *prof, const xdt_op_profile **rows, int *n) {
    profiler *p = of(prof);
    if (!p) return xdt_fail(XDT_ERR_INVALID_ARG, "device %s: not a profiler", prof->name);
    xdt_status st = prof_sync(p);
    if (st) return st;
    qsort(p->rows, (size_t)p->n_rows, sizeof *p->rows, by_time);
    *rows = p->rows;
    *n = p->n_rows;
    return XDT_OK;
}

void xdt_device_profiler_reset(xdt_device *prof) {
    profiler *p = of(prof);
    if (!p) return;
    (void)prof_sync(p);
    p->n_rows = 0;
}

xdt_status xdt_device_profiler_print(xdt_device *prof, FILE *f, const char *title, int max_rows) {
    const xdt_op_profile *rows;
    int n;
    xdt_status st = xdt_device_profiler_rows(prof, &rows, &n);
    if (st) return st;
    double total = 0;
    for (int i = 0; i < n; i++)
        total += rows[i].ms;
    fprintf(f, "%s: %.2f ms in %d kinds of op (%s, timed by %s)\n", title, total, n, prof->name,
            as_prof(prof->ctx)->events ? "device events" : "the host clock");
    fprintf(f, "  %-40s %8s %10s %6s %10s %9s\n", "op", "calls", "ms", "share", "mean us",
            "GFLOP/s");
    double rest_ms = 0;
    long rest_calls = 0;
    for (int i = 0; i < n; i++) {
        const xdt_op_profile *r = &rows[i];
        if (max_rows > 0 && i >= max_rows) {
            rest_ms += r->ms;
            rest_calls += r->calls;
            continue;
        }
        char rate[16] = "";
        if (r->flops > 0 && r->ms > 0) snprintf(rate, sizeof rate, "%.0f", r->flops / r->ms / 1e6);
        fprintf(f, "  %-40s %8ld %10.3f %5.1f%% %10.1f %9s\n", r->name, r->calls, r->ms,
                total > 0 ? 100.0 * r->ms / total : 0.0,
                r->calls ? 1e3 * r->ms / (double)r->calls : 0.0, rate);
    }
    if (rest_calls)
        fprintf(f, "  %-40s %8ld %10.3f %5.1f%%\n", "(the rest)", rest_calls, rest_ms,
                total > 0 ? 100.0 * rest_ms / total : 0.0);
    return XDT_OK;
}
