/* test_train_gpu.c: whole training steps on a GPU backend against the CPU backend, in one
 * process: gpt-tiny built on both devices from the same seed, 8 steps of forward, backward,
 * global-norm clipping and AdamW on the same random batches; the losses must agree to 1e-4
 * relative in fp32 and 1e-3 with the bf16 GEMM precision, and the final parameters to 1e-4
 * (fp32, normalised). Where test_device_ops checks each op alone, this checks them in the
 * sequence a step runs them: workspaces shared between ops, the embedding backward's host round
 * trip, the optimizer over one parameter allocation, errors surfacing at sync. The fp32 and bf16
 * runs are repeated with the GPU's fused (flash) attention, whose state the stage sizes from the
 * device (in bf16, on tensor cores where the device has them).
 *
 * The device is XDT_TEST_GPU when set, else cuda:0, else hip:0; without one it exits 77. Built
 * with XDT_TEST_EMU, it runs the backend's sources under the CPU emulation (gpu_emu.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gpt.h"
#include "core/model_config.h"
#include "core/optimizer.h"
#include "core/rng.h"
#include "devices/device.h"
#include "tests/unit/test_util.h"

#ifdef XDT_TEST_EMU
xdt_status xdt_gpuemu_device_create(int index, const xdt_device_options *opts, xdt_device **out);
#endif

#ifdef XDT_TEST_EMU
#define B 2
#define T 16
#else
#define B 4
#define T 32
#endif
#define STEPS 8

/* One device's model and optimizer. */
typedef struct trainer {
    xdt_device *dev;
    xdt_stage *stage;
    xdt_optimizer *opt;
    size_t free_at_open; /* the device's free memory before the stage was built */
} trainer;

static xdt_status open_gpu(const xdt_device_options *o, xdt_device **out) {
#ifdef XDT_TEST_EMU
    return xdt_gpuemu_device_create(0, o, out);
#else
    const char *want = getenv("XDT_TEST_GPU");
    if (want && *want) return xdt_device_create(want, o, out);
    if (xdt_device_create("cuda:0", o, out) == XDT_OK) return XDT_OK;
    return xdt_device_create("hip:0", o, out);
#endif
}

static xdt_status trainer_open(trainer *tr, const xdt_model_config *cfg, bool gpu,
                               xdt_precision precision, bool flash) {
    const xdt_device_options o = {
        .threads = 2, .gemm_precision = precision, .flash_attention = flash};
    xdt_status st = gpu ? open_gpu(&o, &tr->dev) : xdt_device_create("cpu", &o, &tr->dev);
    if (st) return st;
    size_t total = 0;
    if (tr->dev->ops->mem_info &&
        (st = tr->dev->ops->mem_info(tr->dev->ctx, &tr->free_at_open, &total)))
        return st;
    const xdt_optim_config oc = {.lr = 3e-3f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.95f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.1f,
                                 .grad_clip = 1.0f,
                                 .warmup_steps = 2,
                                 .total_steps = STEPS,
                                 .decay = XDT_LR_COSINE};
    if ((st = xdt_stage_create(cfg, tr->dev, 0, cfg->n_layer + 1, B, T, 1, &tr->stage)) ||
        (st = xdt_stage_init_params(tr->stage, 1337)) ||
        (st = xdt_optimizer_create(&oc, tr->stage, &tr->opt)))
        return st;
    return XDT_OK;
}

static void trainer_close(trainer *tr) {
    xdt_optimizer_destroy(tr->opt);
    xdt_stage_destroy(tr->stage);
    xdt_device_destroy(tr->dev);
}

/* One step on one device; the loss before the update. */
static xdt_status trainer_step(trainer *tr, int step, const int32_t *tokens, const int32_t *targets,
                               double *loss) {
    xdt_device *d = tr->dev;
    d->ops->copy(d->ctx, xdt_stage_tokens(tr->stage, 0), tokens, sizeof(int32_t) * B * T,
                 XDT_COPY_HOST_TO_DEVICE);
    d->ops->copy(d->ctx, xdt_stage_targets(tr->stage, 0), targets, sizeof(int32_t) * B * T,
                 XDT_COPY_HOST_TO_DEVICE);
    double sumsq = 0;
    xdt_stage_zero_grads(tr->stage);
    xdt_status st;
    if ((st = xdt_stage_forward(tr->stage, 0, true, 1.0f / (B * T))) ||
        (st = xdt_stage_loss(tr->stage, 0, loss)) || (st = xdt_stage_backward(tr->stage, 0)) ||
        (st = xdt_optimizer_grad_sumsq(tr->opt, &sumsq)) ||
        (st = xdt_optimizer_step(tr->opt, step, sqrt(sumsq))))
        return st;
    return xdt_device_sync(d);
}

/* The parameters, downloaded. */
static float *params_of(trainer *tr, size_t *n) {
    *n = xdt_stage_num_params(tr->stage);
    float *h = malloc(*n * sizeof(float));
    tr->dev->ops->copy(tr->dev->ctx, h, xdt_stage_params(tr->stage), *n * sizeof(float),
                       XDT_COPY_DEVICE_TO_HOST);
    xdt_device_sync(tr->dev);
    return h;
}

/* What the stage, its optimizer and the backend's own workspace took of the device, after the
 * steps, against xdt_stage_memory_estimate: the emulation's allocations are counted exactly
 * (within 1%: the stage rounds its carvings); a GPU may also hold cuBLAS's workspaces and round
 * to its pages, so there the estimate must cover all but 128 MiB of it. */
static void check_memory_estimate(trainer *tr, const xdt_model_config *cfg) {
    size_t free_now = 0, total = 0;
    if (!tr->dev->ops->mem_info ||
        tr->dev->ops->mem_info(tr->dev->ctx, &free_now, &total) != XDT_OK) {
        CHECK_MSG(0, "%s: no free-memory figure", tr->dev->name);
        return;
    }
    xdt_stage_memory m;
    xdt_stage_memory_estimate(cfg, tr->dev, 0, cfg->n_layer + 1, B, T, 1, &m);
    const double est = xdt_stage_memory_total(&m, true);
    const double used = (double)tr->free_at_open - (double)free_now;
    printf("  device memory: %.1f MiB used, %.1f MiB estimated (%.1f MiB the backend's "
           "workspace)\n",
           used / 1048576.0, est / 1048576.0, m.device_workspace_bytes / 1048576.0);
    CHECK_MSG(m.device_workspace_bytes > 0, "%s: no backend workspace estimated", tr->dev->name);
#ifdef XDT_TEST_EMU
    CHECK_MSG(fabs(used - est) <= 0.01 * est, "used %.0f bytes, estimated %.0f", used, est);
#else
    CHECK_MSG(used <= est + 128.0 * 1048576.0, "used %.0f bytes, estimated %.0f", used, est);
#endif
}

/* A random batch of a learnable rule: the next token is token + 1. */
static void next_batch(xdt_rng *rng, const xdt_model_config *cfg, int32_t *tokens,
                       int32_t *targets) {
    for (int i = 0; i < B * T; i++) {
        tokens[i] = (int32_t)xdt_rng_below(rng, (uint64_t)cfg->vocab_size);
        targets[i] = (tokens[i] + 1) % cfg->vocab_size;
    }
}

/* Trains on both devices (the GPU known to open). */
static void compare(const xdt_model_config *cfg, xdt_precision precision, bool flash, double tol) {
    trainer cpu = {0}, gpu = {0};
    const bool opened = trainer_open(&gpu, cfg, true, precision, flash) == XDT_OK &&
                        trainer_open(&cpu, cfg, false, precision, false) == XDT_OK;
    CHECK_MSG(opened, "cannot build the model and optimizer on both devices (%s)",
              xdt_precision_name(precision));
    if (!opened) {
        trainer_close(&cpu);
        trainer_close(&gpu);
        return;
    }
    printf("%s against cpu, GEMM precision %s%s\n", gpu.dev->name, xdt_precision_name(precision),
           flash ? ", flash attention" : "");
    xdt_rng rng;
    xdt_rng_seed(&rng, 99, 0);
    int32_t tokens[B * T], targets[B * T];
    double worst = 0, first = 0, last = 0;
    for (int s = 0; s < STEPS; s++) {
        next_batch(&rng, cfg, tokens, targets);
        double lc = NAN, lg = NAN;
        CHECK(trainer_step(&cpu, s, tokens, targets, &lc) == XDT_OK);
        CHECK(trainer_step(&gpu, s, tokens, targets, &lg) == XDT_OK);
        const double rel = fabs(lg - lc) / fabs(lc);
        printf("  step %d: cpu %.6f, gpu %.6f, relative difference %.2e\n", s + 1, lc, lg, rel);
        if (!(rel <= worst)) worst = rel; /* NaN too */
        if (s == 0) first = lc;
        last = lc;
    }
    CHECK_MSG(worst <= tol, "%s: losses differ by %.3e relative (> %.0e)",
              xdt_precision_name(precision), worst, tol);
    CHECK_MSG(last < first - 0.05, "the loss did not fall (%.4f -> %.4f)", first, last);
    check_memory_estimate(&gpu, cfg);
    if (precision == XDT_PRECISION_FP32) {
        size_t n = 0, m = 0;
        float *pc = params_of(&cpu, &n), *pg = params_of(&gpu, &m);
        double num = 0, den = 0;
        for (size_t i = 0; i < n && n == m; i++) {
            num += ((double)pg[i] - pc[i]) * ((double)pg[i] - pc[i]);
            den += (double)pc[i] * pc[i];
        }
        const double err = sqrt(num / (den > 0 ? den : 1));
        printf("  parameters after %d steps: normalised error %.2e\n", STEPS, err);
        CHECK_MSG(n == m && err <= 1e-4, "parameters differ: %.3e", err);
        free(pc);
        free(pg);
    }
    trainer_close(&cpu);
    trainer_close(&gpu);
}

/* The bf16 mode's sidecars (an op's bf16 copy of its output, handed to the next GEMM instead of
 * that GEMM copying it) change no bit: the same steps on two GPU devices, one opened with
 * XDT_GPU_BF16_SIDECAR=0, give the same losses and parameters. */
static void compare_sidecars(const xdt_model_config *cfg, bool flash) {
    trainer with = {0}, without = {0};
    bool opened = trainer_open(&with, cfg, true, XDT_PRECISION_BF16, flash) == XDT_OK;
    setenv("XDT_GPU_BF16_SIDECAR", "0", 1);
    opened = trainer_open(&without, cfg, true, XDT_PRECISION_BF16, flash) == XDT_OK && opened;
    unsetenv("XDT_GPU_BF16_SIDECAR");
    CHECK_MSG(opened, "cannot build the model twice on the GPU");
    if (opened) {
        printf("%s bf16%s, sidecars on against off\n", with.dev->name,
               flash ? ", flash attention" : "");
        xdt_rng rng;
        xdt_rng_seed(&rng, 7, 0);
        int32_t tokens[B * T], targets[B * T];
        int differ = 0;
        for (int s = 0; s < 4; s++) {
            next_batch(&rng, cfg, tokens, targets);
            double l1 = NAN, l2 = NAN;
            CHECK(trainer_step(&with, s, tokens, targets, &l1) == XDT_OK);
            CHECK(trainer_step(&without, s, tokens, targets, &l2) == XDT_OK);
            differ += memcmp(&l1, &l2, sizeof l1) != 0;
        }
        size_t n = 0, m = 0;
        float *p1 = params_of(&with, &n), *p2 = params_of(&without, &m);
        const bool same = n == m && !memcmp(p1, p2, n * sizeof(float));
        printf("  4 steps: %d losses differ, parameters %s\n", differ,
               same ? "identical" : "differ");
        CHECK_MSG(differ == 0 && same, "sidecars changed the result (%d losses differ)", differ);
        free(p1);
        free(p2);
    }
    trainer_close(&with);
    trainer_close(&without);
}

int main(void) {
#ifdef XDT_TEST_EMU
    /* the emulation runs a block's threads as fibers: a smaller model keeps it to seconds */
    const xdt_model_config cfg = {.name = "gpt-micro",
                                  .vocab_size = 64,
                                  .padded_vocab_size = 64,
                                  .max_seq_len = T,
                                  .n_layer = 1,
                                  .n_head = 2,
                                  .n_embd = 32};
    if (xdt_model_config_check(&cfg, "test_train_gpu") != XDT_OK) return 1;
#else
    const char *root = getenv("XDT_SOURCE_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/configs/models/gpt-tiny.yaml", root && *root ? root : ".");
    xdt_model_config cfg;
    if (xdt_model_config_load(path, &cfg) != XDT_OK) return 1;
#endif
    xdt_device *probe = NULL;
    const xdt_device_options o = {0};
    if (open_gpu(&o, &probe) != XDT_OK) {
        printf("SKIP: no GPU device could be opened (see the error above): this test needs a "
               "CUDA or HIP build and a GPU\n");
        return 77;
    }
    xdt_device_destroy(probe);
    compare(&cfg, XDT_PRECISION_FP32, false, 1e-4);
    compare(&cfg, XDT_PRECISION_BF16, false, 1e-3);
    compare(&cfg, XDT_PRECISION_FP32, true, 1e-4);
    compare(&cfg, XDT_PRECISION_BF16, true, 1e-3); /* flash on bf16 tensor cores, where present */
    compare_sidecars(&cfg, false);
    compare_sidecars(&cfg, true);
    return test_exit_code("test_train_gpu");
}
