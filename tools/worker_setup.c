/* worker_setup.c: bootstrap, UCX, WAN shaping, the rank's plan and devices for `xdt worker`. */
#include "tools/worker_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "transports/wan_shaper.h"
#ifdef XDT_HAVE_UCX
#include "transports/ucx/ucx_transport.h"
#endif

#ifdef XDT_HAVE_UCX /* the two steps of connecting that need the transport */
/* The job id every rank agrees on: rank 0 draws it and publishes it in the store. */
static xdt_status agree_job_id(xdt_worker_link *w, int timeout_ms) {
    if (w->env.rank == 0) {
        FILE *f = fopen("/dev/urandom", "rb");
        uint64_t id = 0;
        const bool ok = f && fread(&id, sizeof id, 1, f) == 1;
        if (f) fclose(f);
        if (!ok) return xdt_fail(XDT_ERR_IO, "worker: cannot read /dev/urandom for the job id");
        xdt_status st = xdt_store_set(w->store, "xdt/job_id", &id, sizeof id);
        if (st) return st;
    }
    size_t len = 0;
    return xdt_store_get(w->store, "xdt/job_id", &w->job_id, sizeof w->job_id, &len, timeout_ms);
}

static xdt_status shape_links(const xdt_loaded_plan *plan, xdt_worker_link *w) {
    const int me = w->env.rank, R = plan->ranks;
    xdt_link_shape *shapes = calloc((size_t)R, sizeof *shapes);
    if (!shapes) return xdt_fail(XDT_ERR_NO_MEMORY, "worker: out of memory");
    bool any = false;
    for (int g = 0; g < R; g++) {
        const int a = plan->rank[me].site_index, b = plan->rank[g].site_index;
        if (g == me || a == b) continue;
        const xdt_plan_site_link *l = xdt_plan_site_link_between(plan, a, b);
        if (!l) continue;
        shapes[g] = (xdt_link_shape){.bandwidth_bps = l->gbps * 1e9,
                                     .latency_s = l->latency_ms * 1e-3,
                                     .jitter_s = l->jitter_ms * 1e-3};
        any = true;
    }
    xdt_status st = XDT_OK;
    if (any) {
        xdt_shaper_options o = {.seed = w->job_id ^ (uint64_t)me};
        xdt_transport *shaped = NULL;
        st = xdt_shaper_create(w->t, shapes, &o, &shaped);
        if (!st) w->t = shaped;
    }
    free(shapes);
    return st;
}
#endif

xdt_status xdt_worker_connect(const xdt_loaded_plan *plan, const char *tls, bool emulate_wan,
                              int timeout_ms, xdt_worker_link *out) {
    xdt_worker_link w = {0};
    xdt_status st = xdt_bootstrap_env_read(&w.env);
    if (st) return st;
    if (w.env.world_size != plan->ranks)
        return xdt_fail(XDT_ERR_CONFIG,
                        "worker: %s gives a world of %d ranks; the plan has %d (%d replicas x %d "
                        "stages)",
                        w.env.rank_var, w.env.world_size, plan->ranks, plan->replicas,
                        plan->stages);
#ifndef XDT_HAVE_UCX
    (void)tls;
    (void)emulate_wan;
    (void)timeout_ms;
    (void)out;
    return xdt_fail(XDT_ERR_UNSUPPORTED, "worker: this build has no UCX transport");
#else
    if ((st = xdt_store_open(&w.env, timeout_ms, &w.store))) return st;
    xdt_ucx_options o = {.tls = !strcmp(tls, "shm") ? "posix,sysv,cma,self" : "tcp,self"};
    if ((st = agree_job_id(&w, timeout_ms)) ||
        (st = xdt_ucx_transport_create(w.env.rank, w.env.world_size, &o, &w.t)) ||
        (st = xdt_store_connect_transport(w.store, w.t, timeout_ms)) ||
        (emulate_wan && (st = shape_links(plan, &w)))) {
        xdt_worker_disconnect(&w);
        return st;
    }
    *out = w;
    return XDT_OK;
#endif
}

void xdt_worker_disconnect(xdt_worker_link *w) {
    xdt_transport_destroy(w->t);
    xdt_store_close(w->store);
    memset(w, 0, sizeof *w);
}

/* A codec spec from the plan's name; gradients of all-reduces keep an error-feedback residual. */
static xdt_status codec_spec(const char *name, bool error_feedback, xdt_codec_spec *out) {
    char text[32];
    const bool lossy = name[0] && strcmp(name, "none") && strcmp(name, "zstd");
    snprintf(text, sizeof text, "%s%s", name[0] ? name : "none",
             error_feedback && lossy ? "+ef" : "");
    return xdt_codec_parse(text, out);
}

/* A rank's memory type from its plan backend. */
static xdt_status rank_mem(const xdt_loaded_plan *plan, int rank, xdt_mem_type *out) {
    const char *b = plan->rank[rank].backend;
    if (!strcmp(b, "cpu"))
        *out = XDT_MEM_HOST;
    else if (!strcmp(b, "cuda"))
        *out = XDT_MEM_CUDA;
    else if (!strcmp(b, "hip"))
        *out = XDT_MEM_HIP;
    else
        return xdt_fail(XDT_ERR_CONFIG,
                        "worker: the plan puts rank %d on backend '%s' (%s); expected cpu, cuda or "
                        "hip",
                        rank, b, plan->rank[rank].device_type);
    return XDT_OK;
}

xdt_status xdt_worker_device_name(const xdt_loaded_plan *plan, int rank, char *out, size_t cap) {
    xdt_mem_type mem;
    xdt_status st = rank_mem(plan, rank, &mem);
    if (st) return st;
    if (mem == XDT_MEM_HOST)
        snprintf(out, cap, "cpu");
    else
        snprintf(out, cap, "%s:%d", plan->rank[rank].backend, plan->rank[rank].device);
    return XDT_OK;
}

/* Every rank's device: memory type, node (ranks of one site and node name share an index) and
 * device index on the node. */
static xdt_status rank_devices(const xdt_loaded_plan *plan, xdt_rank_device *device_of) {
    for (int g = 0; g < plan->ranks; g++) {
        const xdt_plan_rank *r = &plan->rank[g];
        xdt_status st = rank_mem(plan, g, &device_of[g].mem);
        if (st) return st;
        device_of[g].index = r->device;
        device_of[g].node = g;
        for (int e = 0; e < g; e++)
            if (!strcmp(plan->rank[e].site, r->site) && !strcmp(plan->rank[e].node, r->node)) {
                device_of[g].node = device_of[e].node;
                break;
            }
    }
    return XDT_OK;
}

xdt_status xdt_worker_rank_plan(const xdt_loaded_plan *plan, int rank, uint64_t job_id,
                                int *site_of, xdt_rank_device *device_of, xdt_rank_plan *out) {
    if (rank < 0 || rank >= plan->ranks)
        return xdt_fail(XDT_ERR_CONFIG, "worker: rank %d outside the plan's %d ranks", rank,
                        plan->ranks);
    if (plan->chunks > XDT_EXEC_MAX_CHUNKS)
        return xdt_fail(XDT_ERR_CONFIG, "worker: %d chunks per rank; the runtime runs up to %d",
                        plan->chunks, XDT_EXEC_MAX_CHUNKS);
    const xdt_plan_rank *r = &plan->rank[rank];
    const int P = plan->stages, d = r->replica, p = r->pipeline_rank;
    xdt_rank_plan rp = {
        .model = plan->model,
        .replica = d,
        .replicas = plan->replicas,
        .pipeline_rank = p,
        .stages = P,
        .chunks = plan->chunks,
        .global_batch = plan->global_batch,
        .seq = plan->seq,
        .microbatch = plan->microbatch,
        .replica_microbatches = plan->replica_microbatches[d],
        .schedule = plan->costs.schedules[d],
        .slowdown = r->slowdown,
        .site_of = site_of,
        .job_id = job_id,
        .device_of = device_of,
    };
    for (int e = 0; e < d; e++)
        rp.replica_first_microbatch += plan->replica_microbatches[e];
    for (int v = 0; v < plan->chunks; v++) {
        rp.units[v][0] = r->units[v][0];
        rp.units[v][1] = r->units[v][1];
    }
    for (int g = 0; g < plan->ranks; g++)
        site_of[g] = plan->rank[g].site_index;
    /* a link's codec is listed on its upstream rank: ours for what we send on, the previous
     * rank's for the gradients we send back */
    const int prev = d * P + (p + P - 1) % P;
    xdt_status st;
    if ((st = rank_devices(plan, device_of)) ||
        (st = codec_spec(r->link_codec, false, &rp.codec_next)) ||
        (st = codec_spec(plan->rank[prev].link_codec, false, &rp.codec_prev)) ||
        (st = codec_spec(plan->dp_codec[p], true, &rp.dp_codec)) ||
        (st = codec_spec(plan->tied_codec, false, &rp.tied_codec)))
        return st;
    rp.device_index = device_of[rank].index;
    *out = rp;
    return XDT_OK;
}

xdt_status xdt_worker_device_choose(const char *planned, const char *asked, int rank, char *out,
                                    size_t cap, int *index) {
    const char *colon = strchr(planned, ':');
    const size_t backend_len = colon ? (size_t)(colon - planned) : strlen(planned);
    bool ok = strlen(asked) >= backend_len && strncmp(asked, planned, backend_len) == 0;
    long n = 0;
    if (ok) {
        const char *rest = asked + backend_len;
        if (!colon) { /* a cpu rank: only "cpu" */
            ok = *rest == '\0';
        } else if (*rest) { /* ":N" (bare "cuda" is GPU 0) */
            char *end = NULL;
            ok = rest[0] == ':' && rest[1] >= '0' && rest[1] <= '9';
            if (ok) n = strtol(rest + 1, &end, 10);
            ok = ok && *end == '\0' && n <= XDT_DEVICE_INDEX_MAX;
        }
    }
    if (!ok)
        return xdt_fail(XDT_ERR_CONFIG,
                        "rank %d: --device %s: the plan puts this rank on %s; expected %.*s%s",
                        rank, asked, planned, (int)backend_len, planned,
                        colon ? " or <backend>:N of that backend" : "");
    if (colon) {
        snprintf(out, cap, "%.*s:%ld", (int)backend_len, planned, n); /* canonical: cuda:N */
        *index = (int)n;
    } else {
        snprintf(out, cap, "%s", planned);
    }
    return XDT_OK;
}
