/* gpu_device.cu: the GPU backend's device: creation by GPU number, one non-blocking stream, the
 * cuBLAS handle, memory (cudaMalloc, pinned host via cudaMallocHost, copies and memsets on the
 * stream), error translation and recording, sync, and the ops table. The kernels live in
 * gpu_gemm.cu, gpu_kernels.cu, gpu_embedding.cu and gpu_attention.cu. Compiled by nvcc for CUDA
 * and by hipcc for HIP (see gpu_vendor.h).
 *
 * Errors: every runtime and BLAS status is translated to an xdt_status where it is returned; the
 * first one since the last sync is logged once (naming the device and the op) and kept, and sync
 * returns it. Faults that surface only asynchronously name the op queued last.
 *
 * Host copies (host to device, device to host) wait for the stream before returning, as the CPU
 * backend's do: callers reuse or read their host buffers right after. Device-to-device copies and
 * memsets are queued. */
#include "devices/cuda/gpu_common.cuh"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace XDT_GPU_NS {

xdt_status status_of(cudaError_t e) {
    switch (e) {
    case cudaSuccess:
        return XDT_OK;
    case cudaErrorMemoryAllocation:
        return XDT_ERR_NO_MEMORY;
    case cudaErrorInvalidValue:
        return XDT_ERR_INVALID_ARG;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
        return XDT_ERR_UNSUPPORTED;
    default:
        return XDT_ERR_DEVICE;
    }
}

void record(gpu_ctx *c, xdt_status st, const char *op, const char *what, const char *detail) {
    if (c->err != XDT_OK) return; /* keep (and report) only the first */
    c->err = st;
    xdt_log_error("device %s: %s: %s%s%s", c->name, op, what, detail ? ": " : "",
                  detail ? detail : "");
}

bool check(gpu_ctx *c, cudaError_t e, const char *op, const char *what) {
    if (e == cudaSuccess) return true;
    char detail[192];
    snprintf(detail, sizeof detail, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    record(c, status_of(e), op, what, detail);
    return false;
}

bool check_launch(gpu_ctx *c, const char *op) {
    return check(c, cudaGetLastError(), op, "kernel launch");
}

void enter(gpu_ctx *c, const char *op) {
    c->last_op = op;
    c->ops_entered++;
    cudaError_t e = cudaSetDevice(c->index);
    if (e != cudaSuccess) check(c, e, op, XDT_GPU_RT " set device");
}

size_t workspace_alloc_bytes(size_t need) {
    if (need == 0) return 0;
    return need < ((size_t)16 << 20) ? ((size_t)16 << 20) : need + need / 4; /* room to grow */
}

void *workspace(gpu_ctx *c, size_t bytes, const char *op) {
    if (bytes <= c->ws_bytes) return c->ws;
    const size_t want = workspace_alloc_bytes(bytes > 0 ? bytes : 1);
    /* the old buffer may still be read by queued kernels */
    if (!check(c, cudaStreamSynchronize(c->stream), op, "sync before growing the workspace"))
        return NULL;
    if (c->ws) (void)cudaFree(c->ws);
    c->ws = NULL;
    c->ws_bytes = 0;
    cudaError_t e = cudaMalloc(&c->ws, want);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); /* an allocation failure must not stick to the next launch */
        c->ws = NULL;
        char what[96];
        snprintf(what, sizeof what, "cannot allocate %zu bytes of workspace", want);
        check(c, e, op, what);
        return NULL;
    }
    c->ws_bytes = want;
    c->ws_generation++;
    return c->ws;
}

/* Returns (and forgets) what was recorded since the last sync, the kernels' flags included (read
 * once the stream is idle, or after a fault). */
static xdt_status take_recorded(gpu_ctx *c) {
    if (c->host->bad_target) {
        record(c, XDT_ERR_INVALID_ARG, "softmax_xent", "a target is outside [0, vocab)", NULL);
        c->host->bad_target = 0;
    }
    if (c->host->bad_token) {
        record(c, XDT_ERR_INVALID_ARG, "embedding", "a token is negative", NULL);
        c->host->bad_token = 0;
    }
    xdt_status st = c->err;
    c->err = XDT_OK;
    return st;
}

/* Names the op queued last in a fault the stream reports (it may have been any queued op). */
static void record_stream_fault(gpu_ctx *c, cudaError_t e, const char *op, const char *what) {
    char where[128];
    snprintf(where, sizeof where, "%s (the op queued last was %s)", what,
             c->last_op ? c->last_op : "none");
    check(c, e, op, where);
}

xdt_status sync_ctx(gpu_ctx *c) {
    cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) record_stream_fault(c, e, "sync", "stream sync");
    return take_recorded(c);
}

static xdt_status gpu_sync(void *ctx) {
    return sync_ctx(as_ctx(ctx));
}

static void gpu_destroy(void *ctx) {
    gpu_ctx *c = as_ctx(ctx);
    if (!c) return;
    (void)cudaSetDevice(c->index);
    if (c->stream) (void)cudaStreamSynchronize(c->stream);
#if XDT_GPU_HAVE_BLAS
    if (c->blas) (void)cublasDestroy(c->blas);
#endif
#if XDT_GPU_HAVE_BLASLT
    if (c->lt) (void)cublasLtDestroy(c->lt);
    if (c->lt_ws) (void)cudaFree(c->lt_ws);
#endif
    if (c->ws) (void)cudaFree(c->ws);
    if (c->pin_ints) (void)cudaFreeHost(c->pin_ints);
    if (c->host) (void)cudaFreeHost(c->host);
    if (c->stream) (void)cudaStreamDestroy(c->stream);
    free(c->counts);
    free(c);
    (void)cudaGetLastError();
}

static xdt_status gpu_alloc(void *ctx, size_t bytes, void **out) {
    gpu_ctx *c = as_ctx(ctx);
    void *p = NULL;
    cudaError_t e = cudaSetDevice(c->index); /* never allocate on whichever GPU is current */
    if (e == cudaSuccess) e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return status_of(e); /* the wrapper reports it with the size */
    }
    *out = p;
    return XDT_OK;
}

static void gpu_free(void *ctx, void *ptr) {
    gpu_ctx *c = as_ctx(ctx);
    enter(c, "free");
    check(c, cudaFree(ptr), "free", "cudaFree");
}

static xdt_status gpu_alloc_pinned(void *ctx, size_t bytes, void **out) {
    gpu_ctx *c = as_ctx(ctx);
    void *p = NULL;
    cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) e = cudaMallocHost(&p, bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return status_of(e);
    }
    *out = p;
    return XDT_OK;
}

/* May run on a communication thread while the compute thread queues ops, so it touches none of
 * the context's bookkeeping (last op, first error): a failure is logged here. */
static void gpu_free_pinned(void *ctx, void *ptr) {
    const gpu_ctx *c = as_ctx(ctx);
    cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) e = cudaFreeHost(ptr);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        xdt_log_error("device %s: free_pinned: %s (%s)", c->name, cudaGetErrorString(e),
                      cudaGetErrorName(e));
    }
}

static void gpu_copy(void *ctx, void *dst, const void *src, size_t bytes, xdt_copy_dir dir) {
    gpu_ctx *c = as_ctx(ctx);
    if (!bytes) return;
    enter(c, "copy");
    switch (dir) {
    case XDT_COPY_HOST_TO_DEVICE:
        if (check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "copy",
                  "host to device"))
            check(c, cudaStreamSynchronize(c->stream), "copy", "host to device (sync)");
        break;
    case XDT_COPY_DEVICE_TO_HOST:
        if (check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "copy",
                  "device to host"))
            check(c, cudaStreamSynchronize(c->stream), "copy", "device to host (sync)");
        break;
    case XDT_COPY_DEVICE_TO_DEVICE:
        check(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy",
              "device to device");
        break;
    }
}

static void gpu_memset(void *ctx, void *ptr, int value, size_t bytes) {
    gpu_ctx *c = as_ctx(ctx);
    if (!bytes) return;
    enter(c, "memset");
    check(c, cudaMemsetAsync(ptr, value, bytes, c->stream), "memset", "cudaMemsetAsync");
}

static xdt_status gpu_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
    gpu_ctx *c = as_ctx(ctx);
    cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) e = cudaMemGetInfo(free_bytes, total_bytes);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return xdt_fail(status_of(e), "device %s: cannot read free memory: %s", c->name,
                        cudaGetErrorString(e));
    }
    return XDT_OK;
}

/* The stream as NCCL and RCCL see it (devices/gpu_stream.h). */
static xdt_status stream_make_current(void *arg) {
    gpu_ctx *c = as_ctx(arg);
    const cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) return XDT_OK;
    (void)cudaGetLastError();
    return xdt_fail(status_of(e), "device %s: cannot make it the current device: %s", c->name,
                    cudaGetErrorString(e));
}

/* Never waits: a fault, or an error recorded when an op was queued (a failed launch, a bad
 * token), is returned as soon as seen, as sync would return it; then the caller gives its own
 * queued work up (NCCL aborts its communicator) rather than wait behind it. */
static xdt_status stream_query(void *arg, bool *idle) {
    gpu_ctx *c = as_ctx(arg);
    *idle = false;
    if (c->err != XDT_OK) return take_recorded(c);
    cudaError_t e = cudaSetDevice(c->index);
    if (e == cudaSuccess) e = cudaStreamQuery(c->stream);
    if (e == cudaErrorNotReady) {
        (void)cudaGetLastError(); /* not an error: the work is still running */
        return XDT_OK;
    }
    if (e != cudaSuccess) {
        record_stream_fault(c, e, "stream query", "the stream failed");
        return take_recorded(c);
    }
    *idle = true;
    return take_recorded(c);
}

static void gpu_stream(void *ctx, xdt_gpu_stream *out) {
    gpu_ctx *c = as_ctx(ctx);
    *out = (xdt_gpu_stream){.handle = c->stream,
                            .index = c->index,
                            .arg = c,
                            .make_current = stream_make_current,
                            .query = stream_query};
}

/* Timing events (cudaEventCreate's default flags keep timing on). */
static xdt_status gpu_event_create(void *ctx, void **out) {
    gpu_ctx *c = as_ctx(ctx);
    enter(c, "event_create");
    cudaEvent_t ev = NULL;
    const cudaError_t e = cudaEventCreate(&ev);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return xdt_fail(status_of(e), "device %s: cannot create an event: %s", c->name,
                        cudaGetErrorString(e));
    }
    *out = ev;
    return XDT_OK;
}

static void gpu_event_destroy(void *ctx, void *event) {
    gpu_ctx *c = as_ctx(ctx);
    if (!event) return;
    enter(c, "event_destroy");
    check(c, cudaEventDestroy(static_cast<cudaEvent_t>(event)), "event_destroy",
          "cudaEventDestroy");
}

static void gpu_event_record(void *ctx, void *event) {
    gpu_ctx *c = as_ctx(ctx);
    /* not enter(): the op queued last stays the one a fault is blamed on */
    check(c, cudaEventRecord(static_cast<cudaEvent_t>(event), c->stream), "event_record",
          "cudaEventRecord");
}

static xdt_status gpu_event_elapsed(void *ctx, const void *start, const void *end, float *ms) {
    gpu_ctx *c = as_ctx(ctx);
    const cudaError_t e =
        cudaEventElapsedTime(ms, static_cast<cudaEvent_t>(const_cast<void *>(start)),
                             static_cast<cudaEvent_t>(const_cast<void *>(end)));
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return xdt_fail(status_of(e), "device %s: cannot time two events: %s", c->name,
                        cudaGetErrorString(e));
    }
    return XDT_OK;
}

/* The workspace the largest of the stage's ops grows it to (it is one buffer, regrown, never
 * two at once). */
static size_t gpu_workspace_bytes(void *ctx, const xdt_op_shapes *s) {
    const gpu_ctx *c = as_ctx(ctx);
    size_t need = row_ops_workspace_need(s->rows, s->widest_row);
    const size_t emb = embedding_workspace_need(s->rows);
    if (emb > need) need = emb;
    for (int i = 0; i < s->n_gemms; i++) {
        const size_t g = gemm_workspace_need(c, s->gemms[i]);
        if (g > need) need = g;
    }
    if (s->att_b > 0) {
        const size_t a = attention_workspace_need(c, s->att_b, s->att_t, s->att_c, s->att_nh);
        if (a > need) need = a;
    }
    return workspace_alloc_bytes(need);
}

static const xdt_device_ops gpu_ops = {
    .name = XDT_GPU_PREFIX,
    .mem_type = XDT_GPU_MEM,
    .destroy = gpu_destroy,
    .alloc = gpu_alloc,
    .free = gpu_free,
    .alloc_pinned = gpu_alloc_pinned,
    .free_pinned = gpu_free_pinned,
    .copy = gpu_copy,
    .memset = gpu_memset,
    .sync = gpu_sync,
    .gemm = op_gemm,
    .gemm_strided_batched = op_gemm_strided_batched,
    .gemm_bias = op_gemm_bias,
    .bias_add = op_bias_add,
    .bias_grad = op_bias_grad,
    .layernorm_forward = op_layernorm_forward,
    .layernorm_backward = op_layernorm_backward,
    .attention_forward = op_attention_forward,
    .attention_backward = op_attention_backward,
    .gelu_forward = op_gelu_forward,
    .gelu_backward = op_gelu_backward,
    .add = op_add,
    .scale = op_scale,
    .embedding_forward = op_embedding_forward,
    .embedding_backward = op_embedding_backward,
    .softmax_xent = op_softmax_xent,
    .adamw = op_adamw,
    .sum = op_sum,
    .sum_squares = op_sum_squares,
    .attention_sizes = op_attention_sizes,
    .workspace_bytes = gpu_workspace_bytes,
    .mem_info = gpu_mem_info,
    .gpu_stream = gpu_stream,
    .event_create = gpu_event_create,
    .event_destroy = gpu_event_destroy,
    .event_record = gpu_event_record,
    .event_elapsed = gpu_event_elapsed,
};

/* An environment setting that must be one of `choices` (or unset or empty: *out = NULL);
 * anything else is refused with one line naming it. */
static xdt_status env_choice(const gpu_ctx *c, const char *name, const char *const *choices,
                             const char *expected, const char **out) {
    const char *env = getenv(name);
    *out = NULL;
    if (!env || !*env) return XDT_OK;
    for (; *choices; choices++)
        if (!strcmp(env, *choices)) {
            *out = *choices;
            return XDT_OK;
        }
    return xdt_fail(XDT_ERR_INVALID_ARG, "device %s: %s=%s: expected %s", c->name, name, env,
                    expected);
}

/* An on/off environment switch, 0 or 1 (for comparison and tests): *on keeps its default when
 * the switch is unset. */
static xdt_status env_switch(const gpu_ctx *c, const char *name, bool *on) {
    static const char *const kOnOff[] = {"0", "1", NULL};
    const char *v = NULL;
    const xdt_status st = env_choice(c, name, kOnOff, "0 or 1", &v);
    if (st == XDT_OK && v) *on = v[0] == '1';
    return st;
}

/* An environment setting that is a count of at least `min` `unit`: *set tells whether it is
 * there; anything else in it is refused with one line naming it. */
static xdt_status env_count(const gpu_ctx *c, const char *name, size_t min, const char *unit,
                            size_t *out, bool *set) {
    const char *env = getenv(name);
    *set = env && *env;
    if (!*set) return XDT_OK;
    char *end = NULL;
    errno = 0;
    const unsigned long long v = strtoull(env, &end, 10);
    if (env[0] < '0' || env[0] > '9' || *end || errno == ERANGE || v < min)
        return xdt_fail(XDT_ERR_INVALID_ARG, "device %s: %s=%s: expected a number of %s >= %zu",
                        c->name, name, env, unit, min);
    *out = (size_t)v;
    return XDT_OK;
}

/* The bf16 mode's settings, from the device and the environment (tests and comparisons). */
static xdt_status read_bf16_settings(gpu_ctx *c) {
    /* XDT_GPU_BF16_SIDECAR=0: every GEMM copies its a itself (for comparison and tests) */
    c->bf16_sidecar = true;
    xdt_status st = env_switch(c, "XDT_GPU_BF16_SIDECAR", &c->bf16_sidecar);
    if (st != XDT_OK) return st;
    /* values of a per bf16 copy pass, or a whole a within a sixteenth of the device's memory;
     * XDT_GPU_BF16_CHUNK (at least 1024 values) fixes the chunk, whole copies off, so that the
     * splits of gpu_gemm.cu are testable on small products */
    c->bf16_chunk = kBf16Chunk;
    size_t free_b = 0, total_b = 0;
    c->bf16_whole = cudaMemGetInfo(&free_b, &total_b) == cudaSuccess;
    if (!c->bf16_whole) (void)cudaGetLastError();
    c->bf16_whole_budget = total_b / 16;
    bool set = false;
    st = env_count(c, "XDT_GPU_BF16_CHUNK", 1024, "values", &c->bf16_chunk, &set);
    if (st != XDT_OK) return st;
    if (set) c->bf16_whole = false;
    return XDT_OK;
}

/* The GEMM precision, attention choice and vendor libraries of an opened context, from its
 * options and the environment's switches (each refused with one line when malformed). */
static xdt_status set_up_libraries(gpu_ctx *c, const xdt_device_options *opts) {
    c->tf32 = opts->gemm_precision == XDT_PRECISION_TF32;
    c->bf16 = opts->gemm_precision == XDT_PRECISION_BF16;
    {
        bool tf32 = false; /* XDT_CUDA_TF32=1 turns fp32 into tf32 too */
        xdt_status st = env_switch(c, "XDT_CUDA_TF32", &tf32);
        if (st != XDT_OK) return st;
        if (tf32 && !c->bf16) c->tf32 = true;
        static const char *const kAttention[] = {"flash", "explicit", NULL};
        const char *att = NULL;
        st = env_choice(c, "XDT_GPU_ATTENTION", kAttention, "flash or explicit", &att);
        if (st != XDT_OK) return st;
        c->flash = att ? !strcmp(att, "flash") : opts->flash_attention;
    }
    /* mma.sync's bf16 shape needs compute capability 8.0 (Ampere); XDT_GPU_FLASH_MMA=0 keeps
     * the bf16 mode's flash attention on the fp32 kernels (for comparison) */
#if XDT_GPU_HAVE_MMA_BF16 && !defined(XDT_GPU_EMU)
    {
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->index) ==
            cudaSuccess)
            c->mma_bf16 = major >= 8 && flash_mma_compiled();
        else
            (void)cudaGetLastError();
    }
#else
    c->mma_bf16 = XDT_GPU_HAVE_MMA_BF16;
#endif
    bool mma = true;
    xdt_status st = env_switch(c, "XDT_GPU_FLASH_MMA", &mma);
    if (st != XDT_OK) return st;
    c->mma_bf16 = c->mma_bf16 && mma;
    /* read in every build, so that a malformed value is refused whether or not it is used */
    bool lt = true;
    if ((st = env_switch(c, "XDT_GPU_BLASLT", &lt)) != XDT_OK) return st;
#if XDT_GPU_HAVE_BLAS
    if (!opts->tiled_gemm) {
        cublasStatus_t bs = cublasCreate(&c->blas);
        if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
        /* fp32 GEMMs in full fp32 unless TF32 was asked for */
        if (bs == CUBLAS_STATUS_SUCCESS)
            bs = cublasSetMathMode(c->blas,
                                   c->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
        if (bs != CUBLAS_STATUS_SUCCESS)
            return xdt_fail(bs == CUBLAS_STATUS_ALLOC_FAILED ? XDT_ERR_NO_MEMORY : XDT_ERR_DEVICE,
                            "device %s: cannot initialise the BLAS library (status %d)", c->name,
                            (int)bs);
        c->blas_ok = true;
#if XDT_GPU_HAVE_BLASLT
        /* cuBLASLt for GEMMs with a bias (XDT_GPU_BLASLT=0: none, for comparison); without it
         * or its workspace, the bias is added by a kernel */
        if (lt && cublasLtCreate(&c->lt) != CUBLAS_STATUS_SUCCESS) c->lt = NULL;
        if (c->lt && cudaMalloc(&c->lt_ws, kLtWorkspaceBytes) == cudaSuccess) {
            c->lt_ws_bytes = kLtWorkspaceBytes;
        } else {
            (void)cudaGetLastError();
            c->lt_ws = NULL;
        }
#endif
    }
#endif
    (void)lt; /* unused without cuBLASLt */
    return read_bf16_settings(c);
}

/* Fails with XDT_ERR_UNSUPPORTED (no driver, no GPU, no such GPU) or the translated error. */
static xdt_status open_ctx(gpu_ctx *c, const xdt_device_options *opts) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return xdt_fail(XDT_ERR_UNSUPPORTED, "device %s: no " XDT_GPU_RT " device available (%s)",
                        c->name, cudaGetErrorString(e));
    }
    if (c->index >= count)
        return xdt_fail(XDT_ERR_UNSUPPORTED, "device %s: this machine has %d " XDT_GPU_RT " GPU%s",
                        c->name, count, count == 1 ? "" : "s");
    const char *what = "set device";
    if ((e = cudaSetDevice(c->index)) != cudaSuccess) goto fail;
    what = "stream creation";
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        goto fail;
    what = "mapped host memory";
    if ((e = cudaHostAlloc((void **)&c->host, sizeof *c->host, cudaHostAllocMapped)) != cudaSuccess)
        goto fail;
    memset(c->host, 0, sizeof *c->host);
    if ((e = cudaHostGetDevicePointer((void **)&c->host_dev, c->host, 0)) != cudaSuccess) goto fail;
    return set_up_libraries(c, opts);
fail:
    (void)cudaGetLastError();
    return xdt_fail(status_of(e), "device %s: %s failed: %s", c->name, what, cudaGetErrorString(e));
}

} // namespace XDT_GPU_NS

using namespace XDT_GPU_NS;

extern "C" xdt_status XDT_GPU_CREATE(int index, const xdt_device_options *opts, xdt_device **out) {
    xdt_device_options defaults = {};
    if (!opts) opts = &defaults;
    if (index < 0)
        return xdt_fail(XDT_ERR_UNSUPPORTED, "device " XDT_GPU_PREFIX ":%d: no such GPU", index);
    xdt_device *dev = static_cast<xdt_device *>(calloc(1, sizeof *dev));
    gpu_ctx *c = static_cast<gpu_ctx *>(calloc(1, sizeof *c));
    if (!dev || !c) {
        free(dev);
        free(c);
        return xdt_fail(XDT_ERR_NO_MEMORY, "device " XDT_GPU_PREFIX ":%d: out of memory", index);
    }
    c->index = index;
    snprintf(c->name, sizeof c->name, XDT_GPU_PREFIX ":%d", index);
    xdt_status st = open_ctx(c, opts);
    if (st != XDT_OK) {
        free(dev);
        gpu_destroy(c);
        return st;
    }
    dev->ops = &gpu_ops;
    dev->ctx = c;
    snprintf(dev->name, sizeof dev->name, "%s", c->name);
    xdt_log_debug("device %s: %s attention, %s GEMM%s", c->name,
                  !c->flash                ? "explicit"
                  : c->bf16 && c->mma_bf16 ? "flash (heads <= 64 dims, bf16 tensor cores)"
                                           : "flash (heads <= 64 dims)",
                  c->blas_ok && (!c->bf16 || XDT_GPU_BLAS_BF16) ? XDT_GPU_BLAS_NAME
                                                                : "tiled-kernel",
                  c->bf16                 ? ", bf16 products"
                  : c->tf32 && c->blas_ok ? ", TF32 allowed"
                                          : "");
    *out = dev;
    return XDT_OK;
}
