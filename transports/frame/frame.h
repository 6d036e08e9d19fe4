/* frame.h: the wire frame every message between ranks travels in: a fixed 80-byte header, then
 * `encoded_size` bytes of payload. The receiver treats the header as hostile bytes off a network:
 * decoding checks the layout, a checksum of the header itself, and then every field against what
 * the receiver expects (job, peer, own rank, tag, codec, sizes, sequence number); the payload is
 * checked against the XXH3-64 hash the header carries. Also the packing of message tags.
 *
 * Header, little-endian, byte offsets, no padding (encoded field by field):
 *   0 u8[4] magic "XDTF"              4 u16 version (1)           6 u16 header bytes (80)
 *   8 u64 job id                     16 u32 source rank          20 u32 destination rank
 *  24 u64 tag (see below)            32 u64 sequence number of this frame on its (src, dst) pair
 *  40 u64 raw size: tensor bytes before encoding
 *  48 u64 encoded size: payload bytes that follow the header
 *  56 u8  codec id (ids belong to the codecs; the receiver says which it accepts)
 *  57 u8  flags (no bits defined in version 1; the receiver says which it accepts)
 *  58 u8[6] reserved, zero
 *  64 u64 XXH3-64 of the payload (seed 0)
 *  72 u64 XXH3-64 of header bytes [0, 72) (seed 0)
 * Decoding checks, in order: length, magic, version, header bytes, header checksum, reserved
 * bytes, then the fields against the expectation. A bad frame is XDT_ERR_FORMAT, reported once
 * naming the peer rank and the field.
 *
 * Tag, 48 bits (the transports' XDT_TAG_BITS, so a frame's tag can also be the transport tag):
 *   bits 47..28 step modulo 2^20 (it only has to tell apart steps in flight at the same time)
 *   bits 27..16 microbatch (0..4095)   bits 15..12 kind (0..15)   bits 11..0 index (0..4095)
 * The frame header itself carries any u64 tag; the layout above is how xdt fills it. */
#ifndef XDT_FRAME_H
#define XDT_FRAME_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define XDT_FRAME_HEADER_BYTES 80
#define XDT_FRAME_VERSION      1
#define XDT_FRAME_MAGIC        "XDTF" /* the first 4 bytes on the wire */

/* Tag layout: field widths and shifts (see the comment at the top). */
#define XDT_TAG_FRAME_BITS       48
#define XDT_TAG_STEP_BITS        20
#define XDT_TAG_STEP_SHIFT       28
#define XDT_TAG_MICROBATCH_BITS  12
#define XDT_TAG_MICROBATCH_SHIFT 16
#define XDT_TAG_KIND_BITS        4
#define XDT_TAG_KIND_SHIFT       12
#define XDT_TAG_INDEX_BITS       12
#define XDT_TAG_INDEX_SHIFT      0
#define XDT_TAG_FIELD_MAX(bits)  ((UINT64_C(1) << (bits)) - 1)
#define XDT_TAG_MAX_MICROBATCH   XDT_TAG_FIELD_MAX(XDT_TAG_MICROBATCH_BITS)
#define XDT_TAG_MAX_KIND         XDT_TAG_FIELD_MAX(XDT_TAG_KIND_BITS)
#define XDT_TAG_MAX_INDEX        XDT_TAG_FIELD_MAX(XDT_TAG_INDEX_BITS)
/* Masks for xdt_frame_expect.tag_mask: match everything, or everything but the index. */
#define XDT_TAG_MASK_ALL       XDT_TAG_FIELD_MAX(XDT_TAG_FRAME_BITS)
#define XDT_TAG_MASK_ANY_INDEX (XDT_TAG_MASK_ALL & ~(XDT_TAG_MAX_INDEX << XDT_TAG_INDEX_SHIFT))

/* The header in host form. The checksums are not here: encoding computes the header checksum,
 * and payload_hash is the payload's XXH3-64 (xdt_frame_seal fills it). */
typedef struct xdt_frame_header {
    uint64_t job_id;
    uint32_t src_rank, dst_rank;
    uint64_t tag;
    uint64_t seq;          /* per (src, dst) pair, counted by the sender */
    uint64_t raw_size;     /* bytes of the tensor before encoding */
    uint64_t encoded_size; /* bytes of payload after the header */
    uint8_t codec;
    uint8_t flags;
    uint64_t payload_hash; /* XXH3-64 of the payload */
} xdt_frame_header;

/* What a receiver accepts from one peer for one message. A frame passes only if every field
 * matches: (tag & tag_mask) == (expect.tag & tag_mask), codec's bit set in `codecs`, no flag
 * outside flags_allowed, raw_size <= max_raw, encoded_size <= max_encoded, seq == expect.seq. */
typedef struct xdt_frame_expect {
    uint64_t job_id;
    uint32_t src_rank; /* the peer the frame must come from */
    uint32_t dst_rank; /* this rank */
    uint64_t tag, tag_mask;
    uint64_t seq;
    uint64_t max_raw, max_encoded;
    uint64_t codecs[4]; /* bitmap over the 256 codec ids: bit (id % 64) of word id / 64 */
    uint8_t flags_allowed;
} xdt_frame_expect;

/* Marks codec `id` as accepted in e->codecs. */
static inline void xdt_frame_expect_allow_codec(xdt_frame_expect *e, uint8_t id) {
    e->codecs[id >> 6] |= UINT64_C(1) << (id & 63);
}

/* Whether codec `id` is accepted by e. */
static inline bool xdt_frame_expect_allows_codec(const xdt_frame_expect *e, uint8_t id) {
    return (e->codecs[id >> 6] >> (id & 63)) & 1;
}

/* Whether microbatch, kind and index fit their tag fields (the step always fits: it wraps). */
static inline bool xdt_tag_fits(uint64_t microbatch, uint64_t kind, uint64_t index) {
    return microbatch <= XDT_TAG_MAX_MICROBATCH && kind <= XDT_TAG_MAX_KIND &&
           index <= XDT_TAG_MAX_INDEX;
}

/* Packs a tag; step is taken modulo 2^20. The other fields must satisfy xdt_tag_fits (asserted;
 * check configured counts against the XDT_TAG_MAX_* limits up front). */
static inline uint64_t xdt_tag_make(uint64_t step, uint64_t microbatch, uint64_t kind,
                                    uint64_t index) {
    assert(xdt_tag_fits(microbatch, kind, index));
    return ((step & XDT_TAG_FIELD_MAX(XDT_TAG_STEP_BITS)) << XDT_TAG_STEP_SHIFT) |
           ((microbatch & XDT_TAG_MAX_MICROBATCH) << XDT_TAG_MICROBATCH_SHIFT) |
           ((kind & XDT_TAG_MAX_KIND) << XDT_TAG_KIND_SHIFT) |
           ((index & XDT_TAG_MAX_INDEX) << XDT_TAG_INDEX_SHIFT);
}

/* The step (modulo 2^20) a tag carries. */
static inline uint32_t xdt_tag_step(uint64_t tag) {
    return (uint32_t)((tag >> XDT_TAG_STEP_SHIFT) & XDT_TAG_FIELD_MAX(XDT_TAG_STEP_BITS));
}

/* The microbatch a tag carries. */
static inline uint32_t xdt_tag_microbatch(uint64_t tag) {
    return (uint32_t)((tag >> XDT_TAG_MICROBATCH_SHIFT) & XDT_TAG_MAX_MICROBATCH);
}

/* The kind a tag carries. */
static inline uint32_t xdt_tag_kind(uint64_t tag) {
    return (uint32_t)((tag >> XDT_TAG_KIND_SHIFT) & XDT_TAG_MAX_KIND);
}

/* The index a tag carries. */
static inline uint32_t xdt_tag_index(uint64_t tag) {
    return (uint32_t)((tag >> XDT_TAG_INDEX_SHIFT) & XDT_TAG_MAX_INDEX);
}

/* XXH3-64 of a payload (payload may be NULL when len is 0). */
uint64_t xdt_frame_payload_hash(const void *payload, size_t len);

/* Sets h->encoded_size = len and h->payload_hash from the payload (the sender's convenience). */
void xdt_frame_seal(xdt_frame_header *h, const void *payload, size_t len);

/* Writes the 80-byte wire form of h, header checksum included. Cannot fail. */
void xdt_frame_encode_header(const xdt_frame_header *h, uint8_t out[XDT_FRAME_HEADER_BYTES]);

/* Decodes and validates the header in bytes[0, 80) (len may be larger: the rest is ignored) and
 * checks every field against `expect`. Fills *out only on success. XDT_ERR_FORMAT (reported,
 * naming expect->src_rank and the field) for a truncated, corrupt or unexpected header;
 * XDT_ERR_INVALID_ARG for NULL arguments. */
xdt_status xdt_frame_decode_header(const uint8_t *bytes, size_t len, const xdt_frame_expect *expect,
                                   xdt_frame_header *out);

/* Checks that the payload is h->encoded_size bytes long and hashes to h->payload_hash.
 * XDT_ERR_FORMAT (reported, naming h->src_rank) otherwise. */
xdt_status xdt_frame_check_payload(const xdt_frame_header *h, const void *payload, size_t len);

/* Writes a one-line human-readable description of h into buf (always NUL-terminated when
 * cap > 0) and returns buf, for logs. */
const char *xdt_frame_describe(const xdt_frame_header *h, char *buf, size_t cap);

#endif
