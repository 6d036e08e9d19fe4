/* simulator.c: discrete-event execution of a schedule. Ranks advance in turns as far as their
 * receives allow; each directed link keeps the time it is next free, so messages queue. */
#include "planner/simulator.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

enum { ACT = 0, GRAD = 1 };

xdt_status xdt_simulate(const xdt_sim_input *in, xdt_sim_result *out) {
    const xdt_schedule *s = in->schedule;
    const int P = xdt_schedule_ranks(s), M = xdt_schedule_microbatches(s);
    const int V = xdt_schedule_chunks(s), S = P * V;
    xdt_sim_result r = {0};
    /* arrival[kind][mb][destination stage]: when a message lands (-1: not sent yet) */
    double *arrival = malloc(sizeof(double) * 2 * (size_t)M * (size_t)S);
    double *link_free = calloc((size_t)P * P, sizeof(double));
    double *clock = calloc((size_t)P, sizeof(double));
    int *pc = calloc((size_t)P, sizeof(int)), total_ops = 0;
    for (int p = 0; p < P; p++)
        total_ops += xdt_schedule_num_ops(s, p);
    r.busy_ms = calloc((size_t)P, sizeof(double));
    r.bubble = calloc((size_t)P, sizeof(double));
    r.link_bytes = calloc((size_t)P * P, sizeof(double));
    r.events = calloc((size_t)total_ops, sizeof *r.events);
    if (!arrival || !link_free || !clock || !pc || !r.busy_ms || !r.bubble || !r.link_bytes ||
        !r.events) {
        free(arrival);
        free(link_free);
        free(clock);
        free(pc);
        xdt_sim_result_free(&r);
        return xdt_fail(XDT_ERR_NO_MEMORY, "simulator: out of memory");
    }
    for (size_t i = 0; i < 2 * (size_t)M * S; i++)
        arrival[i] = -1;
#define ARRIVAL(kind, mb, stage) arrival[((size_t)(kind)*M + (size_t)(mb)) * S + (size_t)(stage)]
    xdt_status st = XDT_OK;
    int done = 0;
    while (done < total_ops && st == XDT_OK) {
        int moved = 0;
        for (int p = 0; p < P; p++) {
            const xdt_op *ops = xdt_schedule_ops(s, p);
            const int n = xdt_schedule_num_ops(s, p);
            while (pc[p] < n) {
                const xdt_op *op = &ops[pc[p]];
                const int stage = op->chunk >= 0 ? xdt_schedule_stage(s, p, op->chunk) : 0;
                double start = clock[p], end = start, wire_start = 0, wire_end = 0, arrive = 0;
                switch (op->kind) {
                case XDT_OP_FWD:
                    end = start + in->fwd_ms[stage];
                    break;
                case XDT_OP_BWD:
                    end = start + in->bwd_ms[stage];
                    break;
                case XDT_OP_BWD_INPUT:
                case XDT_OP_BWD_WEIGHT:
                    end = start + in->bwd_ms[stage] / 2;
                    break;
                case XDT_OP_ALLREDUCE:
                    end = start + in->allreduce_ms;
                    break;
                case XDT_OP_OPT_STEP:
                    end = start + in->opt_step_ms;
                    break;
                case XDT_OP_SEND_ACT:
                case XDT_OP_SEND_GRAD: {
                    const bool act = op->kind == XDT_OP_SEND_ACT;
                    /* activations out of stage s are its boundary; gradients out of stage s
                     * are the size of its input, the previous stage's boundary */
                    const double bytes =
                        act ? in->boundary_bytes[stage] : in->boundary_bytes[stage - 1];
                    const xdt_sim_link *l = &in->links[p * P + op->peer];
                    double *free_at = &link_free[p * P + op->peer];
                    double go = start > *free_at ? start : *free_at;
                    double wire = l->bytes_per_ms > 0 ? bytes / l->bytes_per_ms : 0;
                    *free_at = go + wire;
                    wire_start = go;
                    wire_end = go + wire;
                    arrive = go + wire + l->latency_ms;
                    ARRIVAL(act ? ACT : GRAD, op->microbatch, act ? stage + 1 : stage - 1) = arrive;
                    r.link_bytes[p * P + op->peer] += bytes;
                    break;
                }
                case XDT_OP_RECV_ACT:
                case XDT_OP_RECV_GRAD: {
                    double at =
                        ARRIVAL(op->kind == XDT_OP_RECV_ACT ? ACT : GRAD, op->microbatch, stage);
                    if (at < 0) goto blocked; /* not sent yet */
                    end = at > start ? at : start;
                    break;
                }
                case XDT_OP_KIND_COUNT:
                    break;
                }
                if (op->kind <= XDT_OP_BWD_WEIGHT) r.busy_ms[p] += end - start;
                r.events[r.n_events++] =
                    (xdt_sim_event){p, *op, start, end, wire_start, wire_end, arrive};
                clock[p] = end;
                pc[p]++;
                done++;
                moved = 1;
            }
        blocked:;
        }
        if (!moved && done < total_ops) {
            for (int p = 0; p < P; p++)
                if (pc[p] < xdt_schedule_num_ops(s, p)) {
                    char what[96];
                    xdt_schedule_format_op(s, &xdt_schedule_ops(s, p)[pc[p]], what, sizeof what);
                    st = xdt_fail(XDT_ERR_INVALID_ARG,
                                  "simulator: rank %d stuck at op %d (%s): "
                                  "validate the schedule first",
                                  p, pc[p], what);
                    break;
                }
        }
    }
#undef ARRIVAL
    for (int p = 0; p < P; p++)
        r.step_ms = clock[p] > r.step_ms ? clock[p] : r.step_ms;
    for (int p = 0; p < P; p++)
        r.bubble[p] = r.step_ms > 0 ? 1 - r.busy_ms[p] / r.step_ms : 0;
    free(arrival);
    free(link_free);
    free(clock);
    free(pc);
    if (st) {
        xdt_sim_result_free(&r);
        return st;
    }
    *out = r;
    return XDT_OK;
}

void xdt_sim_result_free(xdt_sim_result *r) {
    if (!r) return;
    free(r->busy_ms);
    free(r->bubble);
    free(r->link_bytes);
    free(r->events);
    memset(r, 0, sizeof *r);
}
