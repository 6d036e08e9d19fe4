/* frame_fuzz_seeds.h: what the frame fuzzer and the frame unit test share: the fixed receiver
 * expectation the fuzzer decodes against, the fuzzer's input format, and the valid frames the
 * seed corpus fuzz_corpus/ holds (test_frame --write-corpus DIR writes them; test_frame checks
 * that the committed files still decode). Header-only, for those two programs, not the library.
 *
 * Fuzzer input: byte 0 = mode, then the frame bytes (header, then payload). Mode bit 1 rewrites
 * the payload hash field to match the payload, and mode bit 0 then rewrites the header checksum,
 * so mutations get past the checksums and reach the field checks; mode 0 decodes the bytes as
 * they are. */
#ifndef XDT_FRAME_FUZZ_SEEDS_H
#define XDT_FRAME_FUZZ_SEEDS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <xxhash.h>

#include "transports/frame/frame.h"

#define FUZZ_MODE_FIX_HEADER_HASH  1
#define FUZZ_MODE_FIX_PAYLOAD_HASH 2
#define FUZZ_SEED_COUNT            4
#define FUZZ_SEED_MAX_BYTES        (1 + XDT_FRAME_HEADER_BYTES + 256)

/* The fixed expectation: rank 5 receiving from rank 3. */
static inline void fuzz_frame_expect(xdt_frame_expect *e) {
    memset(e, 0, sizeof *e);
    e->job_id = UINT64_C(0x0123456789abcdef);
    e->src_rank = 3;
    e->dst_rank = 5;
    e->tag = xdt_tag_make(7, 2, 1, 0);
    e->tag_mask = XDT_TAG_MASK_ANY_INDEX;
    e->seq = 42;
    e->max_raw = 4096;
    e->max_encoded = 256;
    xdt_frame_expect_allow_codec(e, 0);
    xdt_frame_expect_allow_codec(e, 1);
    xdt_frame_expect_allow_codec(e, 2);
    e->flags_allowed = 0x01;
}

/* Applies the mode's repairs to a frame (header at f, n bytes in all) in place. */
static inline void fuzz_frame_repair(uint8_t mode, uint8_t *f, size_t n) {
    if (n < XDT_FRAME_HEADER_BYTES) return;
    if (mode & FUZZ_MODE_FIX_PAYLOAD_HASH) {
        uint64_t v = xdt_frame_payload_hash(f + XDT_FRAME_HEADER_BYTES, n - XDT_FRAME_HEADER_BYTES);
        for (int i = 0; i < 8; i++)
            f[64 + i] = (uint8_t)(v >> (8 * i));
    }
    if (mode & FUZZ_MODE_FIX_HEADER_HASH) {
        uint64_t v = XXH3_64bits(f, 72);
        for (int i = 0; i < 8; i++)
            f[72 + i] = (uint8_t)(v >> (8 * i));
    }
}

/* Writes seed k (0 <= k < FUZZ_SEED_COUNT) into out (FUZZ_SEED_MAX_BYTES) and returns its size.
 * Every seed decodes under fuzz_frame_expect and passes the payload check. */
static inline size_t fuzz_frame_seed(int k, uint8_t *out) {
    static const struct {
        uint8_t mode, codec, flags;
        uint16_t index, payload;
        uint64_t raw;
    } s[FUZZ_SEED_COUNT] = {
        {0, 0, 0, 0, 16, 16},
        {0, 1, 1, 5, 0, 0},
        {0, 2, 0, 4095, 200, 800},
        {FUZZ_MODE_FIX_HEADER_HASH | FUZZ_MODE_FIX_PAYLOAD_HASH, 1, 0, 1, 64, 4096},
    };
    xdt_frame_expect e;
    fuzz_frame_expect(&e);
    uint8_t *payload = out + 1 + XDT_FRAME_HEADER_BYTES;
    for (unsigned i = 0; i < s[k].payload; i++)
        payload[i] = (uint8_t)(i * 37u + (unsigned)k * 101u + 11u);
    xdt_frame_header h = {
        .job_id = e.job_id,
        .src_rank = e.src_rank,
        .dst_rank = e.dst_rank,
        .tag = xdt_tag_make(7, 2, 1, s[k].index),
        .seq = e.seq,
        .raw_size = s[k].raw,
        .codec = s[k].codec,
        .flags = s[k].flags,
    };
    xdt_frame_seal(&h, payload, s[k].payload);
    out[0] = s[k].mode;
    xdt_frame_encode_header(&h, out + 1);
    return 1 + XDT_FRAME_HEADER_BYTES + s[k].payload;
}

#endif
