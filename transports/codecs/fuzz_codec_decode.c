/* fuzz_codec_decode.c: libFuzzer target for xdt_codec_decode. The first input byte picks a
 * codec spec (low 6 bits) and a mode (high 2 bits); the rest is decoded into a fixed-size
 * buffer. Modes: 0 and 1 decode the bytes as they are; 2 first writes a valid header for the
 * body's length (so the fuzzer spends its time on bodies: steps, codes, zstd frames); 3 reads
 * [u16 position][u8 xor][floats], encodes the floats, flips the byte at the position with the
 * xor, and decodes (an unflipped payload must decode, a lossless one exactly). Every input runs
 * on the portable path and on the best vector path, which must agree bit for bit. Any input may
 * be rejected; none may crash, touch memory out of bounds, or (int8/int4) decode to a value
 * that is not finite. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "transports/codecs/codec.h"

#define FUZZ_MAX_N 4096

static const char *const specs[] = {
    "none",          "zstd:1",        "zstd:3",           "fp16",
    "bf16",          "int8",          "int8:block=16",    "int4",
    "int4:block=16", "int4:block=32", "int8:block=64+ef", "bf16+ef"};
#define N_SPECS (sizeof specs / sizeof specs[0])

/* [0]: best path the CPU offers, [1]: portable path */
static xdt_codec *codecs[2][N_SPECS];
static float out[2][FUZZ_MAX_N], src[FUZZ_MAX_N];
static uint8_t buf[2][XDT_CODEC_HEADER_BYTES + FUZZ_MAX_N * 8];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The n whose payload has exactly len bytes, or n_default when none has. */
static size_t count_for(const xdt_codec_spec *s, const uint8_t *body, size_t len,
                        size_t n_default) {
    if (s->kind == XDT_CODEC_ZSTD) {
        unsigned long long cs = ZSTD_getFrameContentSize(body, len);
        return cs <= 4ull * FUZZ_MAX_N && cs % 4 == 0 ? (size_t)(cs / 4) : n_default;
    }
    size_t lo = 0, hi = FUZZ_MAX_N; /* payload size is non-decreasing in n */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (xdt_codec_max_encoded_bytes(s, mid) < XDT_CODEC_HEADER_BYTES + len)
            lo = mid + 1;
        else
            hi = mid;
    }
    return xdt_codec_max_encoded_bytes(s, lo) == XDT_CODEC_HEADER_BYTES + len ? lo : n_default;
}

/* Decodes `payload` on both paths; they must agree, and int8/int4 results must be finite. */
static xdt_status decode_both(size_t which, const uint8_t *payload, size_t len, size_t n) {
    xdt_status st[2];
    for (int p = 0; p < 2; p++)
        st[p] = xdt_codec_decode(codecs[p][which], payload, len, out[p], n);
    if (st[0] != st[1]) abort();
    if (st[0] != XDT_OK) return st[0];
    if (memcmp(out[0], out[1], n * sizeof(float))) abort();
    xdt_codec_kind kind = xdt_codec_get_spec(codecs[0][which])->kind;
    if (kind == XDT_CODEC_INT8 || kind == XDT_CODEC_INT4)
        for (size_t i = 0; i < n; i++)
            if (!isfinite(out[0][i])) abort();
    return XDT_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > sizeof buf[0] - XDT_CODEC_HEADER_BYTES) return 0;
    size_t which = (data[0] & 0x3f) % N_SPECS, mode = data[0] >> 6;
    if (!codecs[0][which]) {
        xdt_codec_spec spec;
        for (int p = 0; p < 2; p++)
            if (xdt_codec_parse(specs[which], &spec) != XDT_OK ||
                xdt_codec_create(&spec, FUZZ_MAX_N, &codecs[p][which]) != XDT_OK ||
                xdt_codec_set_isa(codecs[p][which],
                                  p ? XDT_CODEC_ISA_SCALAR : XDT_CODEC_ISA_AUTO) != XDT_OK)
                abort();
    }
    const xdt_codec_spec *s = xdt_codec_get_spec(codecs[0][which]);
    const uint8_t *in = data + 1;
    size_t len = size - 1, n = (size_t)data[0] * 13 % 97;
    if (mode <= 1) {
        if (len >= 8) {
            uint32_t count;
            memcpy(&count, in + 4, 4);
            if (count <= FUZZ_MAX_N) n = count;
        }
        decode_both(which, in, len, n);
        return 0;
    }
    if (mode == 2) {
        n = count_for(s, in, len, n);
        uint32_t n32 = (uint32_t)n;
        int log2b = 0;
        while ((1 << log2b) < s->block)
            log2b++;
        buf[0][0] = (uint8_t)s->kind;
        buf[0][1] = (uint8_t)(s->kind == XDT_CODEC_INT8 || s->kind == XDT_CODEC_INT4 ? log2b : 0);
        buf[0][2] = buf[0][3] = 0;
        memcpy(buf[0] + 4, &n32, 4);
        memcpy(buf[0] + XDT_CODEC_HEADER_BYTES, in, len);
        decode_both(which, buf[0], XDT_CODEC_HEADER_BYTES + len, n);
        return 0;
    }
    if (len < 3) return 0;
    size_t pos = (size_t)in[0] | (size_t)in[1] << 8, w[2] = {0, 0};
    uint8_t flip = in[2];
    n = (len - 3) / 4 < FUZZ_MAX_N ? (len - 3) / 4 : FUZZ_MAX_N;
    memcpy(src, in + 3, n * sizeof(float));
    xdt_status est[2];
    for (int p = 0; p < 2; p++)
        est[p] = xdt_codec_encode(codecs[p][which], src, n, buf[p], sizeof buf[p], &w[p]);
    if (est[0] != est[1]) abort();
    if (est[0] != XDT_OK) return 0;
    if (w[0] != w[1] || memcmp(buf[0], buf[1], w[0])) abort();
    buf[0][pos % w[0]] ^= flip;
    xdt_status st = decode_both(which, buf[0], w[0], n);
    if (!flip && (st != XDT_OK || (xdt_codec_is_lossless(s) && memcmp(src, out[0], n * 4))))
        abort();
    return 0;
}
