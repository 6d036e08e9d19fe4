/* test_device_profiler.c: the op profiler (devices/device_profiler.h) around the CPU backend
 * (timed by the host clock) and, built with XDT_TEST_EMU, around the GPU backend's sources on
 * the CPU emulation (timed by its events, the path a GPU takes). Everything passes through
 * unchanged (results bit-identical to the inner device's), the optional slots stay as optional
 * as the inner's, and the rows count every call by op and GEMM shape with the right FLOPs. */
#include <stdio.h>

#include "devices/device_profiler.h"
#include "tests/unit/test_util.h"

#ifdef XDT_TEST_EMU
xdt_status xdt_gpuemu_device_create(int index, const xdt_device_options *opts, xdt_device **out);
#endif

enum { M = 40, N = 24, K = 32, BATCH = 3 };

static const xdt_op_profile *find(const xdt_op_profile *rows, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(rows[i].name, name)) return &rows[i];
    return NULL;
}

/* Device buffer of n floats holding f(i). */
static float *filled(xdt_device *dev, size_t n, float seed) {
    float *h = malloc(n * sizeof(float)), *d = NULL;
    for (size_t i = 0; h && i < n; i++)
        h[i] = seed * (float)((i * 7919) % 97) / 97.0f - 0.5f;
    if (h && xdt_device_alloc(dev, n * sizeof(float), (void **)&d) == XDT_OK)
        dev->ops->copy(dev->ctx, d, h, n * sizeof(float), XDT_COPY_HOST_TO_DEVICE);
    free(h);
    return d;
}

static void to_host(xdt_device *dev, float *h, const float *d, size_t n) {
    dev->ops->copy(dev->ctx, h, d, n * sizeof(float), XDT_COPY_DEVICE_TO_HOST);
}

static void check_device(xdt_device *inner, bool by_events) {
    xdt_device *prof = NULL;
    CHECK(xdt_device_profiler_create(inner, &prof) == XDT_OK);
    if (!prof) return;
    /* the same device to its users */
    CHECK(!strcmp(prof->name, inner->name) && prof->ops->mem_type == inner->ops->mem_type);
    CHECK(!prof->ops->alloc_pinned == !inner->ops->alloc_pinned);
    CHECK(!prof->ops->gemm_strided_batched == !inner->ops->gemm_strided_batched);
    CHECK(!prof->ops->gemm_bias == !inner->ops->gemm_bias);
    CHECK(!prof->ops->mem_info == !inner->ops->mem_info);
    CHECK(!prof->ops->gpu_stream == !inner->ops->gpu_stream);
    CHECK(!prof->ops->event_record == !by_events);

    float *a = filled(prof, (size_t)M * K * BATCH, 1.0f),
          *b = filled(prof, (size_t)K * N * BATCH, 2.0f);
    float *c1 = filled(prof, (size_t)M * N * BATCH, 0.0f),
          *c2 = filled(inner, (size_t)M * N * BATCH, 0.0f);
    CHECK(a && b && c1 && c2);
    if (!a || !b || !c1 || !c2) return;
    /* three plain products and two batched ones through the profiler; the same on the inner */
    for (int r = 0; r < 3; r++) {
        prof->ops->gemm(prof->ctx, false, false, M, N, K, 1.0f, a, K, b, N, 0.5f, c1, N);
        inner->ops->gemm(inner->ctx, false, false, M, N, K, 1.0f, a, K, b, N, 0.5f, c2, N);
    }
    for (int r = 0; r < 2; r++) {
        xdt_device_gemm_batched(prof, false, true, M, N, K, 1.0f, a, K, (long)M * K, b, K,
                                (long)K * N, 1.0f, c1, N, (long)M * N, BATCH);
        xdt_device_gemm_batched(inner, false, true, M, N, K, 1.0f, a, K, (long)M * K, b, K,
                                (long)K * N, 1.0f, c2, N, (long)M * N, BATCH);
    }
    prof->ops->scale(prof->ctx, c1, 0.25f, (size_t)M * N);
    inner->ops->scale(inner->ctx, c2, 0.25f, (size_t)M * N);
    double s1 = 0, s2 = 0;
    CHECK(prof->ops->sum(prof->ctx, c1, (size_t)M * N * BATCH, &s1) == XDT_OK);
    CHECK(inner->ops->sum(inner->ctx, c2, (size_t)M * N * BATCH, &s2) == XDT_OK);
    CHECK(xdt_device_sync(prof) == XDT_OK);
    float *h1 = malloc(sizeof(float) * M * N * BATCH), *h2 = malloc(sizeof(float) * M * N * BATCH);
    to_host(prof, h1, c1, (size_t)M * N * BATCH);
    to_host(inner, h2, c2, (size_t)M * N * BATCH);
    CHECK_MSG(!memcmp(h1, h2, sizeof(float) * M * N * BATCH) && s1 == s2,
              "results through the profiler differ from the device's own");

    const xdt_op_profile *rows = NULL;
    int n = 0;
    CHECK(xdt_device_profiler_rows(prof, &rows, &n) == XDT_OK);
    const xdt_op_profile *g = find(rows, n, "gemm NN 40x24x32");
    CHECK_MSG(g && g->calls == 3 && g->flops == 3 * 2.0 * M * N * K && g->ms > 0,
              "plain GEMM row: calls %ld flops %g ms %g", g ? g->calls : -1L, g ? g->flops : 0,
              g ? g->ms : 0);
    /* a backend without batched GEMMs is looped by the wrapper into plain ones */
    const xdt_op_profile *gb = find(
        rows, n, inner->ops->gemm_strided_batched ? "gemm NT 40x24x32 x3" : "gemm NT 40x24x32");
    const long want_calls = inner->ops->gemm_strided_batched ? 2 : 2 * BATCH;
    CHECK_MSG(gb && gb->calls == want_calls && gb->flops == 2 * BATCH * 2.0 * M * N * K,
              "batched GEMM row: calls %ld flops %g", gb ? gb->calls : -1L, gb ? gb->flops : 0);
    const xdt_op_profile *sc = find(rows, n, "scale"), *su = find(rows, n, "sum");
    CHECK(sc && sc->calls == 1 && sc->flops == 0 && su && su->calls == 1);
    const xdt_op_profile *cp = find(rows, n, "copy host->device");
    CHECK(cp && cp->calls == 3); /* the profiler's three buffers; the inner's is not its */
    CHECK(find(rows, n, "copy device->host") && find(rows, n, "copy device->host")->calls == 1);
    for (int i = 1; i < n; i++)
        CHECK(rows[i - 1].ms >= rows[i].ms); /* the longest first */

    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    CHECK(f && xdt_device_profiler_print(prof, f, "unit", 2) == XDT_OK);
    if (f) fclose(f);
    CHECK_MSG(text && strstr(text, "unit: ") && strstr(text, "(the rest)") &&
                  strstr(text, by_events ? "timed by device events" : "timed by the host clock"),
              "table:\n%s", text ? text : "");
    free(text);

    xdt_device_profiler_reset(prof);
    CHECK(xdt_device_profiler_rows(prof, &rows, &n) == XDT_OK && n == 0);
    xdt_device_free(prof, a);
    xdt_device_free(prof, b);
    xdt_device_free(prof, c1);
    xdt_device_free(inner, c2);
    free(h1);
    free(h2);
    xdt_device_destroy(prof); /* the inner stays */
    CHECK(xdt_device_sync(inner) == XDT_OK);
}

int main(void) {
    xdt_device_options o = {.threads = 1};
    xdt_device *cpu = NULL;
    CHECK(xdt_cpu_device_create(&o, &cpu) == XDT_OK);
    if (cpu) {
        check_device(cpu, false);
        /* a device that is not a profiler has no rows */
        const xdt_op_profile *rows;
        int n;
        fprintf(stderr, "(an error line about a device that is not a profiler is expected)\n");
        CHECK(xdt_device_profiler_rows(cpu, &rows, &n) == XDT_ERR_INVALID_ARG);
        xdt_device_destroy(cpu);
    }
#ifdef XDT_TEST_EMU
    xdt_device *emu = NULL;
    CHECK(xdt_gpuemu_device_create(0, &o, &emu) == XDT_OK);
    if (emu) {
        check_device(emu, true);
        xdt_device_destroy(emu);
    }
#endif
    return test_exit_code("device_profiler");
}
