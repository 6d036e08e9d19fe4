/* pipeline_reduce.c: the end of a step (ALLREDUCE): the tied embedding gradient between the
 * first and last ranks, the data-parallel all-reduce (NCCL or the ring over the transport,
 * staged through host memory where the device's is not), and every rank's sums to every rank. */
#include <math.h>
#include <string.h>

#include "core/log.h"
#include "core/pipeline_internal.h"

/* Splits a double into two floats whose sum is it (to 2^-48 relative), for exchanging sums
 * exactly enough through fp32 messages. */
void xdt_exec_split_double(double x, float *hi, float *lo) {
    *hi = (float)x;
    *lo = (float)(x - (double)*hi);
}

/* Bytes this rank sent to ranks in other sites so far: the communication thread's counts
 * (pipeline and tied traffic) plus the ring all-reduces' (counted as they ran). */
static void wan_bytes_so_far(xdt_executor *ex, double *wire_total, double *raw_total) {
    const xdt_rank_plan *rp = &ex->rp;
    *wire_total = ex->dp_wan_bytes;
    *raw_total = ex->dp_wan_raw_bytes;
    for (int g = 0; rp->site_of && g < rp->replicas * rp->stages; g++) {
        if (g == ex->rank || rp->site_of[g] == rp->site_of[ex->rank]) continue;
        uint64_t wire, raw;
        xdt_executor_sent_bytes(ex, g, &wire, &raw);
        *wire_total += (double)wire;
        *raw_total += (double)raw;
    }
}

/* The tied matrix's gradient on this rank (the embedding's on the first rank, the head's copy on
 * the last). */
static float *tied_grad(xdt_executor *ex) {
    const xdt_rank_plan *rp = &ex->rp;
    xdt_stage *s = ex->stage[rp->pipeline_rank == 0 ? 0 : rp->chunks - 1];
    const xdt_param_tensor *tt = tensor_of(s, rp->pipeline_rank == 0 ? XDT_P_WTE : XDT_P_LM_HEAD);
    return tt ? xdt_stage_grads(s) + tt->offset : NULL;
}

static xdt_status send_tied(xdt_executor *ex) {
    float *g = tied_grad(ex);
    if (!g) return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: no tied embedding tensor", ex->rank);
    xdt_msg_id id = {.peer = ex->tied_peer, .kind = XDT_MSG_TIED, .n = ex->tied_floats};
    return xdt_exec_send(ex, &id, g);
}

/* Adds the partner's pre-reduction gradient to ours: a + b == b + a, so the two copies of the
 * tied matrix stay bit-identical. Through a lossy codec each side adds the partner's decoded
 * gradient to its own gradient decoded the same way, for the same reason. */
static xdt_status add_tied(xdt_executor *ex) {
    float *g = tied_grad(ex);
    xdt_status st;
    if (ex->tied_codec) {
        size_t len = 0;
        const size_t cap = xdt_codec_max_encoded_bytes(&ex->rp.tied_codec, ex->tied_floats);
        if ((st = xdt_exec_to_host(ex, ex->host_buf, g, ex->tied_floats)) ||
            (st = xdt_codec_encode(ex->tied_codec, ex->host_buf, ex->tied_floats, ex->tied_wire,
                                   cap, &len)) ||
            (st = xdt_codec_decode(ex->tied_codec, ex->tied_wire, len, ex->host_buf,
                                   ex->tied_floats)) ||
            (st = xdt_exec_to_device(ex, g, ex->host_buf, ex->tied_floats)))
            return st;
    }
    if ((st = xdt_exec_recv(ex, ex->tied_recv, ex->dev_tied, ex->tied_floats))) return st;
    ex->dev->ops->add(ex->dev->ctx, g, g, ex->dev_tied, ex->tied_floats);
    return XDT_OK;
}

/* NCCL (or RCCL) reads the gradients on the device: every chunk's sum is queued on the device's
 * own stream, behind the backward kernels that wrote them (no sync first), and waited for with
 * the group's timeout (a dead member is an error, not a hang). The transport is not involved. */
static xdt_status allreduce_nccl(xdt_executor *ex) {
    xdt_status st = XDT_OK;
    for (int v = 0; v < ex->rp.chunks && !st; v++)
        st = xdt_nccl_allreduce_sum(ex->nccl, xdt_stage_grads(ex->stage[v]),
                                    xdt_stage_num_params(ex->stage[v]));
    return st ? st : xdt_nccl_group_wait(ex->nccl);
}

static xdt_status allreduce_replicas(xdt_executor *ex) {
    const xdt_rank_plan *rp = &ex->rp;
    if (ex->nccl) return allreduce_nccl(ex);
    /* the transport is the compute thread's while the collectives run */
    xdt_status st = ex->comm ? xdt_comm_drain(ex->comm) : XDT_OK;
    const int D = rp->replicas;
    for (int v = 0; v < rp->chunks && !st; v++) {
        xdt_stage *s = ex->stage[v];
        const size_t n = xdt_stage_num_params(s);
        /* host memory is reduced in place; device memory through the staging buffer */
        float *g = xdt_stage_grads(s), *buf = ex->host_mem ? g : ex->host_buf;
        if (!ex->host_mem && (st = xdt_exec_to_host(ex, buf, g, n))) break;
        st = xdt_allreduce_encoded(&ex->dp_group, buf, n, XDT_REDUCE_SUM, &rp->dp_codec);
        if (!st && !ex->host_mem) st = xdt_exec_to_device(ex, g, buf, n);
        /* a ring sends 2 (D - 1) chunks of n / D to the next member */
        const int next = ((rp->replica + 1) % D) * rp->stages + rp->pipeline_rank;
        if (rp->site_of && rp->site_of[next] != rp->site_of[ex->rank]) {
            ex->dp_wan_bytes +=
                2.0 * (D - 1) * (double)xdt_codec_max_encoded_bytes(&rp->dp_codec, n / D + 1);
            ex->dp_wan_raw_bytes += 2.0 * (D - 1) * (double)(n / D + 1) * sizeof(float);
        }
    }
    if (!st && ex->comm) st = xdt_comm_resume(ex->comm);
    return st;
}

/* Sends this rank's sums (squared norm -- the head's copy of the tied matrix is counted on the
 * first rank --, loss share, WAN bytes, compute time) to every other rank; keeps them in mine. */
static xdt_status send_sums(xdt_executor *ex, double loss_sum, float *mine) {
    const xdt_rank_plan *rp = &ex->rp;
    xdt_status st;
    double sumsq = 0;
    for (int v = 0; v < rp->chunks; v++) {
        int n;
        const xdt_param_tensor *tt = xdt_stage_tensors(ex->stage[v], &n);
        const float *g = xdt_stage_grads(ex->stage[v]);
        for (int i = 0; i < n; i++) {
            if (tt[i].role == XDT_P_LM_HEAD) continue;
            double sq = 0;
            if ((st = ex->dev->ops->sum_squares(ex->dev->ctx, g + tt[i].offset, tt[i].count, &sq)))
                return st;
            sumsq += sq;
        }
    }
    double wire_now, raw_now;
    wan_bytes_so_far(ex, &wire_now, &raw_now);
    const double sums[NORM_SUMS] = {sumsq, loss_sum, wire_now - ex->wan_reported,
                                    raw_now - ex->wan_raw_reported, ex->busy_s};
    ex->wan_reported = wire_now;
    ex->wan_raw_reported = raw_now;
    for (int k = 0; k < NORM_SUMS; k++)
        xdt_exec_split_double(sums[k], &mine[2 * k], &mine[2 * k + 1]);
    for (int g = 0; g < rp->replicas * rp->stages; g++) {
        if (g == ex->rank) continue;
        xdt_msg_id id = {.peer = g, .kind = XDT_MSG_NORM, .n = NORM_FLOATS};
        if ((st = xdt_comm_send(ex->comm, &id, mine))) return st;
    }
    return XDT_OK;
}

/* ALLREDUCE: the tied gradient's exchange, the data-parallel all-reduce, and every rank's sums
 * to every rank (added in rank order, so all hold the same totals; with replicas each counts
 * the all-reduced gradients once, hence / D). A rank whose sums do not depend on the tied sum
 * (all but the first, without replicas) sends them before waiting for it, so the exchange
 * costs one link latency at the end of the step, not two. */
xdt_status xdt_exec_reduce(xdt_executor *ex, double loss_sum, double *norm, double *loss,
                           double *wan) {
    const xdt_rank_plan *rp = &ex->rp;
    xdt_status st = XDT_OK;
    float mine[NORM_FLOATS];
    const bool early = !ex->dp && rp->pipeline_rank != 0;
    if (ex->tied_peer >= 0 && (st = send_tied(ex))) return st;
    if (early && (st = send_sums(ex, loss_sum, mine))) return st;
    if (ex->tied_peer >= 0 && (st = add_tied(ex))) return st;
    if (ex->dp && (st = allreduce_replicas(ex))) return st;
    if (!early && (st = send_sums(ex, loss_sum, mine))) return st;
    const double t0 = now_s();
    for (int k = 0; k < NORM_SUMS; k++)
        ex->totals[k] = 0;
    for (int g = 0, r = ex->norm_recv; g < rp->replicas * rp->stages; g++) {
        float got[NORM_FLOATS];
        if (g == ex->rank) {
            memcpy(got, mine, sizeof got);
        } else if ((st = xdt_comm_recv(ex->comm, r++, got))) {
            return st;
        }
        for (int k = 0; k < NORM_SUMS; k++)
            ex->totals[k] += (double)got[2 * k] + (double)got[2 * k + 1];
    }
    ex->wait_s += now_s() - t0;
    *norm = sqrt(ex->totals[0] / rp->replicas);
    *loss = ex->totals[1];
    *wan = ex->totals[2];
    return XDT_OK;
}
