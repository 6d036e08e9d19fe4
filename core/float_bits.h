/* float_bits.h: fp32 bit patterns and the scalar conversions between fp32 and the 16-bit
 * floats (bf16, IEEE binary16), shared by the wire codecs (transports/codecs) and the bf16 GEMM
 * mode of the CPU backend, so that both round exactly alike: to nearest even. */
#ifndef XDT_FLOAT_BITS_H
#define XDT_FLOAT_BITS_H

#include <stdint.h>
#include <string.h>

static inline uint32_t xdt_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float xdt_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Bit patterns at or above this (sign cleared) are infinity or NaN. */
#define XDT_F32_INF_BITS 0x7f800000u

/* f32 -> bf16, round to nearest even; NaN kept NaN (quiet bit set, sign kept). */
static inline uint16_t xdt_bf16_from_f32(float f) {
    uint32_t u = xdt_f2u(f);
    if ((u & 0x7fffffffu) > XDT_F32_INF_BITS) return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float xdt_f32_from_bf16(uint16_t h) {
    return xdt_u2f((uint32_t)h << 16);
}

/* f32 -> IEEE binary16, round to nearest even, exactly as the F16C instruction VCVTPS2PH does
 * (overflow to infinity, subnormals rounded, NaN payload's top bits kept with the quiet bit). */
static inline uint16_t xdt_f16_from_f32(float f) {
    uint32_t u = xdt_f2u(f);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu, o;
    if (a >= 0x47800000u) { /* |f| >= 2^16: infinity, NaN, or overflow */
        o = a > XDT_F32_INF_BITS ? 0x7e00u | ((a >> 13) & 0x3ffu) : 0x7c00u;
    } else if (a < 0x38800000u) { /* |f| < 2^-14: an fp16 subnormal or zero; the FPU rounds */
        o = xdt_f2u(xdt_u2f(a) + 0.5f) - 0x3f000000u;
    } else { /* rebias the exponent, round to nearest even on the 13 dropped bits */
        o = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;
    }
    return (uint16_t)(sign | o);
}

/* IEEE binary16 -> f32 (exact), as VCVTPH2PS does (NaN quieted). */
static inline float xdt_f32_from_f16(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0x1f) return xdt_u2f(sign | XDT_F32_INF_BITS | (m << 13) | (m ? 0x400000u : 0));
    if (e) return xdt_u2f(sign | ((e + 112u) << 23) | (m << 13));
    return xdt_u2f(sign | xdt_f2u((float)m * 0x1p-24f));
}

/* x rounded to the nearest bf16 value (even on ties), as an fp32. */
static inline float xdt_bf16_round(float x) {
    return xdt_f32_from_bf16(xdt_bf16_from_f32(x));
}

#endif
