/* cmd_bench_codec.c: `xdt bench codec`: single-thread encode and decode speed (GB/s of fp32, the
 * median over iterations), compression ratio and relative error of the wire codecs, on gaussian
 * data and on real tensors of a small model trained in-process for a few steps: the boundary
 * activations after the middle block and the gradient that flows back across that boundary. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/batch_loader.h"
#include "core/gpt.h"
#include "core/log.h"
#include "core/model_config.h"
#include "core/optimizer.h"
#include "core/token_data.h"
#include "core/train_metrics.h"
#include "devices/device.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/model_setup.h"
#include "transports/codecs/codec.h"

#define DEFAULT_CODECS "none,zstd:1,zstd:3,fp16,bf16,bf16+ef,int8,int8+ef,int4,int4+ef"
#define MAX_SETS       3

typedef struct bench_args {
    const char *codecs, *model, *data, *device;
    int size, iters, steps, batch, seq, isa, threads;
    bool json, no_model;
} bench_args;

typedef struct data_set {
    const char *name;
    float *x;
    size_t n;
} data_set;

/* ---- real tensors from a briefly trained model ---- */

/* Copies every tensor of `from` that `to` also holds (the LM head copy takes wte). */
static void copy_params(xdt_stage *to, xdt_stage *from) {
    int nt, nf;
    const xdt_param_tensor *tt = xdt_stage_tensors(to, &nt), *tf = xdt_stage_tensors(from, &nf);
    xdt_device *dev = xdt_stage_device(to);
    for (int i = 0; i < nt; i++) {
        xdt_param_role want = tt[i].role == XDT_P_LM_HEAD ? XDT_P_WTE : tt[i].role;
        for (int j = 0; j < nf; j++)
            if (tf[j].role == want && tf[j].layer == tt[i].layer)
                dev->ops->copy(dev->ctx, xdt_stage_params(to) + tt[i].offset,
                               xdt_stage_params(from) + tf[j].offset, tt[i].count * sizeof(float),
                               XDT_COPY_DEVICE_TO_DEVICE);
    }
}

typedef struct model_run {
    xdt_model_config cfg;
    xdt_token_data data;
    xdt_batch_loader loader;
    xdt_device *dev;
    xdt_stage *whole, *front, *back;
    xdt_optimizer *opt;
    int32_t *inputs, *targets;
} model_run;

static xdt_status train_whole(model_run *r, const bench_args *a) {
    const int b = a->batch, t = a->seq;
    xdt_status st;
    xdt_optim_config oc = {.lr = 1e-3f,
                           .beta1 = 0.9f,
                           .beta2 = 0.95f,
                           .eps = 1e-8f,
                           .weight_decay = 0.1f,
                           .grad_clip = 1.0f,
                           .warmup_steps = a->steps / 3,
                           .total_steps = a->steps,
                           .decay = XDT_LR_COSINE};
    if ((st = xdt_stage_create(&r->cfg, r->dev, 0, r->cfg.n_layer + 1, b, t, 1, &r->whole)) ||
        (st = xdt_stage_init_params(r->whole, 1337)) ||
        (st = xdt_optimizer_create(&oc, r->whole, &r->opt)))
        return st;
    double loss = 0, sumsq = 0, t0 = xdt_now_s();
    for (int step = 0; step < a->steps; step++) {
        xdt_batch_loader_next(&r->loader, r->inputs, r->targets);
        xdt_stage_load_batch(r->whole, r->inputs, r->targets);
        xdt_stage_zero_grads(r->whole);
        if ((st = xdt_stage_forward(r->whole, 0, true, 1.0f / ((float)b * t))) ||
            (st = xdt_stage_loss(r->whole, 0, &loss)) || (st = xdt_stage_backward(r->whole, 0)) ||
            (st = xdt_optimizer_grad_sumsq(r->opt, &sumsq)) ||
            (st = xdt_optimizer_step(r->opt, step, sqrt(sumsq))))
            return st;
    }
    xdt_log_info("bench codec: trained %s for %d steps in %.1f s (loss %.3f)", r->cfg.name,
                 a->steps, xdt_now_s() - t0, loss);
    return XDT_OK;
}

/* Runs one more batch through the model cut after block L/2 and copies out the boundary
 * activations and the gradient arriving at that boundary. */
static xdt_status boundary_tensors(model_run *r, const bench_args *a, data_set *act,
                                   data_set *grad) {
    const int b = a->batch, t = a->seq, cut = r->cfg.n_layer / 2 > 0 ? r->cfg.n_layer / 2 : 1;
    const size_t n = (size_t)b * t * r->cfg.n_embd, tok = (size_t)b * t * sizeof(int32_t);
    xdt_status st;
    if ((st = xdt_stage_create(&r->cfg, r->dev, 0, cut, b, t, 1, &r->front)) ||
        (st = xdt_stage_create(&r->cfg, r->dev, cut + 1, r->cfg.n_layer + 1, b, t, 1, &r->back)))
        return st;
    copy_params(r->front, r->whole);
    copy_params(r->back, r->whole);
    xdt_batch_loader_next(&r->loader, r->inputs, r->targets);
    xdt_device *dev = r->dev;
    dev->ops->copy(dev->ctx, xdt_stage_tokens(r->front, 0), r->inputs, tok,
                   XDT_COPY_HOST_TO_DEVICE);
    dev->ops->copy(dev->ctx, xdt_stage_targets(r->back, 0), r->targets, tok,
                   XDT_COPY_HOST_TO_DEVICE);
    xdt_stage_zero_grads(r->back);
    if ((st = xdt_stage_forward(r->front, 0, false, 0.0f))) return st;
    dev->ops->copy(dev->ctx, xdt_stage_input(r->back, 0), xdt_stage_output(r->front, 0),
                   n * sizeof(float), XDT_COPY_DEVICE_TO_DEVICE);
    if ((st = xdt_stage_forward(r->back, 0, true, 1.0f / ((float)b * t))) ||
        (st = xdt_stage_backward(r->back, 0)))
        return st;
    act->x = malloc(n * sizeof(float));
    grad->x = malloc(n * sizeof(float));
    if (!act->x || !grad->x) return xdt_fail(XDT_ERR_NO_MEMORY, "bench codec: %zu values", n);
    dev->ops->copy(dev->ctx, act->x, xdt_stage_output(r->front, 0), n * sizeof(float),
                   XDT_COPY_DEVICE_TO_HOST);
    dev->ops->copy(dev->ctx, grad->x, xdt_stage_grad_input(r->back), n * sizeof(float),
                   XDT_COPY_DEVICE_TO_HOST);
    act->n = grad->n = n;
    return xdt_device_sync(dev);
}

static xdt_status model_tensors(const bench_args *a, data_set *act, data_set *grad) {
    model_run r = {0};
    xdt_status st;
    if ((st = xdt_model_config_load(a->model, &r.cfg))) return st;
    if (a->seq > r.cfg.max_seq_len)
        return xdt_fail(XDT_ERR_CONFIG, "xdt bench codec: --seq %d exceeds max_seq_len %d of %s",
                        a->seq, r.cfg.max_seq_len, a->model);
    size_t bt = (size_t)a->batch * a->seq;
    xdt_device_options dopts = {.threads = a->threads};
    if ((st = xdt_check_memory_fits(&r.cfg, a->batch, a->seq, true)) ||
        (st = xdt_token_data_load(a->data, &r.data)) ||
        (st = xdt_token_data_check_vocab(&r.data, r.cfg.vocab_size)) ||
        (st = xdt_batch_loader_init(&r.loader, &r.data, a->batch, a->seq, 0.0, XDT_ORDER_RANDOM,
                                    1337)) ||
        (st = xdt_device_create(a->device, &dopts, &r.dev)))
        goto out;
    r.inputs = malloc(bt * sizeof(int32_t));
    r.targets = malloc(bt * sizeof(int32_t));
    if (!r.inputs || !r.targets) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "bench codec: batch buffers");
        goto out;
    }
    if ((st = train_whole(&r, a)) == XDT_OK) st = boundary_tensors(&r, a, act, grad);
out:
    free(r.inputs);
    free(r.targets);
    xdt_optimizer_destroy(r.opt);
    xdt_stage_destroy(r.back);
    xdt_stage_destroy(r.front);
    xdt_stage_destroy(r.whole);
    xdt_device_destroy(r.dev);
    xdt_token_data_free(&r.data);
    return st;
}

/* ---- timing ---- */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct result {
    double enc_gbps, dec_gbps, ratio, rel_err;
    size_t bytes;
} result;

static xdt_status bench_one(const xdt_codec_spec *spec, const bench_args *a, const data_set *d,
                            double *times, result *res) {
    xdt_codec *c = NULL;
    size_t cap = xdt_codec_max_encoded_bytes(spec, d->n), w = 0;
    uint8_t *buf = malloc(cap);
    float *y = malloc(d->n * sizeof(float));
    xdt_status st = XDT_ERR_NO_MEMORY;
    if (!buf || !y) {
        st = xdt_fail(st, "bench codec: buffers for %zu values", d->n);
        goto out;
    }
    if ((st = xdt_codec_create(spec, d->n, &c)) ||
        (st = xdt_codec_set_isa(c, (xdt_codec_isa)a->isa)))
        goto out;
    const double bytes = 4.0 * (double)d->n;
    /* one untimed round first: page faults and zstd's first allocation */
    if ((st = xdt_codec_encode(c, d->x, d->n, buf, cap, &w)) ||
        (st = xdt_codec_decode(c, buf, w, y, d->n)))
        goto out;
    for (int i = 0; i < a->iters; i++) {
        double t0 = xdt_now_s();
        st = xdt_codec_encode(c, d->x, d->n, buf, cap, &w);
        times[i] = xdt_now_s() - t0;
        if (st) goto out;
    }
    qsort(times, (size_t)a->iters, sizeof *times, cmp_double);
    res->enc_gbps = bytes / times[a->iters / 2] / 1e9;
    for (int i = 0; i < a->iters; i++) {
        double t0 = xdt_now_s();
        st = xdt_codec_decode(c, buf, w, y, d->n);
        times[i] = xdt_now_s() - t0;
        if (st) goto out;
    }
    qsort(times, (size_t)a->iters, sizeof *times, cmp_double);
    res->dec_gbps = bytes / times[a->iters / 2] / 1e9;
    res->bytes = w;
    res->ratio = bytes / (double)w;
    double num = 0, den = 0;
    for (size_t i = 0; i < d->n; i++) {
        double e = (double)y[i] - (double)d->x[i];
        num += e * e;
        den += (double)d->x[i] * d->x[i];
    }
    res->rel_err = den > 0 ? sqrt(num / den) : sqrt(num);
out:
    xdt_codec_destroy(c);
    free(buf);
    free(y);
    return st;
}

/* Splits the comma-separated --codec list into specs. */
static xdt_status parse_codecs(const char *list, xdt_codec_spec **out, int *count) {
    char *copy = strdup(list);
    int n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    xdt_codec_spec *specs = calloc((size_t)n, sizeof *specs);
    xdt_status st = XDT_OK;
    if (!copy || !specs) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "bench codec: codec list");
        goto out;
    }
    int k = 0;
    for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save))
        if ((st = xdt_codec_parse(tok, &specs[k++]))) goto out;
    if (k == 0) {
        st = xdt_fail(XDT_ERR_CONFIG, "xdt bench codec: --codec names no codec");
        goto out;
    }
    *out = specs;
    *count = k;
    specs = NULL;
out:
    free(specs);
    free(copy);
    return st;
}

static xdt_status run(const bench_args *a) {
    xdt_codec_spec *specs = NULL;
    int n_specs = 0, n_sets = 0;
    data_set sets[MAX_SETS] = {{0}};
    double *times = NULL;
    xdt_status st = parse_codecs(a->codecs, &specs, &n_specs);
    if (st) return st;
    if (a->isa != XDT_CODEC_ISA_AUTO && !xdt_codec_isa_available((xdt_codec_isa)a->isa)) {
        st = xdt_fail(XDT_ERR_UNSUPPORTED, "xdt bench codec: --isa %s is not available here",
                      xdt_codec_isa_name((xdt_codec_isa)a->isa));
        goto out;
    }
    sets[0] = (data_set){"gaussian", malloc(((size_t)a->size / 4 + 1) * sizeof(float)),
                         (size_t)a->size / 4};
    times = malloc((size_t)a->iters * sizeof(double));
    if (!sets[0].x || !times) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "bench codec: %d bytes of data", a->size);
        goto out;
    }
    uint64_t s = 0x853c49e6748fea9bull;
    for (size_t i = 0; i < sets[0].n; i += 2) { /* Box-Muller pairs from a 64-bit LCG */
        double u[2];
        for (int k = 0; k < 2; k++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            u[k] = ((double)(s >> 11) + 0.5) * 0x1p-53;
        }
        double r = sqrt(-2.0 * log(u[0]));
        sets[0].x[i] = (float)(r * cos(6.283185307179586 * u[1]));
        if (i + 1 < sets[0].n) sets[0].x[i + 1] = (float)(r * sin(6.283185307179586 * u[1]));
    }
    n_sets = 1;
    if (!a->no_model) {
        sets[1].name = "activations";
        sets[2].name = "act-grads";
        if ((st = model_tensors(a, &sets[1], &sets[2]))) goto out;
        n_sets = 3;
    }
    xdt_codec_isa isa = a->isa ? (xdt_codec_isa)a->isa : XDT_CODEC_ISA_AUTO;
    if (isa == XDT_CODEC_ISA_AUTO) { /* name the path AUTO resolves to */
        xdt_codec *probe = NULL;
        if ((st = xdt_codec_create(&specs[0], 1, &probe))) goto out;
        isa = xdt_codec_get_isa(probe);
        xdt_codec_destroy(probe);
    }
    if (a->json)
        printf("{\"isa\":\"%s\",\"iters\":%d,\"results\":[", xdt_codec_isa_name(isa), a->iters);
    else
        printf("codec kernels: %s; one thread; median of %d iterations; GB/s of fp32 data\n%-12s "
               "%10s %-20s %8s %9s %9s %10s\n",
               xdt_codec_isa_name(isa), a->iters, "data", "values", "codec", "ratio", "enc GB/s",
               "dec GB/s", "rel.err");
    for (int di = 0; di < n_sets; di++)
        for (int ci = 0; ci < n_specs; ci++) {
            result res = {0};
            char name[XDT_CODEC_NAME_MAX];
            xdt_codec_name(&specs[ci], name, sizeof name);
            if ((st = bench_one(&specs[ci], a, &sets[di], times, &res))) goto out;
            if (a->json)
                printf("%s{\"data\":\"%s\",\"values\":%zu,\"codec\":\"%s\",\"bytes\":%zu,\"ratio\":"
                       "%.4f,\"encode_gbps\":%.3f,\"decode_gbps\":%.3f,\"rel_rms_error\":%.3e}",
                       di || ci ? "," : "", sets[di].name, sets[di].n, name, res.bytes, res.ratio,
                       res.enc_gbps, res.dec_gbps, res.rel_err);
            else
                printf("%-12s %10zu %-20s %8.3f %9.2f %9.2f %10.2e\n", sets[di].name, sets[di].n,
                       name, res.ratio, res.enc_gbps, res.dec_gbps, res.rel_err);
            fflush(stdout);
        }
    if (a->json) printf("]}\n");
out:
    for (int i = 0; i < MAX_SETS; i++)
        free(sets[i].x);
    free(times);
    free(specs);
    return st;
}

int xdt_cmd_bench_codec(int argc, char **argv) {
    bench_args a = {
        .codecs = DEFAULT_CODECS,
        .model = "configs/models/gpt-small-cpu.yaml",
        .data = "/usr/share/common-licenses/GPL-3",
        .device = "cpu",
        .size = 4 << 20,
        .iters = 20,
        .steps = 30,
        .batch = 8,
        .seq = 256,
    };
    xdt_cli_opt opts[] = {
        XDT_OPT_INT("size", &a.size, "BYTES", "gaussian data size [4194304]", 16, 1 << 30),
        XDT_OPT_STRING("codec", &a.codecs, "LIST",
                       "comma-separated codec specs [" DEFAULT_CODECS "]"),
        XDT_OPT_INT("iters", &a.iters, "N", "timed iterations per codec [20]", 1, 1e6),
        XDT_OPT_CHOICE("isa", &a.isa, "auto|scalar|avx2|avx512", "kernel path [auto]"),
        XDT_OPT_STRING("model", &a.model, "FILE.yaml",
                       "model for real tensors [configs/models/gpt-small-cpu.yaml]"),
        XDT_OPT_STRING("data", &a.data, "PATH", "training text [/usr/share/common-licenses/GPL-3]"),
        XDT_OPT_INT("steps", &a.steps, "N", "training steps before the tensors are taken [30]", 0,
                    1e6),
        XDT_OPT_INT("batch", &a.batch, "B", "rows per batch [8]", 1, 1e6),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per row [256]", 1, 1e6),
        XDT_OPT_INT("threads", &a.threads, "N", "CPU threads for training, 0 = all [0]", 0, 1024),
        XDT_OPT_STRING("device", &a.device, "DEV", "device for training [cpu]"),
        XDT_OPT_FLAG("no-model", &a.no_model, "gaussian data only (no training)"),
        XDT_OPT_FLAG("json", &a.json, "print one JSON object"),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("bench codec", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "bench codec",
                      "Measures the wire codecs: encode and decode GB/s on one core (median), "
                      "compression ratio and relative RMS error, on gaussian data and on the "
                      "boundary activations and gradients of a model trained for --steps.",
                      opts, n_opts);
        return 0;
    }
    return run(&a) == XDT_OK ? 0 : 1;
}
