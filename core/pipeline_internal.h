/* pipeline_internal.h: what the executor's files share (pipeline_executor.c: creation and the op
 * loop; pipeline_reduce.c: the end-of-step reductions; pipeline_eval.c: validation passes) and
 * nothing else includes: the executor's state and small helpers on it. */
#ifndef XDT_PIPELINE_INTERNAL_H
#define XDT_PIPELINE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/pipeline_comm.h"
#include "core/pipeline_executor.h"
#include "transports/collectives.h"
#include "transports/nccl/nccl_group.h"

/* A norm message: squared gradient norm, loss share, bytes sent between sites after and before
 * the codec, and compute seconds, each as a (hi, lo) pair of floats. */
#define NORM_SUMS   5
#define NORM_FLOATS (2 * NORM_SUMS)

/* Tag spaces of the collectives: step value 2^20 - 1 of the pipeline's tag layout, which the
 * pipeline's own messages never use (core/pipeline_comm.c), one 2^24 block per group. */
#define GROUP_TAG(id) ((((UINT64_C(1) << 20) - 1) << 28) | ((uint64_t)(id) << 24))

struct xdt_executor {
    xdt_rank_plan rp;
    xdt_device *dev;
    xdt_transport *t;
    xdt_comm *comm;
    int rank; /* transport rank */
    xdt_stage *stage[XDT_EXEC_MAX_CHUNKS];
    xdt_optimizer *opt[XDT_EXEC_MAX_CHUNKS];
    int n_slots;
    int *slot_of;                         /* [chunk * M + mb] -> slot, -1 when none */
    int *free_slots[XDT_EXEC_MAX_CHUNKS]; /* stacks */
    int n_free[XDT_EXEC_MAX_CHUNKS];
    xdt_msg_id *recvs;      /* the step's receives, the same every step */
    xdt_msg_id *eval_recvs; /* an evaluation pass's receives */
    int n_eval_recvs;
    int n_recvs, *recv_of_op, tied_recv, norm_recv;
    size_t act_floats, tied_floats;
    /* staging between device and host (pinned where the device has it): the tied gradient
     * through a lossy codec, or on a device whose memory is not host memory one chunk's
     * gradients for the ring all-reduce */
    float *host_buf;
    bool host_mem;   /* the device's memory is host memory: collectives may read it in place */
    float *dev_tied; /* device scratch for the partner's tied gradient */
    xdt_codec *tied_codec; /* a lossy tied exchange: our own gradient goes through it too */
    unsigned char *tied_wire;
    int tied_peer; /* transport rank of the tied partner, -1 when none */
    bool dp;
    xdt_group dp_group;
    xdt_nccl_group *nccl; /* the replicas' all-reduce through NCCL, else NULL (the ring) */
    double dp_wan_bytes, dp_wan_raw_bytes; /* sent between sites by all-reduces */
    double wan_reported, wan_raw_reported; /* what earlier steps' norm messages counted */
    double busy_s;                         /* computing in this step */
    double totals[NORM_SUMS];              /* the step's sums over all ranks */
    double epoch;
    xdt_exec_event *events;
    int n_events, cap_events;
    double wait_s;
};

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline int global_stage(const xdt_executor *ex, int chunk) {
    return chunk * ex->rp.stages + ex->rp.pipeline_rank;
}

static inline int peer_rank(const xdt_executor *ex, int pipeline_rank) {
    return ex->rp.replica * ex->rp.stages + pipeline_rank;
}

static inline bool has_embedding(const xdt_executor *ex, int chunk) {
    return global_stage(ex, chunk) == 0;
}

static inline bool has_head(const xdt_executor *ex, int chunk) {
    return global_stage(ex, chunk) == ex->rp.stages * ex->rp.chunks - 1;
}

/* The parameter tensor of `role` on a stage, or NULL. */
static inline const xdt_param_tensor *tensor_of(xdt_stage *s, xdt_param_role role) {
    int n;
    const xdt_param_tensor *t = xdt_stage_tensors(s, &n);
    for (int i = 0; i < n; i++)
        if (t[i].role == role) return &t[i];
    return NULL;
}

/* Rows of microbatch mb of this replica inside the global batch. */
static inline size_t batch_offset(const xdt_executor *ex, int mb) {
    return ((size_t)ex->rp.replica_first_microbatch + (size_t)mb) * (size_t)ex->rp.microbatch *
           (size_t)ex->rp.seq;
}

/* Copies between the device and a host staging buffer, waited for off host memory. */
xdt_status xdt_exec_to_host(xdt_executor *ex, float *host, const float *dev_src, size_t floats);
xdt_status xdt_exec_to_device(xdt_executor *ex, float *dev_dst, const float *host, size_t floats);
/* Sends id->n floats of device memory, copied by the device straight into the message's buffer
 * (page-locked off host memory), with no staging copy in between. */
xdt_status xdt_exec_send(xdt_executor *ex, const xdt_msg_id *id, const float *dev_src);
/* Waits for the step's receive r (the time counts as waiting) and copies it straight from the
 * message's buffer to device memory. */
xdt_status xdt_exec_recv(xdt_executor *ex, int r, float *dev_dst, size_t floats);

/* Splits a double into two floats whose sum is it (to 2^-48 relative): sums travel exactly
 * enough through fp32 messages. */
void xdt_exec_split_double(double x, float *hi, float *lo);

/* ALLREDUCE (pipeline_reduce.c): the tied exchange, the replicas' all-reduce and the sums;
 * loss_sum is this rank's share of the step's mean loss. */
xdt_status xdt_exec_reduce(xdt_executor *ex, double loss_sum, double *norm, double *loss,
                           double *wan);

#endif
