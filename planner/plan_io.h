/* plan_io.h: plan.json, what `xdt plan` writes and `xdt simulate` and the runtime read.
 *
 * Version 2 (all times in ms, sizes in bytes unless named otherwise):
 *   {"version": 2, "cluster": NAME,
 *    "model": {"name", "vocab_size", "padded_vocab_size", "max_seq_len", "n_layer", "n_head",
 *              "n_embd"},
 *    "global_batch": N, "seq": T, "microbatch": b,
 *    "precision": "fp32"|"tf32"|"bf16": the GEMM precision the costs assume and the workers
 *                 open their devices with (optional; absent means fp32),
 *    "attention": "explicit"|"flash": how GPU ranks run attention (flash: fused kernels that keep
 *                 per-row statistics, not the t x t probabilities), which the memory figures
 *                 assume (optional; absent means explicit),
 *    "schedule": {"kind": "gpipe"|"1f1b"|"interleaved"|"xdc"|"custom", "microbatches": M (all
 *                 replicas), "chunks": V, "extra": [xdc extra warm-up per pipeline rank]},
 *    "replicas": [{"microbatches": M_d, "ranks": [global ranks d*P .. d*P+P-1]}],
 *    "stages": [one per global rank r = d*P + p: {"rank", "replica", "pipeline_rank", "site",
 *               "node", "device_type", "backend": "cpu"|"cuda"|"hip", "device": index on its
 *               node, "units": [first, last] of chunk 0, "chunks": [{"units": [first, last],
 *               "fwd_ms", "bwd_ms", "static_bytes", "activation_bytes"}] (chunk v is global
 *               stage v*P + p), "slowdown": compute stretch (>= 1), "memory_gib": predicted
 *               peak, "memory_limit_gib"}],
 *    "sites": [site names], "site_links": [{"a", "b", "gbps", "latency_ms", "jitter_ms"}]: the
 *               links between sites, which the runtime emulates between ranks of two sites,
 *    "links": [{"from": r, "to": r2, "gbps", "latency_ms", "codec", "wire_ratio",
 *               "codec_ms_per_mb", "between_sites"}]: every pair of ranks that exchange
 *               activations (from -> to) and gradients (to -> from), codec on both directions,
 *    "allreduce": [{"pipeline_rank": p, "ranks": [...], "codec", "ms"}]: per pipeline rank, the
 *               gradient all-reduce of its replicas, "ms" including the tied embedding's
 *               exchange on the first and last ranks,
 *    "tied_embedding": {"codec", "bytes"}, "opt_step_ms",
 *    "predicted": {"step_ms", "tokens_per_s", "bubble", "wan_bytes"},
 *    "ops": [per global rank: [[KIND, microbatch, chunk, peer], ...]]}
 * Op kinds are core/schedule.h's names; microbatch, chunk and peer are -1 where they do not
 * apply; peer is a global rank. Every replica's op lists must form a schedule the validator
 * accepts. */
#ifndef XDT_PLAN_IO_H
#define XDT_PLAN_IO_H

#include "core/model_config.h"
#include "core/schedule.h"
#include "planner/simulator.h"
#include "planner/solver.h"

#define XDT_PLAN_VERSION    2
#define XDT_PLAN_MAX_CHUNKS 8

typedef struct xdt_plan_rank {
    int replica, pipeline_rank;
    int site_index; /* into xdt_loaded_plan.sites */
    double slowdown;
    char site[64], node[64], device_type[64], backend[8];
    int device; /* index on its node */
    int units[XDT_PLAN_MAX_CHUNKS][2];
    char link_codec[16]; /* on the link to the next rank of its replica ("" for none) */
} xdt_plan_rank;

#define XDT_PLAN_MAX_SITES 16

typedef struct xdt_plan_site_link {
    int a, b; /* site indices */
    double gbps, latency_ms, jitter_ms;
} xdt_plan_site_link;

typedef struct xdt_loaded_plan {
    char cluster[64];
    char sites[XDT_PLAN_MAX_SITES][64];
    int n_sites;
    xdt_plan_site_link site_links[XDT_PLAN_MAX_SITES * (XDT_PLAN_MAX_SITES - 1) / 2];
    int n_site_links;
    xdt_model_config model;
    int global_batch, seq, microbatch;
    xdt_precision precision;             /* GEMM precision */
    bool fused_attention;                /* "attention": "flash" (GPU ranks) */
    int stages, chunks, replicas, ranks; /* P, V, D, R = D x P */
    xdt_schedule_kind kind;
    int *replica_microbatches; /* D */
    xdt_plan_rank *rank;       /* R */
    char (*dp_codec)[16];      /* P */
    char tied_codec[16];
    /* the simulator's input, every replica simulated: the validated schedules (one per
     * replica), costs [d * S + s], links R x R, all-reduce per pipeline rank
     * (xdt_job_costs_sim_input) */
    xdt_job_costs costs;
    double predicted_step_ms, predicted_tokens_per_s, predicted_wan_bytes;
} xdt_loaded_plan;

/* Writes the plan for a solution atomically (temporary file, then rename). */
xdt_status xdt_plan_write(const char *path, const xdt_solver_input *in, const xdt_solution *s,
                          const xdt_topology *topo);

/* Loads and checks a plan; a missing or malformed field is reported as "path: field ..." and
 * returns XDT_ERR_FORMAT, as does a schedule the validator refuses. */
xdt_status xdt_plan_load(const char *path, xdt_loaded_plan *out);
void xdt_plan_free(xdt_loaded_plan *p);
/* The link between two sites of the plan, or NULL (the same site, or none listed). */
const xdt_plan_site_link *xdt_plan_site_link_between(const xdt_loaded_plan *p, int a, int b);

#endif
