/* cpu_kernels_f32.c: the fp32 instance of the CPU kernels (the backend's). */
#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "devices/cpu/cpu_kernels.h"

#include <stdint.h>
#include <string.h>

/* exp and tanh that the compiler can vectorise (libm's are scalar calls): Cephes' expf, Cody-Waite
 * range reduction and a degree-6 polynomial, about 1 ulp on [-87, 88]. */
static inline float xdt_fast_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    /* round to nearest by adding and removing 1.5 * 2^23 (vectorises, unlike floorf) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return e * scale;
}

static inline float xdt_fast_tanhf(float x) {
    return 1.0f - 2.0f / (xdt_fast_expf(2.0f * x) + 1.0f);
}

#define XDT_EXP    xdt_fast_expf
#define XDT_TANH   xdt_fast_tanhf
#define XDT_REAL   float
#define XDT_KFN(n) xdt_cpu_##n##_f32
#define XDT_GEMM   cblas_sgemm
#include "devices/cpu/cpu_kernels.inc"
