/* schedule_validate.c: proves a schedule sound before it runs -- field ranges, ALLREDUCE and
 * OPT_STEP closing each list, per-rank completeness and order, send/receive matching with the
 * stage order, data dependencies, and freedom from deadlock by simulating every rank with
 * blocking receives and buffered sends. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/schedule.h"

/* Per (rank, microbatch, chunk) what the rank's list has done so far. */
typedef struct unit_state {
    unsigned char fwd, bwd, bwd_in, bwd_w, recv_act, send_act, recv_grad, send_grad;
} unit_state;

typedef struct vctx {
    const xdt_schedule *s;
    int P, M, V, S;
    char *why;
    size_t cap;
    unit_state *units;   /* P * M * V */
    unsigned char *msgs; /* [4][M][S]: sends/receives of activations/gradients per link */
} vctx;

static xdt_status reject(vctx *c, const char *fmt, ...) XDT_PRINTF(2, 3);
static xdt_status reject(vctx *c, const char *fmt, ...) {
    if (c->why && c->cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->why, c->cap, fmt, ap);
        va_end(ap);
    }
    return XDT_ERR_INVALID_ARG;
}

static unit_state *unit(vctx *c, int r, int mb, int v) {
    return &c->units[((size_t)r * (size_t)c->M + (size_t)mb) * (size_t)c->V + (size_t)v];
}

/* Messages are keyed by the link between stages e and e+1 (e = 0..S-2). */
enum { MSG_SEND_ACT = 0, MSG_RECV_ACT = 1, MSG_SEND_GRAD = 2, MSG_RECV_GRAD = 3 };
static unsigned char *msg(vctx *c, int which, int mb, int link) {
    return &c->msgs[((size_t)which * (size_t)c->M + (size_t)mb) * (size_t)c->S + (size_t)link];
}

static bool is_comm(xdt_op_kind k) {
    return k == XDT_OP_SEND_ACT || k == XDT_OP_RECV_ACT || k == XDT_OP_SEND_GRAD ||
           k == XDT_OP_RECV_GRAD;
}

/* Link index of a send/receive op at stage st, or -1 when the stage has no such neighbour. */
static int link_of(const vctx *c, xdt_op_kind k, int st) {
    bool towards_next = k == XDT_OP_SEND_ACT || k == XDT_OP_RECV_GRAD;
    if (towards_next) return st < c->S - 1 ? st : -1;
    return st > 0 ? st - 1 : -1;
}

/* Pass 1: field ranges, and ALLREDUCE(s) then one OPT_STEP closing each list. */
static xdt_status check_fields(vctx *c) {
    for (int r = 0; r < c->P; r++) {
        const xdt_op *ops = xdt_schedule_ops(c->s, r);
        int n = xdt_schedule_num_ops(c->s, r);
        int tail = -1; /* index of the first ALLREDUCE */
        for (int i = 0; i < n; i++) {
            const xdt_op *op = &ops[i];
            if ((int)op->kind < 0 || op->kind >= XDT_OP_KIND_COUNT)
                return reject(c, "rank %d op %d: unknown op kind %d", r, i, (int)op->kind);
            const char *name = xdt_op_kind_name(op->kind);
            if (op->kind == XDT_OP_ALLREDUCE || op->kind == XDT_OP_OPT_STEP) {
                if (tail < 0 && op->kind == XDT_OP_OPT_STEP)
                    return reject(c, "rank %d op %d: OPT_STEP before ALLREDUCE", r, i);
                if (op->kind == XDT_OP_ALLREDUCE && i > 0 && ops[i - 1].kind == XDT_OP_OPT_STEP)
                    return reject(c, "rank %d op %d: ALLREDUCE after OPT_STEP", r, i);
                if (op->kind == XDT_OP_OPT_STEP && i != n - 1)
                    return reject(c, "rank %d op %d: OPT_STEP is not the last op", r, i);
                if (op->kind == XDT_OP_ALLREDUCE) {
                    if (op->bucket < 0)
                        return reject(c, "rank %d op %d: ALLREDUCE bucket %d", r, i, op->bucket);
                    for (int j = tail < 0 ? i : tail; j < i; j++)
                        if (ops[j].bucket == op->bucket)
                            return reject(c, "rank %d op %d: ALLREDUCE of bucket %d twice", r, i,
                                          op->bucket);
                }
                if (tail < 0) tail = i;
                continue;
            }
            if (tail >= 0) return reject(c, "rank %d op %d: %s after ALLREDUCE", r, i, name);
            if (op->microbatch < 0 || op->microbatch >= c->M)
                return reject(c, "rank %d op %d: %s microbatch %d outside 0..%d", r, i, name,
                              op->microbatch, c->M - 1);
            if (op->chunk < 0 || op->chunk >= c->V)
                return reject(c, "rank %d op %d: %s chunk %d outside 0..%d", r, i, name, op->chunk,
                              c->V - 1);
            if (is_comm(op->kind)) {
                int st = xdt_schedule_stage(c->s, r, op->chunk);
                int link = link_of(c, op->kind, st);
                if (link < 0)
                    return reject(
                        c, "rank %d op %d: %s on stage %d, which has no %s stage", r, i, name, st,
                        (op->kind == XDT_OP_SEND_ACT || op->kind == XDT_OP_RECV_GRAD) ? "next"
                                                                                      : "previous");
                int other = link == st ? st + 1 : st - 1;
                if (op->peer != other % c->P)
                    return reject(c,
                                  "rank %d op %d: %s mb %d peer is rank %d, but stage %d's "
                                  "neighbour stage %d is on rank %d",
                                  r, i, name, op->microbatch, op->peer, st, other, other % c->P);
            }
        }
        if (n == 0 || ops[n - 1].kind != XDT_OP_OPT_STEP)
            return reject(c, "rank %d: list does not end with ALLREDUCE then OPT_STEP", r);
    }
    return XDT_OK;
}

/* Pass 2: every (microbatch, chunk) forward once, then backward once (BWD, or BWD_INPUT then
 * BWD_WEIGHT), on every rank; and count sends/receives per link. */
static xdt_status check_compute(vctx *c) {
    for (int r = 0; r < c->P; r++) {
        const xdt_op *ops = xdt_schedule_ops(c->s, r);
        int n = xdt_schedule_num_ops(c->s, r);
        for (int i = 0; i < n; i++) {
            const xdt_op *op = &ops[i];
            if (op->kind == XDT_OP_ALLREDUCE || op->kind == XDT_OP_OPT_STEP) continue;
            unit_state *u = unit(c, r, op->microbatch, op->chunk);
            const char *name = xdt_op_kind_name(op->kind);
            int mb = op->microbatch, v = op->chunk;
            switch (op->kind) {
            case XDT_OP_FWD:
                if (u->fwd)
                    return reject(c, "rank %d: microbatch %d chunk %d: duplicate FWD", r, mb, v);
                u->fwd = 1;
                break;
            case XDT_OP_BWD:
            case XDT_OP_BWD_INPUT:
            case XDT_OP_BWD_WEIGHT: {
                if (!u->fwd)
                    return reject(c, "rank %d: microbatch %d chunk %d: %s before its FWD", r, mb, v,
                                  name);
                unsigned char *flag = op->kind == XDT_OP_BWD         ? &u->bwd
                                      : op->kind == XDT_OP_BWD_INPUT ? &u->bwd_in
                                                                     : &u->bwd_w;
                if (*flag)
                    return reject(c, "rank %d: microbatch %d chunk %d: duplicate %s", r, mb, v,
                                  name);
                if (op->kind == XDT_OP_BWD ? (u->bwd_in || u->bwd_w) : u->bwd)
                    return reject(c,
                                  "rank %d: microbatch %d chunk %d: mixes BWD with split "
                                  "BWD_INPUT/BWD_WEIGHT",
                                  r, mb, v);
                if (op->kind == XDT_OP_BWD_WEIGHT && !u->bwd_in)
                    return reject(c,
                                  "rank %d: microbatch %d chunk %d: BWD_WEIGHT before its "
                                  "BWD_INPUT",
                                  r, mb, v);
                *flag = 1;
                break;
            }
            default: {
                int st = xdt_schedule_stage(c->s, r, v);
                int which = op->kind == XDT_OP_SEND_ACT    ? MSG_SEND_ACT
                            : op->kind == XDT_OP_RECV_ACT  ? MSG_RECV_ACT
                            : op->kind == XDT_OP_SEND_GRAD ? MSG_SEND_GRAD
                                                           : MSG_RECV_GRAD;
                unsigned char *m = msg(c, which, mb, link_of(c, op->kind, st));
                if (*m)
                    return reject(c, "rank %d: microbatch %d chunk %d: duplicate %s", r, mb, v,
                                  name);
                *m = 1;
                break;
            }
            }
        }
    }
    for (int r = 0; r < c->P; r++)
        for (int v = 0; v < c->V; v++)
            for (int mb = 0; mb < c->M; mb++) {
                const unit_state *u = unit(c, r, mb, v);
                if (!u->fwd) return reject(c, "rank %d: microbatch %d chunk %d: no FWD", r, mb, v);
                if (!u->bwd && !u->bwd_in)
                    return reject(c, "rank %d: microbatch %d chunk %d: no backward", r, mb, v);
                if (u->bwd_in && !u->bwd_w)
                    return reject(c,
                                  "rank %d: microbatch %d chunk %d: BWD_INPUT without "
                                  "BWD_WEIGHT",
                                  r, mb, v);
            }
    return XDT_OK;
}

/* Pass 3: every send has its receive and every receive its send. */
static xdt_status check_matching(vctx *c) {
    static const char *what[2] = {"ACT", "GRAD"};
    for (int g = 0; g < 2; g++) {
        for (int mb = 0; mb < c->M; mb++) {
            for (int link = 0; link < c->S - 1; link++) {
                bool sent = *msg(c, 2 * g, mb, link), got = *msg(c, 2 * g + 1, mb, link);
                /* Activations flow link -> link+1, gradients link+1 -> link. */
                int from = g == 0 ? link : link + 1, to = g == 0 ? link + 1 : link;
                int fr = from % c->P, tr = to % c->P;
                if (sent && !got)
                    return reject(c,
                                  "rank %d: SEND_%s mb %d chunk %d to rank %d is never "
                                  "received",
                                  fr, what[g], mb, from / c->P, tr);
                if (got && !sent)
                    return reject(c,
                                  "rank %d waits forever: RECV_%s mb %d from rank %d, which "
                                  "never sends it",
                                  tr, what[g], mb, fr);
            }
        }
    }
    return XDT_OK;
}

/* Pass 4: data dependencies on each rank -- a FWD after the RECV_ACT of its input, SEND_ACT
 * after the FWD, a backward after the RECV_GRAD of its output gradient, SEND_GRAD after it. */
static xdt_status check_dependencies(vctx *c) {
    memset(c->units, 0, (size_t)c->P * (size_t)c->M * (size_t)c->V * sizeof *c->units);
    for (int r = 0; r < c->P; r++) {
        const xdt_op *ops = xdt_schedule_ops(c->s, r);
        int n = xdt_schedule_num_ops(c->s, r);
        for (int i = 0; i < n; i++) {
            const xdt_op *op = &ops[i];
            if (op->kind == XDT_OP_ALLREDUCE || op->kind == XDT_OP_OPT_STEP) continue;
            int mb = op->microbatch, v = op->chunk, st = xdt_schedule_stage(c->s, r, v);
            unit_state *u = unit(c, r, mb, v);
            const char *name = xdt_op_kind_name(op->kind);
            switch (op->kind) {
            case XDT_OP_FWD:
                if (st > 0 && !u->recv_act)
                    return reject(c, "rank %d: microbatch %d chunk %d: FWD before its RECV_ACT", r,
                                  mb, v);
                u->fwd = 1;
                break;
            case XDT_OP_BWD:
            case XDT_OP_BWD_INPUT:
                if (st < c->S - 1 && !u->recv_grad)
                    return reject(c, "rank %d: microbatch %d chunk %d: %s before its RECV_GRAD", r,
                                  mb, v, name);
                u->bwd = 1;
                break;
            case XDT_OP_SEND_ACT:
                if (!u->fwd)
                    return reject(c, "rank %d: microbatch %d chunk %d: SEND_ACT before its FWD", r,
                                  mb, v);
                break;
            case XDT_OP_SEND_GRAD:
                if (!u->bwd)
                    return reject(c,
                                  "rank %d: microbatch %d chunk %d: SEND_GRAD before its "
                                  "backward",
                                  r, mb, v);
                break;
            case XDT_OP_RECV_ACT:
                u->recv_act = 1;
                break;
            case XDT_OP_RECV_GRAD:
                u->recv_grad = 1;
                break;
            default:
                break;
            }
        }
    }
    return XDT_OK;
}

/* Pass 5: run every rank, receives blocking until the matching send has run, sends buffered. */
static xdt_status check_deadlock(vctx *c) {
    memset(c->msgs, 0, 4 * (size_t)c->M * (size_t)c->S);
    int *pc = calloc((size_t)c->P, sizeof *pc);
    if (!pc) {
        reject(c, "out of memory while simulating the schedule");
        return XDT_ERR_NO_MEMORY;
    }
    bool moved = true;
    while (moved) {
        moved = false;
        for (int r = 0; r < c->P; r++) {
            const xdt_op *ops = xdt_schedule_ops(c->s, r);
            int n = xdt_schedule_num_ops(c->s, r);
            while (pc[r] < n) {
                const xdt_op *op = &ops[pc[r]];
                if (is_comm(op->kind)) {
                    int st = xdt_schedule_stage(c->s, r, op->chunk);
                    int link = link_of(c, op->kind, st);
                    int grad = op->kind == XDT_OP_SEND_GRAD || op->kind == XDT_OP_RECV_GRAD;
                    unsigned char *m = msg(c, 2 * grad, op->microbatch, link);
                    if (op->kind == XDT_OP_RECV_ACT || op->kind == XDT_OP_RECV_GRAD) {
                        if (!*m) break; /* blocked */
                    } else {
                        *m = 1;
                    }
                }
                pc[r]++;
                moved = true;
            }
        }
    }
    int blocked = 0;
    for (int r = 0; r < c->P; r++)
        blocked += pc[r] < xdt_schedule_num_ops(c->s, r);
    xdt_status rc = XDT_OK;
    if (blocked && c->why && c->cap) {
        size_t len = (size_t)snprintf(c->why, c->cap, "deadlock:");
        int listed = 0;
        for (int r = 0; r < c->P && len < c->cap; r++) {
            if (pc[r] >= xdt_schedule_num_ops(c->s, r)) continue;
            char opbuf[96];
            xdt_schedule_format_op(c->s, &xdt_schedule_ops(c->s, r)[pc[r]], opbuf, sizeof opbuf);
            len += (size_t)snprintf(c->why + len, c->cap - len, "%s rank %d blocked at op %d (%s)",
                                    listed++ ? "," : "", r, pc[r], opbuf);
        }
    }
    if (blocked) rc = XDT_ERR_INVALID_ARG;
    free(pc);
    return rc;
}

xdt_status xdt_schedule_validate(const xdt_schedule *s, char *why, size_t cap) {
    if (why && cap) why[0] = '\0';
    vctx c = {.s = s, .why = why, .cap = cap};
    if (!s) return reject(&c, "no schedule");
    c.P = xdt_schedule_ranks(s);
    c.M = xdt_schedule_microbatches(s);
    c.V = xdt_schedule_chunks(s);
    c.S = c.P * c.V;
    c.units = calloc((size_t)c.P * (size_t)c.M * (size_t)c.V, sizeof *c.units);
    c.msgs = calloc(4 * (size_t)c.M * (size_t)c.S, 1);
    xdt_status rc;
    if (!c.units || !c.msgs) {
        reject(&c, "out of memory while validating the schedule");
        rc = XDT_ERR_NO_MEMORY;
    } else if ((rc = check_fields(&c)) == XDT_OK && (rc = check_compute(&c)) == XDT_OK &&
               (rc = check_matching(&c)) == XDT_OK && (rc = check_dependencies(&c)) == XDT_OK)
        rc = check_deadlock(&c);
    free(c.units);
    free(c.msgs);
    return rc;
}
