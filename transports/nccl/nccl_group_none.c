/* nccl_group_none.c: the NCCL group interface in builds without NCCL: nothing joins, so callers
 * take the ring over the transport instead. */
#include "transports/nccl/nccl_group.h"

#include "core/log.h"

struct xdt_nccl_group {
    int unused;
};

bool xdt_nccl_built(void) {
    return false;
}

xdt_status xdt_nccl_group_create(xdt_store *store, const xdt_nccl_group_config *cfg,
                                 xdt_nccl_group **out) {
    (void)store;
    (void)out;
    return xdt_fail(XDT_ERR_UNSUPPORTED, "nccl group %s, rank %d: this build has no NCCL",
                    cfg->name ? cfg->name : "?", cfg->rank);
}

void xdt_nccl_group_destroy(xdt_nccl_group *g) {
    (void)g;
}

xdt_status xdt_nccl_allreduce_sum(xdt_nccl_group *g, float *buf, size_t n, void *stream) {
    (void)g;
    (void)buf;
    (void)n;
    (void)stream;
    return xdt_fail(XDT_ERR_UNSUPPORTED, "nccl: this build has no NCCL");
}

xdt_status xdt_nccl_group_wait(xdt_nccl_group *g, void *stream) {
    (void)g;
    (void)stream;
    return xdt_fail(XDT_ERR_UNSUPPORTED, "nccl: this build has no NCCL");
}

const char *xdt_nccl_group_name(const xdt_nccl_group *g) {
    (void)g;
    return "?";
}

int xdt_nccl_group_member(const xdt_nccl_group *g) {
    (void)g;
    return -1;
}
