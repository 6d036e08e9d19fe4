/* inproc_transport.h: the in-process transport: ranks are threads of one process sharing a
 * fabric. For unit tests of the layers above the transport (codecs, shaper, collectives); real
 * runs use UCX. Messages are copied at send, so a send completes at once. */
#ifndef XDT_INPROC_TRANSPORT_H
#define XDT_INPROC_TRANSPORT_H

#include "transports/transport.h"

typedef struct xdt_inproc_fabric xdt_inproc_fabric;

/* A fabric joining world_size ranks. Destroy it after every transport on it. */
xdt_status xdt_inproc_fabric_create(int world_size, xdt_inproc_fabric **out);
void xdt_inproc_fabric_destroy(xdt_inproc_fabric *fabric);

/* The transport of `rank` on the fabric (already connected to every other rank). Destroying it
 * makes the other ranks' operations with it fail, as a dead peer would. */
xdt_status xdt_inproc_transport_create(xdt_inproc_fabric *fabric, int rank, xdt_transport **out);

#endif
