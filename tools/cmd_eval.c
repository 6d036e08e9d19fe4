/* cmd_eval.c: `xdt eval`: mean cross-entropy of a saved model over consecutive windows from the
 * start of a data file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch_loader.h"
#include "core/checkpoint.h"
#include "core/gpt.h"
#include "core/llmc_io.h"
#include "core/log.h"
#include "core/token_data.h"
#include "devices/device.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/model_setup.h"

typedef struct eval_args {
    const char *init, *ckpt_dir, *data, *device;
    int batch, seq, max_batches, threads;
    bool json;
} eval_args;

typedef struct window_src {
    const xdt_token_data *data;
    int b, t;
} window_src;

static void data_window(void *arg, int i, int32_t *inputs, int32_t *targets) {
    window_src *w = arg;
    xdt_token_window(w->data, (size_t)i * w->b * w->t, w->b, w->t, inputs, targets);
}

static xdt_status run(const eval_args *a, double *loss, int *batches) {
    if (!!a->init == !!a->ckpt_dir)
        return xdt_fail(XDT_ERR_CONFIG, "xdt eval: give exactly one of --init and --ckpt-dir");
    char ckpt[4096];
    xdt_model_config cfg;
    xdt_ckpt_meta meta;
    xdt_status st;
    if (a->init)
        st = xdt_llmc_peek(a->init, &cfg);
    else if ((st = xdt_checkpoint_latest(a->ckpt_dir, ckpt, sizeof ckpt)) == XDT_OK)
        st = xdt_checkpoint_peek(ckpt, &cfg, &meta);
    if (st) return st;
    if (!a->init && (meta.first_unit != 0 || meta.last_unit != cfg.n_layer + 1))
        return xdt_fail(XDT_ERR_CONFIG, "%s: holds units %d..%d, not the whole model", ckpt,
                        meta.first_unit, meta.last_unit);
    if (a->seq > cfg.max_seq_len)
        return xdt_fail(XDT_ERR_CONFIG, "xdt eval: --seq %d exceeds the model's max_seq_len %d",
                        a->seq, cfg.max_seq_len);
    xdt_token_data data = {0};
    xdt_device *dev = NULL;
    xdt_stage *stage = NULL;
    int32_t *inputs = NULL, *targets = NULL;
    if ((st = xdt_token_data_load(a->data, &data)) ||
        (st = xdt_token_data_check_vocab(&data, cfg.vocab_size)) ||
        (!strcmp(a->device, "cpu") && (st = xdt_check_memory_fits(&cfg, a->batch, a->seq, false))))
        goto out;
    int n = xdt_token_windows(&data, a->batch, a->seq);
    if (n == 0) {
        st = xdt_fail(XDT_ERR_CONFIG,
                      "%s: %zu tokens, fewer than one window of --batch %d x "
                      "--seq %d + 1",
                      a->data, data.n, a->batch, a->seq);
        goto out;
    }
    if (a->max_batches > 0 && n > a->max_batches) n = a->max_batches;
    xdt_device_options dopts = {.threads = a->threads};
    if ((st = xdt_device_create(a->device, &dopts, &dev)) ||
        (st = xdt_check_device_memory_fits(dev, &cfg, a->batch, a->seq, false)) ||
        (st = xdt_stage_create(&cfg, dev, 0, cfg.n_layer + 1, a->batch, a->seq, 1, &stage)))
        goto out;
    st = a->init ? xdt_llmc_import(a->init, stage) : xdt_checkpoint_load(ckpt, stage, NULL, NULL);
    if (st) goto out;
    size_t bt = (size_t)a->batch * a->seq;
    inputs = malloc(bt * sizeof(int32_t));
    targets = malloc(bt * sizeof(int32_t));
    if (!inputs || !targets) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "xdt eval: batch buffers");
        goto out;
    }
    window_src src = {&data, a->batch, a->seq};
    if ((st = xdt_mean_loss(stage, n, data_window, &src, inputs, targets, loss))) goto out;
    *batches = n;
out:
    free(inputs);
    free(targets);
    xdt_stage_destroy(stage);
    xdt_device_destroy(dev);
    xdt_token_data_free(&data);
    return st;
}

int xdt_cmd_eval(int argc, char **argv) {
    eval_args a = {.device = "cpu", .batch = 4, .seq = 64};
    xdt_cli_opt opts[] = {
        XDT_OPT_STRING("init", &a.init, "FILE.bin", "an llm.c model file"),
        XDT_OPT_STRING("ckpt-dir", &a.ckpt_dir, "DIR", "the latest checkpoint in DIR"),
        XDT_OPT_REQUIRED("data", &a.data, "PATH", "text file or llm.c .bin shard"),
        XDT_OPT_INT("batch", &a.batch, "B", "rows per window [4]", 1, 1e9),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per row [64]", 1, 1e9),
        XDT_OPT_INT("max-batches", &a.max_batches, "N", "at most N windows, 0 = all [0]", 0, 1e9),
        XDT_OPT_INT("threads", &a.threads, "N", "CPU threads, 0 = all cores [0]", 0, 1024),
        XDT_OPT_STRING("device", &a.device, "DEV", "device: cpu, cuda:N, hip:N [cpu]"),
        XDT_OPT_FLAG("json", &a.json, "print one JSON object"),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("eval", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "eval",
                      "Prints the mean cross-entropy of a model (--init FILE.bin "
                      "or --ckpt-dir DIR) over consecutive B x T windows from the start of the "
                      "data.",
                      opts, n_opts);
        return 0;
    }
    double loss = 0;
    int batches = 0;
    if (run(&a, &loss, &batches) != XDT_OK) return 1;
    long long tokens = (long long)batches * a.batch * a.seq;
    if (a.json)
        printf("{\"loss\":%.9g,\"batches\":%d,\"tokens\":%lld}\n", loss, batches, tokens);
    else
        printf("eval loss %.6f over %d batches (%lld tokens)\n", loss, batches, tokens);
    return 0;
}
