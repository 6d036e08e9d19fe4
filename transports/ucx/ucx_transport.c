/* ucx_transport.c: the UCX backend: ucp_tag_send_nbx / ucp_tag_recv_nbx with completion
 * callbacks into a fixed pool of requests, endpoints with peer error handling, and sleeping on
 * the worker's event fd. The 64-bit UCX tag carries the source rank in its top 16 bits and the
 * user tag in the low 48, so a receive matches both. */
#include "transports/ucx/ucx_transport.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucp/api/ucp.h>

#include "core/log.h"

struct xdt_request {
    struct ucx_ctx *owner;
    void *ucx_req; /* UCX's request while in flight, NULL once completed */
    bool in_use, done, is_recv;
    bool cancelling; /* cancelled by us: its UCS_ERR_CANCELED is expected */
    int peer;
    uint64_t tag;
    size_t len;
    ucs_status_t ucs;
    xdt_completion c;
    struct xdt_request *next_free;
};

/* What UCX hands back to the endpoint error handler. */
typedef struct ep_err_arg {
    struct ucx_ctx *c;
    int peer;
} ep_err_arg;

typedef struct ucx_peer {
    ucp_ep_h ep;
    bool failed;
    char why[128];
    ep_err_arg err_arg;
} ucx_peer;

typedef struct ucx_ctx {
    xdt_transport t;
    ucp_context_h context;
    ucp_worker_h worker;
    int efd;
    int wake_fd; /* eventfd other threads write to end a block() */
    ucx_peer *peers;
    xdt_request *pool, *free_list;
    int pool_size;
    bool peer_errors; /* endpoints report peer failures (tcp); shared memory cannot */
    bool closing;     /* endpoints are being closed: their errors are expected */
} ucx_ctx;

static uint64_t ucx_tag(int src, uint64_t tag) {
    return ((uint64_t)src << XDT_TAG_BITS) | (tag & XDT_TAG_MASK);
}

static xdt_status from_ucs(ucs_status_t s) {
    switch (s) {
    case UCS_OK:
        return XDT_OK;
    case UCS_ERR_NO_MEMORY:
        return XDT_ERR_NO_MEMORY;
    case UCS_ERR_MESSAGE_TRUNCATED:
        return XDT_ERR_FORMAT;
    case UCS_ERR_CANCELED:
        return XDT_ERR_PEER;
    case UCS_ERR_TIMED_OUT:
        return XDT_ERR_TIMEOUT;
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_UNREACHABLE:
        return XDT_ERR_PEER;
    default:
        return XDT_ERR_IO;
    }
}

static xdt_request *take_request(ucx_ctx *c) {
    xdt_request *r = c->free_list;
    if (!r) return NULL;
    c->free_list = r->next_free;
    memset(r, 0, sizeof *r);
    r->owner = c;
    r->in_use = true;
    return r;
}

static void release_request(ucx_ctx *c, xdt_request *r) {
    if (r->ucx_req) ucp_request_free(r->ucx_req);
    r->ucx_req = NULL;
    r->in_use = false;
    r->next_free = c->free_list;
    c->free_list = r;
}

/* Turns a finished UCX status into the request's completion, reporting failures once. */
static void finish(xdt_request *r, ucs_status_t s, size_t len) {
    ucx_ctx *c = r->owner;
    r->done = true;
    r->ucs = s;
    r->c.bytes = len;
    r->c.status = from_ucs(s);
    if (s == UCS_OK || r->cancelling) return;
    ucx_peer *p = &c->peers[r->peer];
    if (s == UCS_ERR_MESSAGE_TRUNCATED)
        xdt_log_error("rank %d: recv from rank %d tag 0x%llx: message larger than the %zu-byte "
                      "buffer",
                      c->t.rank, r->peer, (unsigned long long)r->tag, r->len);
    else if (s != UCS_ERR_CANCELED || !p->failed)
        xdt_log_error("rank %d: %s rank %d tag 0x%llx failed: %s", c->t.rank,
                      r->is_recv ? "recv from" : "send to", r->peer, (unsigned long long)r->tag,
                      p->failed ? p->why : ucs_status_string(s));
    if (p->failed) r->c.status = XDT_ERR_PEER;
}

static void send_cb(void *request, ucs_status_t status, void *user_data) {
    (void)request;
    xdt_request *r = user_data;
    finish(r, status, r->len);
}

static void recv_cb(void *request, ucs_status_t status, const ucp_tag_recv_info_t *info,
                    void *user_data) {
    (void)request;
    xdt_request *r = user_data;
    finish(r, status, status == UCS_OK ? info->length : 0);
}

/* Fails every request still waiting on `peer`: a dead peer will never answer. */
static void fail_waiting_on(ucx_ctx *c, int peer) {
    for (int i = 0; i < c->pool_size; i++) {
        xdt_request *r = &c->pool[i];
        if (r->in_use && !r->done && r->peer == peer && r->ucx_req)
            ucp_request_cancel(c->worker, r->ucx_req); /* its callback reports the failure */
    }
}

static void ep_error_cb(void *arg, ucp_ep_h ep, ucs_status_t status) {
    (void)ep;
    ep_err_arg *a = arg;
    ucx_peer *p = &a->c->peers[a->peer];
    if (a->c->closing) return;
    if (!p->failed) {
        p->failed = true;
        snprintf(p->why, sizeof p->why, "connection to rank %d lost (%s)", a->peer,
                 ucs_status_string(status));
        /* reported by the operations it fails; a peer that closes after its last message is
         * not an error */
        xdt_log_debug("rank %d: %s", a->c->t.rank, p->why);
    }
    fail_waiting_on(a->c, a->peer);
}

static xdt_status ucx_isend(void *vctx, int peer, uint64_t tag, const void *buf, size_t len,
                            xdt_mem_type mem, xdt_request **out) {
    (void)mem; /* host memory only (can_access) */
    ucx_ctx *c = vctx;
    ucx_peer *p = &c->peers[peer];
    if (!p->ep)
        return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: send to rank %d before connecting",
                        c->t.rank, peer);
    if (p->failed)
        return xdt_fail(XDT_ERR_PEER, "rank %d: send to rank %d: %s", c->t.rank, peer, p->why);
    xdt_request *r = take_request(c);
    if (!r)
        return xdt_fail(XDT_ERR_NO_MEMORY, "rank %d: more than %d requests in flight", c->t.rank,
                        c->pool_size);
    r->peer = peer;
    r->tag = tag;
    r->len = len;
    ucp_request_param_t prm = {
        .op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
        .cb.send = send_cb,
        .user_data = r,
    };
    ucs_status_ptr_t sp = ucp_tag_send_nbx(p->ep, buf, len, ucx_tag(c->t.rank, tag), &prm);
    if (sp == NULL) {
        finish(r, UCS_OK, len);
    } else if (UCS_PTR_IS_ERR(sp)) {
        ucs_status_t s = UCS_PTR_STATUS(sp);
        release_request(c, r);
        return xdt_fail(from_ucs(s), "rank %d: send to rank %d tag 0x%llx: %s", c->t.rank, peer,
                        (unsigned long long)tag, ucs_status_string(s));
    } else if (!r->done) {
        r->ucx_req = sp;
    } else {
        ucp_request_free(sp);
    }
    *out = r;
    return XDT_OK;
}

static xdt_status ucx_irecv(void *vctx, int peer, uint64_t tag, void *buf, size_t cap,
                            xdt_mem_type mem, xdt_request **out) {
    (void)mem; /* host memory only (can_access) */
    ucx_ctx *c = vctx;
    ucx_peer *p = &c->peers[peer];
    if (p->failed)
        return xdt_fail(XDT_ERR_PEER, "rank %d: recv from rank %d: %s", c->t.rank, peer, p->why);
    xdt_request *r = take_request(c);
    if (!r)
        return xdt_fail(XDT_ERR_NO_MEMORY, "rank %d: more than %d requests in flight", c->t.rank,
                        c->pool_size);
    r->is_recv = true;
    r->peer = peer;
    r->tag = tag;
    r->len = cap;
    ucp_request_param_t prm = {
        .op_attr_mask =
            UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL,
        .cb.recv = recv_cb,
        .user_data = r,
    };
    ucs_status_ptr_t sp =
        ucp_tag_recv_nbx(c->worker, buf, cap, ucx_tag(peer, tag), UINT64_MAX, &prm);
    if (UCS_PTR_IS_ERR(sp)) {
        ucs_status_t s = UCS_PTR_STATUS(sp);
        release_request(c, r);
        return xdt_fail(from_ucs(s), "rank %d: recv from rank %d tag 0x%llx: %s", c->t.rank, peer,
                        (unsigned long long)tag, ucs_status_string(s));
    }
    if (r->done) {
        if (sp) ucp_request_free(sp);
    } else {
        r->ucx_req = sp;
    }
    *out = r;
    return XDT_OK;
}

static xdt_status ucx_test(void *vctx, xdt_request *r, bool *done, xdt_completion *out) {
    ucx_ctx *c = vctx;
    *done = r->done;
    if (r->done) {
        if (out) *out = r->c;
        release_request(c, r);
    }
    return XDT_OK;
}

static void ucx_cancel(void *vctx, xdt_request *r) {
    ucx_ctx *c = vctx;
    if (!r->done && r->ucx_req) {
        r->cancelling = true;
        ucp_request_cancel(c->worker, r->ucx_req);
        while (!r->done)
            ucp_worker_progress(c->worker);
    }
    release_request(c, r);
}

static int ucx_progress(void *vctx) {
    ucx_ctx *c = vctx;
    return (int)ucp_worker_progress(c->worker);
}

static xdt_status ucx_block(void *vctx, int timeout_ms) {
    ucx_ctx *c = vctx;
    ucs_status_t s = ucp_worker_arm(c->worker);
    if (s == UCS_ERR_BUSY) return XDT_OK; /* events are pending: go progress them */
    if (s != UCS_OK)
        return xdt_fail(XDT_ERR_IO, "rank %d: ucp_worker_arm: %s", c->t.rank, ucs_status_string(s));
    struct pollfd pfd[2] = {{.fd = c->efd, .events = POLLIN}, {.fd = c->wake_fd, .events = POLLIN}};
    if (poll(pfd, 2, timeout_ms) > 0 && (pfd[1].revents & POLLIN)) {
        uint64_t n;
        if (read(c->wake_fd, &n, sizeof n) < 0) { /* nothing to do: another read got it */
        }
    }
    return XDT_OK;
}

static void ucx_wake(void *vctx) {
    ucx_ctx *c = vctx;
    const uint64_t one = 1;
    if (write(c->wake_fd, &one, sizeof one) < 0) { /* the counter is full: already awake */
    }
}

static bool ucx_can_access(void *vctx, xdt_mem_type mem) {
    (void)vctx;
    /* Debian's UCX is built without CUDA or ROCm support */
    return mem == XDT_MEM_HOST || mem == XDT_MEM_PINNED_HOST;
}

static xdt_status ucx_local_address(void *vctx, void *buf, size_t cap, size_t *len) {
    ucx_ctx *c = vctx;
    ucp_address_t *addr = NULL;
    size_t n = 0;
    ucs_status_t s = ucp_worker_get_address(c->worker, &addr, &n);
    if (s != UCS_OK)
        return xdt_fail(XDT_ERR_IO, "rank %d: ucp_worker_get_address: %s", c->t.rank,
                        ucs_status_string(s));
    xdt_status st = XDT_OK;
    if (n > cap)
        st = xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: UCX address of %zu bytes exceeds %zu",
                      c->t.rank, n, cap);
    else {
        memcpy(buf, addr, n);
        *len = n;
    }
    ucp_worker_release_address(c->worker, addr);
    return st;
}

static xdt_status ucx_connect(void *vctx, int peer, const void *addr, size_t len) {
    ucx_ctx *c = vctx;
    (void)len;
    if (peer < 0 || peer >= c->t.world_size || c->peers[peer].ep)
        return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: cannot connect to rank %d", c->t.rank, peer);
    ep_err_arg *arg = &c->peers[peer].err_arg;
    *arg = (ep_err_arg){c, peer};
    ucp_ep_params_t ep = {
        .field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                      UCP_EP_PARAM_FIELD_ERR_HANDLER,
        .address = addr,
        .err_mode = c->peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE,
        .err_handler = {.cb = ep_error_cb, .arg = arg},
    };
    ucs_status_t s = ucp_ep_create(c->worker, &ep, &c->peers[peer].ep);
    if (s != UCS_OK)
        return xdt_fail(XDT_ERR_PEER, "rank %d: cannot reach rank %d: %s", c->t.rank, peer,
                        ucs_status_string(s));
    return XDT_OK;
}

static void ucx_fail_peer(void *vctx, int peer, const char *why) {
    ucx_ctx *c = vctx;
    ucx_peer *p = &c->peers[peer];
    if (p->failed) return;
    p->failed = true;
    snprintf(p->why, sizeof p->why, "%s", why);
    fail_waiting_on(c, peer);
}

static void ucx_destroy(void *vctx) {
    ucx_ctx *c = vctx;
    c->closing = true;
    for (int i = 0; i < c->pool_size; i++)
        if (c->pool[i].in_use && !c->pool[i].done && c->pool[i].ucx_req) ucx_cancel(c, &c->pool[i]);
    for (int p = 0; p < c->t.world_size; p++) {
        if (!c->peers[p].ep) continue;
        ucp_request_param_t prm = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
                                   .flags = UCP_EP_CLOSE_FLAG_FORCE};
        ucs_status_ptr_t sp = ucp_ep_close_nbx(c->peers[p].ep, &prm);
        if (sp && !UCS_PTR_IS_ERR(sp)) {
            while (ucp_request_check_status(sp) == UCS_INPROGRESS)
                ucp_worker_progress(c->worker);
            ucp_request_free(sp);
        }
    }
    if (c->worker) ucp_worker_destroy(c->worker);
    if (c->context) ucp_cleanup(c->context);
    if (c->wake_fd >= 0) close(c->wake_fd);
    free(c->peers);
    free(c->pool);
    free(c);
}

static const xdt_transport_ops ucx_ops = {
    .name = "ucx",
    .destroy = ucx_destroy,
    .local_address = ucx_local_address,
    .connect = ucx_connect,
    .can_access = ucx_can_access,
    .isend = ucx_isend,
    .irecv = ucx_irecv,
    .test = ucx_test,
    .cancel = ucx_cancel,
    .progress = ucx_progress,
    .block = ucx_block,
    .fail_peer = ucx_fail_peer,
    .wake = ucx_wake,
};

xdt_status xdt_ucx_transport_create(int rank, int world_size, const xdt_ucx_options *opts,
                                    xdt_transport **out) {
    xdt_ucx_options defaults = {0};
    if (!opts) opts = &defaults;
    if (world_size < 1 || world_size > XDT_MAX_RANKS || rank < 0 || rank >= world_size)
        return xdt_fail(XDT_ERR_INVALID_ARG, "ucx: rank %d of world size %d", rank, world_size);
    ucx_ctx *c = calloc(1, sizeof *c);
    if (!c) return xdt_fail(XDT_ERR_NO_MEMORY, "ucx: out of memory");
    c->t = (xdt_transport){.ops = &ucx_ops, .ctx = c, .rank = rank, .world_size = world_size};
    snprintf(c->t.name, sizeof c->t.name, "ucx");
    c->pool_size = opts->max_requests > 0 ? opts->max_requests : 4096;
    /* UCX's shared-memory transports have no peer failure handler: endpoints that ask for one
     * cannot use them. Ask only when the transports named include a network one; otherwise a
     * dead peer is found by the waiting call's timeout. */
    const char *tls = opts->tls ? opts->tls : getenv("UCX_TLS");
    c->peer_errors = !tls || strstr(tls, "tcp") || strstr(tls, "ib") || strstr(tls, "all");
    c->peers = calloc((size_t)world_size, sizeof *c->peers);
    c->pool = calloc((size_t)c->pool_size, sizeof *c->pool);
    c->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    xdt_status st = XDT_ERR_NO_MEMORY;
    if (c->wake_fd < 0) {
        st = xdt_fail(XDT_ERR_IO, "ucx: eventfd: %s", strerror(errno));
        goto err;
    }
    if (!c->peers || !c->pool) {
        xdt_log_error("ucx: out of memory");
        goto err;
    }
    for (int i = c->pool_size - 1; i >= 0; i--) {
        c->pool[i].next_free = c->free_list;
        c->free_list = &c->pool[i];
    }
    ucp_config_t *config = NULL;
    ucs_status_t s = ucp_config_read(NULL, NULL, &config);
    if (s == UCS_OK && opts->tls) s = ucp_config_modify(config, "TLS", opts->tls);
    char keepalive[32];
    snprintf(keepalive, sizeof keepalive, "%dms",
             opts->heartbeat_ms > 0 ? opts->heartbeat_ms : 5000);
    if (s == UCS_OK) s = ucp_config_modify(config, "KEEPALIVE_INTERVAL", keepalive);
    if (s != UCS_OK) {
        st = xdt_fail(XDT_ERR_CONFIG, "ucx: configuration (TLS '%s'): %s",
                      opts->tls ? opts->tls : "default", ucs_status_string(s));
        if (config) ucp_config_release(config);
        goto err;
    }
    ucp_params_t params = {
        .field_mask = UCP_PARAM_FIELD_FEATURES,
        .features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP,
    };
    s = ucp_init(&params, config, &c->context);
    ucp_config_release(config);
    if (s != UCS_OK) {
        st = xdt_fail(XDT_ERR_IO, "ucx: ucp_init: %s", ucs_status_string(s));
        c->context = NULL;
        goto err;
    }
    ucp_worker_params_t wp = {
        .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
        .thread_mode = UCS_THREAD_MODE_SINGLE,
    };
    if ((s = ucp_worker_create(c->context, &wp, &c->worker)) != UCS_OK) {
        st = xdt_fail(XDT_ERR_IO, "ucx: ucp_worker_create: %s", ucs_status_string(s));
        c->worker = NULL;
        goto err;
    }
    if ((s = ucp_worker_get_efd(c->worker, &c->efd)) != UCS_OK) {
        st = xdt_fail(XDT_ERR_IO, "ucx: ucp_worker_get_efd: %s", ucs_status_string(s));
        goto err;
    }
    *out = &c->t;
    return XDT_OK;
err:
    ucx_destroy(c);
    return st;
}
