/* ucx_transport.h: the UCX transport (UCP tag matching over tcp, shared memory, ...). One UCP
 * worker per rank, one endpoint per peer, peer failures reported through UCX's error handling,
 * and waiting through the worker's event fd so an idle rank sleeps instead of spinning. */
#ifndef XDT_UCX_TRANSPORT_H
#define XDT_UCX_TRANSPORT_H

#include "transports/transport.h"

typedef struct xdt_ucx_options {
    /* UCX transports to use, e.g. "tcp" or "posix,sysv,cma,self" (what UCX_TLS takes); NULL
     * keeps UCX_TLS from the environment or UCX's default. With a network transport among them
     * (tcp, ib) a dead peer is reported by UCX at once; shared memory alone has no failure
     * detection in UCX, and a dead peer is found by the waiting call's timeout. */
    const char *tls;
    int max_requests; /* outstanding requests this rank may hold; 0 = 4096 */
    /* UCX's keepalive on idle endpoints (network transports): how often a quiet link is probed
     * so a dead peer is noticed even while nobody waits on it; 0 = 5000 ms */
    int heartbeat_ms;
} xdt_ucx_options;

/* Opens rank `rank` of `world_size`. Connect peers with the transport's connect() using the
 * addresses their local_address() gave (the bootstrap carries them). */
xdt_status xdt_ucx_transport_create(int rank, int world_size, const xdt_ucx_options *opts,
                                    xdt_transport **out);

#endif
