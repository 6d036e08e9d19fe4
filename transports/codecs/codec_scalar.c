/* codec_scalar.c: the portable C kernels of the codecs, one value at a time. They define the
 * reference every vector path must reproduce bit for bit, and run where no vector path does. */
#include "transports/codecs/codec_kernels.h"

static bool fp16_encode(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float y = r_in ? x[i] + r_in[i] : x[i];
        uint16_t h = xdt_f16_from_f32(y);
        memcpy(out + 2 * i, &h, 2);
        if (r_out) {
            float r = y - xdt_f32_from_f16(h);
            r_out[i] = r;
            bad |= (xdt_f2u(r) & XDT_F32_INF_BITS) == XDT_F32_INF_BITS;
        }
    }
    return !bad;
}

static void fp16_decode(const uint8_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, in + 2 * i, 2);
        out[i] = xdt_f32_from_f16(h);
    }
}

static bool bf16_encode(const float *x, const float *r_in, float *r_out, uint8_t *out, size_t n) {
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        float y = r_in ? x[i] + r_in[i] : x[i];
        uint16_t h = xdt_bf16_from_f32(y);
        memcpy(out + 2 * i, &h, 2);
        if (r_out) {
            float r = y - xdt_f32_from_bf16(h);
            r_out[i] = r;
            bad |= (xdt_f2u(r) & XDT_F32_INF_BITS) == XDT_F32_INF_BITS;
        }
    }
    return !bad;
}

static void bf16_decode(const uint8_t *in, float *out, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, in + 2 * i, 2);
        out[i] = xdt_f32_from_bf16(h);
    }
}

static bool int8_encode(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                        uint8_t *scales, uint8_t *codes) {
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *ri = r_in ? r_in + b0 : NULL;
        uint32_t m = xdt_absmax_bits(x + b0, ri, len);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 127.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        xdt_int8_quant_range(x + b0, ri, r_out ? r_out + b0 : NULL, len, p, codes + b0);
    }
    return true;
}

static bool int8_decode(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                        size_t block) {
    bool ok = true;
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        ok &= xdt_int8_dequant_range(codes + b0, xdt_scale_at(scales, bi), out + b0, len);
    }
    return ok;
}

static bool int4_encode(const float *x, const float *r_in, float *r_out, size_t n, size_t block,
                        uint8_t *scales, uint8_t *codes) {
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        const float *ri = r_in ? r_in + b0 : NULL;
        uint32_t m = xdt_absmax_bits(x + b0, ri, len);
        if (m >= XDT_F32_INF_BITS) return false;
        xdt_qblock p = xdt_qblock_params(m, 7.0f);
        memcpy(scales + 4 * bi, &p.d, 4);
        xdt_int4_quant_range(x + b0, ri, r_out ? r_out + b0 : NULL, len, p, codes + b0 / 2);
    }
    return true;
}

static bool int4_decode(const uint8_t *scales, const uint8_t *codes, float *out, size_t n,
                        size_t block) {
    bool ok = true;
    for (size_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        size_t len = n - b0 < block ? n - b0 : block;
        ok &= xdt_int4_dequant_range(codes + b0 / 2, xdt_scale_at(scales, bi), out + b0, len);
    }
    return ok;
}

const xdt_codec_kernels xdt_codec_kernels_scalar = {
    .isa = XDT_CODEC_ISA_SCALAR,
    .fp16_encode = fp16_encode,
    .fp16_decode = fp16_decode,
    .bf16_encode = bf16_encode,
    .bf16_decode = bf16_decode,
    .int8_encode = int8_encode,
    .int8_decode = int8_decode,
    .int4_encode = int4_encode,
    .int4_decode = int4_decode,
};
