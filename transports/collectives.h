/* collectives.h: collectives over any transport for the ranks of a group (a data-parallel group
 * of replicas of one stage): ring all-reduce (sum or average) of fp32 buffers, broadcast and
 * barrier. Every member calls the same collectives in the same order; each call uses fresh tags
 * from the group's tag space, so consecutive calls never mix. A member that fails or stops
 * answering makes the call return an error naming it within the group's timeout. */
#ifndef XDT_COLLECTIVES_H
#define XDT_COLLECTIVES_H

#include <stddef.h>
#include <stdint.h>

#include "transports/codecs/codec.h"
#include "transports/transport.h"

typedef enum xdt_reduce_op {
    XDT_REDUCE_SUM = 0,
    XDT_REDUCE_AVG = 1,
} xdt_reduce_op;

typedef struct xdt_group {
    xdt_transport *t;
    int ranks[256];    /* transport ranks of the members, in ring order */
    int size, me;      /* members; this rank's index among them */
    uint64_t tag_base; /* the group's tag space: low 24 bits are the group's to use */
    uint32_t calls;    /* collectives issued so far (part of each call's tags) */
    int timeout_ms;
    float *scratch; /* all-reduce receive buffer, grown to the largest chunk seen */
    size_t scratch_floats;
    /* encoded all-reduce: one codec per hop (its error-feedback stream), wire buffers */
    xdt_codec_spec codec_spec;
    xdt_codec **codecs;
    size_t codec_max_n, wire_cap;
    unsigned char *wire[2];
} xdt_group;

/* Describes a group: `ranks` (n of them, this transport's rank among them), a tag space
 * `tag_base` whose low 24 bits are zero and that no other traffic uses, and how long a member
 * waits for a silent neighbour (0 = XDT_DEFAULT_TIMEOUT_MS). */
xdt_status xdt_group_init(xdt_group *g, xdt_transport *t, const int *ranks, int n,
                          uint64_t tag_base, int timeout_ms);

/* Frees the group's scratch buffer. */
void xdt_group_release(xdt_group *g);

/* In-place all-reduce of n floats. Every member ends with bit-identical results: the ring
 * reduce-scatter fixes each chunk's sum once and the all-gather copies it. */
xdt_status xdt_allreduce(xdt_group *g, float *buf, size_t n, xdt_reduce_op op);

/* All-reduce whose messages travel encoded by `spec` (e.g. int8 with error feedback across
 * sites). Lossy codecs lose precision at each of the size-1 reduce-scatter hops and once in the
 * all-gather, where the owner's encoded chunk travels unchanged so that every member decodes the
 * same bytes: results stay bit-identical across members. With error feedback each hop keeps its
 * own residual from call to call. Codec "none" behaves as xdt_allreduce. */
xdt_status xdt_allreduce_encoded(xdt_group *g, float *buf, size_t n, xdt_reduce_op op,
                                 const xdt_codec_spec *spec);

/* Copies `bytes` from member `root`'s buffer into everyone's. */
xdt_status xdt_broadcast(xdt_group *g, void *buf, size_t bytes, int root);

/* Returns once every member has entered it. */
xdt_status xdt_barrier(xdt_group *g);

#endif
