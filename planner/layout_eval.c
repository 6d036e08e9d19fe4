/* layout_eval.c: what one layout (devices on a P x D grid, microbatch size, schedule kind)
 * costs: the replicas' microbatch counts, the codec on each link, the xdc extras, the shared
 * split, and the step from the simulator (or a closed-form estimate for ranking in the pruned
 * search). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "planner/solver_internal.h"

int xdt_solver_num_devices(const xdt_topology *t) {
    return t->total_devices;
}

int xdt_solver_node_of(const xdt_topology *t, int device) {
    if (device < 0 || device >= t->total_devices) return -1;
    if (t->device_node) return t->device_node[device];
    for (int n = 0; n < t->n_nodes; n++) {
        if (device < t->nodes[n].devices) return n;
        device -= t->nodes[n].devices;
    }
    return -1;
}

double xdt_model_ms_on(const xdt_solver_input *in, const xdt_topo_node *n, int mb) {
    xdt_stage_cost c;
    xdt_stage_cost_estimate(in->cfg, 0, xdt_gpt_num_units(in->cfg) - 1, mb, in->seq, 1, n->type,
                            n->slowdown, &in->cost, &c);
    return c.fwd_ms + c.bwd_ms;
}

static const xdt_topo_node *node_at(const xdt_topology *t, const xdt_solution *s, int rank) {
    return &t->nodes[s->node[rank]];
}

static bool crosses_sites(const xdt_topology *t, int na, int nb) {
    return t->nodes[na].site != t->nodes[nb].site;
}

/* The codec for `bytes`-sized messages from node a to node b under the input's codec mode. */
static xdt_link_codec codec_for(const xdt_solver_input *in, int na, int nb, double bytes) {
    const xdt_topology *t = in->topo;
    if (na == nb && in->codec != XDT_LINK_CODEC_AUTO) return XDT_LINK_CODEC_NONE;
    if (in->codec != XDT_LINK_CODEC_AUTO)
        return crosses_sites(t, na, nb) ? (xdt_link_codec)in->codec : XDT_LINK_CODEC_NONE;
    double gbps, lat;
    xdt_topology_node_path(t, na, nb, &gbps, &lat);
    /* lossy codecs only where bandwidth is scarce: between sites, or a site network slower
     * than XDT_LINK_CODEC_FAST_GBPS */
    if (!crosses_sites(t, na, nb) && gbps >= XDT_LINK_CODEC_FAST_GBPS) return XDT_LINK_CODEC_NONE;
    return xdt_link_codec_choose(bytes, gbps, t->nodes[na].type, t->nodes[nb].type);
}

/* Splits the replicas' M microbatches in proportion to their speed (largest remainders, at
 * least one each). */
static bool apportion(const xdt_solver_input *in, xdt_solution *s, int M) {
    const int D = s->replicas, P = s->stages;
    if (M < D) return false;
    double w[XDT_PLAN_MAX_RANKS], total = 0;
    const xdt_device_type *seen_type[16];
    double seen_slowdown[16], seen_speed[16];
    int n_seen = 0;
    for (int d = 0; d < D; d++) {
        w[d] = 0;
        for (int p = 0; p < P; p++) {
            const xdt_topo_node *n = node_at(in->topo, s, d * P + p);
            int k = 0; /* the speed of each (type, slowdown) is computed once */
            while (k < n_seen && !(seen_type[k] == n->type && seen_slowdown[k] == n->slowdown))
                k++;
            if (k == n_seen) {
                const double speed = 1 / xdt_model_ms_on(in, n, s->microbatch);
                if (n_seen == 16) {
                    w[d] += speed;
                    continue;
                }
                seen_type[k] = n->type;
                seen_slowdown[k] = n->slowdown;
                seen_speed[k] = speed;
                n_seen++;
            }
            w[d] += seen_speed[k];
        }
        total += w[d];
    }
    int given = 0;
    double rem[XDT_PLAN_MAX_RANKS];
    for (int d = 0; d < D; d++) {
        const double share = M * w[d] / total;
        s->replica_microbatches[d] = (int)floor(share + 1e-9);
        if (s->replica_microbatches[d] < 1) s->replica_microbatches[d] = 1;
        rem[d] = share - s->replica_microbatches[d];
        given += s->replica_microbatches[d];
    }
    while (given != M) { /* hand out (or take back) one at a time, largest remainder first */
        int pick = -1;
        for (int d = 0; d < D; d++) {
            if (given > M && s->replica_microbatches[d] <= 1) continue;
            if (pick < 0 || (given < M ? rem[d] > rem[pick] + 1e-12 : rem[d] < rem[pick] - 1e-12))
                pick = d;
        }
        if (pick < 0) return false;
        s->replica_microbatches[pick] += given < M ? 1 : -1;
        rem[pick] += given < M ? -1 : 1;
        given += given < M ? 1 : -1;
    }
    return true;
}

static xdt_status make_schedule(const xdt_solution *s, int d, xdt_schedule **out) {
    const int P = s->stages, M = s->replica_microbatches[d];
    switch (s->kind) {
    case XDT_SCHEDULE_GPIPE:
        return xdt_schedule_gpipe(P, M, out);
    case XDT_SCHEDULE_INTERLEAVED:
        return xdt_schedule_interleaved(P, M, s->chunks, out);
    case XDT_SCHEDULE_XDC:
        return xdt_schedule_xdc(P, M, s->extra, out);
    default:
        return xdt_schedule_1f1b(P, M, out);
    }
}

/* Distinct replicas for the split: (device type, slowdown, in-flight) per rank. Fills chain
 * (classes x P) and returns the class count, or -1 when a schedule fails or there are too many. */
static int split_classes(const xdt_solver_input *in, const xdt_solution *s,
                         xdt_chain_device *chain) {
    const int P = s->stages, D = s->replicas;
    int classes = 0;
    xdt_chain_device row[XDT_PLAN_MAX_RANKS];
    /* in-flight counts depend on the replica only through its microbatch count: kept for the
     * last two counts seen (apportioning gives at most a floor and a ceiling per speed) */
    int cached_m[2] = {-1, -1}, *inflight[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++)
        if (!(inflight[i] = malloc(sizeof(int) * (size_t)P))) {
            free(inflight[0]);
            return -1;
        }
    for (int d = 0; d < D; d++) {
        const int M = s->replica_microbatches[d];
        int slot = cached_m[0] == M ? 0 : cached_m[1] == M ? 1 : -1;
        if (slot < 0 && (s->kind == XDT_SCHEDULE_GPIPE || s->kind == XDT_SCHEDULE_1F1B)) {
            /* known without generating: GPipe holds all M, 1F1B's rank p at most P - p */
            slot = d % 2;
            for (int p = 0; p < P; p++)
                inflight[slot][p] = s->kind == XDT_SCHEDULE_GPIPE ? M : (P - p < M ? P - p : M);
            cached_m[slot] = M;
        }
        if (slot < 0) {
            slot = d % 2;
            xdt_schedule *sched = NULL;
            if (make_schedule(s, d, &sched) != XDT_OK) {
                classes = -1;
                break;
            }
            for (int p = 0; p < P; p++)
                inflight[slot][p] = xdt_schedule_max_in_flight(sched, p);
            xdt_schedule_destroy(sched);
            cached_m[slot] = M;
        }
        for (int p = 0; p < P; p++) {
            const xdt_topo_node *n = node_at(in->topo, s, d * P + p);
            /* per chunk, bounded by the rank's sets in flight; a chunk gets 1 / V of memory */
            row[p] = (xdt_chain_device){n->type, n->slowdown, inflight[slot][p], 1.0 / s->chunks};
        }
        int c = 0;
        for (; c < classes; c++)
            if (!memcmp(&chain[(size_t)c * P], row, sizeof(xdt_chain_device) * (size_t)P)) break;
        if (c == classes) {
            if (classes == 64) {
                classes = -1;
                break;
            }
            memcpy(&chain[(size_t)classes++ * P], row, sizeof(xdt_chain_device) * (size_t)P);
        }
    }
    free(inflight[0]);
    free(inflight[1]);
    return classes;
}

/* Per-rank figures of stage g (global) of replica d. */
static void stage_figures(const xdt_solver_input *in, const xdt_solution *s, int d, int g,
                          xdt_stage_cost *c) {
    const int rank = d * s->stages + g % s->stages;
    const xdt_topo_node *n = node_at(in->topo, s, rank);
    xdt_stage_cost_estimate(in->cfg, s->split.first[g], s->split.first[g + 1] - 1, s->microbatch,
                            in->seq, 1, n->type, n->slowdown, &in->cost, c);
}

/* The even split (for comparisons): S stages of U / S units, the remainder to the first ones;
 * each stage's time is its slowest replica's. Memory is checked by the simulation. */
static xdt_status even_split(const xdt_solver_input *in, xdt_solution *s) {
    const int S = s->stages * s->chunks, U = xdt_gpt_num_units(in->cfg);
    if (S > U) return XDT_ERR_CONFIG;
    memset(&s->split, 0, sizeof s->split);
    for (int g = 0, at = 0; g < S; g++) {
        s->split.first[g] = at;
        at += U / S + (g < U % S);
    }
    s->split.first[S] = U;
    for (int g = 0; g < S; g++)
        for (int d = 0; d < s->replicas; d++) {
            xdt_stage_cost c;
            stage_figures(in, s, d, g, &c);
            const double ms = c.fwd_ms + c.bwd_ms;
            if (ms > s->split.stage_ms[g]) s->split.stage_ms[g] = ms;
            if (ms > s->split.bottleneck_ms) s->split.bottleneck_ms = ms;
        }
    return XDT_OK;
}

static xdt_status split(const xdt_solver_input *in, xdt_solution *s, const xdt_eval_options *opt) {
    if (in->even_split) return even_split(in, s);
    const int P = s->stages;
    xdt_chain_device *chain = malloc(sizeof *chain * (size_t)64 * P);
    if (!chain) return XDT_ERR_NO_MEMORY;
    const int classes = split_classes(in, s, chain);
    xdt_status st = XDT_ERR_CONFIG;
    if (classes > 0) {
        /* interleaved: the P x V global stages, chunk v of rank p being stage v * P + p */
        const int S = P * s->chunks;
        xdt_chain_device *global = malloc(sizeof *global * (size_t)classes * S);
        if (global) {
            for (int c = 0; c < classes; c++)
                for (int g = 0; g < S; g++)
                    global[(size_t)c * S + g] = chain[(size_t)c * P + g % P];
            xdt_partition_request rq = {in->cfg, s->microbatch, in->seq,   global,
                                        S,       classes,       &in->cost, opt->fast_split};
            char why[200];
            st = xdt_partition_solve(&rq, &s->split, why, sizeof why);
            free(global);
        } else {
            st = XDT_ERR_NO_MEMORY;
        }
    }
    free(chain);
    return st;
}

/* The path between two ranks as the simulator wants it, with the codec for `bytes` messages. */
static xdt_sim_link sim_link(const xdt_solver_input *in, int na, int nb, xdt_link_codec c) {
    const xdt_topology *t = in->topo;
    double gbps, lat;
    xdt_topology_node_path(t, na, nb, &gbps, &lat);
    xdt_sim_link l = xdt_sim_link_from_gbps(gbps, lat);
    l.wire_ratio = xdt_link_codec_ratio(c);
    l.codec_ms_per_byte = xdt_link_codec_ms_per_byte(c, t->nodes[na].type, t->nodes[nb].type);
    return l;
}

static double boundary_bytes(const xdt_solver_input *in, int mb) {
    xdt_unit_info u;
    xdt_gpt_unit_info(in->cfg, 0, mb, in->seq, &u);
    return (double)u.boundary_bytes;
}

/* Gradient all-reduce per pipeline rank (ring over its replicas) and the tied embedding's
 * exchange between each replica's first and last ranks; records codecs and WAN bytes. */
static void reductions(const xdt_solver_input *in, xdt_solution *s, double *ar_ms, double *opt_ms) {
    const xdt_topology *t = in->topo;
    const int P = s->stages, D = s->replicas, S = P * s->chunks;
    *opt_ms = 0;
    for (int p = 0; p < P; p++) {
        double params = 0;
        for (int g = p; g < S; g += P) {
            xdt_stage_cost c;
            stage_figures(in, s, 0, g, &c);
            params += c.params;
        }
        for (int d = 0; d < D; d++) { /* AdamW reads p, g, m, v and writes p, m, v */
            const xdt_topo_node *n = node_at(t, s, d * P + p);
            const double ms = 28 * params / (n->type->memory_gbps * 1e6) * n->slowdown;
            *opt_ms = ms > *opt_ms ? ms : *opt_ms;
        }
        ar_ms[p] = 0;
        s->dp_codec[p] = XDT_LINK_CODEC_NONE;
        if (D > 1) {
            const double bytes = 4 * params, chunk = bytes / D;
            double gbps_min = 1e30, lat_max = 0;
            int slow_a = 0, slow_b = 0, crossing = 0;
            for (int d = 0; d < D; d++) {
                const int na = s->node[d * P + p], nb = s->node[((d + 1) % D) * P + p];
                double gbps, lat;
                xdt_topology_node_path(t, na, nb, &gbps, &lat);
                if (gbps < gbps_min) {
                    gbps_min = gbps;
                    slow_a = na;
                    slow_b = nb;
                }
                lat_max = lat > lat_max ? lat : lat_max;
                crossing += crosses_sites(t, na, nb);
            }
            const xdt_link_codec c = codec_for(in, slow_a, slow_b, chunk);
            s->dp_codec[p] = c;
            ar_ms[p] = 2.0 * (D - 1) *
                       (xdt_link_codec_message_ms(c, chunk, gbps_min, t->nodes[slow_a].type,
                                                  t->nodes[slow_b].type) +
                        lat_max);
            s->wan_bytes += crossing * 2.0 * (D - 1) * chunk * xdt_link_codec_ratio(c);
        }
    }
    s->tied_codec = XDT_LINK_CODEC_NONE;
    if (P > 1) {
        const double bytes = 4.0 * in->cfg->padded_vocab_size * in->cfg->n_embd;
        double worst = 0;
        for (int d = 0; d < D; d++) {
            const int na = s->node[d * P], nb = s->node[d * P + P - 1];
            const xdt_link_codec c = codec_for(in, na, nb, bytes);
            double gbps, lat;
            xdt_topology_node_path(t, na, nb, &gbps, &lat);
            const double ms =
                xdt_link_codec_message_ms(c, bytes, gbps, t->nodes[na].type, t->nodes[nb].type) +
                lat;
            if (ms > worst) {
                worst = ms;
                s->tied_codec = c;
            }
            if (crosses_sites(t, na, nb)) s->wan_bytes += 2 * bytes * xdt_link_codec_ratio(c);
        }
        ar_ms[0] += worst;
        ar_ms[P - 1] += worst;
    }
    /* then every rank sends its norm and loss sums to every other: with replicas everyone does
     * so after the all-reduce, so the farthest pair's latency is on the critical path (without,
     * the other ranks' sums were sent early and only rank 0's cross, while the pipeline refills) */
    if (D > 1) {
        bool used[XDT_MAX_SITES] = {false};
        double far = 0;
        for (int g = 0; g < s->ranks; g++) {
            const xdt_topo_node *n = &t->nodes[s->node[g]];
            used[n->site] = true;
            const double lat = t->sites[n->site].net_latency_us * 1e-3;
            far = lat > far ? lat : far;
        }
        for (int i = 0; i < t->n_links; i++)
            if (used[t->links[i].a] && used[t->links[i].b] && t->links[i].latency_ms > far)
                far = t->links[i].latency_ms;
        for (int p = 0; p < P; p++)
            ar_ms[p] += far;
    }
}

/* Identical replicas (devices, links, microbatches) are simulated once: a replica's key. */
static bool same_replica(const xdt_solver_input *in, const xdt_solution *s, int a, int b) {
    const int P = s->stages;
    if (s->replica_microbatches[a] != s->replica_microbatches[b]) return false;
    for (int p = 0; p < P; p++) {
        const xdt_topo_node *x = node_at(in->topo, s, a * P + p),
                            *y = node_at(in->topo, s, b * P + p);
        if (x->type != y->type || x->slowdown != y->slowdown) return false;
        if (s->link_codec[a * P + p] != s->link_codec[b * P + p]) return false;
        double g1, l1, g2, l2;
        const int q = (p + 1) % P;
        xdt_topology_node_path(in->topo, s->node[a * P + p], s->node[a * P + q], &g1, &l1);
        xdt_topology_node_path(in->topo, s->node[b * P + p], s->node[b * P + q], &g2, &l2);
        if (g1 != g2 || l1 != l2) return false;
    }
    return true;
}

void xdt_job_costs_free(xdt_job_costs *c) {
    if (!c) return;
    for (int d = 0; c->schedules && d < c->replicas; d++)
        xdt_schedule_destroy(c->schedules[d]);
    free(c->schedules);
    free(c->replica_of);
    free(c->fwd_ms);
    free(c->bwd_ms);
    free(c->boundary_bytes);
    free(c->static_bytes);
    free(c->activation_bytes);
    free(c->links);
    free(c->allreduce_ms);
    memset(c, 0, sizeof *c);
}

void xdt_job_costs_sim_input(const xdt_job_costs *c, xdt_sim_input *out) {
    memset(out, 0, sizeof *out);
    out->schedule = c->schedules[0];
    out->schedules = (const xdt_schedule *const *)c->schedules;
    out->replicas = c->replicas;
    out->fwd_ms = c->fwd_ms;
    out->bwd_ms = c->bwd_ms;
    out->boundary_bytes = c->boundary_bytes;
    out->static_bytes = c->static_bytes;
    out->activation_bytes = c->activation_bytes;
    out->links = c->links;
    out->allreduce_ms = c->allreduce_ms;
    out->opt_step_ms = c->opt_step_ms;
}

xdt_status xdt_job_costs_build(const xdt_solver_input *in, const xdt_solution *s0,
                               bool all_replicas, xdt_job_costs *out) {
    xdt_solution *s = malloc(sizeof *s); /* reductions() records codecs: work on a copy */
    if (!s) return xdt_fail(XDT_ERR_NO_MEMORY, "planner: out of memory");
    *s = *s0;
    const int P = s->stages, D = s->replicas, S = P * s->chunks;
    xdt_job_costs c = {0};
    c.replica_of = malloc(sizeof(int) * (size_t)D);
    c.allreduce_ms = calloc((size_t)P, sizeof(double));
    if (!c.replica_of || !c.allreduce_ms) goto oom;
    for (int d = 0; d < D; d++) {
        bool dup = false;
        for (int e = 0; !all_replicas && e < c.replicas && !dup; e++)
            dup = same_replica(in, s, c.replica_of[e], d);
        if (!dup) c.replica_of[c.replicas++] = d;
    }
    const int R = c.replicas * P;
    c.schedules = calloc((size_t)c.replicas, sizeof *c.schedules);
    c.fwd_ms = calloc((size_t)c.replicas * S, sizeof(double));
    c.bwd_ms = calloc((size_t)c.replicas * S, sizeof(double));
    c.boundary_bytes = calloc((size_t)c.replicas * S, sizeof(double));
    c.static_bytes = calloc((size_t)c.replicas * S, sizeof(double));
    c.activation_bytes = calloc((size_t)c.replicas * S, sizeof(double));
    c.links = calloc((size_t)R * R, sizeof *c.links);
    if (!c.schedules || !c.fwd_ms || !c.bwd_ms || !c.boundary_bytes || !c.static_bytes ||
        !c.activation_bytes || !c.links)
        goto oom;
    for (int e = 0; e < c.replicas; e++) {
        const int d = c.replica_of[e];
        xdt_status st = make_schedule(s, d, &c.schedules[e]);
        if (st) {
            xdt_job_costs_free(&c);
            free(s);
            return st;
        }
        for (int g = 0; g < S; g++) {
            xdt_stage_cost sc;
            stage_figures(in, s, d, g, &sc);
            const size_t i = (size_t)e * S + g;
            c.fwd_ms[i] = sc.fwd_ms;
            c.bwd_ms[i] = sc.bwd_ms;
            c.boundary_bytes[i] = g + 1 < S ? sc.boundary_bytes : 0;
            c.static_bytes[i] = 16 * sc.params;
            c.activation_bytes[i] = sc.memory_bytes - 16 * sc.params;
        }
        for (int a = 0; a < P; a++)
            for (int b = 0; b < P; b++)
                if (a != b)
                    c.links[(size_t)(e * P + a) * R + e * P + b] =
                        sim_link(in, s->node[d * P + a], s->node[d * P + b],
                                 s->link_codec[d * P + (b == (a + 1) % P ? a : b)]);
    }
    reductions(in, s, c.allreduce_ms, &c.opt_step_ms);
    free(s);
    *out = c;
    return XDT_OK;
oom:
    xdt_job_costs_free(&c);
    free(s);
    return xdt_fail(XDT_ERR_NO_MEMORY, "planner: out of memory");
}

/* The closed-form estimate the pruned search ranks layouts by: per replica, one microbatch's
 * pass through every stage and link and back, then M - 1 more at the slowest stage's pace;
 * then the slowest all-reduce and the optimizer. */
static double estimate(const xdt_solver_input *in, const xdt_solution *s, const double *ar_ms,
                       double opt_ms) {
    const int P = s->stages, D = s->replicas;
    const double bytes = boundary_bytes(in, s->microbatch);
    double worst = 0;
    for (int d = 0; d < D; d++) {
        if (d > 0 && same_replica(in, s, d - 1, d)) continue;
        double sum = 0, slow = 0;
        for (int p = 0; p < P; p++) {
            xdt_stage_cost c;
            stage_figures(in, s, d, p, &c);
            const double ms = c.fwd_ms + c.bwd_ms;
            sum += ms;
            slow = ms > slow ? ms : slow;
            if (p + 1 < P) {
                const xdt_sim_link l = sim_link(in, s->node[d * P + p], s->node[d * P + p + 1],
                                                s->link_codec[d * P + p]);
                const double wire = l.bytes_per_ms > 0 ? bytes * l.wire_ratio / l.bytes_per_ms : 0;
                sum += 2 * (l.latency_ms + wire + bytes * l.codec_ms_per_byte);
            }
        }
        const double t = sum + (s->replica_microbatches[d] - 1) * slow;
        worst = t > worst ? t : worst;
    }
    double ar = 0;
    for (int p = 0; p < P; p++)
        ar = ar_ms[p] > ar ? ar_ms[p] : ar;
    return worst + ar + opt_ms;
}

/* xdc: the rank before a link whose round trip outlasts its own work keeps enough extra
 * microbatches in flight to cover it: the round trip divided by its forward time (the warm-up
 * fills the wait with forwards) or by its forward + backward (steady state), times scale.
 * Returns whether any rank got extras. */
static bool xdc_extras(const xdt_solver_input *in, xdt_solution *s, bool forward_only,
                       double scale) {
    const int P = s->stages;
    const double bytes = boundary_bytes(in, s->microbatch);
    bool any = false;
    for (int p = 0; p < P; p++) {
        s->extra[p] = 0;
        if (p + 1 == P) continue;
        double worst = 0, work = 1e-9; /* over the replicas */
        for (int d = 0; d < s->replicas; d++) {
            const xdt_sim_link l =
                sim_link(in, s->node[d * P + p], s->node[d * P + p + 1], s->link_codec[d * P + p]);
            const double wire = l.bytes_per_ms > 0 ? bytes * l.wire_ratio / l.bytes_per_ms : 0;
            const double rtt = 2 * (l.latency_ms + wire + bytes * l.codec_ms_per_byte);
            worst = rtt > worst ? rtt : worst;
            xdt_stage_cost c;
            stage_figures(in, s, d, p, &c);
            const double w = forward_only ? c.fwd_ms : c.fwd_ms + c.bwd_ms;
            work = w > work ? w : work;
        }
        s->extra[p] = (int)ceil(scale * worst / work - 1e-9);
        if (s->extra[p] > 0) any = true;
    }
    return any;
}

/* Fills the prediction of a laid-out, split solution: the closed-form estimate, or the
 * simulation (which also checks every rank's peak memory). */
static xdt_status predict(const xdt_solver_input *in, xdt_solution *s,
                          const xdt_eval_options *opt) {
    const int P = s->stages, D = s->replicas;
    if (opt->estimate) {
        double ar[XDT_PLAN_MAX_RANKS], opt_ms;
        reductions(in, s, ar, &opt_ms);
        s->step_ms = estimate(in, s, ar, opt_ms);
        s->tokens_per_s = (double)in->global_batch * in->seq / (s->step_ms * 1e-3);
        return XDT_OK;
    }
    xdt_job_costs jc;
    xdt_status st = xdt_job_costs_build(in, s, false, &jc);
    if (st) return st;
    double ar_unused[XDT_PLAN_MAX_RANKS], opt_unused;
    s->wan_bytes = 0;
    reductions(in, s, ar_unused, &opt_unused); /* the codecs and all-reduce WAN bytes */
    xdt_sim_input si;
    xdt_job_costs_sim_input(&jc, &si);
    xdt_sim_result r;
    st = xdt_simulate(&si, &r);
    if (st == XDT_OK) {
        s->step_ms = r.step_ms;
        s->tokens_per_s = (double)in->global_batch * in->seq / (r.step_ms * 1e-3);
        double busy = 0;
        int counted = 0;
        for (int d = 0; d < D; d++) {
            int e = 0; /* the simulated replica standing for d */
            while (e < jc.replicas &&
                   !(jc.replica_of[e] == d || same_replica(in, s, jc.replica_of[e], d)))
                e++;
            for (int p = 0; p < P; p++) {
                busy += r.busy_ms[e * P + p];
                s->peak_bytes[d * P + p] = r.peak_bytes[e * P + p];
                const xdt_topo_node *n = node_at(in->topo, s, d * P + p);
                if (r.peak_bytes[e * P + p] > n->type->memory_gib * 1073741824.0)
                    st = XDT_ERR_CONFIG;
            }
            counted += P;
            const int R = jc.replicas * P;
            for (int a = 0; a < P; a++) /* pipeline traffic between sites */
                for (int b = 0; b < P; b++)
                    if (crosses_sites(in->topo, s->node[d * P + a], s->node[d * P + b]))
                        s->wan_bytes += r.link_bytes[(size_t)(e * P + a) * R + e * P + b];
        }
        s->bubble = 1 - busy / (counted * r.step_ms);
        xdt_sim_result_free(&r);
    }
    xdt_job_costs_free(&jc);
    return st;
}

/* xdc: extras sized both ways from the 1F1B split, each halved until its split fits memory;
 * the faster prediction wins. */
static xdt_status plan_xdc(const xdt_solver_input *in, xdt_solution *s,
                           const xdt_eval_options *opt) {
    xdt_solution *trial = malloc(sizeof *trial), *best = malloc(sizeof *best);
    xdt_status st = trial && best ? XDT_ERR_CONFIG : XDT_ERR_NO_MEMORY;
    bool found = false;
    for (int way = 0; way < 2 && trial && best; way++)
        for (double scale = 1; scale > 0.1; scale /= 2) {
            *trial = *s;
            if (!xdc_extras(in, trial, way == 0, scale)) break;
            if (split(in, trial, opt) != XDT_OK) continue;
            if (predict(in, trial, opt) == XDT_OK &&
                (!found || trial->step_ms < best->step_ms * (1 - 1e-12))) {
                *best = *trial;
                found = true;
            }
            break;
        }
    if (found) {
        *s = *best;
        st = XDT_OK;
    }
    free(trial);
    free(best);
    return st;
}

xdt_status xdt_layout_evaluate(const xdt_solver_input *in, const int *grid, int P, int D, int mb,
                               xdt_schedule_kind kind, const xdt_eval_options *opt,
                               xdt_solution *out) {
    const int U = xdt_gpt_num_units(in->cfg);
    if (P < 1 || D < 1 || (long)P * D > XDT_PLAN_MAX_RANKS || mb < 1 || in->global_batch % mb)
        return XDT_ERR_CONFIG;
    const int V = kind == XDT_SCHEDULE_INTERLEAVED ? 2 : 1;
    if (V > 1 && (P < 2 || P * V > U)) return XDT_ERR_CONFIG;
    if (kind == XDT_SCHEDULE_XDC && P < 2) return XDT_ERR_CONFIG;
    if (P > U) return XDT_ERR_CONFIG;
    xdt_solution *s = calloc(1, sizeof *s);
    if (!s) return XDT_ERR_NO_MEMORY;
    s->stages = P;
    s->chunks = V;
    s->replicas = D;
    s->ranks = P * D;
    s->microbatch = mb;
    s->microbatches = in->global_batch / mb;
    s->kind = kind;
    xdt_status st = XDT_ERR_CONFIG;
    for (int r = 0; r < P * D; r++) {
        s->device[r] = grid[r];
        s->node[r] = xdt_solver_node_of(in->topo, grid[r]);
        if (s->node[r] < 0) goto out;
    }
    if (!apportion(in, s, s->microbatches)) goto out;
    for (int d = 0; V > 1 && d < D; d++)
        if (s->replica_microbatches[d] % P) goto out;
    const double bytes = boundary_bytes(in, mb);
    for (int d = 0; d < D; d++)
        for (int p = 0; p < P; p++)
            s->link_codec[d * P + p] =
                P > 1 ? codec_for(in, s->node[d * P + p], s->node[d * P + (p + 1) % P], bytes)
                      : XDT_LINK_CODEC_NONE;
    if ((st = split(in, s, opt))) goto out;
    st = kind == XDT_SCHEDULE_XDC ? plan_xdc(in, s, opt) : predict(in, s, opt);
    if (st == XDT_OK) *out = *s;
out:
    free(s);
    return st;
}

xdt_status xdt_solver_evaluate(const xdt_solver_input *in, const int *grid, int P, int D,
                               int microbatch, xdt_schedule_kind kind, xdt_solution *out) {
    const xdt_eval_options opt = {in->search == XDT_SEARCH_PRUNED, false};
    return xdt_layout_evaluate(in, grid, P, D, microbatch, kind, &opt, out);
}
