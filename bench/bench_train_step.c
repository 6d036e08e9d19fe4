/* bench_train_step.c: times one training step (forward + backward + AdamW) of a model on a device
 * (the CPU unless DEVICE names another, e.g. cuda:0), after warm-up; prints median ms/step,
 * tokens/s, achieved GFLOP/s, the machine's cblas_sgemm rate at the same thread count, and peak
 * RSS against the memory the step needs.
 *
 * usage: bench_train_step [--profile] MODEL.yaml B T THREADS [STEPS] [WARMUP] [DEVICE] [PRECISION]
 * (PRECISION: the GEMM precision, fp32 | tf32 | bf16, as xdt train --precision; fp32 default).
 * --profile: the steps run through the op profiler (devices/device_profiler.h) and the table of
 * where the timed steps' device time went follows the JSON line; the JSON says "profiled", as
 * timing every op costs a little (two events per op on a GPU). */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt.h"
#include "core/mem_info.h"
#include "core/model_config.h"
#include "core/optimizer.h"
#include "core/rng.h"
#include "core/train_metrics.h"
#include "devices/device.h"
#include "devices/device_profiler.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Median GFLOP/s of a square cblas_sgemm of size n on `threads` OpenBLAS threads: the machine's
 * reference rate. */
static double sgemm_gflops(int n, int reps, int threads) {
    openblas_set_num_threads(threads);
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++)
        a[i] = b[i] = 0.001f * (float)(i % 1000);
    double t[16];
    for (int r = 0; r < reps + 2; r++) {
        double t0 = xdt_now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        if (r >= 2) t[r - 2] = xdt_now_s() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / median(t, reps) / 1e9;
}

int main(int argc, char **argv) {
    const bool profile = argc > 1 && !strcmp(argv[1], "--profile");
    if (profile) {
        argv[1] = argv[0];
        argv++;
        argc--;
    }
    if (argc < 5) {
        fprintf(stderr,
                "usage: %s [--profile] MODEL.yaml B T THREADS [STEPS] [WARMUP] [DEVICE] "
                "[PRECISION]\n",
                argv[0]);
        return 2;
    }
    xdt_model_config cfg;
    if (xdt_model_config_load(argv[1], &cfg) != XDT_OK) return 1;
    const int b = atoi(argv[2]), t = atoi(argv[3]), threads = atoi(argv[4]);
    const int steps = argc > 5 ? atoi(argv[5]) : 10, warmup = argc > 6 ? atoi(argv[6]) : 3;
    const char *device = argc > 7 ? argv[7] : "cpu";
    xdt_device_options o = {.threads = threads};
    if (steps < 1 || steps > 1000 || warmup < 0 ||
        (argc > 8 && !xdt_precision_parse(argv[8], &o.gemm_precision))) {
        fprintf(stderr, "%s: bad STEPS, WARMUP or PRECISION (fp32, tf32, bf16)\n", argv[0]);
        return 2;
    }
    double gemm_rate = sgemm_gflops(2048, 5, threads);
    xdt_device *gpu_or_cpu, *dev;
    if (xdt_device_create(device, &o, &gpu_or_cpu) != XDT_OK) return 1;
    dev = gpu_or_cpu;
    if (profile && xdt_device_profiler_create(gpu_or_cpu, &dev) != XDT_OK) return 1;
    xdt_stage *st;
    if (xdt_stage_create(&cfg, dev, 0, cfg.n_layer + 1, b, t, 1, &st) != XDT_OK) return 1;
    xdt_stage_init_params(st, 1);
    xdt_optim_config oc = {.lr = 1e-4f,
                           .beta1 = 0.9f,
                           .beta2 = 0.95f,
                           .eps = 1e-8f,
                           .weight_decay = 0.1f,
                           .grad_clip = 1.0f,
                           .warmup_steps = 0,
                           .total_steps = steps + warmup,
                           .decay = XDT_LR_COSINE};
    xdt_optimizer *opt;
    if (xdt_optimizer_create(&oc, st, &opt) != XDT_OK) return 1;
    xdt_rng rng;
    xdt_rng_seed(&rng, 3, 0);
    int32_t *tokens = malloc(sizeof(int32_t) * b * t), *targets = malloc(sizeof(int32_t) * b * t);
    if (!tokens || !targets) return 1;
    for (int i = 0; i < b * t; i++) {
        tokens[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)cfg.vocab_size);
        targets[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)cfg.vocab_size);
    }
    /* the stage's buffers are device memory: copy, never write them from the host */
    dev->ops->copy(dev->ctx, xdt_stage_tokens(st, 0), tokens, sizeof(int32_t) * b * t,
                   XDT_COPY_HOST_TO_DEVICE);
    dev->ops->copy(dev->ctx, xdt_stage_targets(st, 0), targets, sizeof(int32_t) * b * t,
                   XDT_COPY_HOST_TO_DEVICE);
    free(tokens);
    free(targets);
    double flops = 0;
    for (int u = 0; u < xdt_gpt_num_units(&cfg); u++) {
        xdt_unit_info info;
        xdt_gpt_unit_info(&cfg, u, b, t, &info);
        flops += info.fwd_flops + info.bwd_flops;
    }
    double *ms = calloc((size_t)steps, sizeof(double));
    double *fwd_ms = calloc((size_t)steps, sizeof(double)),
           *bwd_ms = calloc((size_t)steps, sizeof(double));
    double loss = 0;
    for (int s = 0; s < warmup + steps; s++) {
        if (profile && s == warmup) xdt_device_profiler_reset(dev);
        double t0 = xdt_now_s(), sumsq = 0;
        xdt_stage_zero_grads(st);
        if (xdt_stage_forward(st, 0, true, 1.0f / (float)(b * t)) || xdt_stage_loss(st, 0, &loss))
            return 1;
        double t1 = xdt_now_s();
        if (xdt_stage_backward(st, 0)) return 1;
        double t2 = xdt_now_s();
        if (xdt_optimizer_grad_sumsq(opt, &sumsq) || xdt_optimizer_step(opt, s, sqrt(sumsq)))
            return 1;
        if (s >= warmup) {
            ms[s - warmup] = (xdt_now_s() - t0) * 1e3;
            fwd_ms[s - warmup] = (t1 - t0) * 1e3;
            bwd_ms[s - warmup] = (t2 - t1) * 1e3;
        }
    }
    double med = median(ms, steps), fwd = median(fwd_ms, steps), bwd = median(bwd_ms, steps);
    xdt_stage_memory m;
    xdt_stage_memory_estimate(&cfg, dev, 0, cfg.n_layer + 1, b, t, 1, &m);
    double need = xdt_stage_memory_total(&m, true);
    double rss = (double)xdt_peak_rss_bytes();
    printf("{\"impl\":\"xdt\",\"device\":\"%s\",\"precision\":\"%s\",\"model\":\"%s\",\"B\":%d,"
           "\"T\":%d,\"threads\":%d,"
           "\"steps\":%d,"
           "\"ms_per_step\":%.3f,\"forward_ms\":%.3f,\"backward_ms\":%.3f,\"tokens_per_s\":%.1f,"
           "\"gflops\":%.2f,\"sgemm_gflops\":%.2f,"
           "\"peak_rss_mib\":%.1f,\"model_state_mib\":%.1f,\"rss_ratio\":%.3f,\"loss\":%.4f,"
           "\"profiled\":%s}\n",
           dev->name, xdt_precision_name(o.gemm_precision), cfg.name, b, t, threads, steps, med,
           fwd, bwd, b * t / (med / 1e3), flops / (med / 1e3) / 1e9, gemm_rate, rss / 1048576.0,
           need / 1048576.0, rss / need, loss, profile ? "true" : "false");
    if (profile) {
        char title[160];
        snprintf(title, sizeof title, "xdt %s %s B=%d T=%d, %d steps", cfg.name,
                 xdt_precision_name(o.gemm_precision), b, t, steps);
        if (xdt_device_profiler_print(dev, stdout, title, 30) != XDT_OK) return 1;
    }
    free(ms);
    free(fwd_ms);
    free(bwd_ms);
    xdt_optimizer_destroy(opt);
    xdt_stage_destroy(st);
    if (dev != gpu_or_cpu) xdt_device_destroy(dev);
    xdt_device_destroy(gpu_or_cpu);
    return 0;
}
