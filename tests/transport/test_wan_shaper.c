/* test_wan_shaper.c: the WAN shaper over the in-process transport. With a virtual clock the
 * schedule is checked exactly: 1 MiB messages at 100 Mbps / 10 ms and 1 Gbps / 25 ms leave at the
 * configured bandwidth and arrive one latency later, never early, never reordered by jitter.
 * With the real clock, a message is never delivered before its latency. */
#include <string.h>
#include <time.h>

#include "tests/unit/test_util.h"
#include "transports/inproc/inproc_transport.h"
#include "transports/wan_shaper.h"

static uint64_t virtual_now;
static uint64_t virtual_clock(void *arg) {
    (void)arg;
    return virtual_now;
}

/* Sends n messages of len bytes from shaped rank 0 to rank 1 at virtual time 0, then checks the
 * arrival of each against the shape, stepping the clock to just before and just after it. */
static void check_schedule(double bps, double latency_s, int n, size_t len) {
    xdt_inproc_fabric *f = NULL;
    xdt_transport *r0 = NULL, *r1 = NULL, *s0 = NULL;
    CHECK(xdt_inproc_fabric_create(2, &f) == XDT_OK);
    CHECK(xdt_inproc_transport_create(f, 0, &r0) == XDT_OK);
    CHECK(xdt_inproc_transport_create(f, 1, &r1) == XDT_OK);
    xdt_link_shape shapes[2] = {{0}, {bps, latency_s, 0}};
    xdt_shaper_options o = {.now_ns = virtual_clock};
    CHECK(xdt_shaper_create(r0, shapes, &o, &s0) == XDT_OK);
    virtual_now = 0;
    unsigned char *out = malloc(len), *in = malloc(len);
    memset(out, 0x5a, len);
    xdt_request *sr[16], *rr[16];
    for (int i = 0; i < n; i++) {
        CHECK(xdt_isend(s0, 1, (uint64_t)i, out, len, XDT_MEM_HOST, &sr[i]) == XDT_OK);
        CHECK(xdt_irecv(r1, 0, (uint64_t)i, in, len, XDT_MEM_HOST, &rr[i]) == XDT_OK);
    }
    const double per_msg_ns = (double)len * 8 / bps * 1e9;
    /* the shaper's own schedule for the last message: it leaves when the n - 1 before it have
     * been serialised, so the link carried n messages by its arrival less the latency */
    uint64_t depart = 0, arrive = 0;
    xdt_shaper_last_schedule(s0, 1, &depart, &arrive);
    CHECK_MSG(fabs((double)depart - (n - 1) * per_msg_ns) <= n, /* n truncations */
              "last departure %llu ns, want %.0f", (unsigned long long)depart,
              (n - 1) * per_msg_ns);
    const double got_bps = (double)n * len * 8 / (((double)arrive - latency_s * 1e9) / 1e9);
    CHECK_MSG(fabs(got_bps - bps) < 1e-6 * bps, "scheduled bandwidth %.6g bps, want %.6g", got_bps,
              bps);
    for (int i = 0; i < n; i++) {
        uint64_t want = (uint64_t)((i + 1) * per_msg_ns + latency_s * 1e9);
        bool done = false;
        xdt_completion c;
        virtual_now = want - 2000; /* 2 us early: not yet */
        s0->ops->progress(s0->ctx);
        CHECK(xdt_test(r1, rr[i], &done, &c) == XDT_OK);
        CHECK_MSG(!done, "message %d delivered before %llu ns", i, (unsigned long long)want);
        if (done) continue;
        virtual_now = want + 2000;
        s0->ops->progress(s0->ctx);
        CHECK(xdt_test(r1, rr[i], &done, &c) == XDT_OK);
        CHECK_MSG(done && c.bytes == len, "message %d not delivered at %llu ns", i,
                  (unsigned long long)want);
        CHECK(xdt_wait(s0, sr[i], 1000, "shaped send", &c) == XDT_OK && c.status == XDT_OK);
    }
    free(out);
    free(in);
    xdt_transport_destroy(s0);
    xdt_transport_destroy(r1);
    xdt_inproc_fabric_destroy(f);
}

static void check_jitter_keeps_order(void) {
    xdt_inproc_fabric *f = NULL;
    xdt_transport *r0 = NULL, *r1 = NULL, *s0 = NULL;
    xdt_inproc_fabric_create(2, &f);
    xdt_inproc_transport_create(f, 0, &r0);
    xdt_inproc_transport_create(f, 1, &r1);
    xdt_link_shape shapes[2] = {{0}, {0, 0.010, 0.005}};
    xdt_shaper_options o = {.now_ns = virtual_clock, .seed = 3};
    CHECK(xdt_shaper_create(r0, shapes, &o, &s0) == XDT_OK);
    virtual_now = 0;
    uint64_t prev = 0, lo = UINT64_MAX, hi = 0;
    char b = 1;
    xdt_request *r[64];
    for (int i = 0; i < 64; i++) {
        uint64_t dep, arr;
        CHECK(xdt_isend(s0, 1, 1, &b, 1, XDT_MEM_HOST, &r[i]) == XDT_OK);
        xdt_shaper_last_schedule(s0, 1, &dep, &arr);
        CHECK(arr >= prev && arr >= dep + 10000000ull && arr <= dep + 15000000ull);
        lo = arr < lo ? arr : lo;
        hi = arr > hi ? arr : hi;
        prev = arr;
    }
    CHECK(hi > lo); /* jitter did spread the arrivals */
    virtual_now = 20000000ull;
    s0->ops->progress(s0->ctx);
    for (int i = 0; i < 64; i++) {
        xdt_completion c;
        char in;
        CHECK(xdt_wait(s0, r[i], 1000, "send", &c) == XDT_OK);
        CHECK(xdt_recv(r1, 0, 1, &in, 1, NULL, 1000) == XDT_OK);
    }
    xdt_transport_destroy(s0);
    xdt_transport_destroy(r1);
    xdt_inproc_fabric_destroy(f);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void check_real_clock_never_early(void) {
    xdt_inproc_fabric *f = NULL;
    xdt_transport *r0 = NULL, *r1 = NULL, *s0 = NULL;
    xdt_inproc_fabric_create(2, &f);
    xdt_inproc_transport_create(f, 0, &r0);
    xdt_inproc_transport_create(f, 1, &r1);
    xdt_link_shape shapes[2] = {{0}, {1e9, 0.025, 0}};
    CHECK(xdt_shaper_create(r0, shapes, NULL, &s0) == XDT_OK);
    char b = 1, in = 0;
    double t0 = mono_s();
    CHECK(xdt_send(s0, 1, 1, &b, 1, 5000) == XDT_OK); /* completes when released */
    CHECK(xdt_recv(r1, 0, 1, &in, 1, NULL, 5000) == XDT_OK && in == 1);
    CHECK_MSG(mono_s() - t0 >= 0.025, "delivered after %.4f s, before the 25 ms latency",
              mono_s() - t0);
    xdt_transport_destroy(s0);
    xdt_transport_destroy(r1);
    xdt_inproc_fabric_destroy(f);
}

static void check_parsers(void) {
    double v = 0;
    CHECK(xdt_parse_bandwidth("1Gbps", &v) == XDT_OK && v == 1e9);
    CHECK(xdt_parse_bandwidth("100Mbps", &v) == XDT_OK && v == 1e8);
    CHECK(xdt_parse_bandwidth("2.5gbit", &v) == XDT_OK && v == 2.5e9);
    CHECK(xdt_parse_duration("25ms", &v) == XDT_OK && fabs(v - 0.025) < 1e-15);
    CHECK(xdt_parse_duration("200us", &v) == XDT_OK && fabs(v - 2e-4) < 1e-15);
    CHECK(xdt_parse_bandwidth("fast", &v) == XDT_ERR_CONFIG);
    CHECK(xdt_parse_bandwidth("10 parsecs", &v) == XDT_ERR_CONFIG);
    CHECK(xdt_parse_duration("-3ms", &v) == XDT_ERR_CONFIG);
}

int main(void) {
    check_parsers();
    check_schedule(100e6, 0.010, 6, 1 << 20);
    check_schedule(1e9, 0.025, 12, 1 << 20);
    check_jitter_keeps_order();
    check_real_clock_never_early();
    return test_exit_code("test_wan_shaper");
}
