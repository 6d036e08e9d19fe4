/* wan_shaper.c: latency, jitter and bandwidth per link, as a layer over any transport. Held
 * sends wait in a per-transport list ordered by arrival time; progress() releases those that
 * are due into the inner transport. */
#include "transports/wan_shaper.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/rng.h"

struct xdt_request {
    struct shaper_ctx *owner;
    bool is_send, released, in_use;
    int peer;
    uint64_t tag;
    const void *buf;
    size_t len;
    xdt_mem_type mem;
    uint64_t arrive_ns;
    xdt_request *inner;       /* the inner transport's request once released */
    struct xdt_request *next; /* held list / free list */
};

typedef struct shaper_link {
    xdt_link_shape shape;
    uint64_t free_at_ns; /* when the link finishes serialising what it has */
    uint64_t last_arrive_ns;
    uint64_t last_depart_ns;
} shaper_link;

typedef struct shaper_ctx {
    xdt_transport t;
    xdt_transport *inner;
    shaper_link *links;
    xdt_request *held; /* sends not yet due, ordered by arrival */
    xdt_shaper_options opts;
    xdt_rng rng;
} shaper_ctx;

static uint64_t mono_ns(void *arg) {
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t now(shaper_ctx *c) {
    return c->opts.now_ns(c->opts.now_arg);
}

/* Number with a unit suffix from `units` (name, factor), case-insensitive. */
typedef struct unit {
    const char *name;
    double factor;
} unit;

static xdt_status parse_with_units(const char *text, const unit *units, int n, const char *what,
                                   double *out) {
    char *end = NULL;
    errno = 0;
    double v = text ? strtod(text, &end) : 0;
    if (!text || end == text || errno || !(v >= 0))
        return xdt_fail(XDT_ERR_CONFIG, "%s '%s': expected a number with a unit", what,
                        text ? text : "");
    while (*end == ' ')
        end++;
    for (int i = 0; i < n; i++)
        if (!strcasecmp(end, units[i].name)) {
            *out = v * units[i].factor;
            return XDT_OK;
        }
    return xdt_fail(XDT_ERR_CONFIG, "%s '%s': unknown unit '%s'", what, text, end);
}

xdt_status xdt_parse_bandwidth(const char *text, double *bps) {
    static const unit u[] = {{"bps", 1},    {"kbps", 1e3}, {"mbps", 1e6}, {"gbps", 1e9},
                             {"kbit", 1e3}, {"mbit", 1e6}, {"gbit", 1e9}, {"tbps", 1e12},
                             {"B/s", 8},    {"MB/s", 8e6}, {"GB/s", 8e9}};
    return parse_with_units(text, u, (int)(sizeof u / sizeof u[0]), "bandwidth", bps);
}

xdt_status xdt_parse_duration(const char *text, double *seconds) {
    static const unit u[] = {{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}};
    return parse_with_units(text, u, (int)(sizeof u / sizeof u[0]), "duration", seconds);
}

static xdt_status release(shaper_ctx *c, xdt_request *r) {
    r->released = true;
    xdt_status st =
        c->inner->ops->isend(c->inner->ctx, r->peer, r->tag, r->buf, r->len, r->mem, &r->inner);
    if (st != XDT_OK) r->inner = NULL;
    return st;
}

/* Releases every held send that is due. */
static int release_due(shaper_ctx *c) {
    int n = 0;
    uint64_t t = now(c);
    while (c->held && c->held->arrive_ns <= t) {
        xdt_request *r = c->held;
        c->held = r->next;
        r->next = NULL;
        release(c, r);
        n++;
    }
    return n;
}

static xdt_status sh_isend(void *vctx, int peer, uint64_t tag, const void *buf, size_t len,
                           xdt_mem_type mem, xdt_request **out) {
    shaper_ctx *c = vctx;
    shaper_link *l = &c->links[peer];
    xdt_request *r = calloc(1, sizeof *r);
    if (!r) return xdt_fail(XDT_ERR_NO_MEMORY, "shaper: out of memory");
    *r = (xdt_request){.owner = c,
                       .is_send = true,
                       .in_use = true,
                       .peer = peer,
                       .tag = tag,
                       .buf = buf,
                       .len = len,
                       .mem = mem};
    const uint64_t t = now(c);
    const xdt_link_shape *s = &l->shape;
    uint64_t depart = t > l->free_at_ns ? t : l->free_at_ns;
    uint64_t serialise =
        s->bandwidth_bps > 0 ? (uint64_t)((double)len * 8.0 / s->bandwidth_bps * 1e9) : 0;
    double jitter = s->jitter_s > 0 ? xdt_rng_uniform(&c->rng) * s->jitter_s : 0;
    uint64_t arrive = depart + serialise + (uint64_t)((s->latency_s + jitter) * 1e9);
    if (arrive < l->last_arrive_ns) arrive = l->last_arrive_ns; /* jitter never reorders */
    l->free_at_ns = depart + serialise;
    l->last_arrive_ns = arrive;
    l->last_depart_ns = depart;
    r->arrive_ns = arrive;
    if (arrive <= t) {
        xdt_status st = release(c, r);
        if (st != XDT_OK) {
            free(r);
            return st;
        }
    } else {
        xdt_request **pp = &c->held;
        while (*pp && (*pp)->arrive_ns <= arrive)
            pp = &(*pp)->next;
        r->next = *pp;
        *pp = r;
    }
    *out = r;
    return XDT_OK;
}

static xdt_status sh_irecv(void *vctx, int peer, uint64_t tag, void *buf, size_t cap,
                           xdt_mem_type mem, xdt_request **out) {
    shaper_ctx *c = vctx;
    xdt_request *r = calloc(1, sizeof *r);
    if (!r) return xdt_fail(XDT_ERR_NO_MEMORY, "shaper: out of memory");
    *r = (xdt_request){.owner = c, .released = true, .in_use = true, .peer = peer, .tag = tag};
    xdt_status st = c->inner->ops->irecv(c->inner->ctx, peer, tag, buf, cap, mem, &r->inner);
    if (st != XDT_OK) {
        free(r);
        return st;
    }
    *out = r;
    return XDT_OK;
}

static xdt_status sh_test(void *vctx, xdt_request *r, bool *done, xdt_completion *out) {
    shaper_ctx *c = vctx;
    *done = false;
    if (!r->released) return XDT_OK;
    if (!r->inner) { /* the inner isend failed at release */
        *done = true;
        if (out) *out = (xdt_completion){XDT_ERR_PEER, 0};
        free(r);
        return XDT_OK;
    }
    xdt_status st = c->inner->ops->test(c->inner->ctx, r->inner, done, out);
    if (st == XDT_OK && *done) free(r);
    return st;
}

static void sh_cancel(void *vctx, xdt_request *r) {
    shaper_ctx *c = vctx;
    if (!r->released) {
        for (xdt_request **pp = &c->held; *pp; pp = &(*pp)->next)
            if (*pp == r) {
                *pp = r->next;
                break;
            }
    } else if (r->inner) {
        c->inner->ops->cancel(c->inner->ctx, r->inner);
    }
    free(r);
}

static int sh_progress(void *vctx) {
    shaper_ctx *c = vctx;
    return release_due(c) + c->inner->ops->progress(c->inner->ctx);
}

static xdt_status sh_block(void *vctx, int timeout_ms) {
    shaper_ctx *c = vctx;
    if (c->held) {
        uint64_t t = now(c), due = c->held->arrive_ns;
        if (due <= t) return XDT_OK;
        int ms = (int)((due - t) / 1000000);
        if (ms < timeout_ms) {
            /* sleep precisely to the next release: latency is the point of this layer */
            if (c->opts.now_ns == mono_ns) {
                struct timespec ts = {(time_t)((due - t) / 1000000000ull),
                                      (long)((due - t) % 1000000000ull)};
                if (ms < 2) {
                    nanosleep(&ts, NULL);
                    return XDT_OK;
                }
            }
            timeout_ms = ms > 0 ? ms : 0;
        }
    }
    if (c->inner->ops->block) return c->inner->ops->block(c->inner->ctx, timeout_ms);
    return XDT_OK;
}

static void sh_wake(void *vctx) {
    shaper_ctx *c = vctx;
    if (c->inner->ops->wake) c->inner->ops->wake(c->inner->ctx);
}

static bool sh_can_access(void *vctx, xdt_mem_type mem) {
    shaper_ctx *c = vctx;
    return c->inner->ops->can_access(c->inner->ctx, mem);
}

static xdt_status sh_local_address(void *vctx, void *buf, size_t cap, size_t *len) {
    shaper_ctx *c = vctx;
    return c->inner->ops->local_address(c->inner->ctx, buf, cap, len);
}

static xdt_status sh_connect(void *vctx, int peer, const void *addr, size_t len) {
    shaper_ctx *c = vctx;
    return c->inner->ops->connect(c->inner->ctx, peer, addr, len);
}

static void sh_fail_peer(void *vctx, int peer, const char *why) {
    shaper_ctx *c = vctx;
    if (c->inner->ops->fail_peer) c->inner->ops->fail_peer(c->inner->ctx, peer, why);
}

static void sh_destroy(void *vctx) {
    shaper_ctx *c = vctx;
    for (xdt_request *r = c->held, *n; r; r = n) {
        n = r->next;
        free(r);
    }
    xdt_transport_destroy(c->inner);
    free(c->links);
    free(c);
}

static const xdt_transport_ops shaper_ops = {
    .name = "shaped",
    .destroy = sh_destroy,
    .local_address = sh_local_address,
    .connect = sh_connect,
    .can_access = sh_can_access,
    .isend = sh_isend,
    .irecv = sh_irecv,
    .test = sh_test,
    .cancel = sh_cancel,
    .progress = sh_progress,
    .block = sh_block,
    .fail_peer = sh_fail_peer,
    .wake = sh_wake,
};

xdt_status xdt_shaper_create(xdt_transport *inner, const xdt_link_shape *shapes,
                             const xdt_shaper_options *opts, xdt_transport **out) {
    shaper_ctx *c = calloc(1, sizeof *c);
    if (c) c->links = calloc((size_t)inner->world_size, sizeof *c->links);
    if (!c || !c->links) {
        if (c) free(c);
        return xdt_fail(XDT_ERR_NO_MEMORY, "shaper: out of memory");
    }
    for (int p = 0; p < inner->world_size; p++) {
        const xdt_link_shape *s = &shapes[p];
        if (!(s->bandwidth_bps >= 0 && s->latency_s >= 0 && s->jitter_s >= 0)) {
            free(c->links);
            free(c);
            return xdt_fail(XDT_ERR_CONFIG, "shaper: link to rank %d has a negative figure", p);
        }
        c->links[p].shape = *s;
    }
    if (opts) c->opts = *opts;
    if (!c->opts.now_ns) c->opts.now_ns = mono_ns;
    xdt_rng_seed(&c->rng, c->opts.seed, (uint64_t)inner->rank);
    c->inner = inner;
    c->t = (xdt_transport){
        .ops = &shaper_ops, .ctx = c, .rank = inner->rank, .world_size = inner->world_size};
    snprintf(c->t.name, sizeof c->t.name, "%s", inner->name); /* addresses stay the inner's */
    *out = &c->t;
    return XDT_OK;
}

void xdt_shaper_last_schedule(xdt_transport *shaped, int peer, uint64_t *depart_ns,
                              uint64_t *arrive_ns) {
    shaper_ctx *c = shaped->ctx;
    *depart_ns = c->links[peer].last_depart_ns;
    *arrive_ns = c->links[peer].last_arrive_ns;
}
