/* schedule.c: the schedule IR -- builder, accessors, names, printing and the in-flight count. */
#include "core/schedule.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

typedef struct rank_ops {
    xdt_op *ops;
    int n, cap;
} rank_ops;

struct xdt_schedule {
    xdt_schedule_kind kind;
    int P, M, V;
    rank_ops *ranks; /* P of them */
};

xdt_status xdt_schedule_create(xdt_schedule_kind kind, int ranks, int microbatches, int chunks,
                               xdt_schedule **out) {
    if (!out) return xdt_fail(XDT_ERR_INVALID_ARG, "schedule: no output pointer");
    if (ranks < 1 || microbatches < 1 || chunks < 1)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "schedule: ranks (%d), microbatches (%d) and chunks (%d) must be >= 1",
                        ranks, microbatches, chunks);
    if ((int)kind < 0 || kind > XDT_SCHEDULE_CUSTOM)
        return xdt_fail(XDT_ERR_INVALID_ARG, "schedule: unknown kind %d", (int)kind);
    xdt_schedule *s = calloc(1, sizeof *s);
    if (s) s->ranks = calloc((size_t)ranks, sizeof *s->ranks);
    if (!s || !s->ranks) {
        free(s);
        return xdt_fail(XDT_ERR_NO_MEMORY, "schedule: out of memory for %d ranks", ranks);
    }
    s->kind = kind;
    s->P = ranks;
    s->M = microbatches;
    s->V = chunks;
    *out = s;
    return XDT_OK;
}

void xdt_schedule_destroy(xdt_schedule *s) {
    if (!s) return;
    for (int r = 0; r < s->P; r++)
        free(s->ranks[r].ops);
    free(s->ranks);
    free(s);
}

xdt_status xdt_schedule_append(xdt_schedule *s, int rank, xdt_op op) {
    if (!s || rank < 0 || rank >= s->P)
        return xdt_fail(XDT_ERR_INVALID_ARG, "schedule: append to rank %d of %d", rank,
                        s ? s->P : 0);
    rank_ops *ro = &s->ranks[rank];
    if (ro->n == ro->cap) {
        int cap = ro->cap ? ro->cap * 2 : 64;
        xdt_op *ops = realloc(ro->ops, (size_t)cap * sizeof *ops);
        if (!ops)
            return xdt_fail(XDT_ERR_NO_MEMORY, "schedule: out of memory for %d ops on rank %d", cap,
                            rank);
        ro->ops = ops;
        ro->cap = cap;
    }
    ro->ops[ro->n++] = op;
    return XDT_OK;
}

xdt_schedule_kind xdt_schedule_get_kind(const xdt_schedule *s) {
    return s->kind;
}
int xdt_schedule_ranks(const xdt_schedule *s) {
    return s->P;
}
int xdt_schedule_microbatches(const xdt_schedule *s) {
    return s->M;
}
int xdt_schedule_chunks(const xdt_schedule *s) {
    return s->V;
}

int xdt_schedule_num_ops(const xdt_schedule *s, int rank) {
    return (s && rank >= 0 && rank < s->P) ? s->ranks[rank].n : 0;
}

const xdt_op *xdt_schedule_ops(const xdt_schedule *s, int rank) {
    return (s && rank >= 0 && rank < s->P) ? s->ranks[rank].ops : NULL;
}

int xdt_schedule_stage(const xdt_schedule *s, int rank, int chunk) {
    return chunk * s->P + rank;
}

const char *xdt_schedule_kind_name(xdt_schedule_kind kind) {
    switch (kind) {
    case XDT_SCHEDULE_GPIPE:
        return "gpipe";
    case XDT_SCHEDULE_1F1B:
        return "1f1b";
    case XDT_SCHEDULE_INTERLEAVED:
        return "interleaved";
    case XDT_SCHEDULE_XDC:
        return "xdc";
    case XDT_SCHEDULE_CUSTOM:
        return "custom";
    }
    return "unknown";
}

const char *xdt_op_kind_name(xdt_op_kind kind) {
    static const char *names[XDT_OP_KIND_COUNT] = {
        "FWD",      "BWD",       "BWD_INPUT", "BWD_WEIGHT", "SEND_ACT",
        "RECV_ACT", "SEND_GRAD", "RECV_GRAD", "ALLREDUCE",  "OPT_STEP"};
    return ((int)kind >= 0 && kind < XDT_OP_KIND_COUNT) ? names[kind] : "UNKNOWN";
}

void xdt_schedule_format_op(const xdt_schedule *s, const xdt_op *op, char *buf, size_t cap) {
    if (!buf || cap == 0) return;
    const char *name = xdt_op_kind_name(op->kind);
    char chunk[32] = "";
    if (s->V > 1) snprintf(chunk, sizeof chunk, " chunk %d", op->chunk);
    switch (op->kind) {
    case XDT_OP_FWD:
    case XDT_OP_BWD:
    case XDT_OP_BWD_INPUT:
    case XDT_OP_BWD_WEIGHT:
        snprintf(buf, cap, "%s mb %d%s", name, op->microbatch, chunk);
        break;
    case XDT_OP_SEND_ACT:
    case XDT_OP_SEND_GRAD:
        snprintf(buf, cap, "%s mb %d%s to %d", name, op->microbatch, chunk, op->peer);
        break;
    case XDT_OP_RECV_ACT:
    case XDT_OP_RECV_GRAD:
        snprintf(buf, cap, "%s mb %d%s from %d", name, op->microbatch, chunk, op->peer);
        break;
    case XDT_OP_ALLREDUCE:
        snprintf(buf, cap, "%s bucket %d", name, op->bucket);
        break;
    default:
        snprintf(buf, cap, "%s", name);
        break;
    }
}

void xdt_schedule_print(const xdt_schedule *s, FILE *f) {
    fprintf(f, "schedule %s: %d ranks, %d microbatches, %d chunks per rank\n",
            xdt_schedule_kind_name(s->kind), s->P, s->M, s->V);
    char line[128];
    for (int r = 0; r < s->P; r++) {
        for (int i = 0; i < s->ranks[r].n; i++) {
            xdt_schedule_format_op(s, &s->ranks[r].ops[i], line, sizeof line);
            fprintf(f, "rank %d op %d: %s\n", r, i, line);
        }
    }
}

int xdt_schedule_max_in_flight(const xdt_schedule *s, int rank) {
    if (!s || rank < 0 || rank >= s->P) return 0;
    const rank_ops *ro = &s->ranks[rank];
    /* Each (microbatch, chunk) is held from its FWD until its BWD or BWD_WEIGHT. */
    size_t n = (size_t)s->M * (size_t)s->V;
    unsigned char *held = calloc(n ? n : 1, 1);
    if (!held) return -1;
    int cur = 0, best = 0;
    for (int i = 0; i < ro->n; i++) {
        const xdt_op *op = &ro->ops[i];
        if (op->microbatch < 0 || op->microbatch >= s->M || op->chunk < 0 || op->chunk >= s->V)
            continue;
        size_t k = (size_t)op->microbatch * (size_t)s->V + (size_t)op->chunk;
        if (op->kind == XDT_OP_FWD && !held[k]) {
            held[k] = 1;
            if (++cur > best) best = cur;
        } else if ((op->kind == XDT_OP_BWD || op->kind == XDT_OP_BWD_WEIGHT) && held[k]) {
            held[k] = 0;
            cur--;
        }
    }
    free(held);
    return best;
}
