/* nccl_group.h: all-reduce among the ranks of a group on GPUs of one vendor through NCCL (CUDA
 * devices) or RCCL (HIP devices), loaded at run time (nccl_api.h): the data-parallel replicas of
 * one stage, GPU ranks of one site. The group's first member draws the unique id and publishes
 * it in the bootstrap store under "xdt/nccl/<name>/id"; the others read it there, and every
 * member joins with ncclCommInitRankConfig (non-blocking, so a member that never comes is a
 * timeout, not a hang). Collectives are queued on the member's device stream (devices/
 * gpu_stream.h), after the kernels queued there before, so the gradients need no sync first;
 * xdt_nccl_group_wait waits for them with the same timeout, aborting the communicator when a
 * member stops answering. Errors become xdt statuses reported in one line naming the group, the
 * rank and the device. Device buffers are the caller's; this layer includes no device code. */
#ifndef XDT_NCCL_GROUP_H
#define XDT_NCCL_GROUP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "devices/gpu_stream.h"
#include "transports/bootstrap.h"
#include "transports/nccl/nccl_api.h"

#define XDT_NCCL_MAX_MEMBERS 256

typedef struct xdt_nccl_group xdt_nccl_group;

typedef struct xdt_nccl_group_config {
    const char *name; /* names the group in store keys and messages ("dp-p1"); unique per job */
    const int *ranks; /* transport ranks of the members; ranks[0] draws the id */
    int size;         /* members, 1 .. XDT_NCCL_MAX_MEMBERS */
    int rank;         /* this process's transport rank: one of ranks[] */
    xdt_nccl_vendor vendor; /* NCCL (CUDA devices) or RCCL (HIP devices) */
    xdt_gpu_stream stream;  /* this member's device stream (xdt_device_ops.gpu_stream) */
    int timeout_ms;         /* longest wait for the id, the init, and each wait; 0 = 30 s */
} xdt_nccl_group_config;

/* Before the group is made: members' machines may differ in what is installed, so each member
 * publishes whether it can use the library (`usable`, with its version code; when not, `reason`)
 * under "xdt/nccl/<name>/usable/<member>" and reads the others' (waiting at most timeout_ms,
 * 0 = 30 s). *all: every member can, with the same version (members of different versions
 * refuse each other at init); else `why` names the first member that cannot, with its reason,
 * or the versions that differ. Every member gets the same answer. */
xdt_status xdt_nccl_group_agree(xdt_store *store, const char *name, int member, int size,
                                int timeout_ms, bool usable, int version, const char *reason,
                                bool *all, char *why, size_t cap);

/* Joins the group: loads the vendor's library, the id travels through `store`, then the
 * communicator is made on the stream's GPU. Every member must call it; it returns once all have
 * joined, or fails within the timeout naming the group and rank (XDT_ERR_UNSUPPORTED: the
 * library cannot be loaded). Caller owns *out. */
xdt_status xdt_nccl_group_create(xdt_store *store, const xdt_nccl_group_config *cfg,
                                 xdt_nccl_group **out);

/* Leaves the group (after outstanding work finishes, or at once when the group failed).
 * NULL is a no-op. */
void xdt_nccl_group_destroy(xdt_nccl_group *g);

/* Queues the in-place sum of n floats of device memory `buf` over the members on the member's
 * stream; returns without waiting. Every member queues the same calls in the same order. A group
 * that failed refuses further calls. */
xdt_status xdt_nccl_allreduce_sum(xdt_nccl_group *g, float *buf, size_t n);

/* Waits until everything queued on the stream has finished, polling the library for errors of
 * its own or of members; past the timeout it aborts the communicator and returns
 * XDT_ERR_TIMEOUT. */
xdt_status xdt_nccl_group_wait(xdt_nccl_group *g);

/* The group's name, this member's index in it, and the library it runs on (messages, tests). */
const char *xdt_nccl_group_name(const xdt_nccl_group *g);
int xdt_nccl_group_member(const xdt_nccl_group *g);
const xdt_nccl_api *xdt_nccl_group_library(const xdt_nccl_group *g);

#endif
