/* test_staging.c: the staging layer with a copier standing in for a device backend's copies:
 * buffers labelled HIP memory travel through pinned host buffers (counted copies), host buffers
 * pass straight through, and oversize or too many staged operations fail cleanly. The copier
 * copies host memory (there is no GPU here); what is tested is the layer's routing. */
#include <string.h>

#include "tests/unit/test_util.h"
#include "transports/inproc/inproc_transport.h"
#include "transports/staging.h"

static int to_host_calls, to_device_calls, pinned_live;

static xdt_status to_host(void *ctx, void *host, const void *device, size_t n) {
    (void)ctx;
    to_host_calls++;
    memcpy(host, device, n);
    return XDT_OK;
}
static xdt_status to_device(void *ctx, void *device, const void *host, size_t n) {
    (void)ctx;
    to_device_calls++;
    memcpy(device, host, n);
    return XDT_OK;
}
static xdt_status alloc_pinned(void *ctx, size_t n, void **out) {
    (void)ctx;
    pinned_live++;
    *out = malloc(n);
    return *out ? XDT_OK : XDT_ERR_NO_MEMORY;
}
static void free_pinned(void *ctx, void *p) {
    (void)ctx;
    pinned_live--;
    free(p);
}

int main(void) {
    xdt_inproc_fabric *f = NULL;
    xdt_transport *i0 = NULL, *i1 = NULL, *s0 = NULL, *s1 = NULL;
    CHECK(xdt_inproc_fabric_create(2, &f) == XDT_OK);
    CHECK(xdt_inproc_transport_create(f, 0, &i0) == XDT_OK);
    CHECK(xdt_inproc_transport_create(f, 1, &i1) == XDT_OK);
    xdt_device_copier cp = {NULL, XDT_MEM_HIP, to_host, to_device, alloc_pinned, free_pinned};
    CHECK(xdt_staging_create(i0, &cp, 2, 4096, &s0) == XDT_OK);
    CHECK(xdt_staging_create(i1, &cp, 2, 4096, &s1) == XDT_OK);
    CHECK(pinned_live == 4);
    /* device -> device */
    float dev_out[512], dev_in[512];
    for (int i = 0; i < 512; i++)
        dev_out[i] = (float)i * 0.5f;
    memset(dev_in, 0, sizeof dev_in);
    xdt_request *sr = NULL, *rr = NULL;
    xdt_completion c;
    CHECK(xdt_irecv(s1, 0, 7, dev_in, sizeof dev_in, XDT_MEM_HIP, &rr) == XDT_OK);
    CHECK(xdt_isend(s0, 1, 7, dev_out, sizeof dev_out, XDT_MEM_HIP, &sr) == XDT_OK);
    CHECK(xdt_wait(s0, sr, 1000, "send", &c) == XDT_OK && c.status == XDT_OK);
    CHECK(xdt_wait(s1, rr, 1000, "recv", &c) == XDT_OK && c.status == XDT_OK &&
          c.bytes == sizeof dev_in);
    CHECK(!memcmp(dev_in, dev_out, sizeof dev_in));
    CHECK(to_host_calls == 1 && to_device_calls == 1);
    /* host memory passes through without copies */
    int a = 5, b = 0;
    CHECK(xdt_send(s0, 1, 8, &a, sizeof a, 1000) == XDT_OK);
    CHECK(xdt_recv(s1, 0, 8, &b, sizeof b, NULL, 1000) == XDT_OK && b == 5);
    CHECK(to_host_calls == 1 && to_device_calls == 1);
    /* too large for the staging buffers */
    static float big[2048];
    CHECK(xdt_isend(s0, 1, 9, big, sizeof big, XDT_MEM_HIP, &sr) == XDT_ERR_INVALID_ARG);
    /* more staged receives in flight than slots */
    xdt_request *r1 = NULL, *r2 = NULL, *r3 = NULL;
    CHECK(xdt_irecv(s1, 0, 10, dev_in, 16, XDT_MEM_HIP, &r1) == XDT_OK);
    CHECK(xdt_irecv(s1, 0, 11, dev_in, 16, XDT_MEM_HIP, &r2) == XDT_OK);
    CHECK(xdt_irecv(s1, 0, 12, dev_in, 16, XDT_MEM_HIP, &r3) == XDT_ERR_NO_MEMORY);
    s1->ops->cancel(s1->ctx, r1);
    s1->ops->cancel(s1->ctx, r2);
    CHECK(xdt_irecv(s1, 0, 12, dev_in, 16, XDT_MEM_HIP, &r3) == XDT_OK); /* slots came back */
    s1->ops->cancel(s1->ctx, r3);
    /* memory a copier does not reach is still refused */
    CHECK(xdt_isend(s0, 1, 13, dev_out, 16, XDT_MEM_CUDA, &sr) == XDT_ERR_UNSUPPORTED);
    xdt_transport_destroy(s0);
    xdt_transport_destroy(s1);
    CHECK(pinned_live == 0);
    xdt_inproc_fabric_destroy(f);
    return test_exit_code("test_staging");
}
