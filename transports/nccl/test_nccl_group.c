/* test_nccl_group.c: the NCCL group on real GPUs. Argument checks first (no GPU needed); then,
 * with a CUDA device: a one-member group's all-reduce on the default stream and on a stream of
 * its own, a group whose second member never comes (a timeout naming the group, not a hang),
 * and with two or more devices two members as threads summing each other's buffers. The id
 * travels through a real bootstrap store served in this process. Exits 77 without a device. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime.h>

#include "transports/bootstrap.h"
#include "transports/nccl/nccl_group.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(s, (struct sockaddr *)&sa, &sl)) {
        if (s >= 0) close(s);
        return -1;
    }
    close(s);
    return ntohs(sa.sin_port);
}

static xdt_bootstrap_env env_for(int rank, int world, int port) {
    xdt_bootstrap_env env = {.rank = rank, .world_size = world, .master_port = port};
    snprintf(env.master_addr, sizeof env.master_addr, "127.0.0.1");
    snprintf(env.token, sizeof env.token, "test-nccl-group");
    env.rank_var = "test";
    return env;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Bad arguments are refused before any CUDA or NCCL call. */
static void test_arguments(void) {
    const int ranks[2] = {4, 6};
    xdt_nccl_group *g = NULL;
    xdt_nccl_group_config cfg = {.name = "args", .ranks = ranks, .size = 2, .rank = 5};
    xdt_status st = xdt_nccl_group_create(NULL, &cfg, &g);
    CHECK(st == XDT_ERR_INVALID_ARG || st == XDT_ERR_UNSUPPORTED, "no store: status %d", st);
    CHECK(g == NULL, "no group on failure");
    xdt_nccl_group_destroy(NULL);
}

/* Fills n floats on the device with f(i) and returns the device buffer. */
static float *device_buffer(size_t n, float scale) {
    float *h = malloc(n * sizeof(float)), *d = NULL;
    if (!h) return NULL;
    for (size_t i = 0; i < n; i++)
        h[i] = scale * (float)(i % 1000) * 0.25f;
    if (cudaMalloc((void **)&d, n * sizeof(float)) != cudaSuccess ||
        cudaMemcpy(d, h, n * sizeof(float), cudaMemcpyHostToDevice) != cudaSuccess) {
        cudaFree(d);
        d = NULL;
    }
    free(h);
    return d;
}

/* Whether every element of the device buffer is scale * f(i). */
static bool holds(const float *d, size_t n, float scale) {
    float *h = malloc(n * sizeof(float));
    bool ok = h && cudaMemcpy(h, d, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
    for (size_t i = 0; ok && i < n; i++)
        ok = h[i] == scale * (float)(i % 1000) * 0.25f;
    free(h);
    return ok;
}

static void test_one_member(int port) {
    xdt_bootstrap_env env = env_for(0, 1, port);
    xdt_store *store = NULL;
    if (xdt_store_open(&env, 10000, &store) != XDT_OK) {
        CHECK(0, "store");
        return;
    }
    const int ranks[1] = {0};
    xdt_nccl_group_config cfg = {.name = "solo", .ranks = ranks, .size = 1, .rank = 0};
    xdt_nccl_group *g = NULL;
    xdt_status st = xdt_nccl_group_create(store, &cfg, &g);
    CHECK(st == XDT_OK, "one-member group: status %d", st);
    if (!st) {
        CHECK(!strcmp(xdt_nccl_group_name(g), "solo") && xdt_nccl_group_member(g) == 0, "name");
        const size_t n = 3000;
        float *d = device_buffer(n, 1.0f);
        cudaStream_t s = NULL;
        CHECK(d && cudaStreamCreate(&s) == cudaSuccess, "buffer and stream");
        CHECK(xdt_nccl_allreduce_sum(g, d, n, NULL) == XDT_OK, "all-reduce, default stream");
        CHECK(xdt_nccl_group_wait(g, NULL) == XDT_OK, "wait, default stream");
        CHECK(xdt_nccl_allreduce_sum(g, d, n, s) == XDT_OK, "all-reduce, own stream");
        CHECK(xdt_nccl_allreduce_sum(g, d, 0, s) == XDT_OK, "empty all-reduce");
        CHECK(xdt_nccl_group_wait(g, s) == XDT_OK, "wait, own stream");
        CHECK(d && holds(d, n, 1.0f), "a sum over one member keeps the values");
        cudaStreamDestroy(s);
        cudaFree(d);
    }
    xdt_nccl_group_destroy(g);
    xdt_store_close(store);
}

/* A group of two whose second member never joins: a timeout within its bound, one line. */
static void test_missing_member(int port) {
    xdt_bootstrap_env env = env_for(0, 1, port);
    xdt_store *store = NULL;
    if (xdt_store_open(&env, 10000, &store) != XDT_OK) {
        CHECK(0, "store");
        return;
    }
    const int ranks[2] = {0, 1};
    xdt_nccl_group_config cfg = {
        .name = "lonely", .ranks = ranks, .size = 2, .rank = 0, .timeout_ms = 3000};
    xdt_nccl_group *g = NULL;
    const double t0 = now_s();
    fprintf(stderr, "(an error line about group lonely is expected next)\n");
    xdt_status st = xdt_nccl_group_create(store, &cfg, &g);
    const double took = now_s() - t0;
    CHECK(st == XDT_ERR_TIMEOUT, "missing member: status %d (want timeout)", st);
    CHECK(g == NULL, "no group on failure");
    CHECK(took < 20, "the timeout of 3 s took %.1f s", took);
    xdt_store_close(store);
}

typedef struct pair_arg {
    int rank, port;
    xdt_status st;
    bool ok;
} pair_arg;

static void *pair_member(void *p) {
    pair_arg *a = p;
    xdt_bootstrap_env env = env_for(a->rank, 2, a->port);
    xdt_store *store = NULL;
    if ((a->st = xdt_store_open(&env, 20000, &store))) return NULL;
    const int ranks[2] = {0, 1};
    xdt_nccl_group_config cfg = {
        .name = "pair", .ranks = ranks, .size = 2, .rank = a->rank, .cuda_device = a->rank};
    xdt_nccl_group *g = NULL;
    if (!(a->st = xdt_nccl_group_create(store, &cfg, &g))) {
        const size_t n = (size_t)1 << 20;
        float *d = device_buffer(n, (float)(a->rank + 1));
        a->ok = d != NULL;
        /* three rounds: 1 + 2 = 3, then 6, then 12 */
        for (int round = 0; round < 3 && a->ok && !a->st; round++) {
            if (!(a->st = xdt_nccl_allreduce_sum(g, d, n, NULL)))
                a->st = xdt_nccl_group_wait(g, NULL);
        }
        a->ok = a->ok && !a->st && holds(d, n, 12.0f);
        cudaFree(d);
    }
    xdt_nccl_group_destroy(g);
    xdt_store_close(store);
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
    if (!xdt_nccl_built()) {
        printf("skip: this build has no NCCL\n");
        return failures ? 1 : 77;
    }
    int devices = 0;
    const cudaError_t ce = cudaGetDeviceCount(&devices);
    if (ce != cudaSuccess || devices < 1) {
        printf("skip: no CUDA device here (%s)\n",
               ce != cudaSuccess ? cudaGetErrorString(ce) : "none found");
        return failures ? 1 : 77;
    }
    int port = free_port();
    if (port < 0) {
        fprintf(stderr, "FAIL: no free loopback port\n");
        return 1;
    }
    test_one_member(port);
    if ((port = free_port()) > 0) test_missing_member(port);
    if (devices >= 2 && (port = free_port()) > 0)
        test_two_members(port);
    else
        printf("note: one CUDA device; the two-member all-reduce needs two (NCCL refuses two "
               "members on one device)\n");
    printf("test_nccl_group: %d devices, %d failures\n", devices, failures);
    return failures ? 1 : 0;
}
