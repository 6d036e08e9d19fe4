/* channel.h: tensors between two ranks, the way pipeline stages exchange activations and
 * gradients: each tensor is encoded by the link's codec, wrapped in a frame (frame/frame.h:
 * job, ranks, tag, sequence number, sizes, checksums) and sent as one transport message; the
 * receiver validates every frame field and the payload checksum before decoding. A damaged,
 * truncated or unexpected frame is an error naming the peer and the field. Frames carry a
 * sequence number per direction: tensors are received in the order they were sent (pipeline
 * schedules do that on both sides), and a lost or replayed frame is caught. */
#ifndef XDT_CHANNEL_H
#define XDT_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "transports/codecs/codec.h"
#include "transports/frame/frame.h"
#include "transports/transport.h"

typedef struct xdt_channel_config {
    uint64_t job_id;
    xdt_codec_spec codec; /* applied to what this rank sends; the receiver accepts its id */
    size_t max_floats;    /* largest tensor either way */
    int timeout_ms;       /* how long a send or receive may wait for the peer; 0 = 30 s */
} xdt_channel_config;

typedef struct xdt_channel xdt_channel;

/* A channel with `peer` over t (owned by the caller; it must outlive the channel). All buffers
 * are allocated here; send and receive allocate nothing. */
xdt_status xdt_channel_create(xdt_transport *t, int peer, const xdt_channel_config *cfg,
                              xdt_channel **out);
void xdt_channel_destroy(xdt_channel *ch);

/* Encodes, frames and sends x[0..n) with `tag`, waiting until the transport is done with it. */
xdt_status xdt_channel_send(xdt_channel *ch, uint64_t tag, const float *x, size_t n);

/* Receives the next tensor with `tag` from the peer into x[0..n) (n must equal the sender's),
 * checking the frame, the sequence number and the payload. */
xdt_status xdt_channel_recv(xdt_channel *ch, uint64_t tag, float *x, size_t n);

/* The wire bytes xdt_channel_send would send for x (for tests that damage frames on purpose):
 * fills *bytes (valid until the next call on ch) and *len, and advances the send sequence. */
xdt_status xdt_channel_pack(xdt_channel *ch, uint64_t tag, const float *x, size_t n,
                            const unsigned char **bytes, size_t *len);

/* For callers that keep several tensors in flight (the pipeline runtime): the wire buffer size
 * one tensor needs, framing into the caller's buffer with an explicit sequence number, and
 * checking + decoding a received frame against the tag and sequence number it must carry. */
size_t xdt_channel_wire_capacity(const xdt_channel *ch);
xdt_status xdt_channel_pack_into(xdt_channel *ch, uint64_t tag, uint64_t seq, const float *x,
                                 size_t n, unsigned char *out, size_t cap, size_t *len);
xdt_status xdt_channel_unpack(xdt_channel *ch, uint64_t tag, uint64_t seq,
                              const unsigned char *bytes, size_t len, float *x, size_t n);

/* Bytes sent and their raw (pre-codec) size, for reporting the compression ratio. */
void xdt_channel_stats(const xdt_channel *ch, uint64_t *wire_bytes, uint64_t *raw_bytes);

#endif
