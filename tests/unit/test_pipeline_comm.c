/* test_pipeline_comm.c: the pipeline runtime's communication thread on its own, two ranks over
 * the in-process transport. The zero-copy paths the executor uses: a reserved message filled in
 * place and committed arrives intact, as does one sent by copy; a received message viewed in
 * place stays unchanged while later ones arrive, until the next step; a reservation given back
 * unsent leaves no gap in the sequence; the messages' buffers (sent and received) come from the
 * configured allocator and all go back to it; misuse (two reservations, a commit without one, a
 * message larger than configured, an out-of-range receive) is refused. */
#include <stdatomic.h>
#include <string.h>

#include "core/pipeline_comm.h"
#include "tests/unit/test_util.h"
#include "transports/inproc/inproc_transport.h"

#define N 1000 /* floats per activation */

static atomic_int allocated, freed;

static void *counting_alloc(void *arg, size_t bytes) {
    (void)arg;
    atomic_fetch_add(&allocated, 1);
    return malloc(bytes);
}

static void counting_free(void *arg, void *p) {
    (void)arg;
    atomic_fetch_add(&freed, 1);
    free(p);
}

static xdt_status open_comm(xdt_transport *t, int peer, bool counting, xdt_comm **out) {
    const xdt_comm_peer peers[1] = {{.rank = peer, .coded_floats = N, .raw_floats = 8}};
    xdt_comm_config cc = {.job_id = 42,
                          .timeout_ms = 5000,
                          .max_floats = {N, N, 8, 8, N},
                          .peers = peers,
                          .n_peers = 1};
    if (counting) {
        cc.alloc_host = counting_alloc;
        cc.free_host = counting_free;
    }
    return xdt_comm_create(t, &cc, out);
}

static void fill(float *x, int mb) {
    for (int i = 0; i < N; i++)
        x[i] = (float)(mb * 10000 + i);
}

static bool holds(const float *x, int mb) {
    for (int i = 0; i < N; i++)
        if (x[i] != (float)(mb * 10000 + i)) return false;
    return true;
}

int main(void) {
    xdt_inproc_fabric *fabric = NULL;
    xdt_transport *t0 = NULL, *t1 = NULL;
    xdt_comm *sender = NULL, *receiver = NULL;
    if (xdt_inproc_fabric_create(2, &fabric) || xdt_inproc_transport_create(fabric, 0, &t0) ||
        xdt_inproc_transport_create(fabric, 1, &t1) || open_comm(t0, 1, true, &sender) ||
        open_comm(t1, 0, true, &receiver)) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    for (int step = 0; step < 2; step++) {
        /* three activations 0 -> 1: two reserved and committed, one sent by copy */
        xdt_msg_id ids[3];
        for (int mb = 0; mb < 3; mb++)
            ids[mb] =
                (xdt_msg_id){.peer = 0, .kind = XDT_MSG_ACT, .microbatch = mb, .chunk = 1, .n = N};
        CHECK(xdt_comm_begin_step(receiver, step, ids, 3) == XDT_OK);
        CHECK(xdt_comm_begin_step(sender, step, NULL, 0) == XDT_OK);
        float *buf = NULL, *other = NULL;
        const float *first = NULL, *second = NULL;
        for (int mb = 0; mb < 2; mb++) {
            xdt_msg_id id = ids[mb];
            id.peer = 1;
            CHECK(xdt_comm_send_reserve(sender, &id, &buf) == XDT_OK && buf);
            if (!buf) break;
            fill(buf, mb + step);
            if (mb == 0) { /* a second reservation before the commit is refused */
                fprintf(stderr, "(an error about an uncommitted reservation is expected next)\n");
                CHECK(xdt_comm_send_reserve(sender, &id, &other) == XDT_ERR_INVALID_ARG);
            }
            CHECK(xdt_comm_send_commit(sender) == XDT_OK);
            /* the first arrives and is viewed before the others are even sent */
            if (mb == 0) CHECK(xdt_comm_recv_view(receiver, 0, &first) == XDT_OK && first);
        }
        fprintf(stderr, "(an error about a commit without a reservation is expected next)\n");
        CHECK(xdt_comm_send_commit(sender) == XDT_ERR_INVALID_ARG);
        /* a reservation given back unsent leaves no gap: the receiver's sequence check would
         * refuse the next message if it did */
        xdt_msg_id id2 = ids[2];
        id2.peer = 1;
        CHECK(xdt_comm_send_reserve(sender, &id2, &buf) == XDT_OK);
        xdt_comm_send_abort(sender);
        float copy[N];
        fill(copy, 2 + step);
        CHECK(xdt_comm_send(sender, &id2, copy) == XDT_OK);
        /* a message larger than configured */
        xdt_msg_id big = id2;
        big.n = N + 1;
        fprintf(stderr, "(an error about an oversized message is expected next)\n");
        CHECK(xdt_comm_send_reserve(sender, &big, &buf) == XDT_ERR_INVALID_ARG);

        CHECK(xdt_comm_recv_view(receiver, 1, &second) == XDT_OK && second);
        float got[N];
        CHECK(xdt_comm_recv(receiver, 2, got) == XDT_OK);
        CHECK(first && holds(first, step)); /* unchanged after two later arrivals */
        CHECK(second && holds(second, 1 + step));
        CHECK(holds(got, 2 + step));
        CHECK(first != second);
        fprintf(stderr, "(an error about receive 3 of 3 is expected next)\n");
        CHECK(xdt_comm_recv_view(receiver, 3, &first) == XDT_ERR_INVALID_ARG);
        CHECK(xdt_comm_drain(sender) == XDT_OK);
        CHECK(xdt_comm_drain(receiver) == XDT_OK);
    }
    uint64_t wire = 0, raw = 0;
    xdt_comm_sent_bytes(sender, 1, &wire, &raw);
    CHECK(raw == 2 * 3 * N * sizeof(float));
    /* a reservation left uncommitted is freed with the engine */
    xdt_msg_id left = {.peer = 1, .kind = XDT_MSG_GRAD, .microbatch = 0, .chunk = 0, .n = N};
    float *buf = NULL;
    CHECK(xdt_comm_send_reserve(sender, &left, &buf) == XDT_OK);
    xdt_comm_destroy(sender);
    xdt_comm_destroy(receiver);
    printf("message buffers: %d allocated, %d freed\n", atomic_load(&allocated),
           atomic_load(&freed));
    /* the receiver's three activations at least, the sender's activation and gradient */
    CHECK(atomic_load(&allocated) >= 5);
    CHECK(atomic_load(&freed) == atomic_load(&allocated));
    xdt_transport_destroy(t0);
    xdt_transport_destroy(t1);
    xdt_inproc_fabric_destroy(fabric);
    return test_exit_code("test_pipeline_comm");
}
