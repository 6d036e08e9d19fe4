/* transport.h: the transport interface: non-blocking, endpoint based, tagged messages between
 * ranks (the shape of NCCL's network plugin and UCX's _nbx calls). A backend is a const table
 * of function pointers plus a context. Rank r talks to peers by rank after connect(); isend and
 * irecv return a request that test() completes; progress() drives the backend; wait() blocks
 * (without spinning a core) until a request completes, the peer fails, or a timeout passes.
 *
 * Tags: 48 bits of user tag (see XDT_TAG_BITS); a receive matches a message with the same source
 * rank and the same tag. Messages between one pair with one tag arrive in the order sent.
 * Memory: host and pinned host buffers are read directly; device memory that a backend cannot
 * read must be staged by the caller through pinned host memory (backends say what they read). */
#ifndef XDT_TRANSPORT_H
#define XDT_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "devices/mem_type.h"

#define XDT_TAG_BITS  48
#define XDT_TAG_MASK  ((UINT64_C(1) << XDT_TAG_BITS) - 1)
#define XDT_MAX_RANKS 65535
/* How long a rank waits on a silent peer unless configured otherwise. */
#define XDT_DEFAULT_TIMEOUT_MS 30000

typedef struct xdt_request xdt_request;

/* What a finished request reports. */
typedef struct xdt_completion {
    xdt_status status; /* XDT_OK, or why it failed (peer gone, message too long, cancelled) */
    size_t bytes;      /* bytes received (receives) or sent */
} xdt_completion;

typedef struct xdt_transport_ops {
    const char *name;
    void (*destroy)(void *ctx);
    /* The opaque address peers need to connect to this rank (exchanged by the bootstrap). */
    xdt_status (*local_address)(void *ctx, void *buf, size_t cap, size_t *len);
    xdt_status (*connect)(void *ctx, int peer, const void *addr, size_t len);
    /* Whether the backend reads buffers of this memory type directly. */
    bool (*can_access)(void *ctx, xdt_mem_type mem);
    /* `mem` is where buf lives; can_access(mem) was checked by the caller */
    xdt_status (*isend)(void *ctx, int peer, uint64_t tag, const void *buf, size_t len,
                        xdt_mem_type mem, xdt_request **req);
    xdt_status (*irecv)(void *ctx, int peer, uint64_t tag, void *buf, size_t cap, xdt_mem_type mem,
                        xdt_request **req);
    /* Sets *done; when done, fills *out and releases the request. */
    xdt_status (*test)(void *ctx, xdt_request *req, bool *done, xdt_completion *out);
    /* Cancels and releases an unfinished request. */
    void (*cancel)(void *ctx, xdt_request *req);
    /* Makes progress on outstanding operations; returns the number of events handled. */
    int (*progress)(void *ctx);
    /* Sleeps until the backend may have work, at most timeout_ms (optional slot: NULL means the
     * wrapper naps briefly between progress calls). */
    xdt_status (*block)(void *ctx, int timeout_ms);
    /* Marks a peer failed: its outstanding and future operations fail (optional). */
    void (*fail_peer)(void *ctx, int peer, const char *why);
    /* Makes a thread sleeping in block() return soon, or the next block() return at once;
     * the one call any thread may make (optional: without it block() naps briefly). */
    void (*wake)(void *ctx);
} xdt_transport_ops;

typedef struct xdt_transport {
    const xdt_transport_ops *ops;
    void *ctx;
    int rank, world_size;
    char name[32];
} xdt_transport;

/* Wakes the thread that drives the transport out of block() (from any thread). */
void xdt_transport_wake(xdt_transport *t);

/* Closes the transport and everything it holds; NULL is a no-op. */
void xdt_transport_destroy(xdt_transport *t);

/* Non-blocking send/receive with argument checks (peer in range and not self, tag within
 * XDT_TAG_BITS, memory readable by the backend). Errors name the peer and the tag. */
xdt_status xdt_isend(xdt_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                     xdt_mem_type mem, xdt_request **req);
xdt_status xdt_irecv(xdt_transport *t, int peer, uint64_t tag, void *buf, size_t cap,
                     xdt_mem_type mem, xdt_request **req);

/* Polls a request once (with progress). */
xdt_status xdt_test(xdt_transport *t, xdt_request *req, bool *done, xdt_completion *out);

/* Waits for a request to finish, at most timeout_ms (< 0: forever). On timeout the request is
 * cancelled and XDT_ERR_TIMEOUT is returned with an error naming `what` (e.g. "recv from rank 2
 * tag 0x...") . The waiting thread sleeps in the backend between events. */
xdt_status xdt_wait(xdt_transport *t, xdt_request *req, int timeout_ms, const char *what,
                    xdt_completion *out);

/* For a thread that drives the transport itself: one progress round (returns events handled),
 * a sleep until the backend may have work (at most timeout_ms, or until xdt_transport_wake),
 * and cancelling an unfinished request. */
int xdt_transport_progress(xdt_transport *t);
xdt_status xdt_transport_block(xdt_transport *t, int timeout_ms);
void xdt_cancel(xdt_transport *t, xdt_request *req);

/* Blocking conveniences: send or receive one message, waiting at most timeout_ms. */
xdt_status xdt_send(xdt_transport *t, int peer, uint64_t tag, const void *buf, size_t len,
                    int timeout_ms);
xdt_status xdt_recv(xdt_transport *t, int peer, uint64_t tag, void *buf, size_t cap,
                    size_t *received, int timeout_ms);

#endif
