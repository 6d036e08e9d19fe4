/* codec_avx512.c: the AVX-512 (F + BW) kernels of the codecs, 16 to 64 values per step, with the
 * last few values of a tensor handed to the shared scalar element operations. Each step performs
 * the same IEEE operations as codec_scalar.c, so the payloads are bit-identical. Built for any
 * x86 compiler through target attributes; codec.c calls them only when the CPU has AVX-512 F
 * and BW. */
#include "transports/codecs/codec_kernels.h"

#if XDT_CODEC_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw")))
#define INL static inline __attribute__((always_inline, target("avx512f,avx512bw")))

INL __m512 load_y(const float *x, const float *r_in, size_t i, bool has_in) {
    __m512 y = _mm512_loadu_ps(x + i);
    return has_in ? _mm512_add_ps(y, _mm512_loadu_ps(r_in + i)) : y;
}

/* Mask of the lanes holding infinity or NaN. */
INL __mmask16 nonfinite(__m512 v) {
    const __m512i e = _mm512_set1_epi32((int)XDT_F32_INF_BITS);
    return _mm512_cmpeq_epi32_mask(_mm512_and_si512(_mm512_castps_si512(v), e), e);
}

INL bool fp16_enc(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n,
                  bool has_in, bool has_out) {
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 y = load_y(x, r_in, i, has_in);
        __m256i h = _mm512_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT);
        _mm256_storeu_si256((__m256i *)(out + 2 * i), h);
        if (has_out) {
            __m512 r = _mm512_sub_ps(y, _mm512_cvtph_ps(h));
            _mm512_storeu_ps(r_out + i, r);
            bad |= nonfinite(r);
        }
    }
    bool ok = bad == 0;
    if (i < n)
        ok &= xdt_codec_kernels_scalar.fp16_encode(x + i, has_in ? r_in + i : NULL,
                                                   has_out ? r_out + i : NULL, out + 2 * i, n - i);
    return ok;
}

TGT static bool fp16_encode(const float *x, const float *r_in, float *r_out, uint8_t *out,
                            size_t n) {
    if (r_in) return fp16_enc(x, r_in, r_out, out, n, true, r_out != NULL);
    if (r_out) return fp16_enc(x, NULL, r_out, out, n, false, true);
    return fp16_enc(x, NULL, NULL, out, n, false, false);
}

TGT static void fp16_decode(const uint8_t *in, float *out, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(out + i,
                         _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(in + 2 * i))));
    if (i < n) xdt_codec_kernels_scalar.fp16_decode(in + 2 * i, out + i, n - i);
}

/* bf16 bit patterns (in the low 16 bits of each lane) of 16 values. */
INL __m512i bf16_round(__m512 y) {
    __m512i u = _mm512_castps_si512(y);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb), 16);
    __m512i a = _mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff));
    __mmask16 is_nan = _mm512_cmpgt_epi32_mask(a, _mm512_set1_epi32((int)XDT_F32_INF_BITS));
    __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    return _mm512_mask_blend_epi32(is_nan, r, quiet);
}

INL bool bf16_enc(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n,
                  bool has_in, bool has_out) {
    __mmask16 bad = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 y = load_y(x, r_in, i, has_in);
        __m512i h = bf16_round(y);
        _mm256_storeu_si256((__m256i *)(out + 2 * i), _mm512_cvtepi32_epi16(h));
        if (has_out) {
            __m512 r = _mm512_sub_ps(y, _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
            _mm512_storeu_ps(r_out + i, r);
            bad |= nonfinite(r);
        }
    }
    bool ok = bad == 0;
    if (i < n)
        ok &= xdt_codec_kernels_scalar.bf16_encode(x + i, has_in ? r_in + i : NULL,
                                                   has_out ? r_out + i : NULL, out + 2 * i, n - i);
    return ok;
}

TGT static bool bf16_encode(const float *x, const float *r_in, float *r_out, uint8_t *out,
                            size_t n) {
    if (r_in) return bf16_enc(x, r_in, r_out, out, n, true, r_out != NULL);
    if (r_out) return bf16_enc(x, NULL, r_out, out, n, false, true);
    return bf16_enc(x, NULL, NULL, out, n, false, false);
}

TGT static void bf16_decode(const uint8_t *in, float *out, size_t n) {
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512i h = _mm512_loadu_si512((const void *)(in + 2 * i));
        __m512i lo = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(h));
        __m512i hi = _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(h, 1));
        _mm512_storeu_si512((void *)(out + i), _mm512_slli_epi32(lo, 16));
        _mm512_storeu_si512((void *)(out + i + 16), _mm512_slli_epi32(hi, 16));
    }
    if (i < n) xdt_codec_kernels_scalar.bf16_decode(in + 2 * i, out + i, n - i);
}

INL uint32_t absmax_block(const float *x, const float *r_in, size_t len, bool has_in) {
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff);
    __m512i m0 = _mm512_setzero_si512(), m1 = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 32 <= len; i += 32) {
        m0 = _mm512_max_epu32(
            m0, _mm512_and_si512(_mm512_castps_si512(load_y(x, r_in, i, has_in)), abs_mask));
        m1 = _mm512_max_epu32(
            m1, _mm512_and_si512(_mm512_castps_si512(load_y(x, r_in, i + 16, has_in)), abs_mask));
    }
    for (; i + 16 <= len; i += 16)
        m0 = _mm512_max_epu32(
            m0, _mm512_and_si512(_mm512_castps_si512(load_y(x, r_in, i, has_in)), abs_mask));
    uint32_t r = _mm512_reduce_max_epu32(_mm512_max_epu32(m0, m1));
    if (i < len) {
        uint32_t t = xdt_absmax_bits(x + i, has_in ? r_in + i : NULL, len - i);
        r = t > r ? t : r;
    }
    return r;
}

INL __m512i quant16(__m512 y, __m512 pre, __m512 inv, __m512 d, __m512i lim, float *r_out, size_t i,
                    bool has_out) {
    __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_mul_ps(y, pre), inv));
    q = _mm512_max_epi32(_mm512_min_epi32(q, lim), _mm512_sub_epi32(_mm512_setzero_si512(), lim));
    if (has_out)
        _mm512_storeu_ps(r_out + i, _mm512_sub_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d)));
    return q;
}

INL bool int8_enc(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                  uint8_t *scales, uint8_t *codes, bool has_in, bool has_out) {
    const __m512i lim = _mm512_set1_epi32(127);
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *xb = x + b0, *rb = has_in ? r_in + b0 : NULL;
        float *ob = has_out ? r_out + b0 : NULL;
        uint8_t *cb = codes + b0;
        uint32_t m = absmax_block(xb, rb, len, has_in);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 127.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        const __m512 pre = _mm512_set1_ps(p.pre), inv = _mm512_set1_ps(p.inv),
                     d = _mm512_set1_ps(p.d);
        size_t i = 0;
        for (; i + 16 <= len; i += 16) {
            __m512i q = quant16(load_y(xb, rb, i, has_in), pre, inv, d, lim, ob, i, has_out);
            _mm_storeu_si128((__m128i *)(cb + i), _mm512_cvtepi32_epi8(q));
        }
        if (i < len)
            xdt_int8_quant_range(xb + i, has_in ? rb + i : NULL, has_out ? ob + i : NULL, len - i,
                                 p, cb + i);
    }
    return true;
}

TGT static bool int8_encode(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                            uint8_t *scales, uint8_t *codes) {
    if (r_in) return int8_enc(x, r_in, r_out, n, block, scales, codes, true, r_out != NULL);
    if (r_out) return int8_enc(x, NULL, r_out, n, block, scales, codes, false, true);
    return int8_enc(x, NULL, NULL, n, block, scales, codes, false, false);
}

TGT static bool int8_decode(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                            size_t block) {
    const __m512i m128 = _mm512_set1_epi8(-128);
    __mmask64 bad = 0;
    bool ok = true;
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float ds = xdt_scale_at(scales, bi);
        const __m512 d = _mm512_set1_ps(ds);
        const uint8_t *cb = codes + b0;
        float *ob = out + b0;
        size_t i = 0;
        for (; i + 64 <= len; i += 64) {
            __m512i v = _mm512_loadu_si512((const void *)(cb + i));
            bad |= _mm512_cmpeq_epi8_mask(v, m128);
            __m512i q0 = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 0));
            __m512i q1 = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 1));
            __m512i q2 = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 2));
            __m512i q3 = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 3));
            _mm512_storeu_ps(ob + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
            _mm512_storeu_ps(ob + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
            _mm512_storeu_ps(ob + i + 32, _mm512_mul_ps(_mm512_cvtepi32_ps(q2), d));
            _mm512_storeu_ps(ob + i + 48, _mm512_mul_ps(_mm512_cvtepi32_ps(q3), d));
        }
        for (; i + 16 <= len; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(cb + i));
            bad |= (__mmask64)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(-128)));
            __m512i q = _mm512_cvtepi8_epi32(v);
            _mm512_storeu_ps(ob + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
        }
        if (i < len) ok &= xdt_int8_dequant_range(cb + i, ds, ob + i, len - i);
    }
    return ok && bad == 0;
}

/* 16 clamped int4 codes packed into 8 bytes, low nibble first: each 64-bit lane holds codes
 * 2i (low half) and 2i+1 (high half). */
INL void pack_nibbles(__m512i q, uint8_t *dst) {
    __m512i t =
        _mm512_or_si512(_mm512_and_si512(q, _mm512_set1_epi64(0x0f)),
                        _mm512_and_si512(_mm512_srli_epi64(q, 28), _mm512_set1_epi64(0xf0)));
    _mm_storel_epi64((__m128i *)dst, _mm512_cvtepi64_epi8(t));
}

INL bool int4_enc(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                  uint8_t *scales, uint8_t *codes, bool has_in, bool has_out) {
    const __m512i lim = _mm512_set1_epi32(7);
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *xb = x + b0, *rb = has_in ? r_in + b0 : NULL;
        float *ob = has_out ? r_out + b0 : NULL;
        uint8_t *cb = codes + b0 / 2;
        uint32_t m = absmax_block(xb, rb, len, has_in);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 7.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        const __m512 pre = _mm512_set1_ps(p.pre), inv = _mm512_set1_ps(p.inv),
                     d = _mm512_set1_ps(p.d);
        size_t i = 0;
        for (; i + 16 <= len; i += 16)
            pack_nibbles(quant16(load_y(xb, rb, i, has_in), pre, inv, d, lim, ob, i, has_out),
                         cb + i / 2);
        if (i < len)
            xdt_int4_quant_range(xb + i, has_in ? rb + i : NULL, has_out ? ob + i : NULL, len - i,
                                 p, cb + i / 2);
    }
    return true;
}

TGT static bool int4_encode(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                            uint8_t *scales, uint8_t *codes) {
    if (r_in) return int4_enc(x, r_in, r_out, n, block, scales, codes, true, r_out != NULL);
    if (r_out) return int4_enc(x, NULL, r_out, n, block, scales, codes, false, true);
    return int4_enc(x, NULL, NULL, n, block, scales, codes, false, false);
}

TGT static bool int4_decode(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                            size_t block) {
    const __m128i low = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    __m128i bad = _mm_setzero_si128();
    bool ok = true;
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float ds = xdt_scale_at(scales, bi);
        const __m512 d = _mm512_set1_ps(ds);
        const uint8_t *cb = codes + b0 / 2;
        float *ob = out + b0;
        size_t i = 0;
        for (; i + 32 <= len; i += 32) {
            __m128i b = _mm_loadu_si128((const __m128i *)(cb + i / 2));
            __m128i lo = _mm_and_si128(b, low), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low);
            __m128i v0 = _mm_unpacklo_epi8(lo, hi), v1 = _mm_unpackhi_epi8(lo, hi);
            bad = _mm_or_si128(bad,
                               _mm_or_si128(_mm_cmpeq_epi8(v0, eight), _mm_cmpeq_epi8(v1, eight)));
            __m512i q0 = _mm512_cvtepi8_epi32(_mm_sub_epi8(_mm_xor_si128(v0, eight), eight));
            __m512i q1 = _mm512_cvtepi8_epi32(_mm_sub_epi8(_mm_xor_si128(v1, eight), eight));
            _mm512_storeu_ps(ob + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q0), d));
            _mm512_storeu_ps(ob + i + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(q1), d));
        }
        for (; i + 16 <= len; i += 16) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(cb + i / 2));
            __m128i v =
                _mm_unpacklo_epi8(_mm_and_si128(b, low), _mm_and_si128(_mm_srli_epi16(b, 4), low));
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, eight));
            __m512i q = _mm512_cvtepi8_epi32(_mm_sub_epi8(_mm_xor_si128(v, eight), eight));
            _mm512_storeu_ps(ob + i, _mm512_mul_ps(_mm512_cvtepi32_ps(q), d));
        }
        if (i < len) ok &= xdt_int4_dequant_range(cb + i / 2, ds, ob + i, len - i);
    }
    return ok && _mm_testz_si128(bad, bad);
}

const xdt_codec_kernels xdt_codec_kernels_avx512 = {
    .isa = XDT_CODEC_ISA_AVX512,
    .fp16_encode = fp16_encode,
    .fp16_decode = fp16_decode,
    .bf16_encode = bf16_encode,
    .bf16_decode = bf16_decode,
    .int8_encode = int8_encode,
    .int8_decode = int8_decode,
    .int4_encode = int4_encode,
    .int4_decode = int4_decode,
};

#endif
