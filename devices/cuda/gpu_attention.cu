/* gpu_attention.cu: causal multi-head attention and the softmax cross-entropy on the GPU.
 *
 * Attention runs in one of two ways. With the device's flash option (and heads of up to 64
 * dims) the fused kernels of gpu_flash_attention.cu do it keeping per-row statistics only; the
 * sizes of `att` and the workspace follow (op_attention_sizes). Otherwise it keeps the CPU
 * backend's layout: qkv (b, t, 3c) packed (head h of q at column h * hs,
 * k at c + h * hs, v at 2c + h * hs), att (b, nh, t, t) the causal softmax probabilities (zero
 * above the diagonal), out (b, t, c). Products are strided-batched GEMMs over heads (or over
 * the batch, whichever is longer) that read q, k, v in place; the full t x t scores are formed
 * and the mask is applied by the row kernels. The backward uses the caller's workspace of
 * b * nh * t * t floats for dP and dS and overwrites dqkv completely. */
#include "devices/cuda/gpu_common.cuh"

#include <math.h>

namespace XDT_GPU_NS {

/* One operand of a per-(batch, head) product: element strides between batches and heads. */
struct bh_operand {
    const float *p;
    long batch_stride, head_stride;
    int ld;
};

/* For every (batch bi, head h): C_bh = alpha op(A_bh) op(B_bh) + beta C_bh, as strided batches
 * along the longer of the two dimensions. */
static void bh_gemm(gpu_ctx *g, bool ta, bool tb, int m, int n, int k, float alpha, bh_operand a,
                    bh_operand b, float beta, float *c, long c_bs, long c_hs, int ldc, int nb,
                    int nh, const char *op) {
    if (nb <= nh) {
        for (int bi = 0; bi < nb; bi++)
            gemm_batched(g, ta, tb, m, n, k, alpha, a.p + bi * a.batch_stride, a.ld, a.head_stride,
                         b.p + bi * b.batch_stride, b.ld, b.head_stride, beta, c + bi * c_bs, ldc,
                         c_hs, nh, nullptr, op);
    } else {
        for (int h = 0; h < nh; h++)
            gemm_batched(g, ta, tb, m, n, k, alpha, a.p + h * a.head_stride, a.ld, a.batch_stride,
                         b.p + h * b.head_stride, b.ld, b.batch_stride, beta, c + h * c_hs, ldc,
                         c_bs, nb, nullptr, op);
    }
}

/* Row r of the (b * nh * t) x t scores: causal softmax in place (query i = r % t sees keys
 * 0..i); entries j > i become 0. */
__global__ void causal_softmax_kernel(float *att, int t) {
    __shared__ float sh[32];
    const size_t r = blockIdx.x;
    const int i = (int)(r % (size_t)t);
    float *row = att + r * t;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
        mx = row[j] > mx ? row[j] : mx;
    mx = block_max(mx, sh);
    float s = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x) {
        const float e = expf(row[j] - mx);
        row[j] = e;
        s += e;
    }
    const float inv = 1.0f / block_sum(s, sh);
    for (int j = threadIdx.x; j < t; j += blockDim.x)
        row[j] = j <= i ? row[j] * inv : 0.0f;
}

/* dS = P * (dP - rowsum(P * dP)) * scale below and on the diagonal, 0 above; dP in place. */
__global__ void causal_softmax_backward_kernel(float *dp, const float *att, int t, float scale) {
    __shared__ float sh[32];
    const size_t r = blockIdx.x;
    const int i = (int)(r % (size_t)t);
    const float *p = att + r * t;
    float *d = dp + r * t;
    float dot = 0.0f;
    for (int j = threadIdx.x; j <= i; j += blockDim.x)
        dot += p[j] * d[j];
    dot = block_sum(dot, sh);
    for (int j = threadIdx.x; j < t; j += blockDim.x)
        d[j] = j <= i ? p[j] * (d[j] - dot) * scale : 0.0f;
}

static bool use_flash(const gpu_ctx *g, int c, int nh) {
    return g->flash && flash_attention_fits(c, nh);
}

void op_attention_sizes(void *ctx, int b, int t, int c, int nh, size_t *state, size_t *workspace) {
    if (use_flash(as_ctx(ctx), c, nh)) {
        flash_attention_sizes(b, t, c, nh, state, workspace);
        return;
    }
    *state = *workspace = (size_t)b * nh * t * t;
}

size_t attention_workspace_need(const gpu_ctx *g, int b, int t, int c, int nh) {
    if (b <= 0 || t <= 0 || c <= 0 || nh <= 0) return 0;
    if (use_flash(g, c, nh)) {
#if XDT_GPU_HAVE_MMA_BF16
        if (g->bf16 && g->mma_bf16) return flash_mma_workspace_need(g, b, t, c);
#endif
        return 0;
    }
    /* the three kinds of product of the explicit path below (bh_gemm batches over the longer of
     * batch and heads): Q K^T and dY V^T; P V and dS K; P^T dY and dS^T Q */
    const int hs = c / nh, batch = b <= nh ? nh : b;
    const xdt_gemm_shape kinds[] = {{false, true, t, t, hs, batch},
                                    {false, false, t, hs, t, batch},
                                    {true, false, t, hs, t, batch}};
    size_t need = 0;
    for (const xdt_gemm_shape &s : kinds) {
        const size_t n = gemm_workspace_need(g, s);
        if (n > need) need = n;
    }
    return need;
}

void op_attention_forward(void *ctx, float *out, float *att, const float *qkv, int b, int t, int c,
                          int nh) {
    gpu_ctx *g = as_ctx(ctx);
    const char *op = "attention_forward";
    if (b <= 0 || t <= 0 || c <= 0 || nh <= 0) return;
    enter(g, op);
    if (use_flash(g, c, nh)) {
        flash_attention_forward(g, out, att, qkv, b, t, c, nh);
        return;
    }
    const int hs = c / nh;
    const float scale = 1.0f / sqrtf((float)hs);
    const long tt = (long)t * t, t3c = (long)t * 3 * c;
    /* S = scale Q K^T (t x t per head) */
    bh_gemm(g, false, true, t, t, hs, scale, {qkv, t3c, hs, 3 * c}, {qkv + c, t3c, hs, 3 * c}, 0.0f,
            att, nh * tt, tt, t, b, nh, op);
    XDT_LAUNCH((unsigned)((size_t)b * nh * t), kBlock, g->stream, causal_softmax_kernel)(att, t);
    if (!check_launch(g, op)) return;
    /* Y = P V (t x hs per head), written into the head's columns of out */
    bh_gemm(g, false, false, t, hs, t, 1.0f, {att, nh * tt, tt, t}, {qkv + 2 * c, t3c, hs, 3 * c},
            0.0f, out, (long)t * c, hs, c, b, nh, op);
}

void op_attention_backward(void *ctx, float *dqkv, float *ws, const float *dout, const float *qkv,
                           const float *att, const float *out, int b, int t, int c, int nh) {
    gpu_ctx *g = as_ctx(ctx);
    const char *op = "attention_backward";
    if (b <= 0 || t <= 0 || c <= 0 || nh <= 0) return;
    enter(g, op);
    if (use_flash(g, c, nh)) {
        flash_attention_backward(g, dqkv, ws, dout, qkv, att, out, b, t, c, nh);
        return;
    }
    const int hs = c / nh;
    const float scale = 1.0f / sqrtf((float)hs);
    const long tt = (long)t * t, t3c = (long)t * 3 * c, tc = (long)t * c;
    const bh_operand p = {att, nh * tt, tt, t}, dy = {dout, tc, hs, c};
    const bh_operand q = {qkv, t3c, hs, 3 * c}, k = {qkv + c, t3c, hs, 3 * c};
    const bh_operand v = {qkv + 2 * c, t3c, hs, 3 * c}, ds = {ws, nh * tt, tt, t};
    /* dP = dY V^T; dV = P^T dY */
    bh_gemm(g, false, true, t, t, hs, 1.0f, dy, v, 0.0f, ws, nh * tt, tt, t, b, nh, op);
    bh_gemm(g, true, false, t, hs, t, 1.0f, p, dy, 0.0f, dqkv + 2 * c, t3c, hs, 3 * c, b, nh, op);
    XDT_LAUNCH((unsigned)((size_t)b * nh * t), kBlock, g->stream, causal_softmax_backward_kernel)
    (ws, att, t, scale);
    if (!check_launch(g, op)) return;
    /* dQ = dS K; dK = dS^T Q */
    bh_gemm(g, false, false, t, hs, t, 1.0f, ds, k, 0.0f, dqkv, t3c, hs, 3 * c, b, nh, op);
    bh_gemm(g, true, false, t, hs, t, 1.0f, ds, q, 0.0f, dqkv + c, t3c, hs, 3 * c, b, nh, op);
}

/* ---- softmax cross-entropy: one block per row ---- */

constexpr int kXentBlock = 512;

/* One block per row. by4: the rows are 16-byte aligned (vp a multiple of 4, logits aligned), so
 * they are read and written four values at a time. */
__global__ void softmax_xent_kernel(float *logits, float *losses, const int32_t *targets, int v,
                                    int vp, float dloss_scale, bool want_grad, bool by4,
                                    host_area *host) {
    __shared__ float sh[32];
    const size_t i = blockIdx.x;
    float *l = logits + i * vp;
    const int y = targets[i];
    /* one read of the row for both the maximum and the sum: each thread keeps a running sum
     * rescaled whenever its maximum rises (the online softmax), and the block's sums are
     * rescaled to the block's maximum before they are added */
    float m = -INFINITY, sm = 0.0f;
    auto visit = [&](float x) {
        if (x > m) {
            sm = (m == -INFINITY ? 0.0f : sm * expf(m - x)) + 1.0f;
            m = x;
        } else {
            sm += expf(x - m);
        }
    };
    const int v4 = by4 ? v / 4 : 0; /* values before the scalar tail: 4 v4 */
    for (int j = threadIdx.x; j < v4; j += blockDim.x) {
        float x[4];
        load4(x, l + 4 * j);
        visit(x[0]);
        visit(x[1]);
        visit(x[2]);
        visit(x[3]);
    }
    for (int j = 4 * v4 + threadIdx.x; j < v; j += blockDim.x)
        visit(l[j]);
    const float mx = block_max(m, sh);
    const float s = block_sum(m == -INFINITY ? 0.0f : sm * expf(m - mx), sh);
    if (y < 0 || y >= v) { /* the same for the whole block */
        if (threadIdx.x == 0) {
            host->bad_target = 1;
            losses[i] = NAN;
        }
        return;
    }
    const float ly = l[y];
    __syncthreads(); /* every thread has read l[y] before any overwrites it */
    if (threadIdx.x == 0) losses[i] = logf(s) + mx - ly;
    if (!want_grad) return;
    const float inv = 1.0f / s;
    auto grad = [&](int j, float x) {
        if (j >= v) return 0.0f;
        const float gr = expf(x - mx) * inv * dloss_scale;
        return j == y ? gr - dloss_scale : gr;
    };
    if (by4) {
        for (int j = threadIdx.x; j < vp / 4; j += blockDim.x) {
            float x[4];
            load4(x, l + 4 * j);
            for (int e = 0; e < 4; e++)
                x[e] = grad(4 * j + e, x[e]);
            store4(l + 4 * j, x);
        }
        return;
    }
    for (int j = threadIdx.x; j < vp; j += blockDim.x)
        l[j] = grad(j, l[j]);
}

void op_softmax_xent(void *ctx, float *logits, float *losses, const int32_t *targets, int n, int v,
                     int vp, float dloss_scale, bool want_grad) {
    gpu_ctx *g = as_ctx(ctx);
    if (n <= 0) return;
    enter(g, "softmax_xent");
    const bool by4 = vp % 4 == 0 && (uintptr_t)logits % 16 == 0;
    XDT_LAUNCH(n, kXentBlock, g->stream, softmax_xent_kernel)
    (logits, losses, targets, v, vp, dloss_scale, want_grad, by4, g->host_dev);
    check_launch(g, "softmax_xent");
}

} // namespace XDT_GPU_NS
