/* gpu_gemm.cu: GEMMs of the GPU backend. Callers are row-major (c = alpha op(a) op(b) + beta c);
 * the vendor BLAS is column-major, so a row-major product is computed as its transpose:
 * c^T = op(b)^T op(a)^T, i.e. the BLAS call takes (b, a) and (n, m) with the same leading
 * dimensions. cuBLAS runs in full fp32 unless TF32 was allowed (gpu_device.cu). In bf16 mode
 * (xdt_precision) the operands are first rounded into bf16 copies in the workspace (a pass over
 * each: a in chunks of about kBf16Chunk values, b whole for one product) and cuBLAS multiplies
 * those on bf16 tensor cores with fp32 sums into the fp32 c: the CPU backend's bf16 products.
 * (CUBLAS_COMPUTE_32F_FAST_16BF on the fp32 arrays was measured on an H200 to give TF32's rate and
 * TF32's rounding, not bf16's: docs/BENCHMARKS.md.)
 *
 * Without a vendor BLAS (HIP builds without hipBLAS), or when the device was opened with
 * tiled_gemm, GEMMs run in the tiled kernel below: 64 x 64 output tiles, 16-deep slices of a and
 * b staged through shared memory (loaded along whichever side is contiguous, so every transpose
 * reads coalesced), 4 x 4 outputs per thread, fp32 accumulation; batches on grid z. As with BLAS,
 * c is not read when beta == 0. In bf16 mode the kernel rounds each staged value to bf16 (what
 * HIP builds do for bf16, hipBLAS or not), which makes its products the CPU backend's bf16
 * products exactly. */
#include "devices/cuda/gpu_common.cuh"

namespace XDT_GPU_NS {

constexpr int kTileM = 64, kTileN = 64, kTileK = 16, kGemmThreads = 256;

__global__ void __launch_bounds__(kGemmThreads)
    tiled_gemm_kernel(bool ta, bool tb, bool bf16, int m, int n, int k, float alpha,
                      const float *__restrict__ a, int lda, long sa, const float *__restrict__ b,
                      int ldb, long sb, float beta, float *__restrict__ c, int ldc, long sc) {
    __shared__ float as[kTileK][kTileM + 4];
    __shared__ float bs[kTileK][kTileN + 4];
    const long z = blockIdx.z;
    a += z * sa;
    b += z * sb;
    c += z * sc;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int row0 = blockIdx.y * kTileM, col0 = blockIdx.x * kTileN;
    float acc[4][4] = {};
    for (int k0 = 0; k0 < k; k0 += kTileK) {
        /* a tile: (kTileM rows) x (kTileK k), 4 elements per thread */
        for (int l = 0; l < 4; l++) {
            const int e = tid + kGemmThreads * l;
            const int r = ta ? e % kTileM : e / kTileK, kk = ta ? e / kTileM : e % kTileK;
            const int i = row0 + r, kq = k0 + kk;
            float v = 0.0f;
            if (i < m && kq < k) v = ta ? a[(size_t)kq * lda + i] : a[(size_t)i * lda + kq];
            as[kk][r] = bf16 ? bf16_round(v) : v;
        }
        /* b tile: (kTileK k) x (kTileN columns) */
        for (int l = 0; l < 4; l++) {
            const int e = tid + kGemmThreads * l;
            const int cc = tb ? e / kTileK : e % kTileN, kk = tb ? e % kTileK : e / kTileN;
            const int j = col0 + cc, kq = k0 + kk;
            float v = 0.0f;
            if (j < n && kq < k) v = tb ? b[(size_t)j * ldb + kq] : b[(size_t)kq * ldb + j];
            bs[kk][cc] = bf16 ? bf16_round(v) : v;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; kk++) {
            float ar[4], br[4];
#pragma unroll
            for (int q = 0; q < 4; q++) {
                ar[q] = as[kk][ty + 16 * q];
                br[q] = bs[kk][tx + 16 * q];
            }
#pragma unroll
            for (int p = 0; p < 4; p++)
#pragma unroll
                for (int q = 0; q < 4; q++)
                    acc[p][q] = fmaf(ar[p], br[q], acc[p][q]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int p = 0; p < 4; p++) {
        const int i = row0 + ty + 16 * p;
        if (i >= m) continue;
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const int j = col0 + tx + 16 * q;
            if (j >= n) continue;
            float *out = c + (size_t)i * ldc + j;
            *out = beta == 0.0f ? alpha * acc[p][q] : alpha * acc[p][q] + beta * *out;
        }
    }
}

static void tiled_gemm(gpu_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha,
                       const float *a, int lda, long sa, const float *b, int ldb, long sb,
                       float beta, float *cm, int ldc, long sc, int batch, const char *op) {
    const int gx = (n + kTileN - 1) / kTileN, gy = (m + kTileM - 1) / kTileM;
    if (gy > 65535) {
        record(c, XDT_ERR_INVALID_ARG, op, "tiled GEMM: too many rows", NULL);
        return;
    }
    for (int z0 = 0; z0 < batch; z0 += 65535) {
        const int nz = batch - z0 < 65535 ? batch - z0 : 65535;
        XDT_LAUNCH(dim3(gx, gy, nz), kGemmThreads, c->stream, tiled_gemm_kernel)
        (ta, tb, c->bf16, m, n, k, alpha, a + (size_t)z0 * sa, lda, sa, b + (size_t)z0 * sb, ldb,
         sb, beta, cm + (size_t)z0 * sc, ldc, sc);
        if (!check_launch(c, op)) return;
    }
}

#if XDT_GPU_HAVE_BLAS
static const char *blas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "invalid value";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "architecture mismatch";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "mapping error";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "execution failed";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "internal error";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "not supported";
    default:
        return "unknown status";
    }
}

static xdt_status blas_status_of(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return XDT_OK;
    case CUBLAS_STATUS_ALLOC_FAILED:
        return XDT_ERR_NO_MEMORY;
    case CUBLAS_STATUS_INVALID_VALUE:
        return XDT_ERR_INVALID_ARG;
    case CUBLAS_STATUS_ARCH_MISMATCH:
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return XDT_ERR_UNSUPPORTED;
    default:
        return XDT_ERR_DEVICE;
    }
}
#endif

#if XDT_GPU_HAVE_BLASLT
/* The largest power of two (up to 256) that divides an address: what cuBLASLt may assume. */
static uint32_t alignment_of(const void *p) {
    uint32_t a = 256;
    while (a > 1 && (uintptr_t)p % a)
        a /= 2;
    return a;
}

/* One product in BLAS (column-major) terms, d (m x n, ldd) = alpha op(a) op(b) + beta d + bias
 * (bias[i] on row i), by cuBLASLt with the bias in its epilogue. Returns false when cuBLASLt did
 * not run it (no algorithm for these shapes and alignments, or any call refused): nothing was
 * queued, and the caller falls back to the plain GEMM and the bias kernel. */
static bool lt_gemm_bias(gpu_ctx *c, cudaDataType type, cublasOperation_t ta, cublasOperation_t tb,
                         int m, int n, int k, const float *alpha, const void *a, int lda,
                         const void *b, int ldb, const float *beta, float *d, int ldd,
                         const float *bias) {
    if (m <= 0 || n <= 0 || k <= 0) return false;
    const cublasComputeType_t compute =
        type == CUDA_R_32F && c->tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cublasLtMatmulDesc_t desc = NULL;
    cublasLtMatrixLayout_t al = NULL, bl = NULL, dl = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const int32_t opa = ta, opb = tb;
    const uint32_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    const uint64_t ws = c->lt_ws_bytes;
    /* the pointers' real alignments, so that no algorithm assuming more is offered (an sm_90
     * kernel refuses under-aligned operands at run time) */
    const uint32_t align_a = alignment_of(a), align_b = alignment_of(b), align_d = alignment_of(d);
    cublasLtMatmulHeuristicResult_t found = {};
    int returned = 0;
    cublasStatus_t s = cublasLtMatmulDescCreate(&desc, compute, CUDA_R_32F);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                           sizeof epilogue);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                           sizeof bias);
    /* layouts of the matrices as stored: op(a) is m x k, op(b) k x n */
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutCreate(&al, type, ta == CUBLAS_OP_N ? m : k,
                                       ta == CUBLAS_OP_N ? k : m, lda);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatrixLayoutCreate(&bl, type, tb == CUBLAS_OP_N ? k : n,
                                       tb == CUBLAS_OP_N ? n : k, ldb);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatrixLayoutCreate(&dl, CUDA_R_32F, m, n, ldd);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceCreate(&pref);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                 &ws, sizeof ws);
    const struct {
        cublasLtMatmulPreferenceAttributes_t attr;
        uint32_t bytes;
    } aligns[] = {{CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
                  {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}};
    for (const auto &al_pref : aligns)
        if (s == CUBLAS_STATUS_SUCCESS)
            s = cublasLtMatmulPreferenceSetAttribute(pref, al_pref.attr, &al_pref.bytes,
                                                     sizeof al_pref.bytes);
    if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(c->lt, desc, al, bl, dl, dl, pref, 1, &found, &returned);
    bool ran = false;
    if (s == CUBLAS_STATUS_SUCCESS && returned > 0)
        ran = cublasLtMatmul(c->lt, desc, alpha, a, al, b, bl, beta, d, dl, d, dl, &found.algo,
                             c->lt_ws, c->lt_ws_bytes, c->stream) == CUBLAS_STATUS_SUCCESS;
    if (pref) (void)cublasLtMatmulPreferenceDestroy(pref);
    if (dl) (void)cublasLtMatrixLayoutDestroy(dl);
    if (bl) (void)cublasLtMatrixLayoutDestroy(bl);
    if (al) (void)cublasLtMatrixLayoutDestroy(al);
    if (desc) (void)cublasLtMatmulDescDestroy(desc);
    return ran;
}
#endif

#if XDT_GPU_HAVE_BLAS
/* One product in BLAS terms (see lt_gemm_bias) with fp32 operands, or bf16 copies (bf16_ops), and
 * fp32 sums and output; with a bias, in cuBLASLt's epilogue where it runs the product, else by a
 * kernel right after. Failures are recorded; returns false after one. */
static bool blas_gemm(gpu_ctx *c, bool bf16_ops, cublasOperation_t ta, cublasOperation_t tb, int m,
                      int n, int k, float alpha, const void *a, int lda, const void *b, int ldb,
                      float beta, float *d, int ldd, const float *bias, const char *op) {
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    bool fused = false;
    const char *what = "";
#if XDT_GPU_HAVE_BLASLT
    if (bias && c->lt)
        fused = lt_gemm_bias(c, bf16_ops ? CUDA_R_16BF : CUDA_R_32F, ta, tb, m, n, k, &alpha, a,
                             lda, b, ldb, &beta, d, ldd, bias);
#endif
    if (!fused) {
        if (!bf16_ops) {
            what = XDT_GPU_BLAS_NAME " Sgemm";
            s = cublasSgemm(c->blas, ta, tb, m, n, k, &alpha, static_cast<const float *>(a), lda,
                            static_cast<const float *>(b), ldb, &beta, d, ldd);
        } else {
#if XDT_GPU_BLAS_BF16
            what = XDT_GPU_BLAS_NAME " GemmEx (bf16 operands, fp32 sums)";
            s = cublasGemmEx(c->blas, ta, tb, m, n, k, &alpha, a, CUDA_R_16BF, lda, b, CUDA_R_16BF,
                             ldb, &beta, d, CUDA_R_32F, ldd, CUBLAS_COMPUTE_32F,
                             CUBLAS_GEMM_DEFAULT);
#endif
        }
    }
    if (s != CUBLAS_STATUS_SUCCESS) {
        record(c, blas_status_of(s), op, what, blas_status_name(s));
        return false;
    }
    /* BLAS rows are the caller's columns: bias[i] goes down column i of the caller's c */
    if (bias && !fused) add_row_bias(c, d, ldd, bias, n, m, op);
    return true;
}
#endif

/* How the bf16 mode splits a product and what its copies take of the workspace: `step` rows of
 * c (one product: a's copy within a chunk, at least 64 rows, whole multiples of 64) or matrices
 * (a batch: both copies within a chunk) per pass; a_vals and b_vals values of copies. */
struct bf16_plan {
    size_t step, a_vals, b_vals;
};

static bf16_plan plan_bf16(size_t chunk, bool tb, int m, int n, int k, int batch) {
    const int rows_b = tb ? n : k, cols_b = tb ? k : n;
    const size_t per_b = (size_t)rows_b * cols_b, per_a = (size_t)m * k;
    const size_t kk = k > 0 ? (size_t)k : 1;
    size_t step = batch == 1 ? chunk / kk : chunk / (per_a + per_b + 1);
    const size_t span = batch == 1 ? (size_t)m : (size_t)batch;
    if (batch == 1 && step < 64) step = 64;
    if (step >= span)
        step = span; /* one pass */
    else if (batch == 1 && step >= 128)
        step = step / 64 * 64; /* parts the tensor cores' tiles fit */
    if (step < 1) step = 1;
    return {step, round_up_128(batch == 1 ? step * kk : step * per_a),
            round_up_128(batch == 1 ? per_b : step * per_b)};
}

/* The chunk for one product: the context's, or all of a when a is larger but within
 * kBf16WholeMax and the workspace for it within the context's budget for whole copies (a
 * sixteenth of the device's memory): decided by shapes and the device alone, so a product is
 * split the same way every run, and counted by the memory estimate (gemm_workspace_need). One
 * copy then serves the whole product, and the next GEMM reading the same matrix (a linear layer's
 * weight gradient after its input gradient) reuses it: for the LM head, 412M values of dlogits
 * copied once instead of twice, in one product instead of a dozen. */
static size_t chunk_for(const gpu_ctx *c, bool tb, int m, int n, int k) {
    const size_t a_vals = (size_t)m * k;
    if (!c->bf16_whole || a_vals <= c->bf16_chunk || a_vals > kBf16WholeMax) return c->bf16_chunk;
    const bf16_plan whole = plan_bf16(a_vals, tb, m, n, k, 1);
    const size_t need = (whole.a_vals + whole.b_vals) * 2;
    return workspace_alloc_bytes(need) <= c->bf16_whole_budget ? a_vals : c->bf16_chunk;
}

size_t gemm_workspace_need(const gpu_ctx *c, const xdt_gemm_shape &s) {
    const bool bf16_blas = XDT_GPU_BLAS_BF16 && c->blas_ok && c->bf16;
    if (!bf16_blas || s.m <= 0 || s.n <= 0 || s.k <= 0 || s.batch <= 0) return 0;
    const size_t chunk = s.batch == 1 ? chunk_for(c, s.trans_b, s.m, s.n, s.k) : c->bf16_chunk;
    const bf16_plan p = plan_bf16(chunk, s.trans_b, s.m, s.n, s.k, s.batch);
    return (p.a_vals + p.b_vals) * 2;
}

bool sidecar_wanted(const gpu_ctx *c, size_t n) {
    return XDT_GPU_BLAS_BF16 && c->bf16 && c->blas_ok && c->bf16_sidecar && n > 0 &&
           n <= c->bf16_chunk && n <= (size_t)INT32_MAX;
}

uint16_t *sidecar_begin(gpu_ctx *c, size_t n, const char *op) {
    if (!sidecar_wanted(c, n)) return nullptr;
    return static_cast<uint16_t *>(workspace(c, round_up_128(n) * sizeof(uint16_t), op));
}

void sidecar_made(gpu_ctx *c, const float *src, size_t n) {
    c->bf16_a = {true, src, 1, (int)n, (int)n, c->ops_entered, c->ws_generation};
}

#if XDT_GPU_BLAS_BF16
/* The copy at the workspace's start is a's (rows x cols at ld, as stored), made by the op just
 * before this one: the same matrix, or, both contiguous, the same values. */
static bool kept_copy_matches(const gpu_ctx *c, const float *a, int rows, int cols, int ld) {
    const auto &k = c->bf16_a;
    if (!k.valid || k.src != a || k.op + 1 != c->ops_entered || k.ws_generation != c->ws_generation)
        return false;
    if (k.rows == rows && k.cols == cols && k.ld == ld) return true;
    return k.ld == k.cols && ld == cols && (size_t)k.rows * k.cols == (size_t)rows * cols;
}

/* The bf16 mode's GEMM: bf16 copies of a and b, then cuBLAS with bf16 operands and fp32 sums and
 * output. One product is split by rows of c so that a's copy fits a chunk (b is copied whole; a
 * transposed a gives column blocks, copied row by row) with every part a full-depth product
 * written once; a batch is split by matrices so both copies fit. */
static void gemm_bf16(gpu_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha,
                      const float *a, int lda, long sa, const float *b, int ldb, long sb,
                      float beta, float *cm, int ldc, long sc, int batch, const float *bias,
                      const char *op) {
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    const int rows_b = tb ? n : k, cols_b = tb ? k : n;
    const size_t per_b = (size_t)rows_b * cols_b, per_a = (size_t)m * k;
    const bf16_plan plan =
        plan_bf16(batch == 1 ? chunk_for(c, tb, m, n, k) : c->bf16_chunk, tb, m, n, k, batch);
    const size_t step = plan.step, a_vals = plan.a_vals, b_vals = plan.b_vals;
    uint16_t *a16 = static_cast<uint16_t *>(workspace(c, (a_vals + b_vals) * 2, op));
    if (!a16) return;
    uint16_t *b16 = a16 + a_vals;
    const bool a_whole = batch == 1 && step == (size_t)m; /* a copied in one pass */
    const int a_rows = ta ? k : m, a_cols = ta ? m : k;   /* a as stored */
    const bool a_kept = a_whole && kept_copy_matches(c, a, a_rows, a_cols, lda);
    c->bf16_a.valid = false;
    if (batch == 1) {
        if (!pack_bf16(c, b16, b, rows_b, cols_b, ldb, 0, 1, op)) return;
        for (size_t i0 = 0; i0 < (size_t)m; i0 += step) {
            const int mc = (int)((size_t)m - i0 < step ? (size_t)m - i0 : step);
            /* rows i0.. of op(a): rows of a, or its columns when transposed (the previous
             * GEMM's copy of the same matrix, when it is still in place) */
            const bool packed =
                a_kept || (ta ? pack_bf16(c, a16, a + i0, k, mc, lda, 0, 1, op)
                              : pack_bf16(c, a16, a + i0 * (size_t)lda, mc, k, lda, 0, 1, op));
            if (!packed || !blas_gemm(c, true, opb, opa, n, mc, k, alpha, b16, cols_b, a16,
                                      ta ? mc : k, beta, cm + i0 * (size_t)ldc, ldc, bias, op))
                return;
        }
        /* the copy stays valid for the next op if this product did not write over a */
        const uintptr_t a0 = (uintptr_t)a, c0 = (uintptr_t)cm;
        const uintptr_t a1 = (uintptr_t)(a + (size_t)(a_rows - 1) * lda + a_cols);
        const uintptr_t c1 = (uintptr_t)(cm + (size_t)(m - 1) * ldc + n);
        if (a_whole && (c1 <= a0 || a1 <= c0))
            c->bf16_a = {true, a, a_rows, a_cols, lda, c->ops_entered, c->ws_generation};
        return;
    }
    const int rows_a = ta ? k : m, cols_a = ta ? m : k;
    for (size_t z0 = 0; z0 < (size_t)batch; z0 += step) {
        const int nz = (int)((size_t)batch - z0 < step ? (size_t)batch - z0 : step);
        if (!pack_bf16(c, a16, a + z0 * sa, rows_a, cols_a, lda, sa, nz, op) ||
            !pack_bf16(c, b16, b + z0 * sb, rows_b, cols_b, ldb, sb, nz, op))
            return;
        const cublasStatus_t s = cublasGemmStridedBatchedEx(
            c->blas, opb, opa, n, m, k, &alpha, b16, CUDA_R_16BF, cols_b, (long long)per_b, a16,
            CUDA_R_16BF, cols_a, (long long)per_a, &beta, cm + z0 * sc, CUDA_R_32F, ldc, sc, nz,
            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS) {
            record(c, blas_status_of(s), op,
                   XDT_GPU_BLAS_NAME " GemmStridedBatchedEx (bf16 operands, fp32 sums)",
                   blas_status_name(s));
            return;
        }
    }
}
#endif

void gemm_batched(gpu_ctx *c, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, long sa, const float *b, int ldb, long sb, float beta, float *cm,
                  int ldc, long sc, int batch, const float *bias, const char *op) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) {
        record(c, XDT_ERR_INVALID_ARG, op, "GEMM with a negative size", NULL);
        return;
    }
    if (bias && batch != 1) {
        record(c, XDT_ERR_INVALID_ARG, op, "GEMM with a bias is one product", NULL);
        return;
    }
    if (m == 0 || n == 0 || batch == 0) return;
#if XDT_GPU_HAVE_BLAS
    if (c->blas_ok && (!c->bf16 || XDT_GPU_BLAS_BF16)) {
        const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
        const cublasOperation_t opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
#if XDT_GPU_BLAS_BF16
        if (c->bf16 && k > 0) { /* k == 0 only scales c: the fp32 call below does it */
            gemm_bf16(c, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, cm, ldc, sc, batch,
                      bias, op);
            return;
        }
#endif
        if (batch == 1) {
            blas_gemm(c, false, opb, opa, n, m, k, alpha, b, ldb, a, lda, beta, cm, ldc, bias, op);
            return;
        }
        const cublasStatus_t s = cublasSgemmStridedBatched(
            c->blas, opb, opa, n, m, k, &alpha, b, ldb, sb, a, lda, sa, &beta, cm, ldc, sc, batch);
        if (s != CUBLAS_STATUS_SUCCESS)
            record(c, blas_status_of(s), op, XDT_GPU_BLAS_NAME " SgemmStridedBatched",
                   blas_status_name(s));
        return;
    }
#endif
    tiled_gemm(c, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, cm, ldc, sc, batch, op);
    if (bias) add_row_bias(c, cm, ldc, bias, m, n, op);
}

void op_gemm(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha, const float *a, int lda,
             const float *b, int ldb, float beta, float *c, int ldc) {
    gpu_ctx *g = as_ctx(ctx);
    enter(g, "gemm");
    gemm_batched(g, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1, nullptr,
                 "gemm");
}

void op_gemm_bias(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha, const float *a,
                  int lda, const float *b, int ldb, float beta, float *c, int ldc,
                  const float *bias) {
    gpu_ctx *g = as_ctx(ctx);
    enter(g, "gemm_bias");
    gemm_batched(g, ta, tb, m, n, k, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc, 0, 1, bias,
                 "gemm_bias");
}

void op_gemm_strided_batched(void *ctx, bool ta, bool tb, int m, int n, int k, float alpha,
                             const float *a, int lda, long sa, const float *b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int batch) {
    gpu_ctx *g = as_ctx(ctx);
    enter(g, "gemm_strided_batched");
    gemm_batched(g, ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch,
                 nullptr, "gemm_strided_batched");
}

} // namespace XDT_GPU_NS
