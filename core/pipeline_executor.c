/* pipeline_executor.c: one rank's executor: building its stages, groups and communication
 * thread, and running its schedule's ops (the end-of-step reductions are in pipeline_reduce.c,
 * validation passes in pipeline_eval.c). */
#include "core/pipeline_executor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/pipeline_internal.h"

static void record(xdt_executor *ex, int step, const xdt_op *op, double start, double end) {
    if (ex->n_events == ex->cap_events) {
        int cap = ex->cap_events ? 2 * ex->cap_events : 1024;
        xdt_exec_event *e = realloc(ex->events, sizeof *e * (size_t)cap);
        if (!e) return; /* the trace loses events; training goes on */
        ex->events = e;
        ex->cap_events = cap;
    }
    ex->events[ex->n_events++] = (xdt_exec_event){step, *op, start - ex->epoch, end - ex->epoch};
}

/* The step's receives in the order the ops take them, then the tied gradient, then the norm
 * messages from every other rank of the replica in rank order. Tags name the receiving stage. */
static xdt_status build_receives(xdt_executor *ex) {
    const xdt_rank_plan *rp = &ex->rp;
    const int p = rp->pipeline_rank, n_ops = xdt_schedule_num_ops(rp->schedule, p);
    const xdt_op *ops = xdt_schedule_ops(rp->schedule, p);
    const int R = rp->replicas * rp->stages;
    ex->recvs = calloc((size_t)n_ops + (size_t)R + 1, sizeof *ex->recvs);
    ex->recv_of_op = malloc(sizeof(int) * (size_t)n_ops);
    if (!ex->recvs || !ex->recv_of_op)
        return xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
    for (int i = 0; i < n_ops; i++) {
        ex->recv_of_op[i] = -1;
        if (ops[i].kind != XDT_OP_RECV_ACT && ops[i].kind != XDT_OP_RECV_GRAD) continue;
        ex->recv_of_op[i] = ex->n_recvs;
        ex->recvs[ex->n_recvs++] = (xdt_msg_id){
            .peer = peer_rank(ex, ops[i].peer),
            .kind = ops[i].kind == XDT_OP_RECV_ACT ? XDT_MSG_ACT : XDT_MSG_GRAD,
            .microbatch = ops[i].microbatch,
            .chunk = global_stage(ex, ops[i].chunk),
            .n = ex->act_floats,
        };
    }
    ex->tied_recv = -1;
    if (ex->tied_peer >= 0) {
        ex->tied_recv = ex->n_recvs;
        ex->recvs[ex->n_recvs++] =
            (xdt_msg_id){.peer = ex->tied_peer, .kind = XDT_MSG_TIED, .n = ex->tied_floats};
    }
    ex->norm_recv = ex->n_recvs;
    for (int g = 0; g < R; g++)
        if (g != ex->rank)
            ex->recvs[ex->n_recvs++] =
                (xdt_msg_id){.peer = g, .kind = XDT_MSG_NORM, .n = NORM_FLOATS};
    return XDT_OK;
}

static xdt_status build_stages(xdt_executor *ex, const xdt_optim_config *oc, uint64_t seed) {
    const xdt_rank_plan *rp = &ex->rp;
    xdt_status st = XDT_OK;
    for (int v = 0; v < rp->chunks && !st; v++) {
        st = xdt_stage_create(&rp->model, ex->dev, rp->units[v][0], rp->units[v][1], rp->microbatch,
                              rp->seq, ex->n_slots, &ex->stage[v]);
        if (!st) st = xdt_stage_init_params(ex->stage[v], seed);
        if (!st) st = xdt_optimizer_create(oc, ex->stage[v], &ex->opt[v]);
        if (st) break;
        ex->free_slots[v] = malloc(sizeof(int) * (size_t)ex->n_slots);
        if (!ex->free_slots[v]) return xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
        for (int i = 0; i < ex->n_slots; i++)
            ex->free_slots[v][i] = ex->n_slots - 1 - i;
        ex->n_free[v] = ex->n_slots;
    }
    return st;
}

static xdt_rank_device device_of(const xdt_rank_plan *rp, int rank) {
    return rp->device_of ? rp->device_of[rank] : (xdt_rank_device){XDT_MEM_HOST, 0, 0};
}

xdt_status xdt_executor_dp_choice(const xdt_rank_plan *rp, xdt_dp_comm *out, char *why,
                                  size_t cap) {
    const int P = rp->stages, p = rp->pipeline_rank, me = rp->replica * P + p;
    char no[320] = "";
    char codec[32];
    const xdt_rank_device first = device_of(rp, p);
    xdt_nccl_vendor vendor = XDT_NCCL_NVIDIA;
    const bool gpu = xdt_nccl_vendor_of(first.mem, &vendor);
    const char *lib = xdt_nccl_vendor_name(vendor);
    /* The group's own reasons (the plan's) come first, then the job's settings. */
    if (rp->replicas < 2)
        snprintf(no, sizeof no, "one replica");
    else if (rp->dp_comm == XDT_DP_RING)
        snprintf(no, sizeof no, "the ring was asked for");
    for (int d = 0; !no[0] && d < rp->replicas; d++) {
        const int g = d * P + p;
        const xdt_rank_device dg = device_of(rp, g);
        xdt_nccl_vendor vg;
        if (!xdt_nccl_vendor_of(dg.mem, &vg)) {
            snprintf(no, sizeof no, "rank %d computes in %s memory, not on a GPU", g,
                     xdt_mem_type_name(dg.mem));
            break;
        }
        if (!gpu || vg != vendor) {
            snprintf(no, sizeof no, "ranks %d and %d compute on GPUs of different vendors (%s, %s)",
                     p, g, xdt_mem_type_name(first.mem), xdt_mem_type_name(dg.mem));
            break;
        }
        if (rp->site_of && rp->site_of[g] != rp->site_of[p]) {
            snprintf(no, sizeof no, "ranks %d and %d are in different sites", p, g);
            break;
        }
        for (int e = 0; e < d; e++) {
            const xdt_rank_device de = device_of(rp, e * P + p);
            if (de.node == dg.node && de.index == dg.index) {
                snprintf(no, sizeof no, "ranks %d and %d share %s:%d of one node", e * P + p, g,
                         xdt_mem_type_name(dg.mem), dg.index);
                break;
            }
        }
    }
    if (!no[0]) {
        if (rp->dp_codec.kind != XDT_CODEC_NONE)
            snprintf(no, sizeof no, "codec %s runs in the ring",
                     xdt_codec_name(&rp->dp_codec, codec, sizeof codec));
        else if (!rp->store)
            snprintf(no, sizeof no, "no bootstrap store to share the %s id", lib);
    }
    if (!no[0]) {
        *out = XDT_DP_NCCL;
        snprintf(why, cap, "%d %s ranks of one site, each on its own device", rp->replicas,
                 vendor == XDT_NCCL_AMD ? "HIP" : "CUDA");
        return XDT_OK;
    }
    if (rp->dp_comm == XDT_DP_NCCL)
        return xdt_fail(XDT_ERR_CONFIG,
                        "rank %d: the replicas of pipeline rank %d cannot all-reduce through "
                        "%s: %s",
                        me, p, lib, no);
    *out = XDT_DP_RING;
    snprintf(why, cap, "%s", no);
    return XDT_OK;
}

/* The plan allows NCCL (or RCCL); whether each member's machine has the library is the
 * members' to say: they agree through the store, so that all take the library or all the ring.
 * When one cannot, a forced NCCL fails naming it, an automatic choice takes the ring. */
static xdt_status agree_on_library(xdt_executor *ex, xdt_dp_comm *via, char *why, size_t cap) {
    const xdt_rank_plan *rp = &ex->rp;
    xdt_nccl_vendor vendor = XDT_NCCL_NVIDIA;
    xdt_nccl_vendor_of(device_of(rp, ex->rank).mem, &vendor);
    const xdt_nccl_api *api = NULL;
    char here[256] = "", name[32], whom[320];
    const bool usable = xdt_nccl_api_try_load(vendor, &api, here, sizeof here) == XDT_OK;
    snprintf(name, sizeof name, "dp-p%d", rp->pipeline_rank);
    bool all = false;
    xdt_status st =
        xdt_nccl_group_agree(rp->store, name, rp->replica, rp->replicas, rp->timeout_ms, usable,
                             usable ? api->version : 0, here, &all, whom, sizeof whom);
    if (st || all) return st;
    if (rp->dp_comm == XDT_DP_NCCL)
        return xdt_fail(XDT_ERR_CONFIG,
                        "rank %d: the replicas of pipeline rank %d cannot all-reduce through "
                        "%s: %s",
                        ex->rank, rp->pipeline_rank, xdt_nccl_vendor_name(vendor), whom);
    *via = XDT_DP_RING;
    snprintf(why, cap, "%s", whom);
    return XDT_OK;
}

static xdt_status build_groups(xdt_executor *ex) {
    const xdt_rank_plan *rp = &ex->rp;
    if (rp->replicas < 2) return XDT_OK;
    if (rp->replicas > 256)
        return xdt_fail(XDT_ERR_CONFIG, "executor: %d replicas; all-reduce groups hold up to 256",
                        rp->replicas);
    int ranks[256];
    for (int d = 0; d < rp->replicas; d++)
        ranks[d] = d * rp->stages + rp->pipeline_rank;
    xdt_dp_comm via;
    char why[320];
    xdt_status st = xdt_executor_dp_choice(rp, &via, why, sizeof why);
    if (st) return st;
    if (via == XDT_DP_NCCL && (st = agree_on_library(ex, &via, why, sizeof why))) return st;
    if (via == XDT_DP_NCCL) {
        char name[32];
        snprintf(name, sizeof name, "dp-p%d", rp->pipeline_rank);
        xdt_nccl_group_config nc = {.name = name,
                                    .ranks = ranks,
                                    .size = rp->replicas,
                                    .rank = ex->rank,
                                    .timeout_ms = rp->timeout_ms};
        if (!ex->dev->ops->gpu_stream || !xdt_nccl_vendor_of(ex->dev->ops->mem_type, &nc.vendor))
            return xdt_fail(XDT_ERR_CONFIG,
                            "rank %d: the plan puts it on a GPU for the NCCL all-reduce, but it "
                            "computes on %s",
                            ex->rank, ex->dev->name);
        ex->dev->ops->gpu_stream(ex->dev->ctx, &nc.stream);
        if ((st = xdt_nccl_group_create(rp->store, &nc, &ex->nccl))) return st;
        if (rp->replica == 0)
            xdt_log_info("pipeline rank %d: the replicas all-reduce through %s (%s)",
                         rp->pipeline_rank, xdt_nccl_vendor_name(nc.vendor), why);
    } else {
        if ((st = xdt_group_init(&ex->dp_group, ex->t, ranks, rp->replicas,
                                 GROUP_TAG(rp->pipeline_rank % 8), rp->timeout_ms)))
            return st;
        xdt_log_debug("rank %d: the replicas all-reduce in the ring over the transport (%s)%s",
                      ex->rank, why, ex->host_mem ? "" : "; gradients staged through host memory");
    }
    ex->dp = true;
    return XDT_OK;
}

/* The messages' buffers, page-locked on a GPU (the comm thread's allocator). */
static void *alloc_pinned(void *dev, size_t bytes) {
    void *p = NULL;
    return xdt_device_alloc_pinned(dev, bytes, &p) == XDT_OK ? p : NULL;
}

static void free_pinned(void *dev, void *p) {
    xdt_device_free_pinned(dev, p);
}

/* The staging buffer: the tied gradient on its way through a lossy codec, and on a device whose
 * memory the ring cannot read in place, the largest chunk's gradients. (Activations and
 * gradients between stages go straight between the device and the messages.) */
static xdt_status build_host_buf(xdt_executor *ex) {
    size_t floats = ex->tied_floats > 0 ? ex->tied_floats : 1;
    if (ex->dp && !ex->nccl && !ex->host_mem)
        for (int v = 0; v < ex->rp.chunks; v++) {
            const size_t n = xdt_stage_num_params(ex->stage[v]);
            if (n > floats) floats = n;
        }
    return xdt_device_alloc_pinned(ex->dev, floats * sizeof(float), (void **)&ex->host_buf);
}

xdt_status xdt_executor_create(const xdt_rank_plan *rp, xdt_device *dev, xdt_transport *t,
                               const xdt_optim_config *oc, uint64_t seed, xdt_executor **out) {
    if (rp->chunks < 1 || rp->chunks > XDT_EXEC_MAX_CHUNKS || rp->stages < 1 || rp->replicas < 1 ||
        rp->microbatch < 1 || rp->replica_microbatches < 1 ||
        t->rank != rp->replica * rp->stages + rp->pipeline_rank ||
        t->world_size < rp->replicas * rp->stages)
        return xdt_fail(XDT_ERR_CONFIG,
                        "executor: rank %d of %d does not fit replica %d x pipeline rank %d of "
                        "%d x %d (chunks %d)",
                        t->rank, t->world_size, rp->replica, rp->pipeline_rank, rp->replicas,
                        rp->stages, rp->chunks);
    xdt_executor *ex = calloc(1, sizeof *ex);
    if (!ex) return xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
    ex->rp = *rp;
    if (ex->rp.slowdown < 1) ex->rp.slowdown = 1;
    ex->dev = dev;
    ex->host_mem = dev->ops->mem_type == XDT_MEM_HOST || dev->ops->mem_type == XDT_MEM_PINNED_HOST;
    ex->t = t;
    ex->rank = t->rank;
    ex->epoch = 0; /* events carry CLOCK_MONOTONIC: comparable across ranks on one host */
    ex->act_floats = (size_t)rp->microbatch * rp->seq * rp->model.n_embd;
    ex->tied_floats = (size_t)rp->model.padded_vocab_size * rp->model.n_embd;
    const int P = rp->stages, p = rp->pipeline_rank;
    ex->tied_peer = P > 1 && p == 0       ? peer_rank(ex, P - 1)
                    : P > 1 && p == P - 1 ? peer_rank(ex, 0)
                                          : -1;
    ex->n_slots = xdt_schedule_max_in_flight(rp->schedule, p);
    if (ex->n_slots < 1) ex->n_slots = 1;
    const size_t M = (size_t)rp->replica_microbatches;
    ex->slot_of = malloc(sizeof(int) * M * (size_t)rp->chunks);
    xdt_status st = XDT_OK;
    if (!ex->slot_of) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
        goto err;
    }
    for (size_t i = 0; i < M * (size_t)rp->chunks; i++)
        ex->slot_of[i] = -1;
    if ((st = build_stages(ex, oc, seed)) || (st = build_receives(ex)) || (st = build_groups(ex)) ||
        (st = build_host_buf(ex)))
        goto err;
    if (ex->tied_peer >= 0 &&
        (st = xdt_device_alloc(dev, ex->tied_floats * sizeof(float), (void **)&ex->dev_tied)))
        goto err;
    if (ex->tied_peer >= 0 && rp->tied_codec.kind != XDT_CODEC_NONE) {
        ex->tied_wire = malloc(xdt_codec_max_encoded_bytes(&rp->tied_codec, ex->tied_floats));
        if (!ex->tied_wire) {
            st = xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
            goto err;
        }
        if ((st = xdt_codec_create(&rp->tied_codec, ex->tied_floats, &ex->tied_codec))) goto err;
    }
    /* the peers: every other rank (norm and loss sums); the replica's pipeline neighbours
     * also exchange activations and gradients, the tied partner its gradient */
    const int R = rp->replicas * P;
    if (R > 1) {
        xdt_comm_peer *peers = calloc((size_t)R, sizeof *peers);
        int n_peers = 0;
        for (int g = 0; peers && g < R; g++) {
            if (g == ex->rank) continue;
            xdt_comm_peer *cp = &peers[n_peers++];
            cp->rank = g;
            cp->raw_floats = g == ex->tied_peer ? ex->tied_floats : NORM_FLOATS;
            if (g == ex->tied_peer) cp->codec_tied = rp->tied_codec;
            if (g / P != rp->replica || P < 2) continue;
            /* activations go forward to p + 1 (wrapping to 0 between interleaved chunks),
             * gradients back to p - 1 (wrapping likewise) */
            const int q = g % P;
            const bool wraps = rp->chunks > 1;
            const bool next = q == (p + 1) % P && (wraps || p + 1 < P);
            const bool prev = q == (p + P - 1) % P && (wraps || p > 0);
            if (next || prev) cp->coded_floats = ex->act_floats;
            if (next) cp->codec_act = rp->codec_next;
            if (prev) cp->codec_grad = rp->codec_prev;
        }
        xdt_comm_config cc = {.job_id = rp->job_id,
                              .timeout_ms = rp->timeout_ms,
                              .max_floats = {ex->act_floats, ex->act_floats, ex->tied_floats,
                                             NORM_FLOATS, ex->act_floats},
                              .peers = peers,
                              .n_peers = n_peers};
        if (!ex->host_mem) { /* the device copies into and out of the messages directly */
            cc.alloc_host = alloc_pinned;
            cc.free_host = free_pinned;
            cc.alloc_arg = dev;
        }
        st = peers ? xdt_comm_create(t, &cc, &ex->comm)
                   : xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
        free(peers);
        if (st) goto err;
    }
    *out = ex;
    return XDT_OK;
err:
    xdt_executor_destroy(ex);
    return st;
}

void xdt_executor_destroy(xdt_executor *ex) {
    if (!ex) return;
    xdt_comm_destroy(ex->comm);
    if (ex->dp && !ex->nccl) xdt_group_release(&ex->dp_group);
    xdt_nccl_group_destroy(ex->nccl);
    for (int v = 0; v < XDT_EXEC_MAX_CHUNKS; v++) {
        xdt_optimizer_destroy(ex->opt[v]);
        xdt_stage_destroy(ex->stage[v]);
        free(ex->free_slots[v]);
    }
    if (ex->dev_tied) xdt_device_free(ex->dev, ex->dev_tied);
    xdt_codec_destroy(ex->tied_codec);
    free(ex->tied_wire);
    free(ex->slot_of);
    xdt_device_free_pinned(ex->dev, ex->host_buf);
    free(ex->recvs);
    free(ex->eval_recvs);
    free(ex->recv_of_op);
    free(ex->events);
    free(ex);
}

xdt_status xdt_executor_finish(xdt_executor *ex) {
    return ex->comm ? xdt_comm_drain(ex->comm) : XDT_OK;
}

bool xdt_executor_needs_data(const xdt_executor *ex) {
    for (int v = 0; v < ex->rp.chunks; v++)
        if (has_embedding(ex, v) || has_head(ex, v)) return true;
    return false;
}

int xdt_executor_chunks(const xdt_executor *ex) {
    return ex->rp.chunks;
}

xdt_stage *xdt_executor_stage(xdt_executor *ex, int chunk) {
    return chunk >= 0 && chunk < ex->rp.chunks ? ex->stage[chunk] : NULL;
}

xdt_optimizer *xdt_executor_optimizer(xdt_executor *ex, int chunk) {
    return chunk >= 0 && chunk < ex->rp.chunks ? ex->opt[chunk] : NULL;
}

const xdt_exec_event *xdt_executor_events(const xdt_executor *ex, int *n) {
    *n = ex->n_events;
    return ex->events;
}

void xdt_executor_sent_bytes(xdt_executor *ex, int peer, uint64_t *wire, uint64_t *raw) {
    *wire = *raw = 0;
    if (ex->comm) xdt_comm_sent_bytes(ex->comm, peer, wire, raw);
}

/* --- the step --- */

typedef struct step_ctx {
    int step;
    const int32_t *inputs, *targets;
    double loss_sum; /* this rank's share of the mean loss (head ranks) */
} step_ctx;

static int *slot_ref(xdt_executor *ex, int chunk, int mb) {
    return &ex->slot_of[(size_t)chunk * ex->rp.replica_microbatches + (size_t)mb];
}

static xdt_status take_slot(xdt_executor *ex, int chunk, int mb, int *slot) {
    int *ref = slot_ref(ex, chunk, mb);
    *slot = -1;
    if (*ref < 0) {
        if (ex->n_free[chunk] == 0)
            return xdt_fail(XDT_ERR_INVALID_ARG,
                            "rank %d: microbatch %d of chunk %d needs a slot; all %d are held "
                            "(the schedule keeps more in flight than it declared)",
                            ex->rank, mb, chunk, ex->n_slots);
        *ref = ex->free_slots[chunk][--ex->n_free[chunk]];
    }
    *slot = *ref;
    return XDT_OK;
}

static void release_slot(xdt_executor *ex, int chunk, int mb) {
    int *ref = slot_ref(ex, chunk, mb);
    if (*ref >= 0) ex->free_slots[chunk][ex->n_free[chunk]++] = *ref;
    *ref = -1;
}

/* Stretches a compute op to `slowdown` times its measured length, keeping the core busy as a
 * slower device would stay occupied (a sleep lets the core cool and its caches go cold, and
 * the next op runs slower than the emulation intends). */
static void stretch(const xdt_executor *ex, double start) {
    if (ex->rp.slowdown <= 1) return;
    const double until = now_s() + (now_s() - start) * (ex->rp.slowdown - 1);
    while (now_s() < until) {
    }
}

/* Copies between the device and a host staging buffer. A device backend may queue copies on its
 * stream, so off host memory the copy is waited for: the host side may then be read, or
 * reused, at once. */
xdt_status xdt_exec_to_host(xdt_executor *ex, float *host, const float *dev_src, size_t floats) {
    ex->dev->ops->copy(ex->dev->ctx, host, dev_src, floats * sizeof(float),
                       XDT_COPY_DEVICE_TO_HOST);
    return ex->host_mem ? XDT_OK : xdt_device_sync(ex->dev);
}

xdt_status xdt_exec_to_device(xdt_executor *ex, float *dev_dst, const float *host, size_t floats) {
    ex->dev->ops->copy(ex->dev->ctx, dev_dst, host, floats * sizeof(float),
                       XDT_COPY_HOST_TO_DEVICE);
    return ex->host_mem ? XDT_OK : xdt_device_sync(ex->dev);
}

xdt_status xdt_exec_send(xdt_executor *ex, const xdt_msg_id *id, const float *dev_src) {
    float *buf;
    xdt_status st = xdt_comm_send_reserve(ex->comm, id, &buf);
    if (st) return st;
    if ((st = xdt_exec_to_host(ex, buf, dev_src, id->n))) {
        xdt_comm_send_abort(ex->comm);
        return st;
    }
    return xdt_comm_send_commit(ex->comm);
}

xdt_status xdt_exec_recv(xdt_executor *ex, int r, float *dev_dst, size_t floats) {
    const double t0 = now_s();
    const float *data;
    xdt_status st = xdt_comm_recv_view(ex->comm, r, &data);
    ex->wait_s += now_s() - t0;
    return st ? st : xdt_exec_to_device(ex, dev_dst, data, floats);
}

static xdt_status receive(xdt_executor *ex, int op_index, float *dev_dst) {
    const int r = ex->recv_of_op[op_index];
    return xdt_exec_recv(ex, r, dev_dst, ex->recvs[r].n);
}

static xdt_status send(xdt_executor *ex, const xdt_op *op, xdt_msg_kind kind, const float *dev_src,
                       int dest_stage) {
    xdt_msg_id id = {.peer = peer_rank(ex, op->peer),
                     .kind = kind,
                     .microbatch = op->microbatch,
                     .chunk = dest_stage,
                     .n = ex->act_floats};
    return xdt_exec_send(ex, &id, dev_src);
}

static xdt_status forward(xdt_executor *ex, step_ctx *sc, const xdt_op *op) {
    const int v = op->chunk, mb = op->microbatch;
    int slot;
    xdt_status st = take_slot(ex, v, mb, &slot);
    if (st) return st;
    xdt_stage *s = ex->stage[v];
    const size_t bytes = (size_t)ex->rp.microbatch * ex->rp.seq * sizeof(int32_t);
    if (has_embedding(ex, v))
        ex->dev->ops->copy(ex->dev->ctx, xdt_stage_tokens(s, slot),
                           sc->inputs + batch_offset(ex, mb), bytes, XDT_COPY_HOST_TO_DEVICE);
    if (has_head(ex, v))
        ex->dev->ops->copy(ex->dev->ctx, xdt_stage_targets(s, slot),
                           sc->targets + batch_offset(ex, mb), bytes, XDT_COPY_HOST_TO_DEVICE);
    const float scale = 1.0f / ((float)ex->rp.global_batch * (float)ex->rp.seq);
    if ((st = xdt_stage_forward(s, slot, true, scale))) return st;
    if (has_head(ex, v)) {
        double loss = 0;
        if ((st = xdt_stage_loss(s, slot, &loss))) return st;
        sc->loss_sum += loss * ex->rp.microbatch / ex->rp.global_batch;
    }
    return XDT_OK;
}

xdt_status xdt_executor_step(xdt_executor *ex, int step, const int32_t *inputs,
                             const int32_t *targets, xdt_exec_result *out) {
    const xdt_rank_plan *rp = &ex->rp;
    if (xdt_executor_needs_data(ex) && (!inputs || !targets))
        return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: step %d needs the batch", ex->rank, step);
    step_ctx sc = {.step = step, .inputs = inputs, .targets = targets};
    xdt_status st = XDT_OK;
    if (ex->comm && (st = xdt_comm_begin_step(ex->comm, step, ex->recvs, ex->n_recvs))) return st;
    for (int v = 0; v < rp->chunks; v++)
        xdt_stage_zero_grads(ex->stage[v]);
    ex->wait_s = ex->busy_s = 0;
    double norm = 0, loss = 0, wan = 0;
    const int p = rp->pipeline_rank, n_ops = xdt_schedule_num_ops(rp->schedule, p);
    const xdt_op *ops = xdt_schedule_ops(rp->schedule, p);
    for (int i = 0; i < n_ops && !st; i++) {
        const xdt_op *op = &ops[i];
        const double t0 = now_s();
        int slot = -1;
        switch (op->kind) {
        case XDT_OP_RECV_ACT:
            if (!(st = take_slot(ex, op->chunk, op->microbatch, &slot)))
                st = receive(ex, i, xdt_stage_input(ex->stage[op->chunk], slot));
            break;
        case XDT_OP_RECV_GRAD:
            st = receive(ex, i, xdt_stage_grad_output(ex->stage[op->chunk]));
            break;
        case XDT_OP_FWD:
            st = forward(ex, &sc, op);
            stretch(ex, t0);
            ex->busy_s += now_s() - t0;
            break;
        case XDT_OP_BWD:
            if (!(st = take_slot(ex, op->chunk, op->microbatch, &slot)))
                st = xdt_stage_backward(ex->stage[op->chunk], slot);
            release_slot(ex, op->chunk, op->microbatch);
            stretch(ex, t0);
            ex->busy_s += now_s() - t0;
            break;
        case XDT_OP_SEND_ACT:
            if (!(st = take_slot(ex, op->chunk, op->microbatch, &slot)))
                st = send(ex, op, XDT_MSG_ACT, xdt_stage_output(ex->stage[op->chunk], slot),
                          global_stage(ex, op->chunk) + 1);
            break;
        case XDT_OP_SEND_GRAD:
            st = send(ex, op, XDT_MSG_GRAD, xdt_stage_grad_input(ex->stage[op->chunk]),
                      global_stage(ex, op->chunk) - 1);
            break;
        case XDT_OP_ALLREDUCE:
            st = xdt_exec_reduce(ex, sc.loss_sum, &norm, &loss, &wan);
            break;
        case XDT_OP_OPT_STEP:
            for (int v = 0; v < rp->chunks && !st; v++)
                st = xdt_optimizer_step(ex->opt[v], step, norm);
            break;
        case XDT_OP_BWD_INPUT:
        case XDT_OP_BWD_WEIGHT:
        case XDT_OP_KIND_COUNT:
            st = xdt_fail(XDT_ERR_UNSUPPORTED, "rank %d: op %s is not executed by this runtime",
                          ex->rank, xdt_op_kind_name(op->kind));
            break;
        }
        record(ex, step, op, t0, now_s());
    }
    if (st) return st;
    if (!isfinite(loss))
        return xdt_fail(XDT_ERR_NUMERIC, "step %d: loss is %g; training diverged", step + 1, loss);
    *out = (xdt_exec_result){.loss = loss,
                             .grad_norm = norm,
                             .wait_ms = ex->wait_s * 1e3,
                             .wan_bytes = wan,
                             .wan_raw_bytes = ex->totals[3],
                             .busy_ms = ex->totals[4] * 1e3};
    return XDT_OK;
}
