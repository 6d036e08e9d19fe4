/* test_topology.c: the device catalog and cluster files: the bundled ones load with the figures
 * written in them, and every kind of bad cluster file is refused with XDT_ERR_CONFIG. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "planner/topology.h"
#include "tests/unit/test_util.h"

static char root[1024];

static const char *cfg(const char *rel) {
    static char p[2048];
    snprintf(p, sizeof p, "%s/configs/%s", root, rel);
    return p;
}

static xdt_status load_text(const xdt_device_catalog *cat, const char *text) {
    char path[64];
    if (test_write_temp(text, path)) return XDT_ERR_IO;
    xdt_topology t;
    xdt_status st = xdt_topology_load(path, cat, &t);
    if (st == XDT_OK) xdt_topology_free(&t);
    unlink(path);
    return st;
}

int main(void) {
    const char *r = getenv("XDT_SOURCE_ROOT");
    snprintf(root, sizeof root, "%s", r ? r : ".");
    xdt_device_catalog cat;
    CHECK(xdt_device_catalog_load(cfg("devices.yaml"), &cat) == XDT_OK);
    const char *want[] = {"V100", "A100-40GB", "A100-80GB", "H100-SXM", "H200", "L40S",
                          "T4",   "RTX-3090",  "MI250X",    "MI300X",   "cpu"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK_MSG(xdt_device_catalog_find(&cat, want[i]), "catalog lacks %s", want[i]);
    const xdt_device_type *h100 = xdt_device_catalog_find(&cat, "H100-SXM");
    CHECK(h100 && h100->backend == XDT_BACKEND_CUDA && h100->memory_gib == 80 &&
          h100->tflops_bf16 > h100->tflops_tf32 && h100->source[0]);
    CHECK(xdt_device_catalog_find(&cat, "MI250X")->backend == XDT_BACKEND_HIP);

    xdt_topology t;
    CHECK(xdt_topology_load(cfg("clusters/two-dc-h100-a100.yaml"), &cat, &t) == XDT_OK);
    CHECK(t.n_sites == 2 && t.n_nodes == 8 && t.total_devices == 64 && t.n_links == 1);
    const xdt_topo_link *l = xdt_topology_link(&t, 1, 0);
    CHECK(l && l->gbps == 100 && l->latency_ms == 40 && l->jitter_ms == 1);
    CHECK(!strcmp(t.nodes[5].name, "west-1") && t.nodes[5].site == 1 &&
          !strcmp(t.nodes[5].type->name, "A100-80GB"));
    xdt_topology_free(&t);
    const char *bundled[] = {"clusters/local-two-sites.yaml", "clusters/mixed-generations.yaml",
                             "clusters/nvidia-amd.yaml"};
    for (size_t i = 0; i < 3; i++) {
        CHECK_MSG(xdt_topology_load(cfg(bundled[i]), &cat, &t) == XDT_OK, "%s", bundled[i]);
        xdt_topology_free(&t);
    }

    const char *good = "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, "
                       "devices: 2, slowdown: 2.5}\n";
    CHECK(load_text(&cat, good) == XDT_OK);
    const char *bad[] = {
        /* unknown device type */
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: B200, devices: 8}\n",
        /* non-positive bandwidth */
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 1}\n"
        "  - name: b\n    nodes:\n      - {name: m, type: cpu, devices: 1}\n"
        "links:\n  - {from: a, to: b, gbps: 0, latency_ms: 5}\n",
        /* two sites, no link */
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 1}\n"
        "  - name: b\n    nodes:\n      - {name: m, type: cpu, devices: 1}\n",
        /* link to an unknown site */
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 1}\n"
        "links:\n  - {from: a, to: z, gbps: 1, latency_ms: 5}\n",
        /* slowdown on a GPU, zero devices, unknown field, duplicate site, no nodes */
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: T4, devices: 1, "
        "slowdown: 2}\n",
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 0}\n",
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 1, "
        "colour: red}\n",
        "name: x\nsites:\n  - name: a\n    nodes:\n      - {name: n, type: cpu, devices: 1}\n"
        "  - name: a\n    nodes:\n      - {name: m, type: cpu, devices: 1}\n",
        "name: x\nsites:\n  - name: a\n    nodes: []\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_MSG(load_text(&cat, bad[i]) == XDT_ERR_CONFIG, "bad cluster %zu accepted", i);
    return test_exit_code("test_topology");
}
