/* device_catalog.h: what the planner knows of each device type (configs/devices.yaml): backend,
 * memory, peak TFLOP/s per dtype, memory and intra-node bandwidth, and the figures' source. */
#ifndef XDT_DEVICE_CATALOG_H
#define XDT_DEVICE_CATALOG_H

#include "core/status.h"

#define XDT_MAX_DEVICE_TYPES 64

typedef enum xdt_backend_kind {
    XDT_BACKEND_CPU = 0,
    XDT_BACKEND_CUDA = 1,
    XDT_BACKEND_HIP = 2,
} xdt_backend_kind;

typedef struct xdt_device_type {
    char name[32];
    xdt_backend_kind backend;
    double memory_gib;
    double tflops_fp32, tflops_tf32, tflops_bf16;
    double memory_gbps, intra_node_gbps;
    char source[160];
} xdt_device_type;

typedef struct xdt_device_catalog {
    xdt_device_type types[XDT_MAX_DEVICE_TYPES];
    int count;
} xdt_device_catalog;

/* Loads a catalog file; every field is required and positive; errors name file, line, field. */
xdt_status xdt_device_catalog_load(const char *path, xdt_device_catalog *out);

/* The type called `name`, or NULL. */
const xdt_device_type *xdt_device_catalog_find(const xdt_device_catalog *c, const char *name);

#endif
