/* test_frame.c: unit tests of the wire frame: round trips of every field at extreme values, the
 * byte layout, rejection of every single-bit flip in the header, of each field and each
 * expectation mismatched one at a time (with the error naming the field), of truncated headers
 * and corrupt payloads, and the tag bit layout. `test_frame --write-corpus DIR` writes the fuzz
 * seed corpus; with XDT_FRAME_CORPUS set, the committed seeds are checked to still decode. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "tests/unit/test_util.h"
#include "transports/frame/frame.h"
#include "transports/frame/frame_fuzz_seeds.h"

#define HB XDT_FRAME_HEADER_BYTES

/* ---- stderr capture: errors are reported through xdt_fail; the tests read what it said ---- */

static FILE *cap_file;
static int saved_stderr = -1;
static char cap_text[4096];

static void capture_begin(void) {
    fflush(stderr);
    if (!cap_file) cap_file = tmpfile();
    if (!cap_file) return;
    if (ftruncate(fileno(cap_file), 0) != 0) return;
    rewind(cap_file);
    saved_stderr = dup(2);
    dup2(fileno(cap_file), 2);
}

/* Restores stderr and returns what was written meanwhile. */
static const char *capture_end(void) {
    cap_text[0] = '\0';
    if (saved_stderr < 0) return cap_text;
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
    saved_stderr = -1;
    rewind(cap_file);
    size_t n = fread(cap_text, 1, sizeof cap_text - 1, cap_file);
    cap_text[n] = '\0';
    return cap_text;
}

/* ---- helpers ---- */

static xdt_frame_header sample_header(void) {
    return (xdt_frame_header){.job_id = UINT64_C(0xfeedfacecafebeef),
                              .src_rank = 3,
                              .dst_rank = 5,
                              .tag = xdt_tag_make(1234, 17, 2, 9),
                              .seq = 1000,
                              .raw_size = 4096,
                              .encoded_size = 0,
                              .codec = 4,
                              .flags = 0x01};
}

/* An expectation that h meets exactly, with the limits at h's own sizes. */
static xdt_frame_expect expect_for(const xdt_frame_header *h) {
    xdt_frame_expect e;
    memset(&e, 0, sizeof e);
    e.job_id = h->job_id;
    e.src_rank = h->src_rank;
    e.dst_rank = h->dst_rank;
    e.tag = h->tag;
    e.tag_mask = UINT64_MAX;
    e.seq = h->seq;
    e.max_raw = h->raw_size;
    e.max_encoded = h->encoded_size;
    xdt_frame_expect_allow_codec(&e, h->codec);
    e.flags_allowed = h->flags;
    return e;
}

static int header_eq(const xdt_frame_header *a, const xdt_frame_header *b) {
    return a->job_id == b->job_id && a->src_rank == b->src_rank && a->dst_rank == b->dst_rank &&
           a->tag == b->tag && a->seq == b->seq && a->raw_size == b->raw_size &&
           a->encoded_size == b->encoded_size && a->codec == b->codec && a->flags == b->flags &&
           a->payload_hash == b->payload_hash;
}

static void rehash_header(uint8_t *b) {
    uint64_t v = XXH3_64bits(b, 72);
    for (int i = 0; i < 8; i++)
        b[72 + i] = (uint8_t)(v >> (8 * i));
}

static uint64_t le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static xdt_frame_header sentinel(void) {
    xdt_frame_header h;
    memset(&h, 0x5a, sizeof h);
    return h;
}

/* Decodes bytes[0, len) expecting XDT_ERR_FORMAT with a message containing `want` (NULL: any),
 * and the output untouched. Returns 1 when all of that held. */
static int rejects(const uint8_t *bytes, size_t len, const xdt_frame_expect *e, const char *want,
                   const char *what) {
    xdt_frame_header h = sentinel(), s = sentinel();
    capture_begin();
    xdt_status st = xdt_frame_decode_header(bytes, len, e, &h);
    const char *msg = capture_end();
    int ok = st == XDT_ERR_FORMAT && memcmp(&h, &s, sizeof h) == 0 &&
             strstr(msg, "frame from rank") && (!want || strstr(msg, want));
    CHECK_MSG(ok, "%s: status %d, message \"%s\", wanted \"%s\"", what, (int)st, msg,
              want ? want : "(any)");
    return ok;
}

static int accepts(const uint8_t *bytes, size_t len, const xdt_frame_expect *e,
                   const xdt_frame_header *want, const char *what) {
    xdt_frame_header h = sentinel();
    capture_begin();
    xdt_status st = xdt_frame_decode_header(bytes, len, e, &h);
    const char *msg = capture_end();
    int ok = st == XDT_OK && (!want || header_eq(&h, want));
    CHECK_MSG(ok, "%s: status %d, message \"%s\"", what, (int)st, msg);
    return ok;
}

/* ---- tests ---- */

static void test_layout(void) {
    xdt_frame_header h = sample_header();
    uint8_t payload[40];
    for (int i = 0; i < 40; i++)
        payload[i] = (uint8_t)(i * 7);
    xdt_frame_seal(&h, payload, sizeof payload);
    CHECK(h.encoded_size == 40);
    CHECK(h.payload_hash == XXH3_64bits(payload, sizeof payload));
    uint8_t b[HB];
    xdt_frame_encode_header(&h, b);
    CHECK(memcmp(b, "XDTF", 4) == 0);
    CHECK(b[4] == 1 && b[5] == 0);  /* version 1 */
    CHECK(b[6] == 80 && b[7] == 0); /* header bytes */
    CHECK(le64(b + 8) == h.job_id);
    CHECK(b[16] == 3 && b[17] == 0 && b[18] == 0 && b[19] == 0);
    CHECK(b[20] == 5 && b[21] == 0 && b[22] == 0 && b[23] == 0);
    CHECK(le64(b + 24) == h.tag);
    CHECK(le64(b + 32) == h.seq);
    CHECK(le64(b + 40) == h.raw_size);
    CHECK(le64(b + 48) == 40);
    CHECK(b[56] == 4 && b[57] == 1);
    for (int i = 58; i < 64; i++)
        CHECK(b[i] == 0);
    CHECK(le64(b + 64) == h.payload_hash);
    CHECK(le64(b + 72) == XXH3_64bits(b, 72));
}

static void test_roundtrip_extremes(void) {
    xdt_frame_header cases[4] = {
        {0},
        {.job_id = UINT64_MAX,
         .src_rank = UINT32_MAX,
         .dst_rank = UINT32_MAX,
         .tag = UINT64_MAX,
         .seq = UINT64_MAX,
         .raw_size = UINT64_MAX,
         .encoded_size = UINT64_MAX,
         .codec = 255,
         .flags = 255,
         .payload_hash = UINT64_MAX},
        {.job_id = UINT64_C(0x8000000000000001),
         .src_rank = 0x80000001u,
         .dst_rank = 1,
         .tag = UINT64_C(0x8000000000000000),
         .seq = 1,
         .raw_size = UINT64_C(1) << 63,
         .encoded_size = 1,
         .codec = 128,
         .flags = 0x80,
         .payload_hash = 1},
        sample_header(),
    };
    for (int c = 0; c < 4; c++) {
        xdt_frame_header h = cases[c];
        xdt_frame_expect e = expect_for(&h);
        uint8_t b[HB];
        xdt_frame_encode_header(&h, b);
        char what[64];
        snprintf(what, sizeof what, "round trip case %d", c);
        accepts(b, HB, &e, &h, what);
        /* A longer buffer is fine: only the first 80 bytes are the header. */
        uint8_t longer[HB + 3] = {0};
        memcpy(longer, b, HB);
        accepts(longer, sizeof longer, &e, &h, what);
        uint8_t again[HB];
        xdt_frame_encode_header(&h, again);
        CHECK(memcmp(b, again, HB) == 0);
    }
}

/* Every single-bit flip anywhere in the header is rejected, for several headers. */
static void test_header_bit_flips(void) {
    xdt_frame_header cases[3] = {sample_header(), {0}, sample_header()};
    cases[2].job_id = UINT64_MAX;
    cases[2].tag = UINT64_MAX;
    cases[2].codec = 255;
    cases[2].flags = 0xff;
    int rejected = 0, tried = 0;
    for (int c = 0; c < 3; c++) {
        /* The most lenient expectation the header still meets, so only the header checks and
         * the exact fields (job, ranks, seq) can catch a flip. */
        xdt_frame_expect e = expect_for(&cases[c]);
        e.tag_mask = 0;
        memset(e.codecs, 0xff, sizeof e.codecs);
        e.flags_allowed = 0xff;
        e.max_raw = e.max_encoded = UINT64_MAX;
        uint8_t b[HB];
        xdt_frame_encode_header(&cases[c], b);
        accepts(b, HB, &e, &cases[c], "unflipped header");
        for (int off = 0; off < HB; off++)
            for (int bit = 0; bit < 8; bit++) {
                b[off] ^= (uint8_t)(1u << bit);
                char what[64];
                snprintf(what, sizeof what, "case %d: flip of byte %d bit %d", c, off, bit);
                tried++;
                rejected += rejects(b, HB, &e, NULL, what);
                b[off] ^= (uint8_t)(1u << bit);
            }
        accepts(b, HB, &e, &cases[c], "header after the flips were undone");
    }
    CHECK_MSG(tried == 3 * HB * 8 && rejected == tried, "%d of %d flips rejected", rejected, tried);
}

/* Each field altered one at a time, with a valid header checksum, is rejected by name. */
static void test_field_changes(void) {
    const xdt_frame_header base = sample_header();
    const xdt_frame_expect e = expect_for(&base);
    struct {
        const char *want;
        xdt_frame_header h;
    } c[16];
    int n = 0;
    for (int i = 0; i < 16; i++)
        c[i].h = base;
    c[n].want = "field 'job_id'";
    c[n++].h.job_id ^= 1;
    c[n].want = "field 'src_rank'";
    c[n++].h.src_rank = 4;
    c[n].want = "field 'dst_rank'";
    c[n++].h.dst_rank = 6;
    c[n].want = "field 'tag'";
    c[n++].h.tag = xdt_tag_make(1235, 17, 2, 9);
    c[n].want = "field 'tag'";
    c[n++].h.tag = base.tag | (UINT64_C(1) << 63);
    c[n].want = "field 'seq'";
    c[n++].h.seq = base.seq + 1;
    c[n].want = "field 'seq'";
    c[n++].h.seq = base.seq - 1;
    c[n].want = "field 'codec'";
    c[n++].h.codec = 5;
    c[n].want = "field 'flags'";
    c[n++].h.flags = 0x02;
    c[n].want = "field 'flags' is 0x81";
    c[n++].h.flags = 0x81;
    c[n].want = "field 'raw_size'";
    c[n++].h.raw_size = base.raw_size + 1;
    c[n].want = "field 'encoded_size'";
    c[n++].h.encoded_size = base.encoded_size + 1;
    for (int i = 0; i < n; i++) {
        uint8_t b[HB];
        xdt_frame_encode_header(&c[i].h, b);
        rejects(b, HB, &e, c[i].want, c[i].want);
        CHECK(strstr(cap_text, "frame from rank 3:") != NULL);
    }

    /* Fields checked on the raw bytes: resealed so the checksum does not catch them first. */
    uint8_t good[HB], b[HB];
    xdt_frame_encode_header(&base, good);
    memcpy(b, good, HB);
    b[0] = 'Y';
    rehash_header(b);
    rejects(b, HB, &e, "field 'magic'", "magic");
    memcpy(b, good, HB);
    b[4] = 2;
    rehash_header(b);
    rejects(b, HB, &e, "field 'version' is 2", "version");
    memcpy(b, good, HB);
    b[6] = 96;
    rehash_header(b);
    rejects(b, HB, &e, "field 'header_bytes' is 96", "header bytes");
    for (int off = 58; off < 64; off++) {
        memcpy(b, good, HB);
        b[off] = 0x40;
        rehash_header(b);
        rejects(b, HB, &e, "field 'reserved'", "reserved byte");
    }
    /* A field altered without resealing is caught by the header checksum. */
    memcpy(b, good, HB);
    b[24] ^= 0x10;
    rejects(b, HB, &e, "header checksum mismatch", "unsealed tag change");
    memcpy(b, good, HB);
    b[79] ^= 0x80;
    rejects(b, HB, &e, "header checksum mismatch", "checksum bit");
}

/* A valid frame against expectations changed one at a time. */
static void test_expectations(void) {
    xdt_frame_header h = sample_header();
    h.encoded_size = 1000;
    uint8_t b[HB];
    xdt_frame_encode_header(&h, b);
    const xdt_frame_expect base = expect_for(&h);
    accepts(b, HB, &base, &h, "exact expectation");
    xdt_frame_expect e;

#define REJECT_WITH(change, want)                                                                  \
    do {                                                                                           \
        e = base;                                                                                  \
        change;                                                                                    \
        rejects(b, HB, &e, want, #change);                                                         \
    } while (0)
#define ACCEPT_WITH(change)                                                                        \
    do {                                                                                           \
        e = base;                                                                                  \
        change;                                                                                    \
        accepts(b, HB, &e, &h, #change);                                                           \
    } while (0)

    REJECT_WITH(e.job_id = 7, "field 'job_id'");
    REJECT_WITH(e.src_rank = 2, "frame from rank 2: field 'src_rank' is 3, expected 2");
    REJECT_WITH(e.dst_rank = 4, "field 'dst_rank' is 5, expected 4");
    REJECT_WITH(e.tag = xdt_tag_make(1234, 17, 2, 8), "field 'tag'");
    REJECT_WITH(e.tag = xdt_tag_make(1234, 16, 2, 9), "microbatch 17");
    REJECT_WITH(e.tag = xdt_tag_make(1234, 17, 3, 9), "kind 2");
    REJECT_WITH(e.tag = xdt_tag_make(1233, 17, 2, 9), "step 1234");
    ACCEPT_WITH((e.tag = xdt_tag_make(1234, 17, 2, 0), e.tag_mask = XDT_TAG_MASK_ANY_INDEX));
    REJECT_WITH((e.tag = xdt_tag_make(1234, 18, 2, 0), e.tag_mask = XDT_TAG_MASK_ANY_INDEX),
                "field 'tag'");
    ACCEPT_WITH((e.tag = 0, e.tag_mask = 0));
    REJECT_WITH(e.seq = 1001, "field 'seq' is 1000, expected 1001");
    REJECT_WITH(e.seq = 999, "field 'seq'");
    REJECT_WITH(memset(e.codecs, 0, sizeof e.codecs), "field 'codec' is 4");
    REJECT_WITH((memset(e.codecs, 0xff, sizeof e.codecs), e.codecs[0] &= ~(UINT64_C(1) << 4)),
                "field 'codec'");
    ACCEPT_WITH(memset(e.codecs, 0xff, sizeof e.codecs));
    REJECT_WITH(e.flags_allowed = 0, "field 'flags' is 0x01");
    REJECT_WITH(e.flags_allowed = 0xfe, "field 'flags'");
    ACCEPT_WITH(e.flags_allowed = 0xff);
    REJECT_WITH(e.max_raw = 4095, "field 'raw_size' is 4096 bytes, the limit is 4095");
    ACCEPT_WITH(e.max_raw = UINT64_MAX);
    REJECT_WITH(e.max_encoded = 999, "field 'encoded_size' is 1000 bytes, the limit is 999");
    REJECT_WITH(e.max_encoded = 0, "field 'encoded_size'");
    ACCEPT_WITH(e.max_encoded = 1001);
#undef REJECT_WITH
#undef ACCEPT_WITH

    /* Codec bitmap at the word edges. */
    xdt_frame_expect z;
    memset(&z, 0, sizeof z);
    const int ids[] = {0, 63, 64, 127, 128, 191, 192, 255};
    for (int i = 0; i < 8; i++) {
        CHECK(!xdt_frame_expect_allows_codec(&z, (uint8_t)ids[i]));
        xdt_frame_expect_allow_codec(&z, (uint8_t)ids[i]);
        CHECK(xdt_frame_expect_allows_codec(&z, (uint8_t)ids[i]));
    }
    int allowed = 0;
    for (int id = 0; id < 256; id++)
        allowed += xdt_frame_expect_allows_codec(&z, (uint8_t)id);
    CHECK(allowed == 8);
}

static void test_truncated(void) {
    xdt_frame_header h = sample_header();
    xdt_frame_expect e = expect_for(&h);
    uint8_t b[HB];
    xdt_frame_encode_header(&h, b);
    for (size_t len = 0; len < HB; len++) {
        /* An exact-size heap copy, so the sanitizers catch any read past it. */
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy) continue;
        memcpy(copy, b, len);
        char want[64], what[64];
        snprintf(want, sizeof want, "truncated: %zu of 80 header bytes", len);
        snprintf(what, sizeof what, "truncated to %zu", len);
        rejects(copy, len, &e, want, what);
        free(copy);
    }
    rejects(NULL, 0, &e, "truncated: 0 of 80", "NULL, 0 bytes");
    uint8_t *exact = malloc(HB);
    if (exact) {
        memcpy(exact, b, HB);
        accepts(exact, HB, &e, &h, "exactly 80 bytes");
        free(exact);
    }
}

static void test_payload(void) {
    enum { N = 64 };
    uint8_t *payload = malloc(N + 1);
    if (!payload) {
        CHECK(0);
        return;
    }
    for (int i = 0; i < N + 1; i++)
        payload[i] = (uint8_t)(i * 31 + 7);
    xdt_frame_header h = sample_header();
    xdt_frame_seal(&h, payload, N);
    capture_begin();
    xdt_status st = xdt_frame_check_payload(&h, payload, N);
    capture_end();
    CHECK(st == XDT_OK);

    int caught = 0;
    for (int i = 0; i < N; i++)
        for (int bit = 0; bit < 8; bit++) {
            payload[i] ^= (uint8_t)(1u << bit);
            capture_begin();
            st = xdt_frame_check_payload(&h, payload, N);
            const char *msg = capture_end();
            caught += st == XDT_ERR_FORMAT &&
                      strstr(msg, "frame from rank 3: payload checksum mismatch") != NULL;
            payload[i] ^= (uint8_t)(1u << bit);
        }
    CHECK_MSG(caught == N * 8, "%d of %d payload bit flips caught", caught, N * 8);

    capture_begin();
    st = xdt_frame_check_payload(&h, payload, N - 1);
    const char *msg = capture_end();
    CHECK(st == XDT_ERR_FORMAT &&
          strstr(msg, "payload is 63 bytes, the header says 64 (truncated)"));
    capture_begin();
    st = xdt_frame_check_payload(&h, payload, N + 1);
    msg = capture_end();
    CHECK(st == XDT_ERR_FORMAT && strstr(msg, "payload is 65 bytes, the header says 64"));
    capture_begin();
    st = xdt_frame_check_payload(&h, NULL, 0);
    capture_end();
    CHECK(st == XDT_ERR_FORMAT);

    /* An empty payload, with or without a pointer. */
    xdt_frame_seal(&h, NULL, 0);
    CHECK(h.encoded_size == 0);
    CHECK(xdt_frame_check_payload(&h, NULL, 0) == XDT_OK);
    CHECK(xdt_frame_check_payload(&h, payload, 0) == XDT_OK);
    capture_begin();
    st = xdt_frame_check_payload(&h, payload, 1);
    capture_end();
    CHECK(st == XDT_ERR_FORMAT);
    free(payload);
}

static void test_tags(void) {
    const uint64_t step_max = (UINT64_C(1) << XDT_TAG_STEP_BITS) - 1;
    CHECK(XDT_TAG_MASK_ALL == UINT64_C(0xffffffffffff));
    CHECK(XDT_TAG_MASK_ANY_INDEX == UINT64_C(0xfffffffff000));
    CHECK(XDT_TAG_STEP_SHIFT + XDT_TAG_STEP_BITS == XDT_TAG_FRAME_BITS);
    CHECK(xdt_tag_make(0, 0, 0, 0) == 0);
    CHECK(xdt_tag_make(step_max, 4095, 15, 4095) == XDT_TAG_MASK_ALL);
    CHECK(xdt_tag_make(1, 0, 0, 0) == UINT64_C(1) << 28);
    CHECK(xdt_tag_make(step_max, 0, 0, 0) == UINT64_C(0xfffff0000000));
    CHECK(xdt_tag_make(0, 1, 0, 0) == UINT64_C(1) << 16);
    CHECK(xdt_tag_make(0, 4095, 0, 0) == UINT64_C(0x0fff0000));
    CHECK(xdt_tag_make(0, 0, 1, 0) == UINT64_C(1) << 12);
    CHECK(xdt_tag_make(0, 0, 15, 0) == UINT64_C(0xf000));
    CHECK(xdt_tag_make(0, 0, 0, 1) == 1);
    CHECK(xdt_tag_make(0, 0, 0, 4095) == UINT64_C(0xfff));
    /* The step wraps modulo 2^20. */
    CHECK(xdt_tag_make(step_max + 1, 0, 0, 0) == 0);
    CHECK(xdt_tag_step(xdt_tag_make((UINT64_C(1) << 20) + 5, 0, 0, 0)) == 5);
    CHECK(xdt_tag_step(xdt_tag_make(UINT64_MAX, 0, 0, 0)) == step_max);
    /* Every single bit of every field round-trips and touches no other field. */
    const int bits[4] = {XDT_TAG_STEP_BITS, XDT_TAG_MICROBATCH_BITS, XDT_TAG_KIND_BITS,
                         XDT_TAG_INDEX_BITS};
    int seen = 0;
    for (int f = 0; f < 4; f++)
        for (int k = 0; k < bits[f]; k++) {
            uint64_t v[4] = {0, 0, 0, 0};
            v[f] = UINT64_C(1) << k;
            uint64_t t = xdt_tag_make(v[0], v[1], v[2], v[3]);
            int ok = xdt_tag_step(t) == v[0] && xdt_tag_microbatch(t) == v[1] &&
                     xdt_tag_kind(t) == v[2] && xdt_tag_index(t) == v[3] &&
                     (t & ~XDT_TAG_MASK_ALL) == 0;
            CHECK_MSG(ok, "field %d bit %d: tag 0x%llx", f, k, (unsigned long long)t);
            seen++;
        }
    CHECK(seen == 48);
    /* Distinct single-bit inputs give 48 distinct single-bit tags covering bits 0..47. */
    uint64_t all = 0;
    for (int f = 0; f < 4; f++)
        for (int k = 0; k < bits[f]; k++) {
            uint64_t v[4] = {0, 0, 0, 0};
            v[f] = UINT64_C(1) << k;
            uint64_t t = xdt_tag_make(v[0], v[1], v[2], v[3]);
            CHECK((t & (t - 1)) == 0 && (all & t) == 0);
            all |= t;
        }
    CHECK(all == XDT_TAG_MASK_ALL);
    uint64_t t = xdt_tag_make(step_max, 4095, 15, 4095);
    CHECK(xdt_tag_step(t) == step_max && xdt_tag_microbatch(t) == 4095 && xdt_tag_kind(t) == 15 &&
          xdt_tag_index(t) == 4095);
    CHECK(xdt_tag_fits(4095, 15, 4095));
    CHECK(!xdt_tag_fits(4096, 0, 0));
    CHECK(!xdt_tag_fits(0, 16, 0));
    CHECK(!xdt_tag_fits(0, 0, 4096));
    CHECK(xdt_tag_fits(0, 0, 0));
}

static void test_describe(void) {
    xdt_frame_header h = sample_header();
    h.tag = xdt_tag_make(7, 2, 1, 3);
    h.seq = 42;
    char buf[512];
    const char *s = xdt_frame_describe(&h, buf, sizeof buf);
    CHECK(s == buf);
    CHECK_MSG(strstr(s, "rank 3 -> 5") && strstr(s, "seq 42") &&
                  strstr(s, "step 7 microbatch 2 kind 1 index 3") && strstr(s, "codec 4") &&
                  strstr(s, "raw 4096 B") && strstr(s, "job 0xfeedfacecafebeef"),
              "describe: %s", s);
    char small[12];
    memset(small, 'x', sizeof small);
    xdt_frame_describe(&h, small, sizeof small);
    CHECK(small[sizeof small - 1] == '\0' && strlen(small) == sizeof small - 1);
}

static void test_invalid_args(void) {
    xdt_frame_header h = sample_header();
    xdt_frame_expect e = expect_for(&h);
    uint8_t b[HB];
    xdt_frame_encode_header(&h, b);
    capture_begin();
    CHECK(xdt_frame_decode_header(b, HB, NULL, &h) == XDT_ERR_INVALID_ARG);
    CHECK(xdt_frame_decode_header(b, HB, &e, NULL) == XDT_ERR_INVALID_ARG);
    CHECK(xdt_frame_decode_header(NULL, HB, &e, &h) == XDT_ERR_INVALID_ARG);
    CHECK(xdt_frame_check_payload(&h, NULL, 5) == XDT_ERR_INVALID_ARG);
    capture_end();
}

/* The fuzz seeds: each decodes under the fuzzer's expectation and carries a valid payload. */
static int check_seed(const uint8_t *data, size_t size, const char *name) {
    if (size < 1 + HB) {
        CHECK_MSG(0, "%s: %zu bytes, too short for a seed", name, size);
        return 0;
    }
    uint8_t *f = malloc(size - 1);
    if (!f) return 0;
    memcpy(f, data + 1, size - 1);
    fuzz_frame_repair(data[0], f, size - 1);
    xdt_frame_expect e;
    fuzz_frame_expect(&e);
    xdt_frame_header h;
    capture_begin();
    xdt_status st = xdt_frame_decode_header(f, size - 1, &e, &h);
    if (st == XDT_OK) st = xdt_frame_check_payload(&h, f + HB, size - 1 - HB);
    const char *msg = capture_end();
    CHECK_MSG(st == XDT_OK, "%s: %s", name, msg);
    free(f);
    return st == XDT_OK;
}

static void test_seeds(void) {
    uint8_t buf[FUZZ_SEED_MAX_BYTES];
    for (int k = 0; k < FUZZ_SEED_COUNT; k++) {
        size_t n = fuzz_frame_seed(k, buf);
        CHECK(n <= sizeof buf);
        check_seed(buf, n, "generated seed");
    }
    const char *dir = getenv("XDT_FRAME_CORPUS");
    if (!dir) return;
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "%s: %s", dir, strerror(errno));
    if (!d) return;
    int files = 0, good = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (de->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        FILE *fp = fopen(path, "rb");
        if (!fp) continue;
        uint8_t data[4096];
        size_t n = fread(data, 1, sizeof data, fp);
        fclose(fp);
        files++;
        good += check_seed(data, n, path);
    }
    closedir(d);
    CHECK_MSG(files >= FUZZ_SEED_COUNT && good == files, "%s: %d of %d seed files decode", dir,
              good, files);
}

static int write_corpus(const char *dir) {
    uint8_t buf[FUZZ_SEED_MAX_BYTES];
    for (int k = 0; k < FUZZ_SEED_COUNT; k++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/seed_%d.bin", dir, k);
        size_t n = fuzz_frame_seed(k, buf);
        FILE *fp = fopen(path, "wb");
        if (!fp || fwrite(buf, 1, n, fp) != n || fclose(fp) != 0) {
            fprintf(stderr, "%s: cannot write: %s\n", path, strerror(errno));
            return 1;
        }
        printf("wrote %s (%zu bytes)\n", path, n);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) return write_corpus(argv[2]);
    test_layout();
    test_roundtrip_extremes();
    test_header_bit_flips();
    test_field_changes();
    test_expectations();
    test_truncated();
    test_payload();
    test_tags();
    test_describe();
    test_invalid_args();
    test_seeds();
    /* The capture itself works (otherwise the message checks above would prove nothing). */
    capture_begin();
    fprintf(stderr, "capture probe\n");
    CHECK(strcmp(capture_end(), "capture probe\n") == 0);
    if (cap_file) fclose(cap_file);
    return test_exit_code("test_frame");
}
