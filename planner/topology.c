/* topology.c: reading and checking cluster files. */
#include "planner/topology.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/yaml_doc.h"
#include "devices/device.h" /* XDT_DEVICE_INDEX_MAX */

static int find_site(const xdt_topology *t, const char *name) {
    for (int i = 0; i < t->n_sites; i++)
        if (!strcmp(t->sites[i].name, name)) return i;
    return -1;
}

static xdt_status copy_name(xdt_yaml_map *m, const char *field, char *dst, size_t cap) {
    const char *s = NULL;
    xdt_status st = xdt_yaml_get_string(m, field, true, &s);
    if (st) return st;
    if (!*s || strlen(s) >= cap)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field '%s': empty or longer than %zu characters",
                        xdt_yaml_path(m->doc), xdt_yaml_line(m, field), field, cap - 1);
    snprintf(dst, cap, "%s", s);
    return XDT_OK;
}

static xdt_status add_nodes(xdt_topology *t, const xdt_device_catalog *cat, xdt_yaml_map *m,
                            int site, int *cap) {
    char name[64];
    const char *type = NULL;
    int64_t devices = 0, count = 1;
    double slowdown = 1, intra = 0;
    xdt_status st;
    if ((st = copy_name(m, "name", name, sizeof name - 8)) ||
        (st = xdt_yaml_get_string(m, "type", true, &type)) ||
        (st = xdt_yaml_get_int(m, "devices", true, 1, XDT_DEVICE_INDEX_MAX + 1, &devices)) ||
        (st = xdt_yaml_get_int(m, "count", false, 1, XDT_MAX_NODES, &count)) ||
        (st = xdt_yaml_get_double(m, "slowdown", false, 1, 1e6, &slowdown)) ||
        (st = xdt_yaml_get_double(m, "intra_node_gbps", false, 1e-6, 1e9, &intra)) ||
        (st = xdt_yaml_map_close(m)))
        return st;
    const xdt_device_type *dt = xdt_device_catalog_find(cat, type);
    if (!dt)
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s:%d: node '%s': unknown device type '%s' (not in the "
                        "device catalog)",
                        xdt_yaml_path(m->doc), xdt_yaml_line(m, "type"), name, type);
    if (slowdown != 1 && dt->backend != XDT_BACKEND_CPU)
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s:%d: node '%s': 'slowdown' emulates older devices on "
                        "cpu nodes only",
                        xdt_yaml_path(m->doc), xdt_yaml_line(m, "slowdown"), name);
    for (int64_t k = 0; k < count; k++) {
        if (t->n_nodes == XDT_MAX_NODES)
            return xdt_fail(XDT_ERR_CONFIG, "%s: more than %d nodes", xdt_yaml_path(m->doc),
                            XDT_MAX_NODES);
        if (t->total_devices > XDT_MAX_DEVICES - devices)
            return xdt_fail(XDT_ERR_CONFIG, "%s:%d: node '%s': more than %d devices in the cluster",
                            xdt_yaml_path(m->doc), xdt_yaml_line(m, "devices"), name,
                            XDT_MAX_DEVICES);
        if (t->n_nodes == *cap) {
            int ncap = *cap ? 2 * *cap : 16;
            xdt_topo_node *n = realloc(t->nodes, (size_t)ncap * sizeof *n);
            if (!n) return xdt_fail(XDT_ERR_NO_MEMORY, "topology: out of memory");
            t->nodes = n;
            *cap = ncap;
        }
        xdt_topo_node *n = &t->nodes[t->n_nodes++];
        memset(n, 0, sizeof *n);
        /* name was checked to leave room for the suffix */
        int w = count > 1 ? snprintf(n->name, sizeof n->name, "%.48s-%d", name, (int)k)
                          : snprintf(n->name, sizeof n->name, "%s", name);
        (void)w;
        n->site = site;
        n->type = dt;
        n->devices = (int)devices;
        n->intra_node_gbps = intra > 0 ? intra : dt->intra_node_gbps;
        n->slowdown = slowdown;
        t->total_devices += (int)devices;
    }
    return XDT_OK;
}

static xdt_status read_site(xdt_topology *t, const xdt_device_catalog *cat, xdt_yaml_map *m,
                            int *cap) {
    xdt_topo_site *s = &t->sites[t->n_sites];
    xdt_yaml_map net;
    xdt_yaml_seq nodes;
    xdt_status st;
    memset(s, 0, sizeof *s);
    s->net_gbps = 100;
    s->net_latency_us = 5;
    if ((st = copy_name(m, "name", s->name, sizeof s->name))) return st;
    if (find_site(t, s->name) >= 0)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: site '%s' is listed twice", xdt_yaml_path(m->doc),
                        xdt_yaml_line(m, "name"), s->name);
    if ((st = xdt_yaml_get_map(m, "network", false, &net)) ||
        (st = xdt_yaml_get_double(&net, "gbps", net.n_pairs > 0, 1e-6, 1e9, &s->net_gbps)) ||
        (st = xdt_yaml_get_double(&net, "latency_us", false, 0, 1e9, &s->net_latency_us)) ||
        (net.n_pairs && (st = xdt_yaml_map_close(&net))) ||
        (st = xdt_yaml_get_seq(m, "nodes", true, &nodes)) || (st = xdt_yaml_map_close(m)))
        return st;
    if (nodes.count == 0)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: site '%s' has no nodes", xdt_yaml_path(m->doc),
                        xdt_yaml_map_line(m), s->name);
    int site = t->n_sites++;
    for (int i = 0; i < nodes.count; i++) {
        xdt_yaml_map nm;
        if ((st = xdt_yaml_seq_map(&nodes, i, &nm)) || (st = add_nodes(t, cat, &nm, site, cap)))
            return st;
    }
    return XDT_OK;
}

static xdt_status read_link(xdt_topology *t, xdt_yaml_map *m) {
    const char *from = NULL, *to = NULL;
    xdt_topo_link l = {0};
    xdt_status st;
    if ((st = xdt_yaml_get_string(m, "from", true, &from)) ||
        (st = xdt_yaml_get_string(m, "to", true, &to)))
        return st;
    int line = xdt_yaml_line(m, "gbps");
    if ((st = xdt_yaml_get_double(m, "gbps", true, -1e12, 1e9, &l.gbps)) ||
        (st = xdt_yaml_get_double(m, "latency_ms", true, 0, 1e6, &l.latency_ms)) ||
        (st = xdt_yaml_get_double(m, "jitter_ms", false, 0, 1e6, &l.jitter_ms)) ||
        (st = xdt_yaml_map_close(m)))
        return st;
    if (!(l.gbps > 0))
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s:%d: link %s-%s: field 'gbps' must be positive, got "
                        "%g",
                        xdt_yaml_path(m->doc), line, from, to, l.gbps);
    int a = find_site(t, from), b = find_site(t, to);
    if (a < 0 || b < 0 || a == b)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: link %s-%s: %s", xdt_yaml_path(m->doc),
                        xdt_yaml_map_line(m), from, to,
                        a == b && a >= 0 ? "joins a site to itself" : "names an unknown site");
    l.a = a < b ? a : b;
    l.b = a < b ? b : a;
    if (xdt_topology_link(t, l.a, l.b))
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: link %s-%s is listed twice", xdt_yaml_path(m->doc),
                        xdt_yaml_map_line(m), from, to);
    t->links[t->n_links++] = l;
    return XDT_OK;
}

xdt_status xdt_topology_load(const char *path, const xdt_device_catalog *catalog,
                             xdt_topology *out) {
    xdt_yaml_doc *doc = NULL;
    xdt_status st = xdt_yaml_load(path, &doc);
    if (st) return st;
    xdt_topology t;
    memset(&t, 0, sizeof t);
    int cap = 0;
    xdt_yaml_map root;
    xdt_yaml_seq sites, links;
    if ((st = xdt_yaml_root_map(doc, &root)) ||
        (st = copy_name(&root, "name", t.name, sizeof t.name)) ||
        (st = xdt_yaml_get_seq(&root, "sites", true, &sites)) ||
        (st = xdt_yaml_get_seq(&root, "links", false, &links)) || (st = xdt_yaml_map_close(&root)))
        goto out;
    if (sites.count < 1 || sites.count > XDT_MAX_SITES) {
        st = xdt_fail(XDT_ERR_CONFIG, "%s: %d sites; between 1 and %d are supported", path,
                      sites.count, XDT_MAX_SITES);
        goto out;
    }
    for (int i = 0; i < sites.count && !st; i++) {
        xdt_yaml_map m;
        if (!(st = xdt_yaml_seq_map(&sites, i, &m))) st = read_site(&t, catalog, &m, &cap);
    }
    for (int i = 0; i < links.count && !st; i++) {
        xdt_yaml_map m;
        if (!(st = xdt_yaml_seq_map(&links, i, &m))) st = read_link(&t, &m);
    }
    for (int a = 0; a < t.n_sites && !st; a++)
        for (int b = a + 1; b < t.n_sites && !st; b++)
            if (!xdt_topology_link(&t, a, b))
                st = xdt_fail(XDT_ERR_CONFIG,
                              "%s: sites '%s' and '%s' have no link between "
                              "them",
                              path, t.sites[a].name, t.sites[b].name);
    if (!st && !(t.device_node = malloc(sizeof(int) * (size_t)(t.total_devices + 1))))
        st = xdt_fail(XDT_ERR_NO_MEMORY, "topology: out of memory");
    for (int n = 0, d = 0; !st && n < t.n_nodes; n++)
        for (int k = 0; k < t.nodes[n].devices; k++)
            t.device_node[d++] = n;
out:
    xdt_yaml_destroy(doc);
    if (st) {
        free(t.nodes);
        free(t.device_node);
        return st;
    }
    *out = t;
    return XDT_OK;
}

void xdt_topology_free(xdt_topology *t) {
    if (!t) return;
    free(t->nodes);
    free(t->device_node);
    t->nodes = NULL;
    t->device_node = NULL;
    t->n_nodes = 0;
}

const xdt_topo_link *xdt_topology_link(const xdt_topology *t, int site_a, int site_b) {
    int a = site_a < site_b ? site_a : site_b, b = site_a < site_b ? site_b : site_a;
    for (int i = 0; i < t->n_links; i++)
        if (t->links[i].a == a && t->links[i].b == b) return &t->links[i];
    return NULL;
}

void xdt_topology_node_path(const xdt_topology *t, int na, int nb, double *gbps,
                            double *latency_ms) {
    const xdt_topo_node *a = &t->nodes[na], *b = &t->nodes[nb];
    if (na == nb) {
        *gbps = a->intra_node_gbps * 8; /* the catalog gives GB/s */
        *latency_ms = 0;
    } else if (a->site == b->site) {
        *gbps = t->sites[a->site].net_gbps;
        *latency_ms = t->sites[a->site].net_latency_us * 1e-3;
    } else {
        const xdt_topo_link *l = xdt_topology_link(t, a->site, b->site);
        *gbps = l->gbps;
        *latency_ms = l->latency_ms;
    }
}
