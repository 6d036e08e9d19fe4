/* gpu_emu_blas.h: the CPU emulation's stand-in for the part of cuBLAS and cuBLASLt that
 * gpu_gemm.cu calls, so that CI runs the backend's BLAS path (the bf16 copies and their chunking,
 * the copy reuse, the bias epilogue and its fallbacks) and not only the tiled kernel. Included by
 * gpu_vendor.h for the 32-lane emulation (the CUDA flavour); the 64-lane one stays without a BLAS,
 * as a HIP build without hipBLAS is.
 *
 * Semantics are cuBLAS's: column-major, op(A) m x k, C m x n, C not read when beta == 0, sizes and
 * leading dimensions checked as cuBLAS checks them (a bad one is CUBLAS_STATUS_INVALID_VALUE, so
 * a wrong ld in the callers fails the tests instead of reading past a matrix). Products are exact
 * sums in double of the operands as stored (bf16 operands widened exactly), which is within a
 * rounding of what tensor cores give. cuBLASLt's epilogue: the bias vector (one value per row of
 * D) is added after alpha op(A) op(B) + beta C. Not fast: tests keep their sizes small. */
#ifndef XDT_GPU_EMU_BLAS_H
#define XDT_GPU_EMU_BLAS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_ALLOC_FAILED = 3,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_ARCH_MISMATCH = 8,
    CUBLAS_STATUS_MAPPING_ERROR = 11,
    CUBLAS_STATUS_EXECUTION_FAILED = 13,
    CUBLAS_STATUS_INTERNAL_ERROR = 14,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;

struct xdt_emu_blas {
    cudaStream_t stream;
    cublasMath_t math;
};
typedef xdt_emu_blas *cublasHandle_t;

namespace xdt_emu {

/* Element (r, c) of a column-major matrix of `type` at leading dimension ld, as a double. */
inline double blas_at(const void *p, cudaDataType type, long ld, long r, long c) {
    const size_t i = (size_t)c * (size_t)ld + (size_t)r;
    if (type == CUDA_R_16BF) {
        const uint32_t bits = (uint32_t) static_cast<const uint16_t *>(p)[i] << 16;
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    return static_cast<const float *>(p)[i];
}

/* D (fp32, m x n, ldd) = alpha op(A) op(B) + beta C (+ bias[i] on row i); C may be D. */
inline cublasStatus_t blas_gemm(cublasOperation_t ta, cublasOperation_t tb, long m, long n, long k,
                                const float *alpha, const void *a, cudaDataType at, long lda,
                                const void *b, cudaDataType bt, long ldb, const float *beta,
                                const float *c, long ldc, float *d, long ldd, const float *bias) {
    const long rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (rows_a > 1 ? rows_a : 1) ||
        ldb < (rows_b > 1 ? rows_b : 1) || ldc < (m > 1 ? m : 1) || ldd < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    for (long j = 0; j < n; j++)
        for (long i = 0; i < m; i++) {
            double s = 0;
            for (long l = 0; l < k; l++) {
                const double x =
                    ta == CUBLAS_OP_N ? blas_at(a, at, lda, i, l) : blas_at(a, at, lda, l, i);
                const double y =
                    tb == CUBLAS_OP_N ? blas_at(b, bt, ldb, l, j) : blas_at(b, bt, ldb, j, l);
                s += x * y;
            }
            double v = (double)*alpha * s;
            if (*beta != 0.0f) v += (double)*beta * c[(size_t)j * ldc + i];
            if (bias) v += bias[i];
            d[(size_t)j * ldd + i] = (float)v;
        }
    return CUBLAS_STATUS_SUCCESS;
}

inline bool blas_types_ok(cudaDataType at, cudaDataType bt, cudaDataType ct) {
    return at == bt && (at == CUDA_R_32F || at == CUDA_R_16BF) && ct == CUDA_R_32F;
}

} // namespace xdt_emu

inline cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = static_cast<cublasHandle_t>(calloc(1, sizeof **h));
    return *h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t
cublasGemmStridedBatchedEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                           int k, const float *alpha, const void *a, cudaDataType at, int lda,
                           long long sa, const void *b, cudaDataType bt, int ldb, long long sb,
                           const float *beta, float *c, cudaDataType ct, int ldc, long long sc,
                           int batch, cublasComputeType_t, cublasGemmAlgo_t) {
    if (!xdt_emu::blas_types_ok(at, bt, ct) || batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    const size_t ea = at == CUDA_R_16BF ? 2 : 4;
    for (int z = 0; z < batch; z++) {
        const cublasStatus_t s = xdt_emu::blas_gemm(
            ta, tb, m, n, k, alpha, static_cast<const char *>(a) + (size_t)z * sa * ea, at, lda,
            static_cast<const char *>(b) + (size_t)z * sb * ea, bt, ldb, beta, c + z * sc, ldc,
            c + z * sc, ldc, nullptr);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                   int m, int n, int k, const float *alpha, const void *a,
                                   cudaDataType at, int lda, const void *b, cudaDataType bt,
                                   int ldb, const float *beta, float *c, cudaDataType ct, int ldc,
                                   cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, at, lda, 0, b, bt, ldb, 0, beta,
                                      c, ct, ldc, 0, 1, compute, algo);
}

inline cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                                cublasOperation_t tb, int m, int n, int k,
                                                const float *alpha, const float *a, int lda,
                                                long long sa, const float *b, int ldb, long long sb,
                                                const float *beta, float *c, int ldc, long long sc,
                                                int batch) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, CUDA_R_32F, lda, sa, b,
                                      CUDA_R_32F, ldb, sb, beta, c, CUDA_R_32F, ldc, sc, batch,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

inline cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                  int m, int n, int k, const float *alpha, const float *a, int lda,
                                  const float *b, int ldb, const float *beta, float *c, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc,
                                     0, 1);
}

/* ---- cuBLASLt: one matmul with a bias epilogue ---- */

typedef enum {
    CUBLASLT_MATMUL_DESC_TRANSA = 3,
    CUBLASLT_MATMUL_DESC_TRANSB = 4,
    CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
    CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
} cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;
typedef enum {
    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

struct xdt_emu_lt {
    int unused;
};
struct xdt_emu_lt_desc {
    cublasComputeType_t compute;
    int32_t ta, tb;
    uint32_t epilogue;
    const float *bias;
};
struct xdt_emu_lt_layout {
    cudaDataType type;
    uint64_t rows, cols;
    int64_t ld;
};
struct xdt_emu_lt_pref {
    uint64_t max_workspace;
    uint32_t min_align[4]; /* A, B, C, D; 0 until set (cuBLASLt's default: 256) */
};
typedef xdt_emu_lt *cublasLtHandle_t;
typedef xdt_emu_lt_desc *cublasLtMatmulDesc_t;
typedef xdt_emu_lt_layout *cublasLtMatrixLayout_t;
typedef xdt_emu_lt_pref *cublasLtMatmulPreference_t;
struct cublasLtMatmulAlgo_t {
    uint64_t data[8];
};
struct cublasLtMatmulHeuristicResult_t {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
};

template <typename T> inline cublasStatus_t xdt_emu_lt_new(T **out) {
    *out = static_cast<T *>(calloc(1, sizeof **out));
    return *out ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

inline cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    return xdt_emu_lt_new(h);
}
inline cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    free(h);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t ct,
                                               cudaDataType scale) {
    if (scale != CUDA_R_32F) return CUBLAS_STATUS_INVALID_VALUE;
    const cublasStatus_t s = xdt_emu_lt_new(d);
    if (s == CUBLAS_STATUS_SUCCESS) {
        (*d)->compute = ct;
        (*d)->epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    }
    return s;
}
inline cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    free(d);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d,
                                                     cublasLtMatmulDescAttributes_t attr,
                                                     const void *buf, size_t size) {
    switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(attr == CUBLASLT_MATMUL_DESC_TRANSA ? &d->ta : &d->tb, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}
inline cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType type,
                                                 uint64_t rows, uint64_t cols, int64_t ld) {
    const cublasStatus_t s = xdt_emu_lt_new(l);
    if (s == CUBLAS_STATUS_SUCCESS) **l = {type, rows, cols, ld};
    return s;
}
inline cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    free(l);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    return xdt_emu_lt_new(p);
}
inline cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    free(p);
    return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t
cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                     cublasLtMatmulPreferenceAttributes_t attr, const void *buf,
                                     size_t size) {
    if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES && size == sizeof(uint64_t)) {
        memcpy(&p->max_workspace, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
        attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES && size == sizeof(uint32_t)) {
        memcpy(&p->min_align[attr - CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES], buf, size);
        return CUBLAS_STATUS_SUCCESS;
    }
    return CUBLAS_STATUS_INVALID_VALUE;
}

namespace xdt_emu {
/* The op(A) op(B) shapes of a matmul's layouts agree, and D is C's shape. */
inline bool lt_shapes_ok(const xdt_emu_lt_desc *d, const xdt_emu_lt_layout *a,
                         const xdt_emu_lt_layout *b, const xdt_emu_lt_layout *c,
                         const xdt_emu_lt_layout *dd) {
    const uint64_t m = d->ta ? a->cols : a->rows, k = d->ta ? a->rows : a->cols;
    const uint64_t kb = d->tb ? b->cols : b->rows, n = d->tb ? b->rows : b->cols;
    return k == kb && c->rows == m && c->cols == n && dd->rows == m && dd->cols == n &&
           c->type == dd->type && blas_types_ok(a->type, b->type, c->type);
}
} // namespace xdt_emu

/* One result whenever the shapes and types agree and every operand is declared 16-byte aligned;
 * none otherwise, so that callers' fallbacks run in tests (the stand-in is stricter than the
 * library, which also has kernels for less aligned operands). */
inline cublasStatus_t cublasLtMatmulAlgoGetHeuristic(
    cublasLtHandle_t, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
    cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd, cublasLtMatmulPreference_t p,
    int requested, cublasLtMatmulHeuristicResult_t *results, int *returned) {
    *returned = 0;
    if (requested < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (!xdt_emu::lt_shapes_ok(d, a, b, c, dd)) return CUBLAS_STATUS_NOT_SUPPORTED;
    for (const uint32_t align : p->min_align)
        if (align != 0 && align < 16) return CUBLAS_STATUS_SUCCESS; /* none offered */
    memset(&results[0], 0, sizeof results[0]);
    *returned = 1;
    return CUBLAS_STATUS_SUCCESS;
}

inline cublasStatus_t cublasLtMatmul(cublasLtHandle_t, cublasLtMatmulDesc_t d, const float *alpha,
                                     const void *a, cublasLtMatrixLayout_t al, const void *b,
                                     cublasLtMatrixLayout_t bl, const float *beta, const float *c,
                                     cublasLtMatrixLayout_t cl, float *dp,
                                     cublasLtMatrixLayout_t dl, const cublasLtMatmulAlgo_t *,
                                     void *, size_t, cudaStream_t) {
    if (!xdt_emu::lt_shapes_ok(d, al, bl, cl, dl)) return CUBLAS_STATUS_INVALID_VALUE;
    const bool bias = d->epilogue == CUBLASLT_EPILOGUE_BIAS;
    if ((!bias && d->epilogue != CUBLASLT_EPILOGUE_DEFAULT) || (bias && !d->bias))
        return CUBLAS_STATUS_INVALID_VALUE;
    return xdt_emu::blas_gemm(d->ta ? CUBLAS_OP_T : CUBLAS_OP_N, d->tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                              (long)cl->rows, (long)cl->cols, (long)(d->ta ? al->rows : al->cols),
                              alpha, a, al->type, al->ld, b, bl->type, bl->ld, beta, c, cl->ld, dp,
                              dl->ld, bias ? d->bias : nullptr);
}

#endif
