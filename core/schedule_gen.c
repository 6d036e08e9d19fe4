/* schedule_gen.c: schedule generators -- GPipe, 1F1B, Megatron's interleaved 1F1B and the
 * latency-aware cross-site XDC variant. Receives sit right before the compute that needs them,
 * sends right after the compute that produces them. */
#include <stdlib.h>

#include "core/log.h"
#include "core/schedule.h"

static xdt_op make_op(xdt_op_kind kind, int mb, int chunk, int peer) {
    xdt_op op = {kind, mb, chunk, peer, -1};
    return op;
}

/* RECV_ACT (unless first stage), FWD, SEND_ACT (unless last stage). */
static xdt_status emit_fwd(xdt_schedule *s, int r, int mb, int v) {
    int P = xdt_schedule_ranks(s), S = P * xdt_schedule_chunks(s);
    int st = xdt_schedule_stage(s, r, v);
    xdt_status rc = XDT_OK;
    if (st > 0) rc = xdt_schedule_append(s, r, make_op(XDT_OP_RECV_ACT, mb, v, (st - 1) % P));
    if (rc == XDT_OK) rc = xdt_schedule_append(s, r, make_op(XDT_OP_FWD, mb, v, -1));
    if (rc == XDT_OK && st < S - 1)
        rc = xdt_schedule_append(s, r, make_op(XDT_OP_SEND_ACT, mb, v, (st + 1) % P));
    return rc;
}

/* RECV_GRAD (unless last stage), BWD, SEND_GRAD (unless first stage). */
static xdt_status emit_bwd(xdt_schedule *s, int r, int mb, int v) {
    int P = xdt_schedule_ranks(s), S = P * xdt_schedule_chunks(s);
    int st = xdt_schedule_stage(s, r, v);
    xdt_status rc = XDT_OK;
    if (st < S - 1) rc = xdt_schedule_append(s, r, make_op(XDT_OP_RECV_GRAD, mb, v, (st + 1) % P));
    if (rc == XDT_OK) rc = xdt_schedule_append(s, r, make_op(XDT_OP_BWD, mb, v, -1));
    if (rc == XDT_OK && st > 0)
        rc = xdt_schedule_append(s, r, make_op(XDT_OP_SEND_GRAD, mb, v, (st - 1) % P));
    return rc;
}

/* ALLREDUCE of bucket 0, then OPT_STEP. */
static xdt_status emit_tail(xdt_schedule *s, int r) {
    xdt_op ar = {XDT_OP_ALLREDUCE, -1, 0, -1, 0};
    xdt_op opt = {XDT_OP_OPT_STEP, -1, 0, -1, -1};
    xdt_status rc = xdt_schedule_append(s, r, ar);
    return rc == XDT_OK ? xdt_schedule_append(s, r, opt) : rc;
}

static xdt_status check_sizes(const char *name, int P, int M, int V) {
    if (P < 1 || M < 1 || V < 1)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "%s schedule: ranks (%d), microbatches (%d) and chunks (%d) must be >= 1",
                        name, P, M, V);
    return XDT_OK;
}

static xdt_status finish(xdt_schedule *s, xdt_status rc, xdt_schedule **out) {
    if (rc != XDT_OK) {
        xdt_schedule_destroy(s);
        return rc;
    }
    *out = s;
    return XDT_OK;
}

xdt_status xdt_schedule_gpipe(int P, int M, xdt_schedule **out) {
    xdt_status rc = check_sizes("gpipe", P, M, 1);
    if (rc != XDT_OK) return rc;
    xdt_schedule *s = NULL;
    if ((rc = xdt_schedule_create(XDT_SCHEDULE_GPIPE, P, M, 1, &s)) != XDT_OK) return rc;
    for (int r = 0; r < P && rc == XDT_OK; r++) {
        for (int m = 0; m < M && rc == XDT_OK; m++)
            rc = emit_fwd(s, r, m, 0);
        for (int m = M - 1; m >= 0 && rc == XDT_OK; m--)
            rc = emit_bwd(s, r, m, 0);
        if (rc == XDT_OK) rc = emit_tail(s, r);
    }
    return finish(s, rc, out);
}

/* 1F1B on every rank with warm-up[r] forwards before the first backward. */
static xdt_status one_f_one_b(xdt_schedule *s, const int *warmup) {
    int P = xdt_schedule_ranks(s), M = xdt_schedule_microbatches(s);
    xdt_status rc = XDT_OK;
    for (int r = 0; r < P && rc == XDT_OK; r++) {
        int w = warmup[r];
        for (int m = 0; m < w && rc == XDT_OK; m++)
            rc = emit_fwd(s, r, m, 0);
        for (int i = 0; i < M - w && rc == XDT_OK; i++) {
            rc = emit_fwd(s, r, w + i, 0);
            if (rc == XDT_OK) rc = emit_bwd(s, r, i, 0);
        }
        for (int m = M - w; m < M && rc == XDT_OK; m++)
            rc = emit_bwd(s, r, m, 0);
        if (rc == XDT_OK) rc = emit_tail(s, r);
    }
    return rc;
}

xdt_status xdt_schedule_xdc(int P, int M, const int *extra, xdt_schedule **out) {
    xdt_status rc = check_sizes("xdc", P, M, 1);
    if (rc != XDT_OK) return rc;
    for (int r = 0; extra && r < P; r++)
        if (extra[r] < 0)
            return xdt_fail(XDT_ERR_INVALID_ARG, "xdc schedule: extra warm-up of rank %d is %d", r,
                            extra[r]);
    int *warmup = malloc((size_t)P * sizeof *warmup);
    if (!warmup) return xdt_fail(XDT_ERR_NO_MEMORY, "xdc schedule: out of memory");
    /* Rank r can run at most one forward further ahead than rank r-1 has fed it, so walk from
     * the last rank back raising each predecessor's extra to at least the successor's - 1. */
    int need = 0;
    for (int r = P - 1; r >= 0; r--) {
        int e = extra ? extra[r] : 0;
        if (e < need) e = need;
        need = e > 0 ? e - 1 : 0;
        long w = (long)(P - r - 1) + e;
        warmup[r] = w < M ? (int)w : M;
    }
    xdt_schedule *s = NULL;
    rc = xdt_schedule_create(extra ? XDT_SCHEDULE_XDC : XDT_SCHEDULE_1F1B, P, M, 1, &s);
    if (rc == XDT_OK) rc = finish(s, one_f_one_b(s, warmup), out);
    free(warmup);
    return rc;
}

xdt_status xdt_schedule_1f1b(int P, int M, xdt_schedule **out) {
    return xdt_schedule_xdc(P, M, NULL, out);
}

xdt_status xdt_schedule_interleaved(int P, int M, int V, xdt_schedule **out) {
    xdt_status rc = check_sizes("interleaved", P, M, V);
    if (rc != XDT_OK) return rc;
    if (M % P != 0)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "interleaved schedule: microbatches (%d) must be a multiple of the "
                        "pipeline ranks (%d)",
                        M, P);
    xdt_schedule *s = NULL;
    if ((rc = xdt_schedule_create(XDT_SCHEDULE_INTERLEAVED, P, M, V, &s)) != XDT_OK) return rc;
    /* Megatron: each rank walks M*V virtual microbatches; k runs microbatch
     * (k / (P*V)) * P + k % P on chunk (k % (P*V)) / P forward, the mirror chunk backward. */
    int total = M * V, group = P * V;
    for (int r = 0; r < P && rc == XDT_OK; r++) {
        int w = (P - r - 1) * 2 + (V - 1) * P;
        if (w > total) w = total;
        for (int k = 0; k < total + w && rc == XDT_OK; k++) {
            int f = k, b = k - w; /* forward index, backward index (steady and cool-down) */
            if (f < total) rc = emit_fwd(s, r, (f / group) * P + f % P, (f % group) / P);
            if (rc == XDT_OK && b >= 0)
                rc = emit_bwd(s, r, (b / group) * P + b % P, V - 1 - (b % group) / P);
        }
        if (rc == XDT_OK) rc = emit_tail(s, r);
    }
    return finish(s, rc, out);
}
