/* gpu_embedding.cu: token + position embedding, forward and backward, on the GPU.
 *
 * The backward is deterministic without atomics, and adds in exactly the CPU backend's order
 * (so its results are bit-identical to the CPU's): the tokens are read back to the host (the
 * backward of the embedding is the last op of a backward pass, so the wait costs about nothing),
 * grouped there by a stable counting sort into (token, rows in ascending order), and uploaded;
 * then one thread per (token, column) adds that token's rows in order to dwte, and one thread per
 * (position, column) adds the batch's rows in order to dwpe. Host scratch grows on first use and
 * is reused afterwards. */
#include "devices/cuda/gpu_common.cuh"

#include <stdlib.h>
#include <string.h>

namespace XDT_GPU_NS {

__global__ void embedding_forward_kernel(float *out, const int32_t *tokens, const float *wte,
                                         const float *wpe, int t, int c, size_t total,
                                         host_area *host) {
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        const size_t i = k / (size_t)c, j = k % (size_t)c;
        const int32_t tok = tokens[i];
        if (tok < 0) {
            host->bad_token = 1;
            out[k] = 0.0f;
            continue;
        }
        out[k] = wte[(size_t)tok * c + j] + wpe[(i % (size_t)t) * c + j];
    }
}

void op_embedding_forward(void *ctx, float *out, const int32_t *tokens, const float *wte,
                          const float *wpe, int b, int t, int c) {
    gpu_ctx *g = as_ctx(ctx);
    const size_t total = (size_t)b * t * c;
    if (!total) return;
    enter(g, "embedding_forward");
    XDT_LAUNCH(grid_for(total, kBlock), kBlock, g->stream, embedding_forward_kernel)
    (out, tokens, wte, wpe, t, c, total, g->host_dev);
    check_launch(g, "embedding_forward");
}

/* dwte[seg_tok[u]] += dout[order[r]] for r in [seg[u], seg[u + 1]), rows in ascending order. */
__global__ void embedding_wte_kernel(float *dwte, const float *dout, const int32_t *order,
                                     const int32_t *seg, const int32_t *seg_tok, int c) {
    const int u = blockIdx.x, j = blockIdx.y * blockDim.x + threadIdx.x;
    if (j >= c) return;
    float *w = dwte + (size_t)seg_tok[u] * c + j;
    float acc = *w;
    for (int r = seg[u]; r < seg[u + 1]; r++)
        acc += dout[(size_t)order[r] * c + j];
    *w = acc;
}

/* dwpe[p] += dout[bi * t + p] for bi = 0, 1, ..., b - 1. */
__global__ void embedding_wpe_kernel(float *dwpe, const float *dout, int b, int t, int c) {
    const size_t total = (size_t)t * c;
    for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < total;
         k += (size_t)gridDim.x * blockDim.x) {
        float acc = dwpe[k];
        for (int bi = 0; bi < b; bi++)
            acc += dout[(size_t)bi * total + k];
        dwpe[k] = acc;
    }
}

/* Grows the pinned and the host count scratch; false after recording a failure. */
static bool reserve_host(gpu_ctx *g, size_t ints, size_t counts, const char *op) {
    if (ints > g->pin_ints_cap) {
        if (g->pin_ints) {
            if (!check(g, cudaStreamSynchronize(g->stream), op, "sync")) return false;
            (void)cudaFreeHost(g->pin_ints);
        }
        g->pin_ints = NULL;
        g->pin_ints_cap = 0;
        cudaError_t e = cudaMallocHost((void **)&g->pin_ints, ints * sizeof(int32_t));
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            g->pin_ints = NULL;
            check(g, e, op, "pinned host scratch");
            return false;
        }
        g->pin_ints_cap = ints;
    }
    if (counts > g->counts_cap) {
        int32_t *p = static_cast<int32_t *>(realloc(g->counts, counts * sizeof(int32_t)));
        if (!p) {
            record(g, XDT_ERR_NO_MEMORY, op, "out of host memory", NULL);
            return false;
        }
        g->counts = p;
        g->counts_cap = counts;
    }
    return true;
}

size_t embedding_workspace_need(int rows) {
    return rows > 0 ? (3 * (size_t)rows + 1) * sizeof(int32_t) : 0; /* order, segments, tokens */
}

void op_embedding_backward(void *ctx, float *dwte, float *dwpe, const float *dout,
                           const int32_t *tokens, int b, int t, int c) {
    gpu_ctx *g = as_ctx(ctx);
    const char *op = "embedding_backward";
    const int n = b * t;
    if (n <= 0 || c <= 0) return;
    enter(g, op);
    /* pinned layout: tokens [0, n), order [n, 2n), seg [2n, 3n + 1), seg_tok [3n + 1, 4n + 1) */
    if (!reserve_host(g, 4 * (size_t)n + 1, 0, op)) return;
    int32_t *tok = g->pin_ints, *order = tok + n, *seg = order + n, *seg_tok = seg + n + 1;
    if (!check(g,
               cudaMemcpyAsync(tok, tokens, (size_t)n * sizeof(int32_t), cudaMemcpyDeviceToHost,
                               g->stream),
               op, "tokens to host") ||
        !check(g, cudaStreamSynchronize(g->stream), op, "tokens to host (sync)"))
        return;
    int32_t max_tok = 0;
    for (int i = 0; i < n; i++) {
        if (tok[i] < 0) {
            record(g, XDT_ERR_INVALID_ARG, op, "a token is negative", NULL);
            return;
        }
        if (tok[i] > max_tok) max_tok = tok[i];
    }
    if (!reserve_host(g, 0, (size_t)max_tok + 1, op)) return;
    int32_t *cnt = g->counts;
    memset(cnt, 0, ((size_t)max_tok + 1) * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        cnt[tok[i]]++;
    /* bucket starts (cnt becomes the next free place of each token), and the segments */
    int u = 0, pos = 0;
    for (int32_t v = 0; v <= max_tok; v++) {
        if (!cnt[v]) continue;
        seg[u] = pos;
        seg_tok[u] = v;
        u++;
        const int k = cnt[v];
        cnt[v] = pos;
        pos += k;
    }
    seg[u] = pos;
    for (int i = 0; i < n; i++) /* stable: rows of a token stay in ascending order */
        order[cnt[tok[i]]++] = i;
    const size_t bytes = embedding_workspace_need(n);
    int32_t *dev = static_cast<int32_t *>(workspace(g, bytes, op));
    if (!dev) return;
    if (!check(g, cudaMemcpyAsync(dev, order, bytes, cudaMemcpyHostToDevice, g->stream), op,
               "index tables to device"))
        return;
    dim3 grid(u, (c + kBlock - 1) / kBlock);
    XDT_LAUNCH(grid, kBlock, g->stream, embedding_wte_kernel)
    (dwte, dout, dev, dev + n, dev + 2 * n + 1, c);
    if (!check_launch(g, op)) return;
    XDT_LAUNCH(grid_for((size_t)t * c, kBlock), kBlock, g->stream, embedding_wpe_kernel)
    (dwpe, dout, b, t, c);
    check_launch(g, op);
}

} // namespace XDT_GPU_NS
