/* nccl_group.c: NCCL communicators for groups of CUDA ranks: the unique id through the bootstrap
 * store, non-blocking init and waits bounded by the group's timeout, ncclResult_t translated to
 * xdt statuses. */
#include "transports/nccl/nccl_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime.h>
#include <nccl.h>

#include "core/log.h"
#include "transports/transport.h"

struct xdt_nccl_group {
    ncclComm_t comm; /* NULL once aborted */
    char name[64];
    int member, size, rank, device, timeout_ms;
    bool failed; /* an error or a timeout: the communicator is gone, calls are refused */
};

bool xdt_nccl_built(void) {
    return true;
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Sleeps between polls: 20 us at first, doubling to 1 ms, so a short collective is seen at once
 * and a long wait costs little CPU. */
static void nap(long *ns) {
    struct timespec ts = {0, *ns};
    nanosleep(&ts, NULL);
    if (*ns < 1000 * 1000) *ns *= 2;
}

static xdt_status from_nccl(ncclResult_t r) {
    switch (r) {
    case ncclSuccess:
        return XDT_OK;
    case ncclUnhandledCudaError:
    case ncclInternalError:
        return XDT_ERR_DEVICE;
    case ncclSystemError:
    case ncclRemoteError:
        return XDT_ERR_PEER;
    case ncclInvalidArgument:
        return XDT_ERR_INVALID_ARG;
    case ncclInvalidUsage:
        return XDT_ERR_CONFIG;
    default:
        return XDT_ERR_DEVICE;
    }
}

/* "nccl group dp-p1, rank 3 (member 1 of 2, cuda:1): <what>: <NCCL's words> (<last error>)" */
static xdt_status group_fail(const xdt_nccl_group *g, ncclResult_t r, const char *what) {
    const char *last = ncclGetLastError(g->comm);
    const bool more = last && last[0];
    return xdt_fail(from_nccl(r), "nccl group %s, rank %d (member %d of %d, cuda:%d): %s: %s%s%s%s",
                    g->name, g->rank, g->member, g->size, g->device, what, ncclGetErrorString(r),
                    more ? " (" : "", more ? last : "", more ? ")" : "");
}

/* Gives the communicator up: its resources go, further calls are refused. */
static void abort_comm(xdt_nccl_group *g) {
    if (g->comm) ncclCommAbort(g->comm);
    g->comm = NULL;
    g->failed = true;
}

/* Follows a non-blocking call that answered ncclInProgress until it settles or the deadline
 * passes (*timed_out). Returns the call's final result. */
static ncclResult_t settle(xdt_nccl_group *g, ncclResult_t r, double deadline, bool *timed_out) {
    long ns = 20 * 1000;
    *timed_out = false;
    while (r == ncclInProgress) {
        if (now_ms() > deadline) {
            *timed_out = true;
            return r;
        }
        nap(&ns);
        ncclResult_t async = ncclSuccess;
        const ncclResult_t q = ncclCommGetAsyncError(g->comm, &async);
        r = q != ncclSuccess ? q : async;
    }
    return r;
}

static int timeout_of(const xdt_nccl_group *g) {
    return g->timeout_ms > 0 ? g->timeout_ms : XDT_DEFAULT_TIMEOUT_MS;
}

static xdt_status set_device(const xdt_nccl_group *g) {
    const cudaError_t ce = cudaSetDevice(g->device);
    if (ce != cudaSuccess)
        return xdt_fail(XDT_ERR_DEVICE, "nccl group %s, rank %d: cudaSetDevice(%d): %s", g->name,
                        g->rank, g->device, cudaGetErrorString(ce));
    return XDT_OK;
}

/* The id: drawn by the first member and published under the group's key; read by the others. */
static xdt_status exchange_id(xdt_nccl_group *g, xdt_store *store, ncclUniqueId *id) {
    char key[128];
    snprintf(key, sizeof key, "xdt/nccl/%s/id", g->name);
    if (g->member == 0) {
        const ncclResult_t r = ncclGetUniqueId(id);
        if (r != ncclSuccess) return group_fail(g, r, "ncclGetUniqueId");
        return xdt_store_set(store, key, id, sizeof *id);
    }
    size_t len = 0;
    xdt_status st = xdt_store_get(store, key, id, sizeof *id, &len, timeout_of(g));
    if (st) return st;
    if (len != sizeof *id)
        return xdt_fail(XDT_ERR_FORMAT,
                        "nccl group %s, rank %d: the store's %s holds %zu bytes, an NCCL id %zu",
                        g->name, g->rank, key, len, sizeof *id);
    return XDT_OK;
}

xdt_status xdt_nccl_group_create(xdt_store *store, const xdt_nccl_group_config *cfg,
                                 xdt_nccl_group **out) {
    const char *name = cfg->name ? cfg->name : "?";
    if (!store)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s, rank %d: no bootstrap store for its id", name, cfg->rank);
    if (!cfg->ranks || cfg->size < 1 || cfg->size > XDT_NCCL_MAX_MEMBERS || strlen(name) >= 64 ||
        cfg->cuda_device < 0)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s, rank %d: needs 1..%d members (got %d), a name under 64 "
                        "characters and a CUDA device index (got %d)",
                        name, cfg->rank, XDT_NCCL_MAX_MEMBERS, cfg->size, cfg->cuda_device);
    int member = -1;
    for (int i = 0; i < cfg->size; i++)
        if (cfg->ranks[i] == cfg->rank) member = i;
    if (member < 0)
        return xdt_fail(XDT_ERR_INVALID_ARG, "nccl group %s: rank %d is not one of its %d members",
                        name, cfg->rank, cfg->size);
    xdt_nccl_group *g = calloc(1, sizeof *g);
    if (!g) return xdt_fail(XDT_ERR_NO_MEMORY, "nccl group %s: out of memory", name);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->member = member;
    g->size = cfg->size;
    g->rank = cfg->rank;
    g->device = cfg->cuda_device;
    g->timeout_ms = cfg->timeout_ms;
    ncclUniqueId id;
    xdt_status st;
    if ((st = set_device(g)) || (st = exchange_id(g, store, &id))) goto err;
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0; /* init returns at once; settle() bounds the wait */
    const double deadline = now_ms() + timeout_of(g);
    ncclResult_t r = ncclCommInitRankConfig(&g->comm, g->size, id, g->member, &config);
    bool timed_out = false;
    if (g->comm) r = settle(g, r, deadline, &timed_out);
    if (timed_out) {
        abort_comm(g);
        st = xdt_fail(XDT_ERR_TIMEOUT,
                      "nccl group %s, rank %d (member %d of %d, cuda:%d): not every member joined "
                      "within %d ms",
                      g->name, g->rank, g->member, g->size, g->device, timeout_of(g));
        goto err;
    }
    if (r != ncclSuccess) {
        st = group_fail(g, r, "ncclCommInitRank");
        abort_comm(g);
        goto err;
    }
    *out = g;
    return XDT_OK;
err:
    xdt_nccl_group_destroy(g);
    return st;
}

void xdt_nccl_group_destroy(xdt_nccl_group *g) {
    if (!g) return;
    if (g->comm && !g->failed) {
        /* finish what is queued, then free; a finalize stuck past 5 s (or the group's shorter
         * timeout) is aborted: at teardown nothing is lost by giving up */
        bool timed_out = false;
        const int bound = timeout_of(g) < 5000 ? timeout_of(g) : 5000;
        ncclResult_t r = ncclCommFinalize(g->comm);
        r = settle(g, r, now_ms() + bound, &timed_out);
        if (timed_out || r != ncclSuccess)
            abort_comm(g);
        else
            ncclCommDestroy(g->comm);
    } else {
        abort_comm(g);
    }
    free(g);
}

static xdt_status refuse_failed(const xdt_nccl_group *g) {
    return xdt_fail(XDT_ERR_PEER,
                    "nccl group %s, rank %d: the group failed earlier; no more collectives",
                    g->name, g->rank);
}

xdt_status xdt_nccl_allreduce_sum(xdt_nccl_group *g, float *buf, size_t n, void *stream) {
    if (g->failed) return refuse_failed(g);
    if (n == 0) return XDT_OK;
    xdt_status st = set_device(g);
    if (st) return st;
    bool timed_out = false;
    ncclResult_t r =
        ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, g->comm, (cudaStream_t)stream);
    r = settle(g, r, now_ms() + timeout_of(g), &timed_out);
    if (timed_out) {
        abort_comm(g);
        return xdt_fail(XDT_ERR_TIMEOUT,
                        "nccl group %s, rank %d (member %d of %d): ncclAllReduce of %zu floats "
                        "was not queued within %d ms",
                        g->name, g->rank, g->member, g->size, n, timeout_of(g));
    }
    if (r != ncclSuccess) {
        st = group_fail(g, r, "ncclAllReduce");
        abort_comm(g);
        return st;
    }
    return XDT_OK;
}

xdt_status xdt_nccl_group_wait(xdt_nccl_group *g, void *stream) {
    if (g->failed) return refuse_failed(g);
    const double deadline = now_ms() + timeout_of(g);
    long ns = 20 * 1000;
    for (;;) {
        const cudaError_t ce = cudaStreamQuery((cudaStream_t)stream);
        ncclResult_t async = ncclSuccess;
        const ncclResult_t q = ncclCommGetAsyncError(g->comm, &async);
        const ncclResult_t r = q != ncclSuccess ? q : async;
        if (r != ncclSuccess && r != ncclInProgress) {
            const xdt_status st = group_fail(g, r, "all-reduce");
            abort_comm(g);
            return st;
        }
        if (ce == cudaSuccess) return XDT_OK;
        if (ce != cudaErrorNotReady) {
            abort_comm(g);
            return xdt_fail(XDT_ERR_DEVICE,
                            "nccl group %s, rank %d (member %d of %d, cuda:%d): the stream "
                            "failed: %s",
                            g->name, g->rank, g->member, g->size, g->device,
                            cudaGetErrorString(ce));
        }
        if (now_ms() > deadline) {
            abort_comm(g);
            return xdt_fail(XDT_ERR_TIMEOUT,
                            "nccl group %s, rank %d (member %d of %d, cuda:%d): the all-reduce "
                            "did not finish within %d ms (a member stopped answering)",
                            g->name, g->rank, g->member, g->size, g->device, timeout_of(g));
        }
        nap(&ns);
    }
}

const char *xdt_nccl_group_name(const xdt_nccl_group *g) {
    return g->name;
}

int xdt_nccl_group_member(const xdt_nccl_group *g) {
    return g->member;
}
