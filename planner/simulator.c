/* simulator.c: discrete-event execution of a job's schedules. Ranks advance in turns as far as
 * their receives and all-reduces allow; each directed link keeps the time it is next free, so
 * messages queue. */
#include "planner/simulator.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum { ACT = 0, GRAD = 1 };

typedef struct sim_state {
    int D, P, V, S, R, M_max;
    double *arrival;   /* [d][kind][mb][stage]: when a message lands (-1: not sent yet) */
    double *link_free; /* R x R */
    double *clock;     /* per rank */
    double *ar_ready;  /* per rank: when it reached ALLREDUCE (-1: not yet) */
    double *held;      /* per rank: activation bytes held now */
    int *pc;
} sim_state;

static double *arrival_at(sim_state *st, int d, int kind, int mb, int stage) {
    return &st->arrival[(((size_t)d * 2 + (size_t)kind) * (size_t)st->M_max + (size_t)mb) *
                            (size_t)st->S +
                        (size_t)stage];
}

static const xdt_schedule *schedule_of(const xdt_sim_input *in, int d) {
    return in->schedules ? in->schedules[d] : in->schedule;
}

static void free_state(sim_state *st) {
    free(st->arrival);
    free(st->link_free);
    free(st->clock);
    free(st->ar_ready);
    free(st->held);
    free(st->pc);
}

/* Runs rank (d, p) as far as it can; returns the number of ops executed, or -1 when it reached
 * the end of its list. */
static int advance(const xdt_sim_input *in, sim_state *st, xdt_sim_result *r, int d, int p) {
    const xdt_schedule *s = schedule_of(in, d);
    const xdt_op *ops = xdt_schedule_ops(s, p);
    const int n = xdt_schedule_num_ops(s, p), rank = d * st->P + p, R = st->R;
    int moved = 0;
    while (st->pc[rank] < n) {
        const xdt_op *op = &ops[st->pc[rank]];
        const int stage = op->chunk >= 0 ? xdt_schedule_stage(s, p, op->chunk) : 0;
        const size_t ds = (size_t)d * st->S + (size_t)stage;
        double start = st->clock[rank], end = start, wire_start = 0, wire_end = 0, arrive = 0;
        switch (op->kind) {
        case XDT_OP_FWD:
            end = start + in->fwd_ms[ds];
            if (in->activation_bytes) st->held[rank] += in->activation_bytes[ds];
            break;
        case XDT_OP_BWD:
        case XDT_OP_BWD_WEIGHT:
            end = start + (op->kind == XDT_OP_BWD ? in->bwd_ms[ds] : in->bwd_ms[ds] / 2);
            if (in->activation_bytes) st->held[rank] -= in->activation_bytes[ds];
            break;
        case XDT_OP_BWD_INPUT:
            end = start + in->bwd_ms[ds] / 2;
            break;
        case XDT_OP_ALLREDUCE: {
            /* every replica's rank p must have arrived; the reduction starts with the last */
            if (st->ar_ready[rank] < 0) st->ar_ready[rank] = start;
            double go = 0;
            for (int e = 0; e < st->D; e++) {
                double t = st->ar_ready[e * st->P + p];
                if (t < 0) return moved;
                go = t > go ? t : go;
            }
            end = go + (in->allreduce_ms ? in->allreduce_ms[p] : 0);
            break;
        }
        case XDT_OP_OPT_STEP:
            end = start + in->opt_step_ms;
            break;
        case XDT_OP_SEND_ACT:
        case XDT_OP_SEND_GRAD: {
            const bool act = op->kind == XDT_OP_SEND_ACT;
            /* activations out of stage s are its boundary; gradients out of stage s are the
             * size of its input, the previous stage's boundary */
            const double bytes = act ? in->boundary_bytes[ds] : in->boundary_bytes[ds - 1];
            const int dst = d * st->P + op->peer;
            const xdt_sim_link *l = &in->links[(size_t)rank * R + dst];
            const double ratio = l->wire_ratio > 0 ? l->wire_ratio : 1;
            const double codec_half = bytes * l->codec_ms_per_byte / 2;
            double *free_at = &st->link_free[(size_t)rank * R + dst];
            const double ready = start + codec_half;
            const double go = ready > *free_at ? ready : *free_at;
            const double wire = l->bytes_per_ms > 0 ? bytes * ratio / l->bytes_per_ms : 0;
            *free_at = go + wire;
            wire_start = go;
            wire_end = go + wire;
            arrive = go + wire + l->latency_ms + codec_half;
            *arrival_at(st, d, act ? ACT : GRAD, op->microbatch, act ? stage + 1 : stage - 1) =
                arrive;
            r->link_bytes[(size_t)rank * R + dst] += bytes * ratio;
            r->payload_bytes[(size_t)rank * R + dst] += bytes;
            break;
        }
        case XDT_OP_RECV_ACT:
        case XDT_OP_RECV_GRAD: {
            double at =
                *arrival_at(st, d, op->kind == XDT_OP_RECV_ACT ? ACT : GRAD, op->microbatch, stage);
            if (at < 0) return moved; /* not sent yet */
            end = at > start ? at : start;
            break;
        }
        case XDT_OP_KIND_COUNT:
            break;
        }
        if (op->kind <= XDT_OP_BWD_WEIGHT) r->busy_ms[rank] += end - start;
        if (in->static_bytes) {
            const double now = st->held[rank];
            if (now > r->peak_bytes[rank]) r->peak_bytes[rank] = now;
        }
        r->events[r->n_events++] =
            (xdt_sim_event){rank, *op, start, end, wire_start, wire_end, arrive};
        st->clock[rank] = end;
        st->pc[rank]++;
        moved++;
    }
    return moved;
}

xdt_status xdt_simulate(const xdt_sim_input *in, xdt_sim_result *out) {
    sim_state st = {0};
    st.D = in->replicas > 0 ? in->replicas : 1;
    st.P = xdt_schedule_ranks(in->schedules ? in->schedules[0] : in->schedule);
    st.V = xdt_schedule_chunks(in->schedules ? in->schedules[0] : in->schedule);
    st.S = st.P * st.V;
    st.R = st.D * st.P;
    int total_ops = 0;
    for (int d = 0; d < st.D; d++) {
        const xdt_schedule *s = schedule_of(in, d);
        if (xdt_schedule_ranks(s) != st.P || xdt_schedule_chunks(s) != st.V)
            return xdt_fail(XDT_ERR_INVALID_ARG,
                            "simulator: replica %d's schedule has %d ranks x %d chunks, "
                            "replica 0's %d x %d",
                            d, xdt_schedule_ranks(s), xdt_schedule_chunks(s), st.P, st.V);
        const int M = xdt_schedule_microbatches(s);
        st.M_max = M > st.M_max ? M : st.M_max;
        for (int p = 0; p < st.P; p++)
            total_ops += xdt_schedule_num_ops(s, p);
    }
    const size_t R = (size_t)st.R;
    xdt_sim_result r = {0};
    r.ranks = st.R;
    r.stages = st.P;
    st.arrival = malloc(sizeof(double) * (size_t)st.D * 2 * (size_t)st.M_max * (size_t)st.S);
    st.link_free = calloc(R * R, sizeof(double));
    st.clock = calloc(R, sizeof(double));
    st.ar_ready = malloc(R * sizeof(double));
    st.held = calloc(R, sizeof(double));
    st.pc = calloc(R, sizeof(int));
    r.busy_ms = calloc(R, sizeof(double));
    r.bubble = calloc(R, sizeof(double));
    r.peak_bytes = calloc(R, sizeof(double));
    r.link_bytes = calloc(R * R, sizeof(double));
    r.payload_bytes = calloc(R * R, sizeof(double));
    r.events = calloc((size_t)total_ops, sizeof *r.events);
    if (!st.arrival || !st.link_free || !st.clock || !st.ar_ready || !st.held || !st.pc ||
        !r.busy_ms || !r.bubble || !r.peak_bytes || !r.link_bytes || !r.payload_bytes ||
        !r.events) {
        free_state(&st);
        xdt_sim_result_free(&r);
        return xdt_fail(XDT_ERR_NO_MEMORY, "simulator: out of memory");
    }
    for (size_t i = 0; i < (size_t)st.D * 2 * (size_t)st.M_max * (size_t)st.S; i++)
        st.arrival[i] = -1;
    for (size_t i = 0; i < R; i++)
        st.ar_ready[i] = -1;
    xdt_status status = XDT_OK;
    for (int done = 0; done < total_ops;) {
        int moved = 0;
        for (int d = 0; d < st.D; d++)
            for (int p = 0; p < st.P; p++)
                moved += advance(in, &st, &r, d, p);
        done += moved;
        if (moved == 0) {
            for (int g = 0; g < st.R; g++) {
                const xdt_schedule *s = schedule_of(in, g / st.P);
                if (st.pc[g] >= xdt_schedule_num_ops(s, g % st.P)) continue;
                char what[96];
                xdt_schedule_format_op(s, &xdt_schedule_ops(s, g % st.P)[st.pc[g]], what,
                                       sizeof what);
                status = xdt_fail(XDT_ERR_INVALID_ARG,
                                  "simulator: rank %d stuck at op %d (%s): "
                                  "validate the schedule first",
                                  g, st.pc[g], what);
                break;
            }
            break;
        }
    }
    for (size_t g = 0; g < R; g++)
        r.step_ms = st.clock[g] > r.step_ms ? st.clock[g] : r.step_ms;
    for (int g = 0; g < st.R; g++) {
        r.bubble[g] = r.step_ms > 0 ? 1 - r.busy_ms[g] / r.step_ms : 0;
        if (in->static_bytes) {
            double stat = 0; /* the rank's chunks' weights, gradients and optimizer state */
            for (int v = 0; v < st.V; v++)
                stat += in->static_bytes[(size_t)(g / st.P) * st.S + (size_t)v * st.P +
                                         (size_t)(g % st.P)];
            r.peak_bytes[g] += stat;
        }
    }
    free_state(&st);
    if (status) {
        xdt_sim_result_free(&r);
        return status;
    }
    *out = r;
    return XDT_OK;
}

void xdt_sim_result_free(xdt_sim_result *r) {
    if (!r) return;
    free(r->busy_ms);
    free(r->bubble);
    free(r->peak_bytes);
    free(r->link_bytes);
    free(r->payload_bytes);
    free(r->events);
    memset(r, 0, sizeof *r);
}
