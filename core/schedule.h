/* schedule.h: the schedule IR -- for every pipeline rank an ordered list of ops (forward,
 * backward, send/receive of activations and gradients, all-reduce, optimizer step) -- with its
 * generators (GPipe, 1F1B, interleaved 1F1B, latency-aware XDC) and a validator that proves
 * completeness, send/receive matching and freedom from deadlock before anything runs.
 *
 * P pipeline ranks each hold V chunks (virtual stages); chunk v of rank r is global stage
 * v * P + r (Megatron's interleaving; with V = 1 the stage is the rank). Stage s sends
 * activations to stage s + 1 and receives gradients from it; the last stage computes the loss.
 * Receives block; sends are buffered (never block). Every rank's list ends with ALLREDUCE then
 * OPT_STEP. */
#ifndef XDT_SCHEDULE_H
#define XDT_SCHEDULE_H

#include <stddef.h>
#include <stdio.h>

#include "core/status.h"

typedef enum xdt_op_kind {
    XDT_OP_FWD = 0,        /* forward of (microbatch, chunk) */
    XDT_OP_BWD = 1,        /* full backward of (microbatch, chunk) */
    XDT_OP_BWD_INPUT = 2,  /* split backward, part 1: gradient w.r.t. the chunk's input */
    XDT_OP_BWD_WEIGHT = 3, /* split backward, part 2: gradient w.r.t. the chunk's weights */
    XDT_OP_SEND_ACT = 4,   /* send the chunk's output activation to `peer` (next stage) */
    XDT_OP_RECV_ACT = 5,   /* receive the chunk's input activation from `peer` (previous stage) */
    XDT_OP_SEND_GRAD = 6,  /* send the gradient of the chunk's input to `peer` (previous stage) */
    XDT_OP_RECV_GRAD = 7,  /* receive the gradient of the chunk's output from `peer` (next stage) */
    XDT_OP_ALLREDUCE = 8,  /* reduce gradient bucket `bucket` with the data-parallel peers */
    XDT_OP_OPT_STEP = 9,   /* apply the optimizer to this rank's parameters */
    XDT_OP_KIND_COUNT
} xdt_op_kind;

typedef struct xdt_op {
    xdt_op_kind kind;
    int microbatch; /* 0..M-1; -1 for ALLREDUCE and OPT_STEP */
    int chunk;      /* virtual stage index on this rank, 0..V-1 */
    int peer;       /* rank, for send/recv; -1 otherwise */
    int bucket;     /* gradient bucket, for ALLREDUCE; -1 otherwise */
} xdt_op;

typedef enum xdt_schedule_kind {
    XDT_SCHEDULE_GPIPE = 0,
    XDT_SCHEDULE_1F1B = 1,
    XDT_SCHEDULE_INTERLEAVED = 2,
    XDT_SCHEDULE_XDC = 3,
    XDT_SCHEDULE_CUSTOM = 4, /* written by hand or by another tool */
} xdt_schedule_kind;

typedef struct xdt_schedule xdt_schedule;

/* Creates an empty schedule for P ranks, M microbatches and V chunks per rank. */
xdt_status xdt_schedule_create(xdt_schedule_kind kind, int ranks, int microbatches, int chunks,
                               xdt_schedule **out);
/* Frees a schedule; NULL is a no-op. */
void xdt_schedule_destroy(xdt_schedule *s);
/* Appends `op` to the end of rank `rank`'s list (fields are checked by the validator). */
xdt_status xdt_schedule_append(xdt_schedule *s, int rank, xdt_op op);

/* The schedule's kind, rank count P, microbatch count M and chunks per rank V. */
xdt_schedule_kind xdt_schedule_get_kind(const xdt_schedule *s);
int xdt_schedule_ranks(const xdt_schedule *s);
int xdt_schedule_microbatches(const xdt_schedule *s);
int xdt_schedule_chunks(const xdt_schedule *s);
/* Number of ops in rank `rank`'s list (0 for a rank out of range). */
int xdt_schedule_num_ops(const xdt_schedule *s, int rank);
/* Rank `rank`'s ops, num_ops of them, in execution order (NULL for a rank out of range). */
const xdt_op *xdt_schedule_ops(const xdt_schedule *s, int rank);
/* Global stage of chunk `chunk` on rank `rank`: chunk * P + rank. */
int xdt_schedule_stage(const xdt_schedule *s, int rank, int chunk);

/* Short constant names: "gpipe", "1f1b", "interleaved", "xdc", "custom"; "FWD", "SEND_ACT"... */
const char *xdt_schedule_kind_name(xdt_schedule_kind kind);
const char *xdt_op_kind_name(xdt_op_kind kind);
/* Writes `op` readably into buf ("RECV_GRAD mb 1 from 1"; chunk shown only when V > 1). */
void xdt_schedule_format_op(const xdt_schedule *s, const xdt_op *op, char *buf, size_t cap);
/* Prints a header line, then one line per op: "rank 1 op 4: FWD mb 2". */
void xdt_schedule_print(const xdt_schedule *s, FILE *f);

/* Most (microbatch, chunk) activation sets rank `rank` holds at once: held from FWD until BWD
 * (or BWD_WEIGHT when split). With V = 1 that is the in-flight microbatch count. */
int xdt_schedule_max_in_flight(const xdt_schedule *s, int rank);

/* GPipe: every forward, then every backward in reverse microbatch order. */
xdt_status xdt_schedule_gpipe(int ranks, int microbatches, xdt_schedule **out);
/* 1F1B (PipeDream-flush): min(P-r-1, M) warm-up forwards, alternate, then cool-down. */
xdt_status xdt_schedule_1f1b(int ranks, int microbatches, xdt_schedule **out);
/* Megatron's interleaved 1F1B with V chunks per rank; M must be a multiple of P. */
xdt_status xdt_schedule_interleaved(int ranks, int microbatches, int chunks, xdt_schedule **out);
/* Latency-aware 1F1B: rank r takes extra[r] more warm-up forwards (NULL: none, = 1F1B). Since
 * rank r can only run ahead as far as rank r-1 feeds it, rank r-1's extra is raised to at least
 * extra[r] - 1 where needed; the warm-up stays capped at M. */
xdt_status xdt_schedule_xdc(int ranks, int microbatches, const int *extra, xdt_schedule **out);

/* Returns XDT_OK when `s` is complete (every microbatch goes forward then backward once through
 * every stage), every send matches exactly one receive, ALLREDUCE/OPT_STEP close each list and
 * a simulation with blocking receives finishes on every rank; else XDT_ERR_INVALID_ARG with a
 * one-line reason in `why` (may be NULL); XDT_ERR_NO_MEMORY if it cannot allocate. Logs nothing. */
xdt_status xdt_schedule_validate(const xdt_schedule *s, char *why, size_t cap);

#endif
