/* inproc_transport.c: the in-process transport over a mutex-protected fabric. */
#include "transports/inproc/inproc_transport.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

typedef struct inproc_msg {
    int src;
    uint64_t tag;
    size_t len;
    struct inproc_msg *next;
    unsigned char data[];
} inproc_msg;

struct xdt_request {
    bool is_recv, done;
    int owner, peer;
    uint64_t tag;
    void *buf;
    size_t cap;
    xdt_completion c;
    struct xdt_request *next; /* in the owner's posted-receive list */
};

typedef struct inproc_rank {
    bool open, closed;
    inproc_msg *unexpected, *unexpected_tail;
    xdt_request *posted;
} inproc_rank;

struct xdt_inproc_fabric {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int world_size;
    inproc_rank *ranks;
};

typedef struct inproc_ctx {
    xdt_transport t;
    xdt_inproc_fabric *f;
    bool woken; /* a wake() not yet consumed by block(); under f->lock */
} inproc_ctx;

xdt_status xdt_inproc_fabric_create(int world_size, xdt_inproc_fabric **out) {
    if (world_size < 1 || world_size > XDT_MAX_RANKS)
        return xdt_fail(XDT_ERR_INVALID_ARG, "inproc: world size %d", world_size);
    xdt_inproc_fabric *f = calloc(1, sizeof *f);
    if (f) f->ranks = calloc((size_t)world_size, sizeof *f->ranks);
    if (!f || !f->ranks) {
        free(f);
        return xdt_fail(XDT_ERR_NO_MEMORY, "inproc: out of memory");
    }
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->changed, NULL);
    f->world_size = world_size;
    *out = f;
    return XDT_OK;
}

static void drop_messages(inproc_rank *r) {
    for (inproc_msg *m = r->unexpected, *n; m; m = n) {
        n = m->next;
        free(m);
    }
    r->unexpected = r->unexpected_tail = NULL;
}

void xdt_inproc_fabric_destroy(xdt_inproc_fabric *f) {
    if (!f) return;
    for (int i = 0; i < f->world_size; i++)
        drop_messages(&f->ranks[i]);
    pthread_mutex_destroy(&f->lock);
    pthread_cond_destroy(&f->changed);
    free(f->ranks);
    free(f);
}

/* Delivers a message into a receive request (lock held). */
static void deliver(xdt_request *r, int src, const void *data, size_t len) {
    r->done = true;
    if (len > r->cap) {
        r->c.status = xdt_fail(XDT_ERR_FORMAT,
                               "inproc: rank %d: message of %zu bytes from rank "
                               "%d tag 0x%llx exceeds the %zu-byte buffer",
                               r->owner, len, src, (unsigned long long)r->tag, r->cap);
        return;
    }
    if (len) memcpy(r->buf, data, len);
    r->c = (xdt_completion){XDT_OK, len};
}

static void fail_request(xdt_request *r, const char *why) {
    r->done = true;
    r->c.status =
        xdt_fail(XDT_ERR_PEER, "rank %d: %s rank %d tag 0x%llx: %s", r->owner,
                 r->is_recv ? "recv from" : "send to", r->peer, (unsigned long long)r->tag, why);
}

static xdt_status inproc_isend(void *vctx, int peer, uint64_t tag, const void *buf, size_t len,
                               xdt_mem_type mem, xdt_request **out) {
    (void)mem; /* host memory only (can_access) */
    inproc_ctx *c = vctx;
    xdt_inproc_fabric *f = c->f;
    xdt_request *req = calloc(1, sizeof *req);
    if (!req) return xdt_fail(XDT_ERR_NO_MEMORY, "inproc: out of memory");
    *req = (xdt_request){
        .owner = c->t.rank, .peer = peer, .tag = tag, .done = true, .c = {XDT_OK, len}};
    pthread_mutex_lock(&f->lock);
    inproc_rank *dst = &f->ranks[peer];
    if (dst->closed) {
        fail_request(req, "peer closed");
    } else {
        xdt_request **pp = &dst->posted;
        while (*pp && !((*pp)->peer == c->t.rank && (*pp)->tag == tag))
            pp = &(*pp)->next;
        if (*pp) {
            xdt_request *r = *pp;
            *pp = r->next;
            deliver(r, c->t.rank, buf, len);
        } else {
            inproc_msg *m = malloc(sizeof *m + len);
            if (!m) {
                pthread_mutex_unlock(&f->lock);
                free(req);
                return xdt_fail(XDT_ERR_NO_MEMORY, "inproc: out of memory for %zu bytes", len);
            }
            *m = (inproc_msg){.src = c->t.rank, .tag = tag, .len = len};
            if (len) memcpy(m->data, buf, len);
            if (dst->unexpected_tail)
                dst->unexpected_tail->next = m;
            else
                dst->unexpected = m;
            dst->unexpected_tail = m;
        }
    }
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
    *out = req;
    return XDT_OK;
}

static xdt_status inproc_irecv(void *vctx, int peer, uint64_t tag, void *buf, size_t cap,
                               xdt_mem_type mem, xdt_request **out) {
    (void)mem; /* host memory only (can_access) */
    inproc_ctx *c = vctx;
    xdt_inproc_fabric *f = c->f;
    xdt_request *req = calloc(1, sizeof *req);
    if (!req) return xdt_fail(XDT_ERR_NO_MEMORY, "inproc: out of memory");
    *req = (xdt_request){
        .is_recv = true, .owner = c->t.rank, .peer = peer, .tag = tag, .buf = buf, .cap = cap};
    pthread_mutex_lock(&f->lock);
    inproc_rank *me = &f->ranks[c->t.rank];
    inproc_msg **pp = &me->unexpected, *prev = NULL;
    while (*pp && !((*pp)->src == peer && (*pp)->tag == tag)) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        inproc_msg *m = *pp;
        *pp = m->next;
        if (me->unexpected_tail == m) me->unexpected_tail = prev;
        deliver(req, peer, m->data, m->len);
        free(m);
    } else if (f->ranks[peer].closed) {
        fail_request(req, "peer closed");
    } else {
        xdt_request **tail = &me->posted;
        while (*tail)
            tail = &(*tail)->next;
        *tail = req;
    }
    pthread_mutex_unlock(&f->lock);
    *out = req;
    return XDT_OK;
}

static xdt_status inproc_test(void *vctx, xdt_request *req, bool *done, xdt_completion *out) {
    inproc_ctx *c = vctx;
    pthread_mutex_lock(&c->f->lock);
    *done = req->done;
    pthread_mutex_unlock(&c->f->lock);
    if (*done) {
        if (out) *out = req->c;
        free(req);
    }
    return XDT_OK;
}

static void inproc_cancel(void *vctx, xdt_request *req) {
    inproc_ctx *c = vctx;
    pthread_mutex_lock(&c->f->lock);
    for (xdt_request **pp = &c->f->ranks[c->t.rank].posted; *pp; pp = &(*pp)->next)
        if (*pp == req) {
            *pp = req->next;
            break;
        }
    pthread_mutex_unlock(&c->f->lock);
    free(req);
}

static int inproc_progress(void *vctx) {
    (void)vctx;
    return 0; /* everything happens inside isend/irecv */
}

static xdt_status inproc_block(void *vctx, int timeout_ms) {
    inproc_ctx *c = vctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->f->lock);
    if (!c->woken) pthread_cond_timedwait(&c->f->changed, &c->f->lock, &ts);
    c->woken = false;
    pthread_mutex_unlock(&c->f->lock);
    return XDT_OK;
}

static void inproc_wake(void *vctx) {
    inproc_ctx *c = vctx;
    pthread_mutex_lock(&c->f->lock);
    c->woken = true;
    pthread_cond_broadcast(&c->f->changed);
    pthread_mutex_unlock(&c->f->lock);
}

static bool inproc_can_access(void *vctx, xdt_mem_type mem) {
    (void)vctx;
    return mem == XDT_MEM_HOST || mem == XDT_MEM_PINNED_HOST;
}

static xdt_status inproc_local_address(void *vctx, void *buf, size_t cap, size_t *len) {
    inproc_ctx *c = vctx;
    if (cap < sizeof(int)) return XDT_ERR_INVALID_ARG;
    memcpy(buf, &c->t.rank, sizeof(int));
    *len = sizeof(int);
    return XDT_OK;
}

static xdt_status inproc_connect(void *vctx, int peer, const void *addr, size_t len) {
    (void)vctx;
    (void)peer;
    (void)addr;
    (void)len;
    return XDT_OK; /* every rank of a fabric is reachable */
}

static void inproc_destroy(void *vctx) {
    inproc_ctx *c = vctx;
    xdt_inproc_fabric *f = c->f;
    pthread_mutex_lock(&f->lock);
    inproc_rank *me = &f->ranks[c->t.rank];
    me->closed = true;
    drop_messages(me);
    /* receives other ranks posted from us can never complete now */
    for (int r = 0; r < f->world_size; r++)
        for (xdt_request **pp = &f->ranks[r].posted; *pp;) {
            if ((*pp)->peer == c->t.rank) {
                xdt_request *q = *pp;
                *pp = q->next;
                fail_request(q, "peer closed");
            } else {
                pp = &(*pp)->next;
            }
        }
    for (xdt_request *q = me->posted, *n; q; q = n) {
        n = q->next;
        free(q);
    }
    me->posted = NULL;
    pthread_cond_broadcast(&f->changed);
    pthread_mutex_unlock(&f->lock);
    free(c);
}

static const xdt_transport_ops inproc_ops = {
    .name = "inproc",
    .destroy = inproc_destroy,
    .local_address = inproc_local_address,
    .connect = inproc_connect,
    .can_access = inproc_can_access,
    .isend = inproc_isend,
    .irecv = inproc_irecv,
    .test = inproc_test,
    .cancel = inproc_cancel,
    .progress = inproc_progress,
    .block = inproc_block,
    .wake = inproc_wake,
};

xdt_status xdt_inproc_transport_create(xdt_inproc_fabric *f, int rank, xdt_transport **out) {
    if (rank < 0 || rank >= f->world_size)
        return xdt_fail(XDT_ERR_INVALID_ARG, "inproc: rank %d outside [0, %d)", rank,
                        f->world_size);
    pthread_mutex_lock(&f->lock);
    bool taken = f->ranks[rank].open;
    f->ranks[rank].open = true;
    pthread_mutex_unlock(&f->lock);
    if (taken) return xdt_fail(XDT_ERR_INVALID_ARG, "inproc: rank %d is already open", rank);
    inproc_ctx *c = calloc(1, sizeof *c);
    if (!c) return xdt_fail(XDT_ERR_NO_MEMORY, "inproc: out of memory");
    c->f = f;
    c->t = (xdt_transport){.ops = &inproc_ops, .ctx = c, .rank = rank, .world_size = f->world_size};
    snprintf(c->t.name, sizeof c->t.name, "inproc");
    *out = &c->t;
    return XDT_OK;
}
