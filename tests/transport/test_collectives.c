/* test_collectives.c: ring all-reduce, broadcast and barrier with 2, 3 and 4 ranks as threads
 * over the in-process transport. Inputs are small integers, so every sum is exact in fp32 and
 * the expected result is computed independently here. */
#include <pthread.h>
#include <math.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "transports/collectives.h"
#include "transports/inproc/inproc_transport.h"

#define EN 5003              /* values in the encoded all-reduce tests */
static float results[4][EN]; /* each member's result, compared after the threads join */
static double ef_error[2];   /* running-mean error without and with error feedback (rank 0) */

static xdt_transport *ranks[4];
static int world;
static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;

#define LOCKED(x)                                                                                  \
    do {                                                                                           \
        pthread_mutex_lock(&check_lock);                                                           \
        x;                                                                                         \
        pthread_mutex_unlock(&check_lock);                                                         \
    } while (0)

static float value(int rank, size_t i) {
    return (float)((int)((i * 7 + (size_t)rank * 13) % 101) - 50);
}

static void *member(void *arg) {
    int me = (int)(intptr_t)arg;
    int all[4] = {0, 1, 2, 3};
    xdt_group g;
    xdt_status st = xdt_group_init(&g, ranks[me], all, world, UINT64_C(1) << 40, 5000);
    LOCKED(CHECK(st == XDT_OK));
    const size_t sizes[] = {0, 1, 3, 1000, 100003};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        float *buf = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++)
            buf[i] = value(me, i);
        xdt_reduce_op op = k % 2 ? XDT_REDUCE_AVG : XDT_REDUCE_SUM;
        st = xdt_allreduce(&g, buf, n, op);
        LOCKED(CHECK(st == XDT_OK));
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) {
            float want = 0;
            for (int r = 0; r < world; r++)
                want += value(r, i);
            if (op == XDT_REDUCE_AVG) want /= (float)world;
            bad += buf[i] != want;
        }
        LOCKED(CHECK_MSG(bad == 0, "world %d rank %d n %zu: %zu wrong sums", world, me, n, bad));
        free(buf);
    }
    for (int root = 0; root < world; root++) {
        char msg[32] = {0};
        if (me == root) snprintf(msg, sizeof msg, "from root %d", root);
        st = xdt_broadcast(&g, msg, sizeof msg, root);
        LOCKED(CHECK(st == XDT_OK));
        char want[32] = {0};
        snprintf(want, sizeof want, "from root %d", root);
        LOCKED(CHECK(!memcmp(msg, want, sizeof msg)));
    }
    st = xdt_barrier(&g);
    LOCKED(CHECK(st == XDT_OK));

    /* encoded all-reduce: zstd exact, int8 within its bound, identical on every member */
    const char *specs[] = {"zstd", "int8", "int4:block=64"};
    for (int k = 0; k < 3; k++) {
        xdt_codec_spec spec;
        xdt_codec_parse(specs[k], &spec);
        float *buf = malloc(EN * sizeof(float));
        for (size_t i = 0; i < EN; i++)
            buf[i] = value(me, i) * 0.37f;
        st = xdt_allreduce_encoded(&g, buf, EN, XDT_REDUCE_SUM, &spec);
        LOCKED(CHECK(st == XDT_OK));
        double absmax_sum = 0, worst = 0;
        for (int r = 0; r < world; r++)
            absmax_sum += 50 * 0.37;
        for (size_t i = 0; i < EN; i++) {
            double want = 0;
            for (int r = 0; r < world; r++)
                want += value(r, i) * 0.37f;
            worst = fmax(worst, fabs(buf[i] - want));
        }
        /* world-1 lossy hops of partial sums plus one in the all-gather */
        double q = k == 1 ? 127.0 : 7.0;
        double bound = k == 0 ? 1e-4 : world * absmax_sum / q;
        LOCKED(CHECK_MSG(worst <= bound, "%s world %d: error %.4g > bound %.4g", specs[k], world,
                         worst, bound));
        memcpy(results[me], buf, EN * sizeof(float));
        free(buf);
    }
    /* error feedback: the mean of many all-reduces of the same tensor tracks the exact sum */
    for (int ef = 0; ef < 2; ef++) {
        xdt_codec_spec spec;
        xdt_codec_parse(ef ? "int4+ef" : "int4", &spec);
        double *mean = calloc(EN, sizeof(double));
        float *buf = malloc(EN * sizeof(float));
        const int rounds = 40;
        for (int round = 0; round < rounds; round++) {
            for (size_t i = 0; i < EN; i++)
                buf[i] = value(me, i) * 0.37f + 0.011f * (float)(i % 7);
            st = xdt_allreduce_encoded(&g, buf, EN, XDT_REDUCE_SUM, &spec);
            if (st) break;
            for (size_t i = 0; i < EN; i++)
                mean[i] += buf[i] / rounds;
        }
        LOCKED(CHECK(st == XDT_OK));
        double err = 0;
        for (size_t i = 0; i < EN; i++) {
            double want = 0;
            for (int r = 0; r < world; r++)
                want += value(r, i) * 0.37f + 0.011f * (float)(i % 7);
            err = fmax(err, fabs(mean[i] - want));
        }
        if (me == 0) ef_error[ef] = err;
        free(mean);
        free(buf);
    }
    xdt_group_release(&g);
    return NULL;
}

int main(void) {
    for (world = 2; world <= 4; world++) {
        xdt_inproc_fabric *f = NULL;
        CHECK(xdt_inproc_fabric_create(world, &f) == XDT_OK);
        for (int r = 0; r < world; r++)
            CHECK(xdt_inproc_transport_create(f, r, &ranks[r]) == XDT_OK);
        pthread_t th[4];
        for (int r = 0; r < world; r++)
            pthread_create(&th[r], NULL, member, (void *)(intptr_t)r);
        for (int r = 0; r < world; r++)
            pthread_join(th[r], NULL);
        for (int r = 1; r < world; r++)
            CHECK_MSG(!memcmp(results[r], results[0], sizeof results[0]),
                      "world %d: member %d's encoded all-reduce differs from member 0's", world, r);
        printf("world %d: int4 running-mean error %.4g without error feedback, %.4g with\n", world,
               ef_error[0], ef_error[1]);
        CHECK_MSG(ef_error[1] * 4 < ef_error[0], "error feedback did not help: %.4g vs %.4g",
                  ef_error[1], ef_error[0]);
        for (int r = 0; r < world; r++)
            xdt_transport_destroy(ranks[r]);
        xdt_inproc_fabric_destroy(f);
    }
    /* a member that never comes: the call fails within the timeout, naming the peer */
    xdt_inproc_fabric *f = NULL;
    xdt_inproc_fabric_create(2, &f);
    xdt_transport *t0 = NULL, *t1 = NULL;
    xdt_inproc_transport_create(f, 0, &t0);
    xdt_inproc_transport_create(f, 1, &t1);
    int both[2] = {0, 1};
    xdt_group g;
    CHECK(xdt_group_init(&g, t0, both, 2, UINT64_C(1) << 40, 200) == XDT_OK);
    float x[8] = {0};
    CHECK(xdt_allreduce(&g, x, 8, XDT_REDUCE_SUM) == XDT_ERR_TIMEOUT);
    CHECK(xdt_group_init(&g, t0, both, 2, 5, 200) == XDT_ERR_INVALID_ARG); /* bad tag base */
    xdt_group_release(&g);
    xdt_transport_destroy(t0);
    xdt_transport_destroy(t1);
    xdt_inproc_fabric_destroy(f);
    return test_exit_code("test_collectives");
}
