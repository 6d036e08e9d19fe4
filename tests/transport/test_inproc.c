/* test_inproc.c: the in-process transport with threads as ranks: tag matching with many
 * messages in flight, order per tag, oversize messages, a closed peer, and wait timeouts. */
#include <pthread.h>
#include <string.h>

#include "tests/unit/test_util.h"
#include "transports/inproc/inproc_transport.h"

#define WORLD 3
#define MSGS  40

static xdt_transport *ranks[WORLD];

static unsigned char pattern(int src, int dst, uint64_t tag, size_t i) {
    return (unsigned char)(src * 31 + dst * 17 + (int)tag * 7 + (int)i);
}

static size_t size_of(uint64_t tag) {
    return 1 + (size_t)tag * 997 % 20000;
}

static void *rank_main(void *arg) {
    int me = (int)(intptr_t)arg;
    xdt_transport *t = ranks[me];
    static _Thread_local unsigned char in[WORLD][MSGS][20001];
    unsigned char *out = malloc(20001);
    xdt_request *rr[WORLD][MSGS];
    /* post receives in reverse tag order, then send in forward order */
    for (int p = 0; p < WORLD; p++)
        for (int k = MSGS - 1; k >= 0; k--)
            if (p != me)
                CHECK(xdt_irecv(t, p, (uint64_t)k, in[p][k], 20001, XDT_MEM_HOST, &rr[p][k]) ==
                      XDT_OK);
    for (int p = 0; p < WORLD; p++) {
        if (p == me) continue;
        for (int k = 0; k < MSGS; k++) {
            size_t n = size_of((uint64_t)k);
            for (size_t i = 0; i < n; i++)
                out[i] = pattern(me, p, (uint64_t)k, i);
            CHECK(xdt_send(t, p, (uint64_t)k, out, n, 5000) == XDT_OK);
        }
    }
    for (int p = 0; p < WORLD; p++) {
        if (p == me) continue;
        for (int k = 0; k < MSGS; k++) {
            xdt_completion c;
            CHECK(xdt_wait(t, rr[p][k], 5000, "test recv", &c) == XDT_OK);
            size_t n = size_of((uint64_t)k);
            CHECK(c.status == XDT_OK && c.bytes == n);
            int bad = 0;
            for (size_t i = 0; i < n; i++)
                bad += in[p][k][i] != pattern(p, me, (uint64_t)k, i);
            CHECK_MSG(bad == 0, "rank %d: %d bad bytes from %d tag %d", me, bad, p, k);
        }
    }
    free(out);
    return NULL;
}

int main(void) {
    xdt_inproc_fabric *f = NULL;
    CHECK(xdt_inproc_fabric_create(WORLD, &f) == XDT_OK);
    for (int r = 0; r < WORLD; r++)
        CHECK(xdt_inproc_transport_create(f, r, &ranks[r]) == XDT_OK);
    pthread_t th[WORLD];
    for (int r = 0; r < WORLD; r++)
        pthread_create(&th[r], NULL, rank_main, (void *)(intptr_t)r);
    for (int r = 0; r < WORLD; r++)
        pthread_join(th[r], NULL);

    /* same tag, two messages: they arrive in the order sent */
    int a = 1, b = 2, got = 0;
    CHECK(xdt_send(ranks[0], 1, 9, &a, sizeof a, 1000) == XDT_OK);
    CHECK(xdt_send(ranks[0], 1, 9, &b, sizeof b, 1000) == XDT_OK);
    CHECK(xdt_recv(ranks[1], 0, 9, &got, sizeof got, NULL, 1000) == XDT_OK && got == 1);
    CHECK(xdt_recv(ranks[1], 0, 9, &got, sizeof got, NULL, 1000) == XDT_OK && got == 2);
    /* a message larger than the buffer fails the receive, naming sizes */
    char big[64] = {0}, small[8];
    CHECK(xdt_send(ranks[0], 1, 10, big, sizeof big, 1000) == XDT_OK);
    CHECK(xdt_recv(ranks[1], 0, 10, small, sizeof small, NULL, 1000) == XDT_ERR_FORMAT);
    /* nobody sends: the wait times out */
    CHECK(xdt_recv(ranks[1], 2, 11, small, sizeof small, NULL, 100) == XDT_ERR_TIMEOUT);
    /* bad arguments */
    xdt_request *r = NULL;
    CHECK(xdt_isend(ranks[0], 0, 1, &a, sizeof a, XDT_MEM_HOST, &r) == XDT_ERR_INVALID_ARG);
    CHECK(xdt_isend(ranks[0], 5, 1, &a, sizeof a, XDT_MEM_HOST, &r) == XDT_ERR_INVALID_ARG);
    CHECK(xdt_isend(ranks[0], 1, UINT64_C(1) << 50, &a, sizeof a, XDT_MEM_HOST, &r) ==
          XDT_ERR_INVALID_ARG);
    CHECK(xdt_isend(ranks[0], 1, 1, &a, sizeof a, XDT_MEM_CUDA, &r) == XDT_ERR_UNSUPPORTED);
    /* a closed peer fails a pending receive and later ones */
    xdt_request *pending = NULL;
    CHECK(xdt_irecv(ranks[0], 2, 12, small, sizeof small, XDT_MEM_HOST, &pending) == XDT_OK);
    xdt_transport_destroy(ranks[2]);
    xdt_completion c;
    CHECK(xdt_wait(ranks[0], pending, 1000, "pending", &c) == XDT_OK && c.status == XDT_ERR_PEER);
    CHECK(xdt_recv(ranks[0], 2, 13, small, sizeof small, NULL, 1000) == XDT_ERR_PEER);
    CHECK(xdt_send(ranks[0], 2, 13, small, sizeof small, 1000) == XDT_ERR_PEER);
    xdt_transport_destroy(ranks[0]);
    xdt_transport_destroy(ranks[1]);
    xdt_inproc_fabric_destroy(f);
    return test_exit_code("test_inproc");
}
