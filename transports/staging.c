/* staging.c: device buffers through pinned host memory, as a layer over any transport. */
#include "transports/staging.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct xdt_request {
    bool staged, is_recv;
    int slot;
    void *device_buf;
    xdt_request *inner;
};

typedef struct staging_ctx {
    xdt_transport t;
    xdt_transport *inner;
    xdt_device_copier cp;
    void **pinned;
    bool *busy;
    int slots;
    size_t max_bytes;
} staging_ctx;

static int take_slot(staging_ctx *c) {
    for (int i = 0; i < c->slots; i++)
        if (!c->busy[i]) {
            c->busy[i] = true;
            return i;
        }
    return -1;
}

/* A wrapper request, staged through a slot when `staged`. */
static xdt_status begin(staging_ctx *c, bool staged, bool is_recv, size_t len, int peer,
                        xdt_request **out) {
    xdt_request *r = calloc(1, sizeof *r);
    if (!r) return xdt_fail(XDT_ERR_NO_MEMORY, "staging: out of memory");
    r->staged = staged;
    r->is_recv = is_recv;
    r->slot = -1;
    if (staged) {
        if (len > c->max_bytes) {
            free(r);
            return xdt_fail(XDT_ERR_INVALID_ARG,
                            "rank %d: %s rank %d: %zu bytes of %s memory "
                            "exceed the %zu-byte staging buffers",
                            c->t.rank, is_recv ? "recv from" : "send to", peer, len,
                            xdt_mem_type_name(c->cp.mem), c->max_bytes);
        }
        if ((r->slot = take_slot(c)) < 0) {
            free(r);
            return xdt_fail(XDT_ERR_NO_MEMORY,
                            "rank %d: more than %d staged %s operations in "
                            "flight",
                            c->t.rank, c->slots, xdt_mem_type_name(c->cp.mem));
        }
    }
    *out = r;
    return XDT_OK;
}

static void finish(staging_ctx *c, xdt_request *r) {
    if (r->slot >= 0) c->busy[r->slot] = false;
    free(r);
}

static xdt_status st_isend(void *vctx, int peer, uint64_t tag, const void *buf, size_t len,
                           xdt_mem_type mem, xdt_request **out) {
    staging_ctx *c = vctx;
    const bool staged = mem == c->cp.mem;
    xdt_request *r = NULL;
    xdt_status st = begin(c, staged, false, len, peer, &r);
    if (st) return st;
    if (staged) {
        if ((st = c->cp.to_host(c->cp.ctx, c->pinned[r->slot], buf, len))) {
            finish(c, r);
            return xdt_fail(st, "rank %d: send to rank %d: copying %zu bytes off the device",
                            c->t.rank, peer, len);
        }
        buf = c->pinned[r->slot];
        mem = XDT_MEM_PINNED_HOST;
    }
    if ((st = c->inner->ops->isend(c->inner->ctx, peer, tag, buf, len, mem, &r->inner))) {
        finish(c, r);
        return st;
    }
    *out = r;
    return XDT_OK;
}

static xdt_status st_irecv(void *vctx, int peer, uint64_t tag, void *buf, size_t cap,
                           xdt_mem_type mem, xdt_request **out) {
    staging_ctx *c = vctx;
    const bool staged = mem == c->cp.mem;
    xdt_request *r = NULL;
    xdt_status st = begin(c, staged, true, cap, peer, &r);
    if (st) return st;
    if (staged) {
        r->device_buf = buf;
        buf = c->pinned[r->slot];
        mem = XDT_MEM_PINNED_HOST;
    }
    if ((st = c->inner->ops->irecv(c->inner->ctx, peer, tag, buf, cap, mem, &r->inner))) {
        finish(c, r);
        return st;
    }
    *out = r;
    return XDT_OK;
}

static xdt_status st_test(void *vctx, xdt_request *r, bool *done, xdt_completion *out) {
    staging_ctx *c = vctx;
    xdt_completion inner = {0};
    xdt_status st = c->inner->ops->test(c->inner->ctx, r->inner, done, &inner);
    if (st || !*done) return st;
    if (r->staged && r->is_recv && inner.status == XDT_OK && inner.bytes) {
        xdt_status cs = c->cp.to_device(c->cp.ctx, r->device_buf, c->pinned[r->slot], inner.bytes);
        if (cs)
            inner.status = xdt_fail(cs, "rank %d: copying %zu received bytes onto the device",
                                    c->t.rank, inner.bytes);
    }
    if (out) *out = inner;
    finish(c, r);
    return XDT_OK;
}

static void st_cancel(void *vctx, xdt_request *r) {
    staging_ctx *c = vctx;
    c->inner->ops->cancel(c->inner->ctx, r->inner);
    finish(c, r);
}

static int st_progress(void *vctx) {
    staging_ctx *c = vctx;
    return c->inner->ops->progress(c->inner->ctx);
}

static xdt_status st_block(void *vctx, int timeout_ms) {
    staging_ctx *c = vctx;
    return c->inner->ops->block ? c->inner->ops->block(c->inner->ctx, timeout_ms) : XDT_OK;
}

static bool st_can_access(void *vctx, xdt_mem_type mem) {
    staging_ctx *c = vctx;
    return mem == c->cp.mem || c->inner->ops->can_access(c->inner->ctx, mem);
}

static xdt_status st_local_address(void *vctx, void *buf, size_t cap, size_t *len) {
    staging_ctx *c = vctx;
    return c->inner->ops->local_address(c->inner->ctx, buf, cap, len);
}

static xdt_status st_connect(void *vctx, int peer, const void *addr, size_t len) {
    staging_ctx *c = vctx;
    return c->inner->ops->connect(c->inner->ctx, peer, addr, len);
}

static void st_fail_peer(void *vctx, int peer, const char *why) {
    staging_ctx *c = vctx;
    if (c->inner->ops->fail_peer) c->inner->ops->fail_peer(c->inner->ctx, peer, why);
}

static void st_destroy(void *vctx) {
    staging_ctx *c = vctx;
    for (int i = 0; c->pinned && i < c->slots; i++)
        if (c->pinned[i]) c->cp.free_pinned(c->cp.ctx, c->pinned[i]);
    xdt_transport_destroy(c->inner);
    free(c->pinned);
    free(c->busy);
    free(c);
}

static const xdt_transport_ops staging_ops = {
    .name = "staged",
    .destroy = st_destroy,
    .local_address = st_local_address,
    .connect = st_connect,
    .can_access = st_can_access,
    .isend = st_isend,
    .irecv = st_irecv,
    .test = st_test,
    .cancel = st_cancel,
    .progress = st_progress,
    .block = st_block,
    .fail_peer = st_fail_peer,
};

xdt_status xdt_staging_create(xdt_transport *inner, const xdt_device_copier *copier, int slots,
                              size_t max_bytes, xdt_transport **out) {
    if (slots < 1 || !copier->to_host || !copier->to_device || !copier->alloc_pinned ||
        !copier->free_pinned)
        return xdt_fail(XDT_ERR_INVALID_ARG, "staging: needs slots and all four copier calls");
    staging_ctx *c = calloc(1, sizeof *c);
    if (c) {
        c->pinned = calloc((size_t)slots, sizeof *c->pinned);
        c->busy = calloc((size_t)slots, sizeof *c->busy);
    }
    if (!c || !c->pinned || !c->busy) {
        if (c) {
            free(c->pinned);
            free(c->busy);
        }
        free(c);
        return xdt_fail(XDT_ERR_NO_MEMORY, "staging: out of memory");
    }
    c->cp = *copier;
    c->slots = slots;
    c->max_bytes = max_bytes;
    for (int i = 0; i < slots; i++) {
        xdt_status st = copier->alloc_pinned(copier->ctx, max_bytes ? max_bytes : 1, &c->pinned[i]);
        if (st) {
            c->inner = NULL;
            for (int j = 0; j < i; j++)
                copier->free_pinned(copier->ctx, c->pinned[j]);
            free(c->pinned);
            free(c->busy);
            free(c);
            return xdt_fail(st, "staging: cannot allocate %d pinned buffers of %zu bytes", slots,
                            max_bytes);
        }
    }
    c->inner = inner;
    c->t = (xdt_transport){
        .ops = &staging_ops, .ctx = c, .rank = inner->rank, .world_size = inner->world_size};
    snprintf(c->t.name, sizeof c->t.name, "%s", inner->name);
    *out = &c->t;
    return XDT_OK;
}
