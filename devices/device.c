/* device.c: opening devices by name, and the fallbacks for optional slots. */
#include "devices/device.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* Parses "<prefix>" (GPU 0) or "<prefix>:N"; returns false when name is neither. */
static bool parse_gpu_name(const char *name, const char *prefix, int *index) {
    size_t len = strlen(prefix);
    if (strncmp(name, prefix, len) != 0) return false;
    const char *rest = name + len;
    if (*rest == '\0') {
        *index = 0;
        return true;
    }
    if (*rest != ':' || rest[1] < '0' || rest[1] > '9') return false;
    char *end = NULL;
    long v = strtol(rest + 1, &end, 10);
    if (*end != '\0' || v > XDT_DEVICE_INDEX_MAX) return false;
    *index = (int)v;
    return true;
}

xdt_status xdt_device_check_name(const char *name) {
    int index = 0;
    if (!strcmp(name, "cpu")) return XDT_OK;
    if (parse_gpu_name(name, "cuda", &index)) {
#ifdef XDT_HAVE_CUDA
        return XDT_OK;
#else
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "device '%s': this build has no CUDA backend (nvcc was not found or "
                        "-Dcuda=disabled; rebuild with -Dcuda=enabled)",
                        name);
#endif
    }
    if (parse_gpu_name(name, "hip", &index)) {
#ifdef XDT_HAVE_HIP
        return XDT_OK;
#else
        return xdt_fail(XDT_ERR_UNSUPPORTED,
                        "device '%s': this build has no HIP backend (hipcc was not found or "
                        "-Dhip=disabled; rebuild with -Dhip=enabled)",
                        name);
#endif
    }
    return xdt_fail(XDT_ERR_UNSUPPORTED,
                    "device '%s': unknown device (expected cpu, cuda, cuda:N, hip, hip:N)", name);
}

xdt_status xdt_device_create(const char *name, const xdt_device_options *opts, xdt_device **out) {
    xdt_device_options defaults = {0};
    if (!opts) opts = &defaults;
    xdt_status st = xdt_device_check_name(name);
    if (st != XDT_OK) return st;
    if (!strcmp(name, "cpu")) return xdt_cpu_device_create(opts, out);
    int index = 0;
#ifdef XDT_HAVE_CUDA
    if (parse_gpu_name(name, "cuda", &index)) return xdt_cuda_device_create(index, opts, out);
#endif
#ifdef XDT_HAVE_HIP
    if (parse_gpu_name(name, "hip", &index)) return xdt_hip_device_create(index, opts, out);
#endif
    (void)index;
    return XDT_ERR_UNSUPPORTED; /* not reached: check_name refused every other name */
}

const char *xdt_device_backends(void) {
    return "cpu"
#ifdef XDT_HAVE_CUDA
           ", cuda"
#endif
#ifdef XDT_HAVE_HIP
           ", hip"
#endif
        ;
}

void xdt_device_destroy(xdt_device *dev) {
    if (!dev) return;
    dev->ops->destroy(dev->ctx);
    free(dev);
}

xdt_status xdt_device_alloc(xdt_device *dev, size_t bytes, void **out) {
    xdt_status st = dev->ops->alloc(dev->ctx, bytes ? bytes : 1, out);
    if (st != XDT_OK)
        return xdt_fail(st, "device %s: cannot allocate %zu bytes (%.1f MiB)", dev->name, bytes,
                        bytes / 1048576.0);
    return XDT_OK;
}

void xdt_device_free(xdt_device *dev, void *ptr) {
    if (ptr) dev->ops->free(dev->ctx, ptr);
}

xdt_status xdt_device_alloc_pinned(xdt_device *dev, size_t bytes, void **out) {
    if (!dev->ops->alloc_pinned) {
        void *p = malloc(bytes ? bytes : 1);
        if (!p)
            return xdt_fail(XDT_ERR_NO_MEMORY, "host: cannot allocate %zu staging bytes", bytes);
        *out = p;
        return XDT_OK;
    }
    xdt_status st = dev->ops->alloc_pinned(dev->ctx, bytes ? bytes : 1, out);
    if (st != XDT_OK)
        return xdt_fail(st, "device %s: cannot allocate %zu pinned host bytes", dev->name, bytes);
    return XDT_OK;
}

void xdt_device_free_pinned(xdt_device *dev, void *ptr) {
    if (!ptr) return;
    if (dev->ops->free_pinned)
        dev->ops->free_pinned(dev->ctx, ptr);
    else
        free(ptr);
}

xdt_status xdt_device_sync(xdt_device *dev) {
    return dev->ops->sync(dev->ctx);
}

void xdt_device_attention_sizes(xdt_device *dev, int b, int t, int c, int nh, size_t *state,
                                size_t *workspace) {
    if (dev->ops->attention_sizes) {
        dev->ops->attention_sizes(dev->ctx, b, t, c, nh, state, workspace);
        return;
    }
    *state = *workspace = (size_t)b * nh * t * t;
}

void xdt_device_gemm_batched(xdt_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                             float alpha, const float *a, int lda, long stride_a, const float *b,
                             int ldb, long stride_b, float beta, float *c, int ldc, long stride_c,
                             int batch) {
    if (dev->ops->gemm_strided_batched) {
        dev->ops->gemm_strided_batched(dev->ctx, trans_a, trans_b, m, n, k, alpha, a, lda, stride_a,
                                       b, ldb, stride_b, beta, c, ldc, stride_c, batch);
        return;
    }
    for (int i = 0; i < batch; i++)
        dev->ops->gemm(dev->ctx, trans_a, trans_b, m, n, k, alpha, a + i * stride_a, lda,
                       b + i * stride_b, ldb, beta, c + i * stride_c, ldc);
}

void xdt_device_gemm_bias(xdt_device *dev, bool trans_a, bool trans_b, int m, int n, int k,
                          float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                          float *c, int ldc, const float *bias) {
    if (dev->ops->gemm_bias) {
        dev->ops->gemm_bias(dev->ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c,
                            ldc, bias);
        return;
    }
    dev->ops->gemm(dev->ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    if (ldc == n) {
        dev->ops->bias_add(dev->ctx, c, bias, m, n);
        return;
    }
    for (int i = 0; i < m; i++)
        dev->ops->bias_add(dev->ctx, c + (size_t)i * ldc, bias, 1, n);
}
