/* cmd_train.c: `xdt train`: trains the whole model in one process (the reference every
 * pipelined run is compared with). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch_loader.h"
#include "core/checkpoint.h"
#include "core/file_util.h"
#include "core/gpt.h"
#include "core/llmc_io.h"
#include "core/log.h"
#include "core/model_config.h"
#include "core/optimizer.h"
#include "core/token_data.h"
#include "core/train_metrics.h"
#include "devices/device.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/model_setup.h"
#include "tools/train_options.h"

typedef struct train_args {
    const char *model, *data, *device, *ckpt_dir, *init, *export_llmc, *metrics, *precision;
    const char *attention;
    int batch, seq, threads, ckpt_every;
    xdt_train_hparams h;
    bool resume;
} train_args;

typedef struct train_run {
    train_args a;
    xdt_model_config cfg;
    xdt_token_data data;
    xdt_batch_loader loader;
    xdt_device *dev;
    xdt_stage *stage;
    xdt_optimizer *opt;
    xdt_optim_config oc;
    xdt_metrics_file metrics;
    int32_t *inputs, *targets; /* host batch buffers */
    int start_step;
} train_run;

static void val_window(void *arg, int i, int32_t *inputs, int32_t *targets) {
    xdt_batch_loader_val(arg, i, inputs, targets);
}

static xdt_status evaluate(train_run *r, double *val_loss) {
    int n = xdt_batch_loader_val_batches(&r->loader);
    if (n > r->a.h.eval_batches) n = r->a.h.eval_batches;
    return xdt_mean_loss(r->stage, n, val_window, &r->loader, r->inputs, r->targets, val_loss);
}

static xdt_status save_checkpoint(train_run *r, int steps_done) {
    char path[4096];
    xdt_checkpoint_path(r->a.ckpt_dir, steps_done, path, sizeof path);
    xdt_ckpt_meta meta = {
        .step = steps_done,
        .first_unit = 0,
        .last_unit = r->cfg.n_layer + 1,
        .b = r->a.batch,
        .t = r->a.seq,
        .loader = r->loader.state,
    };
    xdt_status st = xdt_checkpoint_save(path, r->stage, r->opt, &meta);
    if (st == XDT_OK) xdt_log_info("saved %s", path);
    return st;
}

static xdt_status restore(train_run *r) {
    char path[4096];
    xdt_ckpt_meta meta;
    xdt_status st = xdt_checkpoint_latest(r->a.ckpt_dir, path, sizeof path);
    if (st == XDT_OK) st = xdt_checkpoint_load(path, r->stage, r->opt, &meta);
    if (st != XDT_OK) return st;
    if (meta.b != r->a.batch || meta.t != r->a.seq)
        return xdt_fail(XDT_ERR_CONFIG,
                        "%s: saved with --batch %d --seq %d; resume with the same "
                        "values (got %d, %d)",
                        path, meta.b, meta.t, r->a.batch, r->a.seq);
    if (meta.step > r->a.h.steps)
        return xdt_fail(XDT_ERR_CONFIG, "%s: already at step %lld, beyond --steps %d", path,
                        (long long)meta.step, r->a.h.steps);
    r->loader.state = meta.loader;
    r->start_step = (int)meta.step;
    xdt_log_info("resumed from %s at step %lld", path, (long long)meta.step);
    return XDT_OK;
}

static xdt_status setup(train_run *r) {
    train_args *a = &r->a;
    xdt_status st;
    if ((a->resume || a->ckpt_every) && !a->ckpt_dir)
        return xdt_fail(XDT_ERR_CONFIG, "xdt train: --%s needs --ckpt-dir",
                        a->resume ? "resume" : "ckpt-every");
    if (a->ckpt_dir && !a->resume && (st = xdt_checkpoint_check_fresh(a->ckpt_dir))) return st;
    if (a->resume && a->init)
        return xdt_fail(XDT_ERR_CONFIG, "xdt train: --resume and --init exclude each other");
    if ((st = xdt_model_config_load(a->model, &r->cfg))) return st;
    if (a->seq == 0) a->seq = r->cfg.max_seq_len < 256 ? r->cfg.max_seq_len : 256;
    if (a->seq > r->cfg.max_seq_len)
        return xdt_fail(XDT_ERR_CONFIG, "xdt train: --seq %d exceeds max_seq_len %d of %s", a->seq,
                        r->cfg.max_seq_len, a->model);
    /* a GPU's own memory is checked once the device is open */
    const bool host_memory = !strcmp(a->device, "cpu");
    if ((host_memory && (st = xdt_check_memory_fits(&r->cfg, a->batch, a->seq, true))) ||
        (st = xdt_token_data_load(a->data, &r->data)) ||
        (st = xdt_token_data_check_vocab(&r->data, r->cfg.vocab_size)) ||
        (st = xdt_batch_loader_init(&r->loader, &r->data, a->batch, a->seq, a->h.val_fraction,
                                    (xdt_data_order)a->h.data_order, (uint64_t)a->h.seed)))
        return st;
    xdt_device_options dopts = {.threads = a->threads};
    if (!xdt_precision_parse(a->precision, &dopts.gemm_precision))
        return xdt_fail(XDT_ERR_CONFIG, "xdt train: --precision %s: expected fp32, tf32 or bf16",
                        a->precision);
    if (strcmp(a->attention, "auto") && strcmp(a->attention, "explicit") &&
        strcmp(a->attention, "flash"))
        return xdt_fail(XDT_ERR_CONFIG,
                        "xdt train: --attention %s: expected auto, explicit or flash",
                        a->attention);
    /* auto: what measured faster on an H200 (docs/BENCHMARKS.md): the fused kernels in bf16,
     * where they run on tensor cores; the explicit path's cuBLAS products in fp32 and tf32 */
    dopts.flash_attention =
        !strcmp(a->attention, "flash") || (!strcmp(a->attention, "auto") && !host_memory &&
                                           dopts.gemm_precision == XDT_PRECISION_BF16);
    if (dopts.flash_attention && host_memory)
        return xdt_fail(XDT_ERR_CONFIG,
                        "xdt train: --attention flash is for GPU devices (the CPU's attention is "
                        "its own fused loop)");
    if ((st = xdt_device_create(a->device, &dopts, &r->dev)) ||
        (st = xdt_check_device_memory_fits(r->dev, &r->cfg, a->batch, a->seq, true)) ||
        (st = xdt_stage_create(&r->cfg, r->dev, 0, r->cfg.n_layer + 1, a->batch, a->seq, 1,
                               &r->stage)))
        return st;
    r->oc = xdt_train_hparams_optim(&a->h);
    if ((st = xdt_optimizer_create(&r->oc, r->stage, &r->opt))) return st;
    size_t n = (size_t)a->batch * a->seq;
    r->inputs = malloc(n * sizeof(int32_t));
    r->targets = malloc(n * sizeof(int32_t));
    if (!r->inputs || !r->targets) return xdt_fail(XDT_ERR_NO_MEMORY, "batch buffers");
    if (a->ckpt_dir && (st = xdt_mkdir_p(a->ckpt_dir))) return st;
    if (a->resume) {
        if ((st = restore(r))) return st;
    } else if (a->init) {
        if ((st = xdt_llmc_import(a->init, r->stage))) return st;
    } else if ((st = xdt_stage_init_params(r->stage, (uint64_t)a->h.seed))) {
        return st;
    }
    if (a->metrics && (st = xdt_metrics_open(&r->metrics, a->metrics, a->resume))) return st;
    return XDT_OK;
}

static xdt_status train_step(train_run *r, int step, xdt_step_metrics *m) {
    const int b = r->a.batch, t = r->a.seq;
    double t0 = xdt_now_s();
    xdt_batch_loader_next(&r->loader, r->inputs, r->targets);
    xdt_stage_load_batch(r->stage, r->inputs, r->targets);
    xdt_stage_zero_grads(r->stage);
    double loss = 0, sumsq = 0;
    xdt_status st;
    if ((st = xdt_stage_forward(r->stage, 0, true, 1.0f / ((float)b * t))) ||
        (st = xdt_stage_loss(r->stage, 0, &loss)) || (st = xdt_stage_backward(r->stage, 0)) ||
        (st = xdt_optimizer_grad_sumsq(r->opt, &sumsq)))
        return st;
    if (!isfinite(loss))
        return xdt_fail(XDT_ERR_NUMERIC, "step %d: loss is %g; training diverged", step + 1, loss);
    double norm = sqrt(sumsq);
    if ((st = xdt_optimizer_step(r->opt, step, norm))) return st;
    double dt = xdt_now_s() - t0;
    *m = (xdt_step_metrics){
        .step = step + 1,
        .loss = loss,
        .lr = xdt_lr_at(&r->oc, step),
        .tokens_per_s = (double)b * t / dt,
        .step_ms = dt * 1e3,
        .grad_norm = norm,
    };
    return XDT_OK;
}

static xdt_status run(train_run *r) {
    xdt_status st = setup(r);
    if (st != XDT_OK) return st;
    const train_args *a = &r->a;
    xdt_log_info("model %s: %zu parameters, %d layers, C=%d; data %s: %zu tokens (train %zu, "
                 "val %zu); batch %d x %d on %s",
                 r->cfg.name, xdt_stage_num_params(r->stage), r->cfg.n_layer, r->cfg.n_embd,
                 a->data, r->data.n, r->loader.train_n, r->loader.val_n, a->batch, a->seq,
                 r->dev->name);
    xdt_progress prog;
    xdt_progress_init(&prog, r->start_step, a->h.steps, a->h.log_every);
    for (int step = r->start_step; step < a->h.steps; step++) {
        xdt_step_metrics m;
        if ((st = train_step(r, step, &m))) break;
        bool last = step + 1 == a->h.steps;
        if (r->loader.val_n && a->h.eval_every > 0 && ((step + 1) % a->h.eval_every == 0 || last)) {
            if ((st = evaluate(r, &m.val_loss))) break;
            m.has_val = true;
        }
        xdt_progress_show(&prog, &m);
        if ((st = xdt_metrics_write(&r->metrics, &m))) break;
        if (a->ckpt_dir && ((a->ckpt_every > 0 && (step + 1) % a->ckpt_every == 0) || last))
            if ((st = save_checkpoint(r, step + 1))) break;
    }
    xdt_progress_done(&prog);
    if (st == XDT_OK && a->export_llmc) {
        st = xdt_llmc_export(a->export_llmc, r->stage);
        if (st == XDT_OK) xdt_log_info("exported %s (llm.c format)", a->export_llmc);
    }
    return st;
}

static void cleanup(train_run *r) {
    xdt_metrics_close(&r->metrics);
    free(r->inputs);
    free(r->targets);
    xdt_optimizer_destroy(r->opt);
    xdt_stage_destroy(r->stage);
    xdt_device_destroy(r->dev);
    xdt_token_data_free(&r->data);
}

int xdt_cmd_train(int argc, char **argv) {
    train_run r = {0};
    train_args *a = &r.a;
    *a = (train_args){
        .device = "cpu", .batch = 8, .seq = 0, .precision = "fp32", .attention = "auto"};
    xdt_train_hparams_defaults(&a->h);
    xdt_cli_opt opts[14 + XDT_TRAIN_OPTION_COUNT] = {
        XDT_OPT_REQUIRED("model", &a->model, "FILE.yaml", "model config"),
        XDT_OPT_REQUIRED("data", &a->data, "PATH", "text file (byte tokens) or llm.c .bin shard"),
        XDT_OPT_INT("batch", &a->batch, "B", "sequences per step [8]", 1, 1e9),
        XDT_OPT_INT("seq", &a->seq, "T", "tokens per sequence [min(max_seq_len, 256)]", 1, 1e9),
        XDT_OPT_INT("threads", &a->threads, "N", "CPU threads, 0 = all cores [0]", 0, 1024),
        XDT_OPT_STRING("device", &a->device, "DEV", "device: cpu, cuda:N, hip:N [cpu]"),
        XDT_OPT_STRING("precision", &a->precision, "fp32|tf32|bf16",
                       "GEMM precision; storage and the optimizer stay fp32 (bf16 on the CPU "
                       "computes the GPU's numbers, more slowly) [fp32]"),
        XDT_OPT_STRING("attention", &a->attention, "auto|explicit|flash",
                       "GPU attention: the t x t probabilities kept (explicit) or fused kernels "
                       "keeping per-row statistics, for long sequences (flash; heads <= 64 dims); "
                       "auto: flash in bf16 on a GPU, else explicit [auto]"),
        XDT_OPT_STRING("ckpt-dir", &a->ckpt_dir, "DIR", "checkpoint directory"),
        XDT_OPT_INT("ckpt-every", &a->ckpt_every, "N",
                    "checkpoint every N steps (and at the end) [0 = end only]", 0, 1e9),
        XDT_OPT_FLAG("resume", &a->resume, "continue from the latest checkpoint in --ckpt-dir"),
        XDT_OPT_STRING("init", &a->init, "FILE.bin", "start from an llm.c model file"),
        XDT_OPT_STRING("export-llmc", &a->export_llmc, "FILE.bin",
                       "write the trained model in llm.c's format"),
        XDT_OPT_STRING("metrics", &a->metrics, "FILE.jsonl", "one JSON object per step"),
    };
    xdt_train_hparams_options(&a->h, &opts[14]);
    opts[14].help = "total training steps; 0 only converts --init to --export-llmc [200]";
    const int n_opts = 14 + XDT_TRAIN_OPTION_COUNT;
    bool help = false;
    if (xdt_cli_parse("train", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "train", "Trains a GPT model in one process on one device.", opts,
                      n_opts);
        return 0;
    }
    xdt_status st = run(&r);
    cleanup(&r);
    return st == XDT_OK ? 0 : 1;
}
