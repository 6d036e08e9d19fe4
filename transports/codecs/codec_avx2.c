/* codec_avx2.c: the AVX2 (+F16C) kernels of the codecs, 8 to 32 values per step, with the last
 * few values of a tensor handed to the shared scalar element operations. Each step performs the
 * same IEEE operations as codec_scalar.c, so the payloads are bit-identical. Built for any x86
 * compiler through target attributes; codec.c calls them only when the CPU has AVX2 and F16C. */
#include "transports/codecs/codec_kernels.h"

#if XDT_CODEC_X86
#include <immintrin.h>

#define TGT __attribute__((target("avx2,f16c")))
#define INL static inline __attribute__((always_inline, target("avx2,f16c")))

/* y = x (+ r_in) for 8 values at i. */
INL __m256 load_y(const float *x, const float *r_in, size_t i, bool has_in) {
    __m256 y = _mm256_loadu_ps(x + i);
    return has_in ? _mm256_add_ps(y, _mm256_loadu_ps(r_in + i)) : y;
}

/* Lanes whose value is infinity or NaN (all exponent bits set), as all-ones. */
INL __m256i nonfinite(__m256 v) {
    const __m256i e = _mm256_set1_epi32((int)XDT_F32_INF_BITS);
    return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(v), e), e);
}

INL bool fp16_enc(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n,
                  bool has_in, bool has_out) {
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 y = load_y(x, r_in, i, has_in);
        __m128i h = _mm256_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i *)(out + 2 * i), h);
        if (has_out) {
            __m256 r = _mm256_sub_ps(y, _mm256_cvtph_ps(h));
            _mm256_storeu_ps(r_out + i, r);
            bad = _mm256_or_si256(bad, nonfinite(r));
        }
    }
    bool ok = _mm256_testz_si256(bad, bad);
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
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + 2 * i))));
    if (i < n) xdt_codec_kernels_scalar.fp16_decode(in + 2 * i, out + i, n - i);
}

/* bf16 bit patterns (in the low 16 bits of each lane) of 8 values. */
INL __m256i bf16_round(__m256 y) {
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    __m256i u = _mm256_castps_si256(y);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
    __m256i is_nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32((int)XDT_F32_INF_BITS));
    __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    return _mm256_blendv_epi8(r, quiet, is_nan);
}

INL bool bf16_enc(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n,
                  bool has_in, bool has_out) {
    __m256i bad = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 y0 = load_y(x, r_in, i, has_in), y1 = load_y(x, r_in, i + 8, has_in);
        __m256i h0 = bf16_round(y0), h1 = bf16_round(y1);
        __m256i h = _mm256_permute4x64_epi64(_mm256_packus_epi32(h0, h1), 0xd8);
        _mm256_storeu_si256((__m256i *)(out + 2 * i), h);
        if (has_out) {
            __m256 r0 = _mm256_sub_ps(y0, _mm256_castsi256_ps(_mm256_slli_epi32(h0, 16)));
            __m256 r1 = _mm256_sub_ps(y1, _mm256_castsi256_ps(_mm256_slli_epi32(h1, 16)));
            _mm256_storeu_ps(r_out + i, r0);
            _mm256_storeu_ps(r_out + i + 8, r1);
            bad = _mm256_or_si256(bad, _mm256_or_si256(nonfinite(r0), nonfinite(r1)));
        }
    }
    bool ok = _mm256_testz_si256(bad, bad);
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
    for (; i + 16 <= n; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(in + 2 * i));
        __m256i lo = _mm256_cvtepu16_epi32(_mm256_castsi256_si128(h));
        __m256i hi = _mm256_cvtepu16_epi32(_mm256_extracti128_si256(h, 1));
        _mm256_storeu_si256((__m256i *)(out + i), _mm256_slli_epi32(lo, 16));
        _mm256_storeu_si256((__m256i *)(out + i + 8), _mm256_slli_epi32(hi, 16));
    }
    if (i < n) xdt_codec_kernels_scalar.bf16_decode(in + 2 * i, out + i, n - i);
}

/* Maximum |y| bit pattern over one block. */
INL uint32_t absmax_block(const float *x, const float *r_in, size_t len, bool has_in) {
    const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff);
    __m256i m0 = _mm256_setzero_si256(), m1 = _mm256_setzero_si256();
    size_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m256i a0 = _mm256_and_si256(_mm256_castps_si256(load_y(x, r_in, i, has_in)), abs_mask);
        __m256i a1 =
            _mm256_and_si256(_mm256_castps_si256(load_y(x, r_in, i + 8, has_in)), abs_mask);
        m0 = _mm256_max_epu32(m0, a0);
        m1 = _mm256_max_epu32(m1, a1);
    }
    m0 = _mm256_max_epu32(m0, m1);
    __m128i m = _mm_max_epu32(_mm256_castsi256_si128(m0), _mm256_extracti128_si256(m0, 1));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0x4e));
    m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0xb1));
    uint32_t r = (uint32_t)_mm_cvtsi128_si32(m);
    if (i < len) {
        uint32_t t = xdt_absmax_bits(x + i, has_in ? r_in + i : NULL, len - i);
        r = t > r ? t : r;
    }
    return r;
}

/* Clamped codes of 8 values, and their residuals when has_out. */
INL __m256i quant8(__m256 y, __m256 pre, __m256 inv, __m256 d, __m256i lim, float *r_out, size_t i,
                   bool has_out) {
    __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_mul_ps(y, pre), inv));
    q = _mm256_max_epi32(_mm256_min_epi32(q, lim), _mm256_sub_epi32(_mm256_setzero_si256(), lim));
    if (has_out)
        _mm256_storeu_ps(r_out + i, _mm256_sub_ps(y, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d)));
    return q;
}

INL bool int8_enc(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                  uint8_t *scales, uint8_t *codes, bool has_in, bool has_out) {
    const __m256i lim = _mm256_set1_epi32(127);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *xb = x + b0, *rb = has_in ? r_in + b0 : NULL;
        float *ob = has_out ? r_out + b0 : NULL;
        uint8_t *cb = codes + b0;
        uint32_t m = absmax_block(xb, rb, len, has_in);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 127.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        const __m256 pre = _mm256_set1_ps(p.pre), inv = _mm256_set1_ps(p.inv),
                     d = _mm256_set1_ps(p.d);
        size_t i = 0;
        for (; i + 32 <= len; i += 32) {
            __m256i q0 = quant8(load_y(xb, rb, i, has_in), pre, inv, d, lim, ob, i, has_out);
            __m256i q1 =
                quant8(load_y(xb, rb, i + 8, has_in), pre, inv, d, lim, ob, i + 8, has_out);
            __m256i q2 =
                quant8(load_y(xb, rb, i + 16, has_in), pre, inv, d, lim, ob, i + 16, has_out);
            __m256i q3 =
                quant8(load_y(xb, rb, i + 24, has_in), pre, inv, d, lim, ob, i + 24, has_out);
            __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            _mm256_storeu_si256((__m256i *)(cb + i), _mm256_permutevar8x32_epi32(b, order));
        }
        for (; i + 8 <= len; i += 8) {
            __m256i q = quant8(load_y(xb, rb, i, has_in), pre, inv, d, lim, ob, i, has_out);
            __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256());
            __m128i v =
                _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
            _mm_storel_epi64((__m128i *)(cb + i), v);
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
    const __m256i m128 = _mm256_set1_epi8(-128);
    __m256i bad = _mm256_setzero_si256();
    bool ok = true;
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float ds = xdt_scale_at(scales, bi);
        const __m256 d = _mm256_set1_ps(ds);
        const uint8_t *cb = codes + b0;
        float *ob = out + b0;
        size_t i = 0;
        for (; i + 32 <= len; i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(cb + i));
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi8(v, m128));
            __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
            __m256i q0 = _mm256_cvtepi8_epi32(lo), q1 = _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8));
            __m256i q2 = _mm256_cvtepi8_epi32(hi), q3 = _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8));
            _mm256_storeu_ps(ob + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q0), d));
            _mm256_storeu_ps(ob + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(q1), d));
            _mm256_storeu_ps(ob + i + 16, _mm256_mul_ps(_mm256_cvtepi32_ps(q2), d));
            _mm256_storeu_ps(ob + i + 24, _mm256_mul_ps(_mm256_cvtepi32_ps(q3), d));
        }
        if (i < len) ok &= xdt_int8_dequant_range(cb + i, ds, ob + i, len - i);
    }
    return ok && _mm256_testz_si256(bad, bad);
}

/* 16 clamped int4 codes (two vectors of 8) packed into 8 bytes, low nibble first. */
INL void pack_nibbles(__m256i q0, __m256i q1, uint8_t *dst) {
    __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8); /* 16 x i16 */
    __m256i t =
        _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi32(0x0f)),
                        _mm256_and_si256(_mm256_srli_epi32(w, 12), _mm256_set1_epi32(0xf0)));
    const __m256i pick =
        _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                         -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    t = _mm256_shuffle_epi8(t, pick);
    t = _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
    _mm_storel_epi64((__m128i *)dst, _mm256_castsi256_si128(t));
}

INL bool int4_enc(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                  uint8_t *scales, uint8_t *codes, bool has_in, bool has_out) {
    const __m256i lim = _mm256_set1_epi32(7);
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *xb = x + b0, *rb = has_in ? r_in + b0 : NULL;
        float *ob = has_out ? r_out + b0 : NULL;
        uint8_t *cb = codes + b0 / 2;
        uint32_t m = absmax_block(xb, rb, len, has_in);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 7.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        const __m256 pre = _mm256_set1_ps(p.pre), inv = _mm256_set1_ps(p.inv),
                     d = _mm256_set1_ps(p.d);
        size_t i = 0;
        for (; i + 16 <= len; i += 16) {
            __m256i q0 = quant8(load_y(xb, rb, i, has_in), pre, inv, d, lim, ob, i, has_out);
            __m256i q1 =
                quant8(load_y(xb, rb, i + 8, has_in), pre, inv, d, lim, ob, i + 8, has_out);
            pack_nibbles(q0, q1, cb + i / 2);
        }
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
        const __m256 d = _mm256_set1_ps(ds);
        const uint8_t *cb = codes + b0 / 2;
        float *ob = out + b0;
        size_t i = 0;
        for (; i + 16 <= len; i += 16) {
            __m128i b = _mm_loadl_epi64((const __m128i *)(cb + i / 2));
            __m128i v =
                _mm_unpacklo_epi8(_mm_and_si128(b, low), _mm_and_si128(_mm_srli_epi16(b, 4), low));
            bad = _mm_or_si128(bad, _mm_cmpeq_epi8(v, eight));
            __m128i s = _mm_sub_epi8(_mm_xor_si128(v, eight), eight);
            __m256i q0 = _mm256_cvtepi8_epi32(s), q1 = _mm256_cvtepi8_epi32(_mm_srli_si128(s, 8));
            _mm256_storeu_ps(ob + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q0), d));
            _mm256_storeu_ps(ob + i + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(q1), d));
        }
        if (i < len) ok &= xdt_int4_dequant_range(cb + i / 2, ds, ob + i, len - i);
    }
    return ok && _mm_testz_si128(bad, bad);
}

const xdt_codec_kernels xdt_codec_kernels_avx2 = {
    .isa = XDT_CODEC_ISA_AVX2,
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
