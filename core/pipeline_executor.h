/* pipeline_executor.h: runs one rank of a pipeline plan: builds the rank's stages (one per
 * chunk), executes its schedule ops step by step on the device -- forward, backward, sends and
 * receives through the communication thread (core/pipeline_comm.h) -- then at ALLREDUCE sums the
 * tied embedding's gradient between the replica's first and last ranks, all-reduces the
 * gradients across the data-parallel replicas (ring, with the plan's codec), and sends every
 * rank's squared gradient norm, loss share and WAN bytes to every other rank (one message each,
 * all at once: one latency, however far apart the sites), so the clipping is global and every
 * rank knows the step's loss; at OPT_STEP it applies AdamW. With codec none the result equals `xdt
 * train` on the whole batch.
 *
 * Devices: everything between the device and the communication goes through host staging
 * buffers (page-locked where the device offers them) with the device's copies, so ranks on
 * different backends (a CUDA stage feeding a CPU stage) exchange plain host messages. The
 * replicas' all-reduce runs in NCCL when every member is a CUDA rank of one site on a device of
 * its own (xdt_executor_dp_choice), else as the ring over the transport on host copies of the
 * gradients.
 *
 * The rank's description is plain data (xdt_rank_plan), filled by the caller from plan.json:
 * core/ does not read the planner's files. */
#ifndef XDT_PIPELINE_EXECUTOR_H
#define XDT_PIPELINE_EXECUTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/gpt.h"
#include "core/optimizer.h"
#include "core/schedule.h"
#include "devices/mem_type.h"
#include "transports/bootstrap.h"
#include "transports/codecs/codec.h"
#include "transports/transport.h"

#define XDT_EXEC_MAX_CHUNKS 8

/* Where a rank computes (the plan's backend and device). */
typedef struct xdt_rank_device {
    xdt_mem_type mem; /* XDT_MEM_HOST for cpu ranks, XDT_MEM_CUDA, XDT_MEM_HIP */
    int node;         /* ranks with the same node index share a host and its devices */
    int index;        /* device index on its node */
} xdt_rank_device;

/* How the replicas of a stage all-reduce their gradients. */
typedef enum xdt_dp_comm {
    XDT_DP_AUTO = 0, /* NCCL where xdt_executor_dp_choice allows it, else the ring */
    XDT_DP_RING = 1, /* the ring over the transport with the plan's codec */
    XDT_DP_NCCL = 2, /* NCCL, or a configuration error saying why it cannot be */
} xdt_dp_comm;

typedef struct xdt_rank_plan {
    xdt_model_config model;
    int replica, replicas;     /* d, D */
    int pipeline_rank, stages; /* p, P; this rank is transport rank d * P + p */
    int chunks;                /* V */
    int global_batch, seq, microbatch;
    int replica_microbatches;          /* M_d */
    int replica_first_microbatch;      /* microbatches of replicas before this one */
    int units[XDT_EXEC_MAX_CHUNKS][2]; /* chunk v: units [first, last] */
    const xdt_schedule *schedule;      /* this replica's, validated; ranks are pipeline ranks */
    xdt_codec_spec codec_next;         /* activations to pipeline rank p + 1 (and wrap-around) */
    xdt_codec_spec codec_prev;         /* gradients to pipeline rank p - 1 */
    xdt_codec_spec dp_codec;           /* the gradient all-reduce across replicas */
    xdt_codec_spec tied_codec;         /* the tied gradient between the first and last ranks */
    double slowdown;                   /* >= 1: each compute op is stretched to this many times */
    const int *site_of; /* site index of every transport rank (WAN accounting), or NULL */
    uint64_t job_id;
    int timeout_ms; /* longest wait for a peer; 0 = 30 s */
    /* every transport rank's device as the plan places it, or NULL (all cpu ranks) */
    const xdt_rank_device *device_of;
    /* the GPU number this rank's device was opened with, which NCCL binds to: the plan's, or
     * another the worker was told (`--device`, e.g. where CUDA_VISIBLE_DEVICES renumbers) */
    int device_index;
    xdt_dp_comm dp_comm; /* the replicas' all-reduce: auto, ring or NCCL */
    xdt_store *store;    /* the bootstrap store (NCCL groups publish their ids), or NULL */
} xdt_rank_plan;

/* Decides, from the plan, how this rank's data-parallel group all-reduces: through NCCL (CUDA
 * members) or RCCL (HIP members) when rp->dp_comm allows it, every member is a GPU rank of one
 * vendor and of the same site (rp->site_of) on a device no other member uses (the library
 * refuses two members on one GPU), the codec is none and rp->store is set; else the ring. *out
 * is XDT_DP_RING or XDT_DP_NCCL and `why` says why in a few words. Returns XDT_ERR_CONFIG
 * (reported, naming the rank and the reason) when NCCL was asked for and cannot be. Every
 * member reaches the same decision from the same plan. (Whether each member's machine has the
 * library is settled next, among the members: xdt_nccl_group_agree.) */
xdt_status xdt_executor_dp_choice(const xdt_rank_plan *rp, xdt_dp_comm *out, char *why, size_t cap);

/* One executed op, in CLOCK_MONOTONIC seconds (for traces; ranks on one host share it). */
typedef struct xdt_exec_event {
    int step;
    xdt_op op;
    double start_s, end_s;
} xdt_exec_event;

typedef struct xdt_exec_result {
    double loss;          /* the step's mean loss over the global batch (on every rank) */
    double grad_norm;     /* global, before clipping */
    double wait_ms;       /* time this rank spent waiting for receives */
    double wan_bytes;     /* bytes all ranks sent between sites in this step (on the wire) */
    double wan_raw_bytes; /* the same before the codecs */
    double busy_ms;       /* all ranks' compute time in this step, summed */
} xdt_exec_result;

typedef struct xdt_executor xdt_executor;

/* Builds the stages on dev (parameters from `seed`, as xdt train), the optimizer, the
 * communication thread over t (whose rank must be d * P + p) and, with replicas, the
 * data-parallel group (an NCCL group joins through rp->store: every member creates its executor
 * at about the same time). */
xdt_status xdt_executor_create(const xdt_rank_plan *rp, xdt_device *dev, xdt_transport *t,
                               const xdt_optim_config *oc, uint64_t seed, xdt_executor **out);
void xdt_executor_destroy(xdt_executor *ex);

/* Whether the rank needs the batch (it holds the embedding or the head). */
bool xdt_executor_needs_data(const xdt_executor *ex);

/* Runs step `step` (0-based). inputs and targets are the whole global batch (global_batch x
 * seq tokens each) when xdt_executor_needs_data, else NULL. */
xdt_status xdt_executor_step(xdt_executor *ex, int step, const int32_t *inputs,
                             const int32_t *targets, xdt_exec_result *out);

/* A forward-only pass over one global batch (validation): every rank returns its mean loss.
 * `step` is the training step it follows (it names the pass's messages). */
xdt_status xdt_executor_eval(xdt_executor *ex, int step, const int32_t *inputs,
                             const int32_t *targets, double *loss);

/* Waits until every message this rank sent has left (call before the transport closes). */
xdt_status xdt_executor_finish(xdt_executor *ex);

/* The rank's stages and optimizers, chunk by chunk (checkpoints). */
int xdt_executor_chunks(const xdt_executor *ex);
xdt_stage *xdt_executor_stage(xdt_executor *ex, int chunk);
xdt_optimizer *xdt_executor_optimizer(xdt_executor *ex, int chunk);

/* Executed ops so far (the buffer grows; valid until the next step). */
const xdt_exec_event *xdt_executor_events(const xdt_executor *ex, int *n);

/* Bytes this rank has sent to transport rank `peer`: on the wire and before the codec. */
void xdt_executor_sent_bytes(xdt_executor *ex, int peer, uint64_t *wire, uint64_t *raw);

#endif
