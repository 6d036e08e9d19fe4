/* pipeline_comm.h: the pipeline runtime's communication thread. It owns the transport while a
 * step's compute runs: the compute thread hands it tensors to send (copied, so the compute
 * buffers are free at once) and asks it for tensors it must receive; the thread encodes with each
 * link's codec, frames (transports/channel.h), sends without blocking the compute, posts every
 * receive of the step as soon as the step begins, decodes what arrives and hands it over. So
 * communication and codec work overlap compute, and sends never block (the semantics the
 * schedule validator proves deadlock freedom under).
 *
 * Messages are identified by (peer, kind, microbatch, chunk); each (peer, kind) stream carries
 * its own sequence numbers, which the frames check. Between steps the caller drains the thread
 * and may then use the transport itself (collectives) until the next step begins. */
#ifndef XDT_PIPELINE_COMM_H
#define XDT_PIPELINE_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "transports/codecs/codec.h"
#include "transports/transport.h"

typedef enum xdt_msg_kind {
    XDT_MSG_ACT = 0,  /* activations to the next stage */
    XDT_MSG_GRAD = 1, /* input gradients to the previous stage */
    XDT_MSG_TIED = 2, /* the tied embedding's gradient between first and last stage */
    XDT_MSG_NORM = 3, /* squared gradient norm and loss sums among a replica's ranks */
    XDT_MSG_EVAL = 4, /* activations of an evaluation (forward-only) pass, on the ACT link */
    XDT_MSG_KIND_COUNT
} xdt_msg_kind;

typedef struct xdt_msg_id {
    int peer; /* transport rank */
    xdt_msg_kind kind;
    int microbatch; /* 0 for TIED and NORM */
    int chunk;      /* the chunk on the receiving side's... sender's stage; 0 if none */
    size_t n;       /* floats */
} xdt_msg_id;

typedef struct xdt_comm_peer {
    int rank;                  /* transport rank */
    xdt_codec_spec codec_act;  /* for the activations this rank sends there */
    xdt_codec_spec codec_grad; /* for the gradients this rank sends there */
    xdt_codec_spec codec_tied; /* for the tied gradient (when raw_floats holds it) */
    size_t coded_floats;       /* largest activation or gradient exchanged with it (0: none) */
    size_t raw_floats;         /* largest tied-gradient or norm message (norms go raw) */
} xdt_comm_peer;

typedef struct xdt_comm_config {
    uint64_t job_id;
    int timeout_ms;                        /* longest wait for a message or a drain; 0 = 30 s */
    size_t max_floats[XDT_MSG_KIND_COUNT]; /* largest tensor of each kind */
    const xdt_comm_peer *peers;            /* the ranks this rank exchanges tensors with */
    int n_peers;
    /* optional: allocates the messages' tensor buffers, e.g. in page-locked memory, which a
     * GPU's copies reach directly; NULL: malloc and free */
    void *(*alloc_host)(void *arg, size_t bytes);
    void (*free_host)(void *arg, void *p);
    void *alloc_arg;
} xdt_comm_config;

typedef struct xdt_comm xdt_comm;

/* Starts the thread. t must outlive the engine; the caller must not use t except between
 * xdt_comm_drain and the next xdt_comm_begin_step. */
xdt_status xdt_comm_create(xdt_transport *t, const xdt_comm_config *cfg, xdt_comm **out);
/* Stops the thread (outstanding operations are cancelled); NULL is a no-op. */
void xdt_comm_destroy(xdt_comm *c);

/* Starts step `step`: the step's receives in the order the compute will take them; the thread
 * posts them all at once. Every receive of the previous step must have been taken; sends of the
 * previous step may still be in flight. Ends a drain. */
xdt_status xdt_comm_begin_step(xdt_comm *c, int step, const xdt_msg_id *recvs, int n);

/* Queues x[0..id->n) for sending (copied now; encoded and sent by the thread). */
xdt_status xdt_comm_send(xdt_comm *c, const xdt_msg_id *id, const float *x);
/* The same without the copy: reserve the message and get its buffer of id->n floats, fill it
 * (a device copies straight into it), then commit it, which queues it. One reservation at a
 * time; one not committed is freed by xdt_comm_destroy. */
xdt_status xdt_comm_send_reserve(xdt_comm *c, const xdt_msg_id *id, float **buf);
xdt_status xdt_comm_send_commit(xdt_comm *c);
/* Gives the reservation back unsent (filling it failed); its place in the sequence is free
 * again. No-op without one. */
void xdt_comm_send_abort(xdt_comm *c);

/* Waits (at most the timeout) for receive `index` of the step and copies it into x. An error of
 * the thread (a lost peer, a damaged frame) is returned here, naming the peer. */
xdt_status xdt_comm_recv(xdt_comm *c, int index, float *x);
/* The same without the copy: *data points at the received floats, which stay valid and
 * unchanged until the next xdt_comm_begin_step. */
xdt_status xdt_comm_recv_view(xdt_comm *c, int index, const float **data);

/* Waits until every queued send has left and every receive of the step is posted; the thread
 * then leaves the transport alone (the caller may run collectives on it) until
 * xdt_comm_resume or the next xdt_comm_begin_step. */
xdt_status xdt_comm_drain(xdt_comm *c);
xdt_status xdt_comm_resume(xdt_comm *c);

/* Bytes this rank has sent to `peer` so far: on the wire and before the codec. */
void xdt_comm_sent_bytes(xdt_comm *c, int peer, uint64_t *wire, uint64_t *raw);

#endif
