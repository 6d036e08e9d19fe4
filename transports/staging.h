/* staging.h: a transport layer for device memory the inner transport cannot read (Debian's UCX
 * has no CUDA or ROCm support): sends copy the device buffer into a pinned host buffer and send
 * that; receives land in a pinned host buffer and are copied to the device buffer when they
 * complete. The device side is reached only through the copier the caller supplies (the device
 * backend's copies), so transports never include device code. Host memory passes straight
 * through. Pinned buffers come from a pool allocated up front. */
#ifndef XDT_STAGING_H
#define XDT_STAGING_H

#include "transports/transport.h"

typedef struct xdt_device_copier {
    void *ctx;
    xdt_mem_type mem; /* the device memory type these copies reach */
    xdt_status (*to_host)(void *ctx, void *host, const void *device, size_t bytes);
    xdt_status (*to_device)(void *ctx, void *device, const void *host, size_t bytes);
    xdt_status (*alloc_pinned)(void *ctx, size_t bytes, void **out);
    void (*free_pinned)(void *ctx, void *ptr);
} xdt_device_copier;

/* Wraps `inner` (which the layer then owns). Staged operations may be `slots` at a time, each of
 * at most max_bytes; more in flight is an error, not a stall. */
xdt_status xdt_staging_create(xdt_transport *inner, const xdt_device_copier *copier, int slots,
                              size_t max_bytes, xdt_transport **out);

#endif
