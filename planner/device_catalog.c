/* device_catalog.c: reading configs/devices.yaml. */
#include "planner/device_catalog.h"

#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/yaml_doc.h"

static xdt_status read_type(xdt_yaml_map *m, const char *name, xdt_device_type *t) {
    const char *backend = NULL, *source = NULL;
    const double big = 1e9;
    xdt_status st;
    memset(t, 0, sizeof *t);
    if (strlen(name) >= sizeof t->name)
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: device type name '%s' is too long",
                        xdt_yaml_path(m->doc), xdt_yaml_map_line(m), name);
    snprintf(t->name, sizeof t->name, "%s", name);
    if ((st = xdt_yaml_get_string(m, "backend", true, &backend)) ||
        (st = xdt_yaml_get_double(m, "memory_gib", true, 1e-3, big, &t->memory_gib)) ||
        (st = xdt_yaml_get_double(m, "tflops_fp32", true, 1e-6, big, &t->tflops_fp32)) ||
        (st = xdt_yaml_get_double(m, "tflops_tf32", true, 1e-6, big, &t->tflops_tf32)) ||
        (st = xdt_yaml_get_double(m, "tflops_bf16", true, 1e-6, big, &t->tflops_bf16)) ||
        (st = xdt_yaml_get_double(m, "memory_gbps", true, 1e-3, big, &t->memory_gbps)) ||
        (st = xdt_yaml_get_double(m, "intra_node_gbps", true, 1e-3, big, &t->intra_node_gbps)) ||
        (st = xdt_yaml_get_string(m, "source", true, &source)) || (st = xdt_yaml_map_close(m)))
        return st;
    if (!strcmp(backend, "cpu"))
        t->backend = XDT_BACKEND_CPU;
    else if (!strcmp(backend, "cuda"))
        t->backend = XDT_BACKEND_CUDA;
    else if (!strcmp(backend, "hip"))
        t->backend = XDT_BACKEND_HIP;
    else
        return xdt_fail(XDT_ERR_CONFIG, "%s:%d: field 'backend': '%s' is not cpu, cuda or hip",
                        xdt_yaml_path(m->doc), xdt_yaml_line(m, "backend"), backend);
    snprintf(t->source, sizeof t->source, "%s", source);
    return XDT_OK;
}

xdt_status xdt_device_catalog_load(const char *path, xdt_device_catalog *out) {
    xdt_yaml_doc *doc = NULL;
    xdt_status st = xdt_yaml_load(path, &doc);
    if (st) return st;
    xdt_yaml_map root, devices;
    xdt_device_catalog c = {0};
    if ((st = xdt_yaml_root_map(doc, &root)) ||
        (st = xdt_yaml_get_map(&root, "devices", true, &devices)) ||
        (st = xdt_yaml_map_close(&root)))
        goto out;
    for (int i = 0; i < devices.n_pairs && !st; i++) {
        const char *name = NULL;
        xdt_yaml_map m;
        if ((st = xdt_yaml_map_entry(&devices, i, &name, &m))) break;
        if (c.count == XDT_MAX_DEVICE_TYPES) {
            st = xdt_fail(XDT_ERR_CONFIG, "%s: more than %d device types", path,
                          XDT_MAX_DEVICE_TYPES);
            break;
        }
        if (xdt_device_catalog_find(&c, name)) {
            st = xdt_fail(XDT_ERR_CONFIG, "%s:%d: device type '%s' is listed twice", path,
                          xdt_yaml_map_line(&m), name);
            break;
        }
        st = read_type(&m, name, &c.types[c.count]);
        if (!st) c.count++;
    }
    if (!st) *out = c;
out:
    xdt_yaml_destroy(doc);
    return st;
}

const xdt_device_type *xdt_device_catalog_find(const xdt_device_catalog *c, const char *name) {
    for (int i = 0; i < c->count; i++)
        if (!strcmp(c->types[i].name, name)) return &c->types[i];
    return NULL;
}
