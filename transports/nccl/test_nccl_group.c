/* test_nccl_group.c: the NCCL/RCCL group on real GPUs, through xdt's device backends (their
 * buffers and streams). Argument checks first (no GPU needed); then, on cuda:0 (or hip:0): a
 * one-member group's all-reduce queued on the device's stream after its kernels, a group whose
 * second member never comes (a timeout naming the group, not a hang), and with two GPUs two
 * members as threads summing each other's buffers, each scaling its buffer by a kernel queued
 * just before the all-reduce with no sync between (the sum must see the kernel: one stream).
 * The id travels through a real bootstrap store served in this process. Exits 77 without a GPU
 * or without the vendor's library. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "devices/device.h"
#include "transports/bootstrap.h"
#include "transports/nccl/nccl_group.h"
#include "transports/nccl/test_nccl.h"

static const char *backend = "cuda"; /* the GPU backend found: "cuda" or "hip" */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bad arguments are refused before any device or library call. */
static void test_arguments(void) {
    const int ranks[2] = {4, 6};
    xdt_nccl_group *g = NULL;
    xdt_nccl_group_config cfg = {.name = "args", .ranks = ranks, .size = 2, .rank = 5};
    int store_stub = 0;
    xdt_status st = xdt_nccl_group_create(NULL, &cfg, &g);
    CHECK(st == XDT_ERR_INVALID_ARG, "no store: status %d", st);
    st = xdt_nccl_group_create((xdt_store *)&store_stub, &cfg, &g); /* no stream */
    CHECK(st == XDT_ERR_INVALID_ARG, "no stream: status %d", st);
    CHECK(g == NULL, "no group on failure");
    xdt_nccl_group_destroy(NULL);
}

static xdt_nccl_group_config config_for(xdt_device *dev, const char *name, const int *ranks,
                                        int size, int rank) {
    xdt_nccl_group_config cfg = {.name = name, .ranks = ranks, .size = size, .rank = rank};
    xdt_nccl_vendor_of(dev->ops->mem_type, &cfg.vendor);
    dev->ops->gpu_stream(dev->ctx, &cfg.stream);
    return cfg;
}

static float pattern(size_t i) {
    return (float)(i % 1000) * 0.25f;
}

/* Fills n floats on the device with scale * pattern(i) and returns the device buffer. */
static float *device_buffer(xdt_device *dev, size_t n, float scale) {
    float *h = malloc(n * sizeof(float)), *d = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++)
        h[i] = scale * pattern(i);
    if (xdt_device_alloc(dev, n * sizeof(float), (void **)&d) == XDT_OK)
        dev->ops->copy(dev->ctx, d, h, n * sizeof(float), XDT_COPY_HOST_TO_DEVICE);
    free(h);
    if (d && xdt_device_sync(dev) != XDT_OK) {
        xdt_device_free(dev, d);
        d = NULL;
    }
    return d;
}

/* Whether every element of the device buffer is scale * pattern(i). */
static bool holds(xdt_device *dev, const float *d, size_t n, float scale) {
    float *h = malloc(n * sizeof(float));
    if (!h) return false;
    dev->ops->copy(dev->ctx, h, d, n * sizeof(float), XDT_COPY_DEVICE_TO_HOST);
    bool ok = xdt_device_sync(dev) == XDT_OK;
    for (size_t i = 0; ok && i < n; i++)
        ok = h[i] == scale * pattern(i);
    free(h);
    return ok;
}

static xdt_device *open_gpu(int index) {
    char name[16];
    snprintf(name, sizeof name, "%s:%d", backend, index);
    xdt_device *dev = NULL;
    return xdt_device_create(name, NULL, &dev) == XDT_OK ? dev : NULL;
}

static void test_one_member(xdt_device *dev, int port) {
    xdt_bootstrap_env env = test_store_env(0, 1, port);
    xdt_store *store = NULL;
    if (xdt_store_open(&env, 10000, &store) != XDT_OK) {
        CHECK(0, "store");
        return;
    }
    const int ranks[1] = {0};
    const xdt_nccl_group_config cfg = config_for(dev, "solo", ranks, 1, 0);
    xdt_nccl_group *g = NULL;
    xdt_status st = xdt_nccl_group_create(store, &cfg, &g);
    CHECK(st == XDT_OK, "one-member group: status %d", st);
    if (!st) {
        CHECK(!strcmp(xdt_nccl_group_name(g), "solo") && xdt_nccl_group_member(g) == 0, "name");
        CHECK(xdt_nccl_group_library(g)->vendor == cfg.vendor, "the vendor's library");
        const size_t n = 3000;
        float *d = device_buffer(dev, n, 1.0f);
        CHECK(d != NULL, "buffer");
        /* a kernel, then the all-reduce on the same stream, no sync between */
        dev->ops->scale(dev->ctx, d, 3.0f, n);
        CHECK(xdt_nccl_allreduce_sum(g, d, n) == XDT_OK, "all-reduce");
        CHECK(xdt_nccl_allreduce_sum(g, d, 0) == XDT_OK, "empty all-reduce");
        CHECK(xdt_nccl_group_wait(g) == XDT_OK, "wait");
        CHECK(d && holds(dev, d, n, 3.0f), "a sum over one member keeps the values");
        xdt_device_free(dev, d);
    }
    xdt_nccl_group_destroy(g);
    xdt_store_close(store);
}

/* A group of two whose second member never joins: a timeout (not before its 3 s), one line. No
 * upper bound on the time: the harness's timeout catches a hang. */
static void test_missing_member(xdt_device *dev, int port) {
    xdt_bootstrap_env env = test_store_env(0, 1, port);
    xdt_store *store = NULL;
    if (xdt_store_open(&env, 10000, &store) != XDT_OK) {
        CHECK(0, "store");
        return;
    }
    const int ranks[2] = {0, 1};
    xdt_nccl_group_config cfg = config_for(dev, "lonely", ranks, 2, 0);
    cfg.timeout_ms = 3000;
    xdt_nccl_group *g = NULL;
    const double t0 = now_s();
    fprintf(stderr, "(an error line about group lonely is expected next)\n");
    xdt_status st = xdt_nccl_group_create(store, &cfg, &g);
    const double took = now_s() - t0;
    CHECK(st == XDT_ERR_TIMEOUT, "missing member: status %d (want timeout)", st);
    CHECK(g == NULL, "no group on failure");
    CHECK(took >= 2.5, "gave up after %.1f s, before its 3 s timeout", took);
    xdt_store_close(store);
}

typedef struct pair_arg {
    int rank, port;
    xdt_status st;
    bool ok;
} pair_arg;

static void *pair_member(void *p) {
    pair_arg *a = p;
    xdt_device *dev = open_gpu(a->rank);
    if (!dev) {
        a->st = XDT_ERR_DEVICE;
        return NULL;
    }
    xdt_bootstrap_env env = test_store_env(a->rank, 2, a->port);
    xdt_store *store = NULL;
    if ((a->st = xdt_store_open(&env, 20000, &store))) {
        xdt_device_destroy(dev);
        return NULL;
    }
    const int ranks[2] = {0, 1};
    const xdt_nccl_group_config cfg = config_for(dev, "pair", ranks, 2, a->rank);
    xdt_nccl_group *g = NULL;
    if (!(a->st = xdt_nccl_group_create(store, &cfg, &g))) {
        const size_t n = (size_t)1 << 20;
        float *d = device_buffer(dev, n, 1.0f);
        a->ok = d != NULL;
        /* rank r scales by r + 1 (1 and 2) right before the first round, unsynchronised: the
         * rounds give 3, 6, 12 only if the all-reduce runs after the kernel */
        if (a->ok) dev->ops->scale(dev->ctx, d, (float)(a->rank + 1), n);
        for (int round = 0; round < 3 && a->ok && !a->st; round++) {
            if (!(a->st = xdt_nccl_allreduce_sum(g, d, n))) a->st = xdt_nccl_group_wait(g);
        }
        a->ok = a->ok && !a->st && holds(dev, d, n, 12.0f);
        xdt_device_free(dev, d);
    }
    xdt_nccl_group_destroy(g);
    xdt_store_close(store);
    xdt_device_destroy(dev);
    return NULL;
}

static void test_two_members(int port) {
    pair_arg a[2] = {{.rank = 0, .port = port}, {.rank = 1, .port = port}};
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        pthread_create(&th[r], NULL, pair_member, &a[r]);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++)
        CHECK(a[r].st == XDT_OK && a[r].ok, "two members: member %d status %d, sums %s", r, a[r].st,
              a[r].ok ? "right" : "wrong");
}

int main(void) {
    test_arguments();
    xdt_device *dev = open_gpu(0);
    if (!dev) {
        backend = "hip";
        dev = open_gpu(0);
    }
    if (!dev) {
        printf("skip: no CUDA or HIP device here (or this build has neither backend)\n");
        return failures ? 1 : 77;
    }
    xdt_nccl_vendor vendor = XDT_NCCL_NVIDIA;
    xdt_nccl_vendor_of(dev->ops->mem_type, &vendor);
    const xdt_nccl_api *api = NULL;
    char why[512];
    if (xdt_nccl_api_try_load(vendor, &api, why, sizeof why) != XDT_OK) {
        printf("skip: %s:0 found, but %s\n", backend, why);
        xdt_device_destroy(dev);
        return failures ? 1 : 77;
    }
    printf("%s %d loaded from %s\n", xdt_nccl_vendor_name(vendor), api->version, api->path);
    int port = test_free_port();
    if (port < 0) {
        fprintf(stderr, "FAIL: no free loopback port\n");
        return 1;
    }
    test_one_member(dev, port);
    if ((port = test_free_port()) > 0) test_missing_member(dev, port);
    xdt_device_destroy(dev);
    xdt_device *second = open_gpu(1);
    const bool two = second != NULL;
    xdt_device_destroy(second);
    if (two && (port = test_free_port()) > 0)
        test_two_members(port);
    else
        printf("note: one %s device; the two-member all-reduce needs two (the library refuses "
               "two members on one device)\n",
               backend);
    printf("test_nccl_group: %s, %d failures\n", two ? "two GPUs" : "one GPU", failures);
    return failures ? 1 : 0;
}
