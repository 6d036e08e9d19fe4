/* nccl_group.h: NCCL all-reduce among the ranks of a group on NVIDIA devices (the data-parallel
 * replicas of one stage, all CUDA ranks of one site). The group's first member draws the NCCL
 * unique id and publishes it in the bootstrap store under "xdt/nccl/<name>/id"; the others read
 * it there, and every member joins with ncclCommInitRank (non-blocking, so a member that never
 * comes is a timeout, not a hang). Collectives are queued on a CUDA stream (an opaque
 * cudaStream_t; NULL is the default stream) and xdt_nccl_group_wait waits for them with the
 * same timeout, aborting the communicator when a member stops answering. NCCL errors become
 * xdt statuses reported in one line naming the group and the rank.
 *
 * Builds without NCCL keep this interface: xdt_nccl_built() is false and create returns
 * XDT_ERR_UNSUPPORTED (transports/nccl/nccl_group_none.c). Device buffers are the caller's;
 * this layer includes no device code of xdt's own. */
#ifndef XDT_NCCL_GROUP_H
#define XDT_NCCL_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "transports/bootstrap.h"

#define XDT_NCCL_MAX_MEMBERS 256

typedef struct xdt_nccl_group xdt_nccl_group;

typedef struct xdt_nccl_group_config {
    const char *name; /* names the group in store keys and messages ("dp-p1"); unique per job */
    const int *ranks; /* transport ranks of the members; ranks[0] draws the id */
    int size;         /* members, 1 .. XDT_NCCL_MAX_MEMBERS */
    int rank;         /* this process's transport rank: one of ranks[] */
    int cuda_device;  /* the CUDA device index this member computes on */
    int timeout_ms;   /* longest wait for the id, the init, and each wait; 0 = 30 s */
} xdt_nccl_group_config;

/* Whether this build has NCCL. */
bool xdt_nccl_built(void);

/* Joins the group: the id travels through `store`, then ncclCommInitRank on cfg->cuda_device
 * (made the calling thread's current device). Every member must call it; it returns once all
 * have joined, or fails within the timeout naming the group and rank. Caller owns *out. */
xdt_status xdt_nccl_group_create(xdt_store *store, const xdt_nccl_group_config *cfg,
                                 xdt_nccl_group **out);

/* Leaves the group (after outstanding work finishes, or at once when the group failed).
 * NULL is a no-op. */
void xdt_nccl_group_destroy(xdt_nccl_group *g);

/* Queues the in-place sum of n floats of device memory `buf` over the members on `stream`
 * (cudaStream_t, NULL = the default stream); returns without waiting. Every member queues the
 * same calls in the same order. A group that failed refuses further calls. */
xdt_status xdt_nccl_allreduce_sum(xdt_nccl_group *g, float *buf, size_t n, void *stream);

/* Waits until everything queued on `stream` has finished, polling NCCL for errors of its own or
 * of members; past the timeout it aborts the communicator and returns XDT_ERR_TIMEOUT. */
xdt_status xdt_nccl_group_wait(xdt_nccl_group *g, void *stream);

/* The group's name and this member's index in it (messages, tests). */
const char *xdt_nccl_group_name(const xdt_nccl_group *g);
int xdt_nccl_group_member(const xdt_nccl_group *g);

#endif
