/* gpu_kernels.cu: the GPU backend's row, column and element-wise kernels: bias add and gradient,
 * layernorm forward and backward, GELU, add, scale, AdamW, and the sum reductions. Contracts are
 * those of devices/cpu/cpu_kernels_decl.inc.
 *
 * Column reductions (bias and layernorm weight gradients) are deterministic: each block sums a
 * 32-column tile over a fixed chunk of rows, and a second kernel adds the chunks' partial sums in
 * chunk order into the accumulated gradient. sum and sum_squares accumulate in double in the
 * same two fixed stages and return their result through mapped host memory. */
#include "devices/cuda/gpu_common.cuh"

namespace XDT_GPU_NS {

/* ---- element-wise ---- */

/* grid.y walks the rows, the threads of grid.x the columns: no division per value */
__global__ void add_row_bias_kernel(float *out, int ld, const float *bias, int m, int n) {
    for (int i = blockIdx.y; i < m; i += gridDim.y) {
        float *row = out + (size_t)i * ld;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n; j += gridDim.x * blockDim.x)
            row[j] += bias[j];
    }
}

/* the same four columns at a time (16-byte loads and stores) */
__global__ void add_row_bias4_kernel(float *out, int ld, const float *bias, int m, int n4) {
    for (int i = blockIdx.y; i < m; i += gridDim.y) {
        float *row = out + (size_t)i * ld;
        for (int j = blockIdx.x * blockDim.x + threadIdx.x; j < n4; j += gridDim.x * blockDim.x) {
            float v[4], b[4];
            load4(v, row + 4 * j);
            load4(b, bias + 4 * j);
            for (int q = 0; q < 4; q++)
                v[q] += b[q];
            store4(row + 4 * j, v);
        }
    }
}

void add_row_bias(gpu_ctx *c, float *out, int ld, const float *bias, int m, int n, const char *op) {
    if (m <= 0 || n <= 0) return;
    const bool by4 =
        n % 4 == 0 && ld % 4 == 0 && (uintptr_t)out % 16 == 0 && (uintptr_t)bias % 16 == 0;
    const int cols = by4 ? n / 4 : n;
    const unsigned gx = (unsigned)((cols + kBlock - 1) / kBlock);
    const size_t rows_per = kMaxGrid / gx > 0 ? kMaxGrid / gx : 1; /* blocks in all: ~kMaxGrid */
    const unsigned gy =
        (unsigned)((size_t)m < rows_per ? m : (rows_per < 65535 ? rows_per : 65535));
    if (by4) {
        XDT_LAUNCH(dim3(gx, gy), kBlock, c->stream, add_row_bias4_kernel)(out, ld, bias, m, cols);
    } else {
        XDT_LAUNCH(dim3(gx, gy), kBlock, c->stream, add_row_bias_kernel)(out, ld, bias, m, n);
    }
    check_launch(c, op);
}

void op_bias_add(void *ctx, float *out, const float *bias, int n, int c) {
    gpu_ctx *g = as_ctx(ctx);
    if ((size_t)n * c == 0) return;
    enter(g, "bias_add");
    add_row_bias(g, out, c, bias, n, c, "bias_add");
}

#define XDT_GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

/* out16 (may be NULL): the outputs' bf16 copy, a sidecar for the next GEMM */
__global__ void gelu_forward_kernel(float *out, uint16_t *out16, const float *inp, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float x = inp[i];
        const float y = 0.5f * x * (1.0f + tanhf(XDT_GELU_K * (x + 0.044715f * x * x * x)));
        out[i] = y;
        if (out16) out16[i] = bf16_bits(y);
    }
}

__global__ void gelu_backward_kernel(float *dinp, uint16_t *dinp16, const float *inp,
                                     const float *dout, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float x = inp[i];
        const float u = XDT_GELU_K * (x + 0.044715f * x * x * x);
        const float th = tanhf(u);
        const float sech2 = 1.0f - th * th;
        const float du = XDT_GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
        const float y = (0.5f * (1.0f + th) + 0.5f * x * sech2 * du) * dout[i];
        dinp[i] = y;
        if (dinp16) dinp16[i] = bf16_bits(y);
    }
}

void op_gelu_forward(void *ctx, float *out, const float *inp, size_t n) {
    gpu_ctx *g = as_ctx(ctx);
    if (!n) return;
    enter(g, "gelu_forward");
    uint16_t *out16 = sidecar_begin(g, n, "gelu_forward");
    XDT_LAUNCH(grid_for(n, kBlock), kBlock, g->stream, gelu_forward_kernel)(out, out16, inp, n);
    if (check_launch(g, "gelu_forward") && out16) sidecar_made(g, out, n);
}

void op_gelu_backward(void *ctx, float *dinp, const float *inp, const float *dout, size_t n) {
    gpu_ctx *g = as_ctx(ctx);
    if (!n) return;
    enter(g, "gelu_backward");
    uint16_t *dinp16 = sidecar_begin(g, n, "gelu_backward");
    XDT_LAUNCH(grid_for(n, kBlock), kBlock, g->stream, gelu_backward_kernel)
    (dinp, dinp16, inp, dout, n);
    if (check_launch(g, "gelu_backward") && dinp16) sidecar_made(g, dinp, n);
}

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float *x, float s, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] *= s;
}

void op_add(void *ctx, float *out, const float *a, const float *b, size_t n) {
    gpu_ctx *g = as_ctx(ctx);
    if (!n) return;
    enter(g, "add");
    XDT_LAUNCH(grid_for(n, kBlock), kBlock, g->stream, add_kernel)(out, a, b, n);
    check_launch(g, "add");
}

void op_scale(void *ctx, float *x, float s, size_t n) {
    gpu_ctx *g = as_ctx(ctx);
    if (!n) return;
    enter(g, "scale");
    XDT_LAUNCH(grid_for(n, kBlock), kBlock, g->stream, scale_kernel)(x, s, n);
    check_launch(g, "scale");
}

__global__ void adamw_kernel(float *param, const float *grad, float *m, float *v, size_t n,
                             xdt_adamw_args a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float g = grad[i] * a.grad_scale;
        const float mi = a.beta1 * m[i] + (1.0f - a.beta1) * g;
        const float vi = a.beta2 * v[i] + (1.0f - a.beta2) * g * g;
        m[i] = mi;
        v[i] = vi;
        param[i] -= a.lr * ((mi / a.bias_correction1) / (sqrtf(vi / a.bias_correction2) + a.eps) +
                            a.weight_decay * param[i]);
    }
}

void op_adamw(void *ctx, float *param, const float *grad, float *m, float *v, size_t n,
              const xdt_adamw_args *args) {
    gpu_ctx *g = as_ctx(ctx);
    if (!n) return;
    enter(g, "adamw");
    XDT_LAUNCH(grid_for(n, kBlock), kBlock, g->stream, adamw_kernel)(param, grad, m, v, n, *args);
    check_launch(g, "adamw");
}

/* ---- column reductions ---- */

constexpr int kColTile = 32, kColRows = 8; /* blocks of 32 x 8 threads */

/* The value each (row i, column j) contributes to the NOUT column sums. */
struct bias_grad_terms {
    const float *dout;
    int c;
    __device__ void operator()(int i, int j, float *acc) const {
        acc[0] += dout[(size_t)i * c + j];
    }
};

struct ln_grad_terms {
    const float *dout, *inp, *mean, *rstd;
    int c;
    __device__ void operator()(int i, int j, float *acc) const {
        const size_t k = (size_t)i * c + j;
        const float d = dout[k];
        acc[0] += (inp[k] - mean[i]) * rstd[i] * d; /* dw */
        acc[1] += d;                                /* db */
    }
};

/* The column totals of a 32 x 8 block: thread (x, y) holds its share acc[o] of column x.
 * Returns true on row 0, whose acc[] then holds the 8 shares added in row order (a fixed order,
 * so the sums are the same every run). Every thread of the block must call it. */
template <int NOUT> __device__ inline bool block_column_totals(float *acc) {
    __shared__ float sh[NOUT][kColRows][kColTile + 1];
    for (int o = 0; o < NOUT; o++)
        sh[o][threadIdx.y][threadIdx.x] = acc[o];
    __syncthreads();
    if (threadIdx.y != 0) return false;
    for (int o = 0; o < NOUT; o++) {
        float s = 0.0f;
        for (int y = 0; y < kColRows; y++)
            s += sh[o][y][threadIdx.x];
        acc[o] = s;
    }
    return true;
}

/* partial[(chunk * NOUT + o) * c + j] = sum over the chunk's rows. */
template <int NOUT, typename F>
__global__ void col_partials_kernel(F f, int n, int c, int rows_per_chunk, float *partial) {
    const int j = blockIdx.x * kColTile + threadIdx.x;
    const int r0 = blockIdx.y * rows_per_chunk;
    const int r1 = r0 + rows_per_chunk < n ? r0 + rows_per_chunk : n;
    float acc[NOUT];
    for (int o = 0; o < NOUT; o++)
        acc[o] = 0.0f;
    if (j < c)
        for (int i = r0 + threadIdx.y; i < r1; i += kColRows)
            f(i, j, acc);
    if (block_column_totals<NOUT>(acc) && j < c)
        for (int o = 0; o < NOUT; o++)
            partial[((size_t)blockIdx.y * NOUT + o) * c + j] = acc[o];
}

/* out[j] += the chunks' partials of column j: thread (x, y) of a 32 x 8 block adds chunks y,
 * y + 8, ..., then row 0 adds the 8 sums in order, so the order is fixed and 8 threads share
 * each column (one thread per column would leave most of a GPU idle: c/256 blocks). */
template <int NOUT>
__global__ void col_finish_kernel(const float *partial, int chunks, int c, float *out0,
                                  float *out1) {
    const int j = blockIdx.x * kColTile + threadIdx.x;
    float acc[NOUT];
    for (int o = 0; o < NOUT; o++) {
        acc[o] = 0.0f;
        if (j < c)
            for (int ch = threadIdx.y; ch < chunks; ch += kColRows)
                acc[o] += partial[((size_t)ch * NOUT + o) * c + j];
    }
    if (block_column_totals<NOUT>(acc) && j < c)
        for (int o = 0; o < NOUT; o++)
            (o == 0 ? out0 : out1)[j] += acc[o];
}

/* Chunks of rows the column sums split n rows into (at most 256, of at least 64 rows). */
static int column_chunks(int n, int *rows_per_chunk) {
    int chunks = (n + 63) / 64;
    if (chunks > 256) chunks = 256;
    *rows_per_chunk = (n + chunks - 1) / chunks;
    return (n + *rows_per_chunk - 1) / *rows_per_chunk;
}

/* out0[j] (and out1[j]) += sum over rows of f's terms, deterministically. */
template <int NOUT, typename F>
static void column_sums(gpu_ctx *g, F f, int n, int c, float *out0, float *out1, const char *op) {
    if (n <= 0 || c <= 0) return;
    int rows_per_chunk;
    const int chunks = column_chunks(n, &rows_per_chunk);
    float *partial =
        static_cast<float *>(workspace(g, (size_t)chunks * NOUT * c * sizeof(float), op));
    if (!partial) return;
    dim3 grid((c + kColTile - 1) / kColTile, chunks), block(kColTile, kColRows);
    XDT_LAUNCH(grid, block, g->stream, col_partials_kernel<NOUT, F>)
    (f, n, c, rows_per_chunk, partial);
    if (!check_launch(g, op)) return;
    XDT_LAUNCH(dim3(grid.x), block, g->stream, col_finish_kernel<NOUT>)
    (partial, chunks, c, out0, out1);
    check_launch(g, op);
}

void op_bias_grad(void *ctx, float *dbias, const float *dout, int n, int c) {
    gpu_ctx *g = as_ctx(ctx);
    enter(g, "bias_grad");
    column_sums<1>(g, bias_grad_terms{dout, c}, n, c, dbias, nullptr, "bias_grad");
}

/* ---- layernorm: one block per row ---- */

__global__ void layernorm_forward_kernel(float *out, uint16_t *out16, float *mean, float *rstd,
                                         const float *inp, const float *w, const float *b, int c) {
    __shared__ float sh[32];
    const size_t i = blockIdx.x;
    const float *x = inp + i * c;
    float s = 0.0f;
    for (int j = threadIdx.x; j < c; j += blockDim.x)
        s += x[j];
    const float m = block_sum(s, sh) / c;
    float v = 0.0f;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const float d = x[j] - m;
        v += d * d;
    }
    const float var = block_sum(v, sh) / c;
    const float r = 1.0f / sqrtf(var + 1e-5f);
    float *o = out + i * c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const float y = (x[j] - m) * r * w[j] + b[j];
        o[j] = y;
        if (out16) out16[i * c + j] = bf16_bits(y);
    }
    if (threadIdx.x == 0) {
        mean[i] = m;
        rstd[i] = r;
    }
}

__global__ void layernorm_backward_kernel(float *dinp, uint16_t *dinp16, const float *dout,
                                          const float *inp, const float *w, const float *mean,
                                          const float *rstd, int c, bool accumulate) {
    __shared__ float sh[32];
    const size_t i = blockIdx.x;
    const float *x = inp + i * c, *d = dout + i * c;
    const float m = mean[i], s = rstd[i];
    float a = 0.0f, bsum = 0.0f;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const float dnorm = w[j] * d[j];
        a += dnorm;
        bsum += dnorm * (x[j] - m) * s;
    }
    const float dnorm_mean = block_sum(a, sh) / c;
    const float dnorm_norm_mean = block_sum(bsum, sh) / c;
    float *di = dinp + i * c;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const float norm = (x[j] - m) * s;
        const float gr = (w[j] * d[j] - dnorm_mean - norm * dnorm_norm_mean) * s;
        const float y = accumulate ? di[j] + gr : gr;
        di[j] = y;
        if (dinp16) dinp16[i * c + j] = bf16_bits(y);
    }
}

void op_layernorm_forward(void *ctx, float *out, float *mean, float *rstd, const float *inp,
                          const float *w, const float *b, int n, int c) {
    gpu_ctx *g = as_ctx(ctx);
    if (n <= 0 || c <= 0) return;
    enter(g, "layernorm_forward");
    const size_t nc = (size_t)n * c;
    uint16_t *out16 = sidecar_begin(g, nc, "layernorm_forward");
    XDT_LAUNCH(n, kBlock, g->stream, layernorm_forward_kernel)
    (out, out16, mean, rstd, inp, w, b, c);
    if (check_launch(g, "layernorm_forward") && out16) sidecar_made(g, out, nc);
}

void op_layernorm_backward(void *ctx, float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, const float *mean, const float *rstd,
                           int n, int c, bool accumulate) {
    gpu_ctx *g = as_ctx(ctx);
    if (n <= 0 || c <= 0) return;
    enter(g, "layernorm_backward");
    /* the weight sums first: they take the workspace that the sidecar of dinp then holds */
    column_sums<2>(g, ln_grad_terms{dout, inp, mean, rstd, c}, n, c, dw, db, "layernorm_backward");
    const size_t nc = (size_t)n * c;
    uint16_t *dinp16 = sidecar_begin(g, nc, "layernorm_backward");
    XDT_LAUNCH(n, kBlock, g->stream, layernorm_backward_kernel)
    (dinp, dinp16, dout, inp, w, mean, rstd, c, accumulate);
    if (check_launch(g, "layernorm_backward") && dinp16) sidecar_made(g, dinp, nc);
}

/* ---- sum and sum of squares, in double ---- */

constexpr int kReduceBlocks = 1024;

size_t row_ops_workspace_need(int rows, int widest_row) {
    size_t need = kReduceBlocks * sizeof(double); /* reduce()'s partials */
    if (rows > 0 && widest_row > 0) {
        int rows_per_chunk;
        /* layernorm_backward's two sums a column are the most */
        const size_t cols = (size_t)column_chunks(rows, &rows_per_chunk) * 2 * widest_row;
        if (cols * sizeof(float) > need) need = cols * sizeof(float);
    }
    return need;
}

template <bool SQUARE>
__global__ void reduce_partials_kernel(const float *x, size_t n, double *partial) {
    __shared__ double sh[32];
    double s = 0.0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const double v = x[i];
        s += SQUARE ? v * v : v;
    }
    s = block_sum(s, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void reduce_finish_kernel(const double *partial, int blocks, host_area *host) {
    __shared__ double sh[32];
    double s = 0.0;
    for (int i = threadIdx.x; i < blocks; i += blockDim.x)
        s += partial[i];
    s = block_sum(s, sh);
    if (threadIdx.x == 0) host->result = s;
}

template <bool SQUARE>
static xdt_status reduce(gpu_ctx *g, const float *x, size_t n, double *out, const char *op) {
    enter(g, op);
    if (n == 0) {
        xdt_status st = sync_ctx(g);
        if (st == XDT_OK) *out = 0.0;
        return st;
    }
    unsigned blocks = grid_for(n, kBlock);
    if (blocks > (unsigned)kReduceBlocks) blocks = kReduceBlocks;
    double *partial = static_cast<double *>(workspace(g, blocks * sizeof(double), op));
    if (partial) {
        XDT_LAUNCH(blocks, kBlock, g->stream, reduce_partials_kernel<SQUARE>)(x, n, partial);
        if (check_launch(g, op)) {
            XDT_LAUNCH(1, kBlock, g->stream, reduce_finish_kernel)
            (partial, (int)blocks, g->host_dev);
            check_launch(g, op);
        }
    }
    xdt_status st = sync_ctx(g);
    if (st == XDT_OK) *out = g->host->result;
    return st;
}

xdt_status op_sum(void *ctx, const float *x, size_t n, double *out) {
    return reduce<false>(as_ctx(ctx), x, n, out, "sum");
}

xdt_status op_sum_squares(void *ctx, const float *x, size_t n, double *out) {
    return reduce<true>(as_ctx(ctx), x, n, out, "sum_squares");
}

} // namespace XDT_GPU_NS
