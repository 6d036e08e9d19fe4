/* codec_kernels.h: private to transports/codecs. The table of encode/decode kernels that each
 * instruction-set path (portable C, AVX2, AVX-512) fills, and the scalar element operations they
 * all share: every path computes each value with the same IEEE operations in the same order
 * (the library is built with -ffp-contract=off), which is what makes their payloads
 * bit-identical. Layouts and error bounds are documented in codec.h. */
#ifndef XDT_CODEC_KERNELS_H
#define XDT_CODEC_KERNELS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/float_bits.h"
#include "transports/codecs/codec.h"

#if defined(__x86_64__) || defined(__i386__)
#define XDT_CODEC_X86 1
#else
#define XDT_CODEC_X86 0
#endif

/* Kernel contracts. x, r_in, r_out and out never alias. r_in (error-feedback residual to add,
 * NULL = zero) and r_out (where y - decode(encode(y)) goes, NULL = not wanted) are independent.
 * Encoders return false when they met a value they cannot carry: for fp16/bf16 only when r_out
 * is set and a residual is not finite; for int8/int4 a block holding NaN or infinity. Decoders
 * return false for a code outside the encoder's range; int8/int4 steps are validated by the
 * caller beforehand. `scales` and `codes` are byte pointers into the payload (no alignment). */
typedef struct xdt_codec_kernels {
    xdt_codec_isa isa;
    bool (*fp16_encode)(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n);
    void (*fp16_decode)(const uint8_t *in, float *out, size_t n);
    bool (*bf16_encode)(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n);
    void (*bf16_decode)(const uint8_t *in, float *out, size_t n);
    bool (*int8_encode)(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                        uint8_t *scales, uint8_t *codes);
    bool (*int8_decode)(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                        size_t block);
    bool (*int4_encode)(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                        uint8_t *scales, uint8_t *codes);
    bool (*int4_decode)(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                        size_t block);
} xdt_codec_kernels;

extern const xdt_codec_kernels xdt_codec_kernels_scalar;
#if XDT_CODEC_X86
extern const xdt_codec_kernels xdt_codec_kernels_avx2;
extern const xdt_codec_kernels xdt_codec_kernels_avx512;
#endif

/* How one int8/int4 block is quantised: q = round_even((y * pre) * inv), clamped to
 * [-levels, levels], decoded as q * d. pre is 2^64 for blocks so small that levels/absmax would
 * overflow (exact: it only shifts the exponent), else 1. */
typedef struct xdt_qblock {
    float inv, d, pre;
} xdt_qblock;

/* Parameters for a block whose absmax has bit pattern amax_bits (finite); levels is 127 or 7. */
static inline xdt_qblock xdt_qblock_params(uint32_t amax_bits, float levels) {
    xdt_qblock p = {0.0f, 0.0f, 1.0f};
    float amax = xdt_u2f(amax_bits);
    if (amax_bits == 0) return p; /* all zeros: q = 0, d = 0 */
    if (amax < 0x1p-100f) {
        p.pre = 0x1p64f;
        p.inv = levels / (amax * p.pre);
    } else {
        p.inv = levels / amax;
    }
    p.d = amax / levels;
    /* The largest code must decode to a finite value (absmax near FLT_MAX). */
    if (!isfinite(levels * p.d)) p.d = nextafterf(p.d, 0.0f);
    return p;
}

static inline int32_t xdt_quantise(float y, xdt_qblock p, int32_t levels) {
    int32_t q = (int32_t)lrintf((y * p.pre) * p.inv);
    return q < -levels ? -levels : q > levels ? levels : q;
}

/* |y| bit patterns' maximum over y = x (+ r_in); >= XDT_F32_INF_BITS when one is not finite. */
static inline uint32_t xdt_absmax_bits(const float *x, const float *r_in, size_t n) {
    uint32_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a = xdt_f2u(r_in ? x[i] + r_in[i] : x[i]) & 0x7fffffffu;
        m = a > m ? a : m;
    }
    return m;
}

/* Quantises y = x (+ r_in) for n values of one block into int8 codes (and residuals). */
static inline void xdt_int8_quant_range(const float *x, const float *r_in, float *r_out, size_t n,
                                        xdt_qblock p, uint8_t *codes) {
    for (size_t i = 0; i < n; i++) {
        float y = r_in ? x[i] + r_in[i] : x[i];
        int32_t q = xdt_quantise(y, p, 127);
        codes[i] = (uint8_t)(int8_t)q;
        if (r_out) r_out[i] = y - (float)q * p.d;
    }
}

/* The same for int4, n values from an even index: ceil(n/2) bytes, a lone last value in the low
 * nibble of its byte. */
static inline void xdt_int4_quant_range(const float *x, const float *r_in, float *r_out, size_t n,
                                        xdt_qblock p, uint8_t *codes) {
    for (size_t i = 0; i < n; i++) {
        float y = r_in ? x[i] + r_in[i] : x[i];
        int32_t q = xdt_quantise(y, p, 7);
        uint8_t nib = (uint8_t)(q & 0xf);
        if (i & 1)
            codes[i >> 1] = (uint8_t)(codes[i >> 1] | (nib << 4));
        else
            codes[i >> 1] = nib;
        if (r_out) r_out[i] = y - (float)q * p.d;
    }
}

/* The step of block bi, read from the payload. */
static inline float xdt_scale_at(const uint8_t *scales, size_t bi) {
    float d;
    memcpy(&d, scales + 4 * bi, sizeof d);
    return d;
}

/* Decodes n int8 codes with step d; false when a code is -128. */
static inline bool xdt_int8_dequant_range(const uint8_t *codes, float d, float *out, size_t n) {
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        int8_t q = (int8_t)codes[i];
        ok &= q != -128;
        out[i] = (float)q * d;
    }
    return ok;
}

/* Decodes n int4 values from an even index with step d; false when a nibble is -8 (0x8). */
static inline bool xdt_int4_dequant_range(const uint8_t *codes, float d, float *out, size_t n) {
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        uint8_t nib = (uint8_t)((codes[i >> 1] >> ((i & 1) * 4)) & 0xf);
        ok &= nib != 8;
        int32_t q = (int32_t)((nib ^ 8u)) - 8;
        out[i] = (float)q * d;
    }
    return ok;
}

#endif
