/* cmd_worker.c: `xdt worker plan.json --data PATH [options]`: runs one rank of a plan. The rank
 * and the world come from the environment (xdt launch sets them; so do srun, mpirun and
 * torchrun-style launchers), the ranks meet through the bootstrap store and talk over UCX, with
 * links between sites shaped as the plan's cluster says unless --no-emulate-wan. Every rank
 * reads the same global batch (same data, seed and order as `xdt train`), takes its replica's
 * microbatches, and runs its schedule; rank 0 shows the progress and writes the metrics.
 * --ckpt-dir saves sharded checkpoints and --resume continues from the latest
 * (tools/run_checkpoint.h). Each rank opens the device the plan gives it ("cpu", "cuda:N",
 * "hip:N": the stage's backend and its index on the node); ranks on different backends meet
 * through host messages, and replicas all-reduce through NCCL where all are CUDA ranks of one
 * site (--allreduce). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/batch_loader.h"
#include "core/file_util.h"
#include "core/log.h"
#include "core/pipeline_executor.h"
#include "core/token_data.h"
#include "core/train_metrics.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/run_checkpoint.h"
#include "tools/run_trace.h"
#include "tools/train_options.h"
#include "tools/worker_setup.h"

typedef struct worker_args {
    const char *plan, *data, *metrics, *trace, *tls, *ckpt_dir, *allreduce, *device;
    int threads, timeout_s, ckpt_every;
    bool no_emulate_wan, emulate_wan, resume;
    xdt_train_hparams h;
} worker_args;

typedef struct worker_run {
    worker_args a;
    xdt_loaded_plan plan;
    xdt_worker_link link;
    int *site_of;
    xdt_rank_device *device_of;
    xdt_device *dev;
    xdt_executor *ex;
    xdt_token_data data;
    xdt_batch_loader loader;
    bool have_data;
    int32_t *inputs, *targets;
    xdt_metrics_file metrics;
    xdt_optim_config oc;
    int start_step; /* steps already done (--resume) */
} worker_run;

static xdt_status setup(worker_run *w) {
    worker_args *a = &w->a;
    xdt_status st;
    if ((st = xdt_plan_load(a->plan, &w->plan))) return st;
    const xdt_loaded_plan *p = &w->plan;
    if ((st = xdt_worker_connect(p, a->tls, !a->no_emulate_wan, a->timeout_s * 1000, &w->link)))
        return st;
    const int rank = w->link.env.rank;
    w->site_of = calloc((size_t)p->ranks, sizeof(int));
    w->device_of = calloc((size_t)p->ranks, sizeof *w->device_of);
    if (!w->site_of || !w->device_of) return xdt_fail(XDT_ERR_NO_MEMORY, "worker: out of memory");
    xdt_rank_plan rp;
    if ((st = xdt_worker_rank_plan(p, rank, w->link.job_id, w->site_of, w->device_of, &rp)))
        return st;
    rp.timeout_ms = a->timeout_s * 1000;
    rp.store = w->link.store;
    rp.dp_comm = !strcmp(a->allreduce, "ring")   ? XDT_DP_RING
                 : !strcmp(a->allreduce, "nccl") ? XDT_DP_NCCL
                                                 : XDT_DP_AUTO;
    char device[32];
    if ((st = xdt_worker_device_name(p, rank, device, sizeof device))) return st;
    if (a->device) {
        char planned[32];
        snprintf(planned, sizeof planned, "%s", device);
        if ((st = xdt_worker_device_choose(planned, a->device, rank, device, sizeof device,
                                           &rp.device_index)))
            return st;
        if (strcmp(device, planned) != 0)
            xdt_log_info("rank %d: on %s (--device) where the plan says %s", rank, device, planned);
    }
    if (strcmp(device, "cpu") != 0)
        xdt_log_info("rank %d: stage on %s (%s on node %s of site %s)", rank, device,
                     p->rank[rank].device_type, p->rank[rank].node, p->rank[rank].site);
    /* ranks sharing this host share its cores */
    int threads = a->threads;
    if (threads == 0) {
        const long cores = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cores > p->ranks ? (int)(cores / p->ranks) : 1;
    }
    xdt_device_options dopts = {.threads = threads};
    dopts.gemm_precision = p->precision; /* the plan's */
    dopts.flash_attention = p->fused_attention;
    if (dopts.gemm_precision != XDT_PRECISION_FP32 && rank == 0)
        xdt_log_info("the plan's GEMMs compute in %s", xdt_precision_name(dopts.gemm_precision));
    w->oc = xdt_train_hparams_optim(&a->h);
    /* the device layer names the device; an error opening it names the rank too */
    char context[32];
    snprintf(context, sizeof context, "rank %d", rank);
    xdt_log_set_context(context);
    st = xdt_device_create(device, &dopts, &w->dev);
    xdt_log_set_context(NULL);
    if (st ||
        (st = xdt_executor_create(&rp, w->dev, w->link.t, &w->oc, (uint64_t)a->h.seed, &w->ex)))
        return st;
    {
        /* every rank reads the data: those holding the embedding or the head use the batches,
         * all need the same count of validation batches */
        const size_t n = (size_t)p->global_batch * p->seq;
        w->inputs = malloc(n * sizeof(int32_t));
        w->targets = malloc(n * sizeof(int32_t));
        if (!w->inputs || !w->targets) return xdt_fail(XDT_ERR_NO_MEMORY, "worker: batch buffers");
        if ((st = xdt_token_data_load(a->data, &w->data))) return st;
        w->have_data = true;
        if ((st = xdt_token_data_check_vocab(&w->data, p->model.vocab_size)) ||
            (st = xdt_batch_loader_init(&w->loader, &w->data, p->global_batch, p->seq,
                                        a->h.val_fraction, (xdt_data_order)a->h.data_order,
                                        (uint64_t)a->h.seed)))
            return st;
    }
    if (a->ckpt_dir && !a->resume && (st = xdt_run_checkpoint_check_fresh(a->ckpt_dir))) return st;
    if (a->resume) {
        int64_t done = 0;
        if ((st = xdt_run_checkpoint_resume(a->ckpt_dir, p, &w->link, w->ex,
                                            w->have_data ? &w->loader.state : NULL, a->h.steps,
                                            a->timeout_s * 1000, &done)))
            return st;
        w->start_step = (int)done;
    }
    if (rank == 0 && a->metrics && (st = xdt_metrics_open(&w->metrics, a->metrics, a->resume)))
        return st;
    if (rank == 0)
        xdt_log_info("plan %s: %d replicas x %d stages (%s, %d microbatches of %d) on %s; "
                     "%s links between sites",
                     a->plan, p->replicas, p->stages, xdt_schedule_kind_name(p->kind),
                     p->global_batch / p->microbatch, p->microbatch, p->cluster,
                     a->no_emulate_wan ? "unshaped" : "emulated");
    return XDT_OK;
}

/* Mean loss over the first eval_batches validation batches (as xdt train). */
static xdt_status evaluate(worker_run *w, int step, double *out) {
    int n = xdt_batch_loader_val_batches(&w->loader);
    if (n > w->a.h.eval_batches) n = w->a.h.eval_batches;
    double total = 0;
    for (int i = 0; i < n; i++) {
        xdt_batch_loader_val(&w->loader, i, w->inputs, w->targets);
        double loss = 0;
        xdt_status st = xdt_executor_eval(w->ex, step, w->inputs, w->targets, &loss);
        if (st) return st;
        total += loss;
    }
    *out = n ? total / n : 0;
    return XDT_OK;
}

static xdt_status run(worker_run *w) {
    xdt_status st = setup(w);
    if (st) return st;
    const worker_args *a = &w->a;
    const xdt_loaded_plan *p = &w->plan;
    const bool lead = w->link.env.rank == 0;
    xdt_progress prog;
    xdt_progress_init(&prog, w->start_step, a->h.steps, a->h.log_every);
    for (int step = w->start_step; step < a->h.steps && !st; step++) {
        const double t0 = xdt_now_s();
        if (w->have_data) xdt_batch_loader_next(&w->loader, w->inputs, w->targets);
        xdt_exec_result r;
        if ((st = xdt_executor_step(w->ex, step, w->inputs, w->targets, &r))) break;
        const double dt = xdt_now_s() - t0;
        xdt_step_metrics m = {
            .step = step + 1,
            .loss = r.loss,
            .lr = xdt_lr_at(&w->oc, step),
            .tokens_per_s = (double)p->global_batch * p->seq / dt,
            .step_ms = dt * 1e3,
            .grad_norm = r.grad_norm,
            .pipeline = true,
            .wan_bytes = r.wan_bytes,
            .wan_raw_bytes = r.wan_raw_bytes,
            .bubble = 1 - r.busy_ms / (p->ranks * dt * 1e3),
        };
        const bool last = step + 1 == a->h.steps;
        if (!st && w->loader.val_n && a->h.eval_every > 0 &&
            ((step + 1) % a->h.eval_every == 0 || last)) {
            if ((st = evaluate(w, step, &m.val_loss))) break;
            m.has_val = true;
        }
        if (lead) {
            xdt_progress_show(&prog, &m);
            st = xdt_metrics_write(&w->metrics, &m);
        }
        const bool save = a->ckpt_dir && ((a->ckpt_every > 0 && (step + 1) % a->ckpt_every == 0) ||
                                          step + 1 == a->h.steps);
        if (!st && save)
            st = xdt_run_checkpoint_save(a->ckpt_dir, step + 1, p, &w->link, w->ex,
                                         w->have_data ? &w->loader.state : NULL,
                                         a->timeout_s * 1000);
    }
    if (lead) xdt_progress_done(&prog);
    /* nobody closes its transport while another rank may still wait for its messages */
    if (!st) st = xdt_executor_finish(w->ex);
    if (!st) st = xdt_store_barrier(w->link.store, "xdt/steps-done", a->timeout_s * 1000);
    if (!st && a->trace) {
        int n = 0;
        const xdt_exec_event *ev = xdt_executor_events(w->ex, &n);
        st = xdt_run_trace_write(a->trace, &w->link, p, ev, n);
    }
    return st;
}

static void cleanup(worker_run *w) {
    xdt_metrics_close(&w->metrics);
    /* the executor's thread uses the transport: stop it first */
    xdt_executor_destroy(w->ex);
    xdt_worker_disconnect(&w->link);
    xdt_device_destroy(w->dev);
    if (w->have_data) xdt_token_data_free(&w->data);
    free(w->inputs);
    free(w->targets);
    free(w->site_of);
    free(w->device_of);
    xdt_plan_free(&w->plan);
}

/* Parses and checks the worker's options into a; returns -1 to go on, or the exit code (0 after
 * --help, 2 for a usage error, reported in one line). */
static int parse_args(int argc, char **argv, worker_args *a) {
    a->tls = "tcp";
    a->allreduce = "auto";
    a->timeout_s = 30;
    xdt_train_hparams_defaults(&a->h);
    xdt_cli_opt opts[13 + XDT_TRAIN_OPTION_COUNT] = {
        XDT_OPT_REQUIRED("data", &a->data, "PATH", "text file (byte tokens) or llm.c .bin shard"),
        XDT_OPT_FLAG("emulate-wan", &a->emulate_wan,
                     "shape links between sites as the plan's cluster says [default]"),
        XDT_OPT_FLAG("no-emulate-wan", &a->no_emulate_wan, "leave links between sites unshaped"),
        XDT_OPT_STRING("metrics", &a->metrics, "FILE.jsonl", "one JSON object per step (rank 0)"),
        XDT_OPT_STRING("trace", &a->trace, "FILE.json",
                       "the real timeline of every rank (Chrome trace, as xdt simulate's)"),
        XDT_OPT_INT("threads", &a->threads, "N", "CPU threads per rank [cores / ranks]", 0, 1024),
        XDT_OPT_STRING("tls", &a->tls, "tcp|shm", "UCX transports between ranks [tcp]"),
        XDT_OPT_INT("timeout", &a->timeout_s, "S", "longest wait for another rank [30]", 1, 86400),
        XDT_OPT_STRING("ckpt-dir", &a->ckpt_dir, "DIR",
                       "checkpoint directory: one shard per rank and chunk, a manifest per step"),
        XDT_OPT_INT("ckpt-every", &a->ckpt_every, "N",
                    "checkpoint every N steps (and at the end) [0 = end only]", 0, 1e9),
        XDT_OPT_FLAG("resume", &a->resume, "continue from the latest checkpoint in --ckpt-dir"),
        XDT_OPT_STRING("allreduce", &a->allreduce, "auto|ring|nccl",
                       "replicas' gradient sum: NCCL where all are CUDA ranks of one site, else "
                       "the ring [auto]"),
        XDT_OPT_STRING("device", &a->device, "DEV",
                       "this rank's device instead of the plan's, of the same backend (e.g. "
                       "cuda:0 where CUDA_VISIBLE_DEVICES shows each rank one GPU) [the plan's]"),
    };
    xdt_train_hparams_options(&a->h, &opts[13]);
    const int n_opts = 13 + XDT_TRAIN_OPTION_COUNT;
    a->plan = argc >= 1 && argv[0][0] != '-' ? argv[0] : NULL;
    bool help = false;
    if (xdt_cli_parse("worker", argc - (a->plan ? 1 : 0), argv + (a->plan ? 1 : 0), opts, n_opts,
                      &help) != XDT_OK)
        return 2;
    if (help || !a->plan) {
        if (!help) xdt_log_error("xdt worker: give the plan file (xdt worker plan.json ...)");
        xdt_cli_usage(help ? stdout : stderr, "worker plan.json",
                      "Runs one rank of a plan; the rank comes from RANK/WORLD_SIZE (or Slurm's, "
                      "Open MPI's) and XDT_JOB_TOKEN.",
                      opts, n_opts);
        return help ? 0 : 2;
    }
    if (a->emulate_wan && a->no_emulate_wan) {
        xdt_log_error("xdt worker: --emulate-wan and --no-emulate-wan exclude each other");
        return 2;
    }
    if (strcmp(a->tls, "tcp") != 0 && strcmp(a->tls, "shm") != 0) {
        xdt_log_error("xdt worker: --tls %s: expected tcp or shm", a->tls);
        return 2;
    }
    if (strcmp(a->allreduce, "auto") != 0 && strcmp(a->allreduce, "ring") != 0 &&
        strcmp(a->allreduce, "nccl") != 0) {
        xdt_log_error("xdt worker: --allreduce %s: expected auto, ring or nccl", a->allreduce);
        return 2;
    }
    if ((a->resume || a->ckpt_every) && !a->ckpt_dir) {
        xdt_log_error("xdt worker: --%s needs --ckpt-dir", a->resume ? "resume" : "ckpt-every");
        return 2;
    }
    return -1;
}

int xdt_worker_check_args(int argc, char **argv) {
    worker_args a = {0};
    const int rc = parse_args(argc, argv, &a);
    if (rc >= 0) return rc;
    FILE *f = NULL; /* every rank reads it: one line here rather than one from each */
    if (xdt_fopen_read(a.data, " data file", &f) != XDT_OK) return 1;
    fclose(f);
    /* every rank would refuse a used --ckpt-dir in its own line */
    if (a.ckpt_dir && !a.resume && xdt_run_checkpoint_check_fresh(a.ckpt_dir) != XDT_OK) return 1;
    return -1;
}

int xdt_cmd_worker(int argc, char **argv) {
    worker_run w = {0};
    const int rc = parse_args(argc, argv, &w.a);
    if (rc >= 0) return rc;
    xdt_status st = run(&w);
    cleanup(&w);
    return st == XDT_OK ? 0 : 1;
}
