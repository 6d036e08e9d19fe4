/* frame.c: encoding and validating wire frames (layout in frame.h). Decoding reads hostile bytes:
 * every read is a bounded memcpy from a buffer already checked to hold the whole header. */
#include "transports/frame/frame.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "core/log.h"

/* Byte offsets of the header fields (frame.h). */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 4,
    OFF_HEADER_BYTES = 6,
    OFF_JOB = 8,
    OFF_SRC = 16,
    OFF_DST = 20,
    OFF_TAG = 24,
    OFF_SEQ = 32,
    OFF_RAW = 40,
    OFF_ENCODED = 48,
    OFF_CODEC = 56,
    OFF_FLAGS = 57,
    OFF_RESERVED = 58,
    RESERVED_BYTES = 6,
    OFF_PAYLOAD_HASH = 64,
    OFF_HEADER_HASH = 72,
};

_Static_assert(OFF_HEADER_HASH + 8 == XDT_FRAME_HEADER_BYTES, "header layout");
_Static_assert(OFF_RESERVED + RESERVED_BYTES == OFF_PAYLOAD_HASH, "header layout");

/* Little-endian stores and loads, byte by byte: correct on any host, no alignment needs. */
static void put16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get16(const uint8_t *p) {
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static uint32_t get32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}
static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

uint64_t xdt_frame_payload_hash(const void *payload, size_t len) {
    static const uint8_t empty[1] = {0};
    return XXH3_64bits(len ? payload : empty, len);
}

void xdt_frame_seal(xdt_frame_header *h, const void *payload, size_t len) {
    h->encoded_size = len;
    h->payload_hash = xdt_frame_payload_hash(payload, len);
}

void xdt_frame_encode_header(const xdt_frame_header *h, uint8_t out[XDT_FRAME_HEADER_BYTES]) {
    memset(out, 0, XDT_FRAME_HEADER_BYTES);
    memcpy(out + OFF_MAGIC, XDT_FRAME_MAGIC, 4);
    put16(out + OFF_VERSION, XDT_FRAME_VERSION);
    put16(out + OFF_HEADER_BYTES, XDT_FRAME_HEADER_BYTES);
    put64(out + OFF_JOB, h->job_id);
    put32(out + OFF_SRC, h->src_rank);
    put32(out + OFF_DST, h->dst_rank);
    put64(out + OFF_TAG, h->tag);
    put64(out + OFF_SEQ, h->seq);
    put64(out + OFF_RAW, h->raw_size);
    put64(out + OFF_ENCODED, h->encoded_size);
    out[OFF_CODEC] = h->codec;
    out[OFF_FLAGS] = h->flags;
    put64(out + OFF_PAYLOAD_HASH, h->payload_hash);
    put64(out + OFF_HEADER_HASH, XXH3_64bits(out, OFF_HEADER_HASH));
}

/* Checks the layout and the header checksum; fills *h. */
static xdt_status decode_layout(const uint8_t *b, size_t len, uint32_t peer, xdt_frame_header *h) {
    if (len < XDT_FRAME_HEADER_BYTES)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": truncated: %zu of %d header bytes", peer, len,
                        XDT_FRAME_HEADER_BYTES);
    if (memcmp(b + OFF_MAGIC, XDT_FRAME_MAGIC, 4) != 0)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'magic' is 0x%08" PRIx32
                        ", expected 0x%08" PRIx32 " (\"" XDT_FRAME_MAGIC "\"): not an xdt frame",
                        peer, get32(b + OFF_MAGIC), get32((const uint8_t *)XDT_FRAME_MAGIC));
    uint16_t version = get16(b + OFF_VERSION);
    if (version != XDT_FRAME_VERSION)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'version' is %u, this build reads %d",
                        peer, (unsigned)version, XDT_FRAME_VERSION);
    uint16_t header_bytes = get16(b + OFF_HEADER_BYTES);
    if (header_bytes != XDT_FRAME_HEADER_BYTES)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'header_bytes' is %u, expected %d",
                        peer, (unsigned)header_bytes, XDT_FRAME_HEADER_BYTES);
    uint64_t stored = get64(b + OFF_HEADER_HASH), computed = XXH3_64bits(b, OFF_HEADER_HASH);
    if (stored != computed)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32
                        ": header checksum mismatch (stored 0x%016" PRIx64
                        ", computed 0x%016" PRIx64 "): the header is corrupt",
                        peer, stored, computed);
    for (int i = 0; i < RESERVED_BYTES; i++)
        if (b[OFF_RESERVED + i] != 0)
            return xdt_fail(XDT_ERR_FORMAT,
                            "frame from rank %" PRIu32 ": field 'reserved' byte %d is 0x%02x, "
                            "expected 0",
                            peer, OFF_RESERVED + i, (unsigned)b[OFF_RESERVED + i]);
    h->job_id = get64(b + OFF_JOB);
    h->src_rank = get32(b + OFF_SRC);
    h->dst_rank = get32(b + OFF_DST);
    h->tag = get64(b + OFF_TAG);
    h->seq = get64(b + OFF_SEQ);
    h->raw_size = get64(b + OFF_RAW);
    h->encoded_size = get64(b + OFF_ENCODED);
    h->codec = b[OFF_CODEC];
    h->flags = b[OFF_FLAGS];
    h->payload_hash = get64(b + OFF_PAYLOAD_HASH);
    return XDT_OK;
}

/* Checks every field of a well-formed header against the receiver's expectation. */
static xdt_status check_expect(const xdt_frame_header *h, const xdt_frame_expect *e) {
    const uint32_t peer = e->src_rank;
    if (h->job_id != e->job_id)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'job_id' is 0x%016" PRIx64
                        ", expected 0x%016" PRIx64 " (a frame from another job)",
                        peer, h->job_id, e->job_id);
    if (h->src_rank != e->src_rank)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'src_rank' is %" PRIu32
                        ", expected %" PRIu32,
                        peer, h->src_rank, e->src_rank);
    if (h->dst_rank != e->dst_rank)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'dst_rank' is %" PRIu32
                        ", expected %" PRIu32 " (this rank)",
                        peer, h->dst_rank, e->dst_rank);
    if ((h->tag & e->tag_mask) != (e->tag & e->tag_mask))
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'tag' is 0x%" PRIx64 " (step %" PRIu32
                        " microbatch %" PRIu32 " kind %" PRIu32 " index %" PRIu32
                        "), expected 0x%" PRIx64 " under mask 0x%" PRIx64,
                        peer, h->tag, xdt_tag_step(h->tag), xdt_tag_microbatch(h->tag),
                        xdt_tag_kind(h->tag), xdt_tag_index(h->tag), e->tag & e->tag_mask,
                        e->tag_mask);
    if (h->seq != e->seq)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'seq' is %" PRIu64 ", expected %" PRIu64
                        " (a frame lost, repeated or reordered)",
                        peer, h->seq, e->seq);
    if (!xdt_frame_expect_allows_codec(e, h->codec))
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'codec' is %u, not a codec this link "
                        "accepts",
                        peer, (unsigned)h->codec);
    if (h->flags & ~e->flags_allowed)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'flags' is 0x%02x, accepted bits are "
                        "0x%02x",
                        peer, (unsigned)h->flags, (unsigned)e->flags_allowed);
    if (h->raw_size > e->max_raw)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'raw_size' is %" PRIu64
                        " bytes, the limit is %" PRIu64,
                        peer, h->raw_size, e->max_raw);
    if (h->encoded_size > e->max_encoded)
        return xdt_fail(XDT_ERR_FORMAT,
                        "frame from rank %" PRIu32 ": field 'encoded_size' is %" PRIu64
                        " bytes, the limit is %" PRIu64,
                        peer, h->encoded_size, e->max_encoded);
    return XDT_OK;
}

xdt_status xdt_frame_decode_header(const uint8_t *bytes, size_t len, const xdt_frame_expect *expect,
                                   xdt_frame_header *out) {
    if (!expect || !out || (!bytes && len))
        return xdt_fail(XDT_ERR_INVALID_ARG, "xdt_frame_decode_header: NULL argument");
    xdt_frame_header h;
    xdt_status st = decode_layout(bytes, len, expect->src_rank, &h);
    if (st == XDT_OK) st = check_expect(&h, expect);
    if (st == XDT_OK) *out = h;
    return st;
}

xdt_status xdt_frame_check_payload(const xdt_frame_header *h, const void *payload, size_t len) {
    if (!h || (!payload && len))
        return xdt_fail(XDT_ERR_INVALID_ARG, "xdt_frame_check_payload: NULL argument");
    if (len != h->encoded_size)
        return xdt_fail(
            XDT_ERR_FORMAT,
            "frame from rank %" PRIu32 ": payload is %zu bytes, the header says %" PRIu64 "%s",
            h->src_rank, len, h->encoded_size, len < h->encoded_size ? " (truncated)" : "");
    uint64_t computed = xdt_frame_payload_hash(payload, len);
    if (computed != h->payload_hash)
        return xdt_fail(
            XDT_ERR_FORMAT,
            "frame from rank %" PRIu32 ": payload checksum mismatch (header 0x%016" PRIx64
            ", payload 0x%016" PRIx64 ", %zu bytes, tag 0x%" PRIx64 ", seq %" PRIu64 ")",
            h->src_rank, h->payload_hash, computed, len, h->tag, h->seq);
    return XDT_OK;
}

const char *xdt_frame_describe(const xdt_frame_header *h, char *buf, size_t cap) {
    if (!buf || cap == 0) return buf;
    snprintf(buf, cap,
             "frame job 0x%016" PRIx64 " rank %" PRIu32 " -> %" PRIu32 " seq %" PRIu64
             " tag 0x%" PRIx64 " (step %" PRIu32 " microbatch %" PRIu32 " kind %" PRIu32
             " index %" PRIu32 ") codec %u flags 0x%02x raw %" PRIu64 " B encoded %" PRIu64
             " B payload xxh3 0x%016" PRIx64,
             h->job_id, h->src_rank, h->dst_rank, h->seq, h->tag, xdt_tag_step(h->tag),
             xdt_tag_microbatch(h->tag), xdt_tag_kind(h->tag), xdt_tag_index(h->tag),
             (unsigned)h->codec, (unsigned)h->flags, h->raw_size, h->encoded_size, h->payload_hash);
    return buf;
}
