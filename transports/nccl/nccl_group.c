/* nccl_group.c: NCCL/RCCL communicators for groups of GPU ranks: the library through nccl_api,
 * the unique id through the bootstrap store, non-blocking init and waits bounded by the group's
 * timeout, the library's results translated to xdt statuses. */
#include "transports/nccl/nccl_group.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "transports/transport.h"

struct xdt_nccl_group {
    const xdt_nccl_api *api;
    xdt_nccl_comm comm; /* NULL once aborted */
    xdt_gpu_stream stream;
    char name[64];
    char device[16]; /* "cuda:1", "hip:0" */
    int member, size, rank, timeout_ms;
    bool failed; /* an error or a timeout: the communicator is gone, calls are refused */
};

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

static xdt_status from_nccl(xdt_nccl_result r) {
    switch (r) {
    case XDT_NCCL_SUCCESS:
        return XDT_OK;
    case XDT_NCCL_UNHANDLED_CUDA_ERROR:
    case XDT_NCCL_INTERNAL_ERROR:
        return XDT_ERR_DEVICE;
    case XDT_NCCL_SYSTEM_ERROR:
    case XDT_NCCL_REMOTE_ERROR:
        return XDT_ERR_PEER;
    case XDT_NCCL_INVALID_ARGUMENT:
        return XDT_ERR_INVALID_ARG;
    case XDT_NCCL_INVALID_USAGE:
        return XDT_ERR_CONFIG;
    default:
        return XDT_ERR_DEVICE;
    }
}

/* "nccl group dp-p1, rank 3 (member 1 of 2, cuda:1): <what>: <the library's words> (<last
 * error>)" */
static xdt_status group_fail(const xdt_nccl_group *g, xdt_nccl_result r, const char *what) {
    const char *last = g->api->get_last_error(g->comm);
    const bool more = last && last[0];
    return xdt_fail(from_nccl(r), "nccl group %s, rank %d (member %d of %d, %s): %s: %s%s%s%s",
                    g->name, g->rank, g->member, g->size, g->device, what,
                    g->api->get_error_string(r), more ? " (" : "", more ? last : "",
                    more ? ")" : "");
}

/* Gives the communicator up: its resources go, further calls are refused. */
static void abort_comm(xdt_nccl_group *g) {
    if (g->comm) g->api->comm_abort(g->comm);
    g->comm = NULL;
    g->failed = true;
}

/* Follows a non-blocking call that answered ncclInProgress until it settles or the deadline
 * passes (*timed_out). Returns the call's final result. */
static xdt_nccl_result settle(xdt_nccl_group *g, xdt_nccl_result r, double deadline,
                              bool *timed_out) {
    long ns = 20 * 1000;
    *timed_out = false;
    while (r == XDT_NCCL_IN_PROGRESS) {
        if (now_ms() > deadline) {
            *timed_out = true;
            return r;
        }
        nap(&ns);
        xdt_nccl_result async = XDT_NCCL_SUCCESS;
        const xdt_nccl_result q = g->api->comm_get_async_error(g->comm, &async);
        r = q != XDT_NCCL_SUCCESS ? q : async;
    }
    return r;
}

static int timeout_of(const xdt_nccl_group *g) {
    return g->timeout_ms > 0 ? g->timeout_ms : XDT_DEFAULT_TIMEOUT_MS;
}

/* The library binds a communicator to the calling thread's current device. */
static xdt_status set_device(const xdt_nccl_group *g) {
    return g->stream.make_current(g->stream.arg);
}

/* The id: drawn by the first member and published under the group's key; read by the others. */
/* The first member's failure to make an id, published in its place ("!" and the reason, under
 * the id's length) so the others fail at once naming it, not after their timeout. */
static void publish_failure(const xdt_nccl_group *g, xdt_store *store, const char *reason) {
    char key[128], value[100];
    snprintf(key, sizeof key, "xdt/nccl/%s/id", g->name);
    snprintf(value, sizeof value, "!%s", reason);
    (void)xdt_store_set(store, key, value, strlen(value));
}

static xdt_status exchange_id(xdt_nccl_group *g, xdt_store *store, xdt_nccl_unique_id *id) {
    char key[128];
    snprintf(key, sizeof key, "xdt/nccl/%s/id", g->name);
    if (g->member == 0) {
        const xdt_nccl_result r = g->api->get_unique_id(id);
        if (r != XDT_NCCL_SUCCESS) {
            publish_failure(g, store, g->api->get_error_string(r));
            return group_fail(g, r, "ncclGetUniqueId");
        }
        return xdt_store_set(store, key, id, sizeof *id);
    }
    char value[sizeof *id + 1];
    size_t len = 0;
    xdt_status st = xdt_store_get(store, key, value, sizeof value, &len, timeout_of(g));
    if (st) return st;
    if (len != sizeof *id && len >= 1 && len < sizeof value && value[0] == '!') {
        value[len] = 0;
        return xdt_fail(XDT_ERR_PEER,
                        "nccl group %s, rank %d: the first member could not make the group's "
                        "id: %s",
                        g->name, g->rank, value + 1);
    }
    if (len != sizeof *id)
        return xdt_fail(XDT_ERR_FORMAT,
                        "nccl group %s, rank %d: the store's %s holds %zu bytes, a unique id %zu",
                        g->name, g->rank, key, len, sizeof *id);
    memcpy(id, value, sizeof *id);
    return XDT_OK;
}

xdt_status xdt_nccl_group_agree(xdt_store *store, const char *name, int member, int size,
                                int timeout_ms, bool usable, int version, const char *reason,
                                bool *all, char *why, size_t cap) {
    *all = false;
    if (!store || !name || size < 1 || member < 0 || member >= size)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s: agreeing needs a store and a member index in [0, %d)",
                        name ? name : "?", size);
    /* the value: "1" and the version code, or "0" and the member's reason */
    char key[128], value[256];
    snprintf(key, sizeof key, "xdt/nccl/%s/usable/%d", name, member);
    if (usable)
        snprintf(value, sizeof value, "1%d", version);
    else
        snprintf(value, sizeof value, "0%s", reason ? reason : "");
    xdt_status st = xdt_store_set(store, key, value, strlen(value));
    const int wait_ms = timeout_ms > 0 ? timeout_ms : XDT_DEFAULT_TIMEOUT_MS;
    bool every = true;
    int first_version = -1;
    for (int m = 0; m < size && !st; m++) {
        size_t len = 0;
        snprintf(key, sizeof key, "xdt/nccl/%s/usable/%d", name, m);
        if ((st = xdt_store_get(store, key, value, sizeof value - 1, &len, wait_ms))) break;
        value[len < sizeof value ? len : sizeof value - 1] = 0;
        char *end = NULL;
        const long v = value[0] == '1' ? strtol(value + 1, &end, 10) : 0;
        if (len < 1 || (value[0] != '0' && value[0] != '1') ||
            (value[0] == '1' && (!end || *end || v < 0 || v > 1000000))) {
            st = xdt_fail(XDT_ERR_FORMAT, "nccl group %s: the store's %s holds no usable flag",
                          name, key);
            break;
        }
        if (!every) continue; /* the first reason is named */
        if (value[0] == '0') {
            every = false;
            snprintf(why, cap, "member %d of group %s cannot use the library: %s", m, name,
                     value[1] ? value + 1 : "no reason given");
        } else if (first_version < 0) {
            first_version = (int)v;
        } else if ((int)v != first_version) {
            every = false;
            snprintf(why, cap,
                     "members of group %s load different library versions: %d.%d.%d (member 0), "
                     "%d.%d.%d (member %d)",
                     name, first_version / 10000, first_version / 100 % 100, first_version % 100,
                     (int)v / 10000, (int)v / 100 % 100, (int)v % 100, m);
        }
    }
    if (!st) *all = every;
    return st;
}

xdt_status xdt_nccl_group_create(xdt_store *store, const xdt_nccl_group_config *cfg,
                                 xdt_nccl_group **out) {
    const char *name = cfg->name ? cfg->name : "?";
    if (!store)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s, rank %d: no bootstrap store for its id", name, cfg->rank);
    if (!cfg->ranks || cfg->size < 1 || cfg->size > XDT_NCCL_MAX_MEMBERS || strlen(name) >= 64)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s, rank %d: needs 1..%d members (got %d) and a name under 64 "
                        "characters",
                        name, cfg->rank, XDT_NCCL_MAX_MEMBERS, cfg->size);
    if (!cfg->stream.make_current || !cfg->stream.query)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "nccl group %s, rank %d: no GPU stream to queue on (the device is not a "
                        "GPU)",
                        name, cfg->rank);
    int member = -1;
    for (int i = 0; i < cfg->size; i++)
        if (cfg->ranks[i] == cfg->rank) member = i;
    if (member < 0)
        return xdt_fail(XDT_ERR_INVALID_ARG, "nccl group %s: rank %d is not one of its %d members",
                        name, cfg->rank, cfg->size);
    const xdt_nccl_api *api = NULL;
    char why[512];
    xdt_status st = xdt_nccl_api_try_load(cfg->vendor, &api, why, sizeof why);
    if (st) return xdt_fail(st, "nccl group %s, rank %d: %s", name, cfg->rank, why);
    xdt_nccl_group *g = calloc(1, sizeof *g);
    if (!g) return xdt_fail(XDT_ERR_NO_MEMORY, "nccl group %s: out of memory", name);
    g->api = api;
    g->stream = cfg->stream;
    snprintf(g->name, sizeof g->name, "%s", name);
    snprintf(g->device, sizeof g->device, "%s:%d", cfg->vendor == XDT_NCCL_AMD ? "hip" : "cuda",
             cfg->stream.index);
    g->member = member;
    g->size = cfg->size;
    g->rank = cfg->rank;
    g->timeout_ms = cfg->timeout_ms;
    xdt_nccl_unique_id id;
    if ((st = set_device(g))) {
        if (g->member == 0) publish_failure(g, store, "its GPU could not be made current");
        goto err;
    }
    if ((st = exchange_id(g, store, &id))) goto err;
    xdt_nccl_config config = {.size = sizeof config,
                              .magic = XDT_NCCL_CONFIG_MAGIC,
                              .version = XDT_NCCL_CONFIG_VERSION,
                              .blocking = 0, /* init returns at once; settle() bounds the wait */
                              .cga_cluster_size = XDT_NCCL_UNDEF_INT,
                              .min_ctas = XDT_NCCL_UNDEF_INT,
                              .max_ctas = XDT_NCCL_UNDEF_INT,
                              .net_name = NULL};
    const double deadline = now_ms() + timeout_of(g);
    xdt_nccl_result r = api->comm_init_rank_config(&g->comm, g->size, id, g->member, &config);
    bool timed_out = false;
    if (g->comm) r = settle(g, r, deadline, &timed_out);
    if (timed_out) {
        abort_comm(g);
        st = xdt_fail(XDT_ERR_TIMEOUT,
                      "nccl group %s, rank %d (member %d of %d, %s): not every member joined "
                      "within %d ms",
                      g->name, g->rank, g->member, g->size, g->device, timeout_of(g));
        goto err;
    }
    if (r != XDT_NCCL_SUCCESS) {
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
        xdt_nccl_result r = g->api->comm_finalize(g->comm);
        r = settle(g, r, now_ms() + bound, &timed_out);
        if (timed_out || r != XDT_NCCL_SUCCESS)
            abort_comm(g);
        else
            g->api->comm_destroy(g->comm);
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

xdt_status xdt_nccl_allreduce_sum(xdt_nccl_group *g, float *buf, size_t n) {
    if (g->failed) return refuse_failed(g);
    if (n == 0) return XDT_OK;
    xdt_status st = set_device(g);
    if (st) return st;
    bool timed_out = false;
    xdt_nccl_result r =
        g->api->all_reduce(buf, buf, n, XDT_NCCL_FLOAT32, XDT_NCCL_SUM, g->comm, g->stream.handle);
    r = settle(g, r, now_ms() + timeout_of(g), &timed_out);
    if (timed_out) {
        abort_comm(g);
        return xdt_fail(XDT_ERR_TIMEOUT,
                        "nccl group %s, rank %d (member %d of %d): ncclAllReduce of %zu floats "
                        "was not queued within %d ms",
                        g->name, g->rank, g->member, g->size, n, timeout_of(g));
    }
    if (r != XDT_NCCL_SUCCESS) {
        st = group_fail(g, r, "ncclAllReduce");
        abort_comm(g);
        return st;
    }
    return XDT_OK;
}

xdt_status xdt_nccl_group_wait(xdt_nccl_group *g) {
    if (g->failed) return refuse_failed(g);
    const double deadline = now_ms() + timeout_of(g);
    long ns = 20 * 1000;
    for (;;) {
        bool idle = false;
        const xdt_status qs = g->stream.query(g->stream.arg, &idle);
        xdt_nccl_result async = XDT_NCCL_SUCCESS;
        const xdt_nccl_result q = g->api->comm_get_async_error(g->comm, &async);
        const xdt_nccl_result r = q != XDT_NCCL_SUCCESS ? q : async;
        if (r != XDT_NCCL_SUCCESS && r != XDT_NCCL_IN_PROGRESS) {
            const xdt_status st = group_fail(g, r, "all-reduce");
            abort_comm(g);
            return st;
        }
        if (qs) { /* the device has reported its failure (one line is enough) */
            abort_comm(g);
            return qs;
        }
        if (idle) return XDT_OK;
        if (now_ms() > deadline) {
            abort_comm(g);
            return xdt_fail(XDT_ERR_TIMEOUT,
                            "nccl group %s, rank %d (member %d of %d, %s): the all-reduce "
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

const xdt_nccl_api *xdt_nccl_group_library(const xdt_nccl_group *g) {
    return g->api;
}
