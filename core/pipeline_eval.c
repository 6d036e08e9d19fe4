/* pipeline_eval.c: validation through the pipeline: a forward-only pass over one global batch,
 * chunk by chunk, the heads' losses summed on every rank. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/pipeline_internal.h"

/* The pass's order on this rank: chunk by chunk, each chunk's microbatches in order (sends are
 * buffered, so rank P-1 can finish chunk v before rank 0 starts v + 1: no deadlock). Its
 * receives: an activation for every (chunk, microbatch) past the first stage, then the sums. */
static xdt_status build_eval_receives(xdt_executor *ex) {
    const xdt_rank_plan *rp = &ex->rp;
    const int R = rp->replicas * rp->stages, M = rp->replica_microbatches;
    ex->eval_recvs = calloc((size_t)rp->chunks * M + (size_t)R, sizeof *ex->eval_recvs);
    if (!ex->eval_recvs) return xdt_fail(XDT_ERR_NO_MEMORY, "executor: out of memory");
    ex->n_eval_recvs = 0;
    for (int v = 0; v < rp->chunks; v++) {
        const int s = global_stage(ex, v);
        for (int m = 0; s > 0 && m < M; m++)
            ex->eval_recvs[ex->n_eval_recvs++] =
                (xdt_msg_id){.peer = peer_rank(ex, (s - 1) % rp->stages),
                             .kind = XDT_MSG_EVAL,
                             .microbatch = m,
                             .chunk = s,
                             .n = ex->act_floats};
    }
    for (int g = 0; g < R; g++)
        if (g != ex->rank)
            ex->eval_recvs[ex->n_eval_recvs++] =
                (xdt_msg_id){.peer = g, .kind = XDT_MSG_NORM, .microbatch = 1, .n = NORM_FLOATS};
    return XDT_OK;
}

xdt_status xdt_executor_eval(xdt_executor *ex, int step, const int32_t *inputs,
                             const int32_t *targets, double *loss) {
    const xdt_rank_plan *rp = &ex->rp;
    if (xdt_executor_needs_data(ex) && (!inputs || !targets))
        return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d: evaluation needs the batch", ex->rank);
    xdt_status st = XDT_OK;
    if (!ex->eval_recvs && (st = build_eval_receives(ex))) return st;
    if (ex->comm && (st = xdt_comm_begin_step(ex->comm, step, ex->eval_recvs, ex->n_eval_recvs)))
        return st;
    const int P = rp->stages, S = P * rp->chunks, M = rp->replica_microbatches;
    const size_t bytes = (size_t)rp->microbatch * rp->seq * sizeof(int32_t);
    double loss_sum = 0;
    int r = 0;
    for (int v = 0; v < rp->chunks && !st; v++) {
        const int s = global_stage(ex, v);
        xdt_stage *stage = ex->stage[v];
        for (int m = 0; m < M && !st; m++) {
            const int slot = 0; /* nothing is kept for a backward */
            if (s > 0) {
                if ((st = xdt_exec_recv(ex, r++, xdt_stage_input(stage, slot), ex->act_floats)))
                    break;
            }
            if (has_embedding(ex, v))
                ex->dev->ops->copy(ex->dev->ctx, xdt_stage_tokens(stage, slot),
                                   inputs + batch_offset(ex, m), bytes, XDT_COPY_HOST_TO_DEVICE);
            if (has_head(ex, v))
                ex->dev->ops->copy(ex->dev->ctx, xdt_stage_targets(stage, slot),
                                   targets + batch_offset(ex, m), bytes, XDT_COPY_HOST_TO_DEVICE);
            if ((st = xdt_stage_forward(stage, slot, false, 0.0f))) break;
            if (has_head(ex, v)) {
                double l = 0;
                if ((st = xdt_stage_loss(stage, slot, &l))) break;
                loss_sum += l * rp->microbatch / rp->global_batch;
            }
            if (s + 1 < S) {
                xdt_msg_id id = {.peer = peer_rank(ex, (s + 1) % P),
                                 .kind = XDT_MSG_EVAL,
                                 .microbatch = m,
                                 .chunk = s + 1,
                                 .n = ex->act_floats};
                st = xdt_exec_send(ex, &id, xdt_stage_output(stage, slot));
            }
        }
    }
    if (st) return st;
    /* the heads' shares to everyone, added in rank order */
    float mine[NORM_FLOATS] = {0};
    xdt_exec_split_double(loss_sum, &mine[0], &mine[1]);
    const int R = rp->replicas * P;
    for (int g = 0; g < R && !st; g++) {
        if (g == ex->rank) continue;
        xdt_msg_id id = {.peer = g, .kind = XDT_MSG_NORM, .microbatch = 1, .n = NORM_FLOATS};
        st = xdt_comm_send(ex->comm, &id, mine);
    }
    double total = 0;
    for (int g = 0; g < R && !st; g++) {
        float got[NORM_FLOATS];
        if (g == ex->rank)
            memcpy(got, mine, sizeof got);
        else
            st = xdt_comm_recv(ex->comm, r++, got);
        total += (double)got[0] + (double)got[1];
    }
    if (st) return st;
    *loss = total;
    return XDT_OK;
}
