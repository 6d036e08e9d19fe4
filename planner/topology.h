/* topology.h: a cluster as the planner sees it (configs/clusters/NAME.yaml): sites, each with an
 * intra-site network and nodes of devices of catalog types, and the links between sites
 * (bandwidth, one-way latency, jitter). A cpu node may carry `slowdown: F` to emulate an older
 * device generation on one machine. */
#ifndef XDT_TOPOLOGY_H
#define XDT_TOPOLOGY_H

#include "core/status.h"
#include "planner/device_catalog.h"

typedef struct xdt_topo_site {
    char name[64];
    double net_gbps, net_latency_us; /* between nodes of the site */
} xdt_topo_site;

typedef struct xdt_topo_node {
    char name[64];
    int site; /* index into sites */
    const xdt_device_type *type;
    int devices; /* devices on the node */
    double intra_node_gbps;
    double slowdown; /* >= 1; compute is stretched by this factor */
} xdt_topo_node;

typedef struct xdt_topo_link {
    int a, b; /* site indices, a < b */
    double gbps, latency_ms, jitter_ms;
} xdt_topo_link;

#define XDT_MAX_SITES   16
#define XDT_MAX_NODES   4096
#define XDT_MAX_DEVICES (1 << 20) /* in the whole cluster */

typedef struct xdt_topology {
    char name[64];
    xdt_topo_site sites[XDT_MAX_SITES];
    int n_sites;
    xdt_topo_node *nodes;
    int n_nodes, total_devices;
    int *device_node; /* flat device index -> its node; node n's devices follow node n - 1's */
    xdt_topo_link links[XDT_MAX_SITES * (XDT_MAX_SITES - 1) / 2];
    int n_links;
} xdt_topology;

/* Loads and checks a cluster file against the catalog: unknown device types, non-positive
 * figures, duplicate names and sites with no link between them are errors naming file, line and
 * field. Nodes with `count: K` are expanded into K nodes named NAME-0..K-1. */
xdt_status xdt_topology_load(const char *path, const xdt_device_catalog *catalog,
                             xdt_topology *out);
void xdt_topology_free(xdt_topology *t);

/* The path between the devices of two nodes: Gbit/s and one-way latency (ms). The same node is
 * its intra-node link, the same site the site's network, otherwise the sites' WAN link. */
void xdt_topology_node_path(const xdt_topology *t, int node_a, int node_b, double *gbps,
                            double *latency_ms);

/* The link between two different sites (always present after a successful load). */
const xdt_topo_link *xdt_topology_link(const xdt_topology *t, int site_a, int site_b);

#endif
