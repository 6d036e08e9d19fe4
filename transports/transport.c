/* transport.c: argument checks and blocking helpers over any transport backend. */
#include "transports/transport.h"

#include <stdio.h>
#include <time.h>

#include "core/log.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

void xdt_transport_wake(xdt_transport *t) {
    if (t && t->ops->wake) t->ops->wake(t->ctx);
}

void xdt_transport_destroy(xdt_transport *t) {
    if (t) t->ops->destroy(t->ctx); /* the backend frees t with its context */
}

static xdt_status check_args(xdt_transport *t, const char *op, int peer, uint64_t tag,
                             xdt_mem_type mem) {
    if (peer < 0 || peer >= t->world_size || peer == t->rank)
        return xdt_fail(XDT_ERR_INVALID_ARG, "%s: rank %d: peer %d is not another rank of %d", op,
                        t->rank, peer, t->world_size);
    if (tag & ~XDT_TAG_MASK)
        return xdt_fail(XDT_ERR_INVALID_ARG, "%s: rank %d: tag 0x%llx has more than %d bits", op,
                        t->rank, (unsigned long long)tag, XDT_TAG_BITS);
    if (!t->ops->can_access(t->ctx, mem))
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "%s: transport %s cannot read %s memory; stage it "
                        "through pinned host memory",
                        op, t->name, xdt_mem_type_name(mem));
    return XDT_OK;
}

xdt_status xdt_isend(xdt_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                     xdt_mem_type mem, xdt_request **req) {
    xdt_status st = check_args(t, "send", peer, tag, mem);
    return st ? st : t->ops->isend(t->ctx, peer, tag, buf, len, mem, req);
}

xdt_status xdt_irecv(xdt_transport *t, int peer, uint64_t tag, void *buf, size_t cap,
                     xdt_mem_type mem, xdt_request **req) {
    xdt_status st = check_args(t, "recv", peer, tag, mem);
    return st ? st : t->ops->irecv(t->ctx, peer, tag, buf, cap, mem, req);
}

xdt_status xdt_test(xdt_transport *t, xdt_request *req, bool *done, xdt_completion *out) {
    t->ops->progress(t->ctx);
    return t->ops->test(t->ctx, req, done, out);
}

int xdt_transport_progress(xdt_transport *t) {
    return t->ops->progress(t->ctx);
}

xdt_status xdt_transport_block(xdt_transport *t, int timeout_ms) {
    if (t->ops->block) return t->ops->block(t->ctx, timeout_ms);
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, NULL);
    return XDT_OK;
}

void xdt_cancel(xdt_transport *t, xdt_request *req) {
    if (req) t->ops->cancel(t->ctx, req);
}

/* Polls this many idle rounds (a few tens of microseconds) before sleeping in the backend:
 * a busy link keeps streaming without a wake-up per event, an idle one costs no CPU. */
#define XDT_SPIN_ROUNDS 256

xdt_status xdt_wait(xdt_transport *t, xdt_request *req, int timeout_ms, const char *what,
                    xdt_completion *out) {
    const double deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    int idle = 0;
    for (;;) {
        bool done = false;
        int events = t->ops->progress(t->ctx);
        xdt_status st = t->ops->test(t->ctx, req, &done, out);
        if (st != XDT_OK) return st;
        if (done) return XDT_OK;
        idle = events > 0 ? 0 : idle + 1;
        if (idle < XDT_SPIN_ROUNDS) continue;
        idle = 0;
        double left = deadline < 0 ? 100 : deadline - now_ms();
        if (left <= 0) {
            t->ops->cancel(t->ctx, req);
            return xdt_fail(XDT_ERR_TIMEOUT, "rank %d: %s: no answer within %d ms", t->rank, what,
                            timeout_ms);
        }
        int nap = left > 100 ? 100 : (int)left + 1;
        if (t->ops->block) {
            if ((st = t->ops->block(t->ctx, nap)) != XDT_OK) return st;
        } else {
            struct timespec ts = {0, 50 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

xdt_status xdt_send(xdt_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                    int timeout_ms) {
    xdt_request *req = NULL;
    xdt_completion c;
    char what[96];
    snprintf(what, sizeof what, "send to rank %d tag 0x%llx", peer, (unsigned long long)tag);
    xdt_status st = xdt_isend(t, peer, tag, buf, len, XDT_MEM_HOST, &req);
    if (st == XDT_OK) st = xdt_wait(t, req, timeout_ms, what, &c);
    if (st == XDT_OK && c.status != XDT_OK) st = c.status;
    return st;
}

xdt_status xdt_recv(xdt_transport *t, int peer, uint64_t tag, void *buf, size_t cap,
                    size_t *received, int timeout_ms) {
    xdt_request *req = NULL;
    xdt_completion c = {0};
    char what[96];
    snprintf(what, sizeof what, "recv from rank %d tag 0x%llx", peer, (unsigned long long)tag);
    xdt_status st = xdt_irecv(t, peer, tag, buf, cap, XDT_MEM_HOST, &req);
    if (st == XDT_OK) st = xdt_wait(t, req, timeout_ms, what, &c);
    if (st == XDT_OK && c.status != XDT_OK) st = c.status;
    if (st == XDT_OK && received) *received = c.bytes;
    return st;
}
