/* cmd_profile.c: `xdt profile`: measures the forward and backward time of every model unit on a
 * device for a few microbatch sizes, and the device's GEMM rate, and writes profile.json, which
 * the planner's cost model uses instead of its roofline (planner/profile.h reads it).
 *
 * Method: the model is built as one stage per unit (embedding, each block, head with the loss),
 * all on the device, with GPT-2 initial weights and random tokens. Activations are copied from
 * each stage to the next and gradients back, untimed, so every unit sees real data. One forward
 * and backward pass over all units is a warm-up; then each unit's forward and backward are timed
 * (each call ends in a device sync) over --reps passes and the median is kept. The GEMM rate is
 * the median of a 1024^3 sgemm through the device's gemm (on the CPU: cblas_sgemm split over the
 * same threads the model's GEMMs use, as configs/devices.yaml's `cpu` entry quotes).
 *
 * profile.json (version 1), written atomically (temp file, fsync, rename):
 *   {
 *     "version": 1,
 *     "device_type": "cpu",        the catalog name (configs/devices.yaml) the times belong to
 *     "model": {"name": "gpt-small-cpu", "n_layer": 6, "n_embd": 256, "n_head": 8,
 *               "vocab_size": 256, "padded_vocab_size": 256},
 *     "seq": 256,                  T, tokens per row, for every entry below
 *     "threads": 2,                CPU threads of the device
 *     "reps": 5,                   timed passes per microbatch size (the median is recorded)
 *     "sgemm_tflops": 0.17,        device GEMM rate on 1024^3, fp32
 *     "microbatches": [            one entry per measured microbatch size b (rows)
 *       {"b": 1, "units": [        n_layer + 2 entries in unit order: 0 = embedding,
 *         {"unit": 0, "fwd_ms": 0.05, "bwd_ms": 0.11},   1..n_layer = blocks, n_layer+1 = head
 *         ...]},                   (final LN, LM head, cross-entropy); median milliseconds for
 *       ...]                       one microbatch of b x seq tokens
 *   } */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file_util.h"
#include "core/gpt.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/train_metrics.h"
#include "devices/device.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "tools/model_setup.h"

#define MAX_MICROBATCHES 32
#define SGEMM_N          1024

typedef struct profile_args {
    const char *model, *device, *device_type, *microbatch, *out;
    int seq, threads, reps, co_runners;
} profile_args;

/* Measured medians for one microbatch size. */
typedef struct mb_times {
    int b;
    double *fwd_ms, *bwd_ms; /* [n_units] */
} mb_times;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of n values (reorders them). */
static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* "1,2,4,8" -> b[0..n): positive, distinct. */
static xdt_status parse_microbatches(const char *s, int *b, int *n) {
    int k = 0;
    const char *p = s;
    while (*p) {
        char *end = NULL;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > (1 << 20) || (*end && *end != ',') || k == MAX_MICROBATCHES)
            return xdt_fail(XDT_ERR_CONFIG,
                            "xdt profile: --microbatch: '%s' is not a list of up to %d positive "
                            "integers such as 1,2,4,8",
                            s, MAX_MICROBATCHES);
        for (int i = 0; i < k; i++)
            if (b[i] == (int)v)
                return xdt_fail(XDT_ERR_CONFIG, "xdt profile: --microbatch: %ld is listed twice",
                                v);
        b[k++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            return xdt_fail(XDT_ERR_CONFIG, "xdt profile: --microbatch: '%s' ends with a comma", s);
    }
    if (k == 0) return xdt_fail(XDT_ERR_CONFIG, "xdt profile: --microbatch is empty");
    *n = k;
    return XDT_OK;
}

/* Times every unit for microbatches of b x t; fills out->fwd_ms/bwd_ms (medians of reps). */
static xdt_status profile_microbatch(const xdt_model_config *cfg, xdt_device *dev, int b, int t,
                                     int reps, mb_times *out) {
    const int n_units = xdt_gpt_num_units(cfg), head = n_units - 1;
    const size_t n_tok = (size_t)b * t, act_bytes = n_tok * (size_t)cfg->n_embd * sizeof(float);
    xdt_status st = XDT_OK;
    xdt_stage **stages = calloc((size_t)n_units, sizeof *stages);
    double *fs = malloc((size_t)reps * n_units * sizeof *fs);
    double *bs = malloc((size_t)reps * n_units * sizeof *bs);
    int32_t *tokens = malloc(n_tok * sizeof *tokens), *targets = malloc(n_tok * sizeof *targets);
    if (!stages || !fs || !bs || !tokens || !targets) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "xdt profile: out of memory for b = %d", b);
        goto out;
    }
    for (int u = 0; u < n_units; u++)
        if ((st = xdt_stage_create(cfg, dev, u, u, b, t, 1, &stages[u])) ||
            (st = xdt_stage_init_params(stages[u], 1337)))
            goto out;
    xdt_rng rng;
    xdt_rng_seed(&rng, 1337, 0);
    for (size_t i = 0; i < n_tok; i++) {
        tokens[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)cfg->vocab_size);
        targets[i] = (int32_t)xdt_rng_below(&rng, (uint64_t)cfg->vocab_size);
    }
    dev->ops->copy(dev->ctx, xdt_stage_tokens(stages[0], 0), tokens, n_tok * sizeof(int32_t),
                   XDT_COPY_HOST_TO_DEVICE);
    dev->ops->copy(dev->ctx, xdt_stage_targets(stages[head], 0), targets, n_tok * sizeof(int32_t),
                   XDT_COPY_HOST_TO_DEVICE);
    const float dloss_scale = 1.0f / (float)n_tok;
    for (int r = -1; r < reps; r++) { /* r = -1: the warm-up pass */
        for (int u = 0; u < n_units; u++) {
            if (u > 0)
                dev->ops->copy(dev->ctx, xdt_stage_input(stages[u], 0),
                               xdt_stage_output(stages[u - 1], 0), act_bytes,
                               XDT_COPY_DEVICE_TO_DEVICE);
            if ((st = xdt_device_sync(dev))) goto out;
            double t0 = xdt_now_s();
            if ((st = xdt_stage_forward(stages[u], 0, true, dloss_scale))) goto out;
            if (r >= 0) fs[(size_t)u * reps + r] = (xdt_now_s() - t0) * 1e3;
        }
        for (int u = head; u >= 0; u--) {
            if (u < head)
                dev->ops->copy(dev->ctx, xdt_stage_grad_output(stages[u]),
                               xdt_stage_grad_input(stages[u + 1]), act_bytes,
                               XDT_COPY_DEVICE_TO_DEVICE);
            if ((st = xdt_device_sync(dev))) goto out;
            double t0 = xdt_now_s();
            if ((st = xdt_stage_backward(stages[u], 0))) goto out;
            if (r >= 0) bs[(size_t)u * reps + r] = (xdt_now_s() - t0) * 1e3;
        }
        for (int u = 0; u < n_units; u++)
            xdt_stage_zero_grads(stages[u]);
    }
    double loss = 0;
    if ((st = xdt_stage_loss(stages[head], 0, &loss))) goto out;
    if (!isfinite(loss)) {
        st = xdt_fail(XDT_ERR_NUMERIC, "xdt profile: loss is %g at b = %d", loss, b);
        goto out;
    }
    out->b = b;
    for (int u = 0; u < n_units; u++) {
        out->fwd_ms[u] = median(fs + (size_t)u * reps, reps);
        out->bwd_ms[u] = median(bs + (size_t)u * reps, reps);
    }
out:
    if (stages)
        for (int u = 0; u < n_units; u++)
            xdt_stage_destroy(stages[u]);
    free(stages);
    free(fs);
    free(bs);
    free(tokens);
    free(targets);
    return st;
}

/* Median TFLOP/s of an n^3 fp32 GEMM through the device. */
static xdt_status measure_sgemm(xdt_device *dev, int reps, double *tflops) {
    const size_t n = SGEMM_N, bytes = n * n * sizeof(float);
    float *a = NULL, *b = NULL, *c = NULL, *host = malloc(bytes);
    double times[16];
    if (reps > 16) reps = 16;
    if (reps < 3) reps = 3;
    xdt_status st = host ? XDT_OK : xdt_fail(XDT_ERR_NO_MEMORY, "xdt profile: sgemm buffers");
    if (st || (st = xdt_device_alloc(dev, bytes, (void **)&a)) ||
        (st = xdt_device_alloc(dev, bytes, (void **)&b)) ||
        (st = xdt_device_alloc(dev, bytes, (void **)&c)))
        goto out;
    for (size_t i = 0; i < n * n; i++)
        host[i] = 0.001f * (float)(i % 1000) - 0.5f;
    dev->ops->copy(dev->ctx, a, host, bytes, XDT_COPY_HOST_TO_DEVICE);
    dev->ops->copy(dev->ctx, b, host, bytes, XDT_COPY_HOST_TO_DEVICE);
    for (int r = -1; r < reps; r++) {
        if ((st = xdt_device_sync(dev))) goto out;
        double t0 = xdt_now_s();
        dev->ops->gemm(dev->ctx, false, false, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n,
                       0.0f, c, (int)n);
        if ((st = xdt_device_sync(dev))) goto out;
        if (r >= 0) times[r] = xdt_now_s() - t0;
    }
    *tflops = 2.0 * (double)n * n * n / median(times, reps) / 1e12;
out:
    xdt_device_free(dev, a);
    xdt_device_free(dev, b);
    xdt_device_free(dev, c);
    free(host);
    return st;
}

/* Milliseconds rounded to nanoseconds, so the file stays readable. */
static double ms(double v) {
    return round(v * 1e6) / 1e6;
}

/* Formats the profile and commits it through af (opened before measuring, so that an unwritable
 * path fails at once). */
static xdt_status write_profile(xdt_atomic_file *af, const profile_args *a,
                                const xdt_model_config *cfg, const char *device_type, int t,
                                int threads, double tflops, const mb_times *mbs, int n_mb) {
    const int n_units = xdt_gpt_num_units(cfg);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "version", cJSON_CreateNumber(1));
    cJSON_AddItemToObject(root, "device_type", cJSON_CreateString(device_type));
    cJSON_AddItemToObject(model, "name", cJSON_CreateString(cfg->name));
    cJSON_AddItemToObject(model, "n_layer", cJSON_CreateNumber(cfg->n_layer));
    cJSON_AddItemToObject(model, "n_embd", cJSON_CreateNumber(cfg->n_embd));
    cJSON_AddItemToObject(model, "n_head", cJSON_CreateNumber(cfg->n_head));
    cJSON_AddItemToObject(model, "vocab_size", cJSON_CreateNumber(cfg->vocab_size));
    cJSON_AddItemToObject(model, "padded_vocab_size", cJSON_CreateNumber(cfg->padded_vocab_size));
    cJSON_AddItemToObject(root, "model", model);
    cJSON_AddItemToObject(root, "seq", cJSON_CreateNumber(t));
    cJSON_AddItemToObject(root, "threads", cJSON_CreateNumber(threads));
    cJSON_AddItemToObject(root, "reps", cJSON_CreateNumber(a->reps));
    cJSON_AddItemToObject(root, "sgemm_tflops", cJSON_CreateNumber(round(tflops * 1e6) / 1e6));
    for (int i = 0; i < n_mb; i++) {
        cJSON *mb = cJSON_CreateObject(), *units = cJSON_CreateArray();
        cJSON_AddItemToObject(mb, "b", cJSON_CreateNumber(mbs[i].b));
        for (int u = 0; u < n_units; u++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddItemToObject(e, "unit", cJSON_CreateNumber(u));
            cJSON_AddItemToObject(e, "fwd_ms", cJSON_CreateNumber(ms(mbs[i].fwd_ms[u])));
            cJSON_AddItemToObject(e, "bwd_ms", cJSON_CreateNumber(ms(mbs[i].bwd_ms[u])));
            cJSON_AddItemToArray(units, e);
        }
        cJSON_AddItemToObject(mb, "units", units);
        cJSON_AddItemToArray(arr, mb);
    }
    cJSON_AddItemToObject(root, "microbatches", arr);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory formatting JSON", a->out);
    xdt_status st = xdt_atomic_write(af, text, strlen(text));
    if (st == XDT_OK) st = xdt_atomic_write(af, "\n", 1);
    if (st == XDT_OK) st = xdt_atomic_commit(af);
    free(text);
    return st;
}

/* One table row: totals of forward and backward, throughput (model FLOPs per second), and
 * forward + backward ms of the embedding, of the mean block and of the head. */
static void print_row(const xdt_model_config *cfg, int t, const mb_times *m) {
    const int n_units = xdt_gpt_num_units(cfg), head = n_units - 1;
    double fwd = 0, bwd = 0, blocks = 0, flops = 0;
    for (int u = 0; u < n_units; u++) {
        xdt_unit_info info;
        xdt_gpt_unit_info(cfg, u, m->b, t, &info);
        flops += info.fwd_flops + info.bwd_flops;
        fwd += m->fwd_ms[u];
        bwd += m->bwd_ms[u];
        if (u > 0 && u < head) blocks += m->fwd_ms[u] + m->bwd_ms[u];
    }
    const double total = fwd + bwd;
    printf("%5d %10.3f %10.3f %10.3f %10.0f %9.2f %9.3f %9.3f %9.3f\n", m->b, fwd, bwd, total,
           (double)m->b * t / (total * 1e-3), flops / (total * 1e-3) / 1e9,
           m->fwd_ms[0] + m->bwd_ms[0], blocks / (n_units - 2), m->fwd_ms[head] + m->bwd_ms[head]);
    fflush(stdout);
}

/* A co-runner: another process training the same model on its own device, as the other ranks
 * sharing this host do, until the measuring process ends it (or dies). */
static pid_t spawn_co_runner(const profile_args *a, const xdt_model_config *cfg, int threads, int b,
                             int t) {
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid != 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(0);
    /* quiet: a co-runner that fails (say, its GPU is missing) is reported once, by the parent,
     * which opens the same device and says why */
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDERR_FILENO);
    xdt_device_options dopts = {.threads = threads};
    xdt_device *dev = NULL;
    const int n_units = xdt_gpt_num_units(cfg);
    double *times = calloc((size_t)2 * n_units, sizeof *times);
    if (!times || xdt_device_create(a->device, &dopts, &dev) != XDT_OK) _exit(1);
    mb_times m = {.b = b, .fwd_ms = times, .bwd_ms = times + n_units};
    for (;;)
        if (profile_microbatch(cfg, dev, b, t, 50, &m) != XDT_OK) _exit(1); /* few rebuilds */
}

/* A profile measured under contention is only true if every co-runner ran throughout: one that
 * exited (its device failed to open, out of memory) would leave the figures uncontended. Checked
 * after each measurement, so a dead co-runner stops the run soon. */
static xdt_status co_runners_alive(pid_t *co, int n) {
    for (int i = 0; i < n; i++) {
        int status = 0;
        const pid_t r = waitpid(co[i], &status, WNOHANG);
        if (r == 0) continue; /* still running */
        if (r == co[i]) {
            const pid_t gone = co[i];
            co[i] = 0; /* reaped: the cleanup must not signal its pid again */
            return xdt_fail(XDT_ERR_DEVICE,
                            "xdt profile: co-runner %d (pid %d) %s %d before the measurement "
                            "ended; no profile written",
                            i, (int)gone,
                            WIFEXITED(status) ? "exited with" : "was killed by signal",
                            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        }
        return xdt_fail(XDT_ERR_IO, "xdt profile: co-runner %d: %s", i, strerror(errno));
    }
    return XDT_OK;
}

static xdt_status run(const profile_args *a) {
    xdt_model_config cfg;
    int bs[MAX_MICROBATCHES], n_mb = 0;
    xdt_status st;
    if ((st = xdt_model_config_load(a->model, &cfg)) ||
        (st = parse_microbatches(a->microbatch, bs, &n_mb)))
        return st;
    const int t = a->seq ? a->seq : cfg.max_seq_len;
    if (t > cfg.max_seq_len)
        return xdt_fail(XDT_ERR_CONFIG, "xdt profile: --seq %d exceeds %s's max_seq_len %d", t,
                        cfg.name, cfg.max_seq_len);
    int b_max = 0;
    for (int i = 0; i < n_mb; i++)
        b_max = bs[i] > b_max ? bs[i] : b_max;
    if ((st = xdt_check_memory_fits(&cfg, b_max, t, false))) return st;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    const int threads = a->threads > 0 ? a->threads : (cores > 0 ? (int)cores : 1);
    if ((st = xdt_device_check_name(a->device))) return st;
    const bool cpu = !strcmp(a->device, "cpu");
    if (!cpu && !a->device_type)
        return xdt_fail(XDT_ERR_CONFIG,
                        "xdt profile: --device-type is required for device %s (its name in the "
                        "device catalog)",
                        a->device);
    const char *device_type = a->device_type ? a->device_type : "cpu";
    if (strlen(device_type) >= 32 || !device_type[0])
        return xdt_fail(XDT_ERR_CONFIG,
                        "xdt profile: --device-type '%s' must be 1 to 31 characters", device_type);
    xdt_device_options dopts = {.threads = threads};
    xdt_device *dev = NULL;
    const int n_units = xdt_gpt_num_units(&cfg);
    pid_t co[64] = {0};
    mb_times *mbs = calloc((size_t)n_mb, sizeof *mbs);
    double *times = calloc((size_t)n_mb * 2 * n_units, sizeof *times);
    double tflops = 0;
    xdt_atomic_file af;
    memset(&af, 0, sizeof af);
    if (!mbs || !times) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "xdt profile: out of memory");
        goto out;
    }
    if ((st = xdt_atomic_open(&af, a->out))) goto out;
    /* the co-runners are forked before this process opens its device: a GPU runtime set up
     * before fork() is unusable in the child */
    for (int i = 0; i < a->co_runners; i++)
        if ((co[i] = spawn_co_runner(a, &cfg, threads, b_max, t)) < 0) {
            st = xdt_fail(XDT_ERR_IO, "xdt profile: cannot start a co-runner: %s", strerror(errno));
            goto out;
        }
    if ((st = xdt_device_create(a->device, &dopts, &dev))) goto out;
    if ((st = measure_sgemm(dev, a->reps, &tflops)) || (st = co_runners_alive(co, a->co_runners)))
        goto out;
    printf("xdt profile: %s on %s (%s), seq %d, %d threads, median of %d, %d co-runners\n",
           cfg.name, dev->name, device_type, t, threads, a->reps, a->co_runners);
    printf("sgemm %d^3: %.4f TFLOP/s\n", SGEMM_N, tflops);
    printf("%5s %10s %10s %10s %10s %9s %9s %9s %9s\n", "b", "fwd ms", "bwd ms", "total ms",
           "tok/s", "GFLOP/s", "embed f+b", "block f+b", "head f+b");
    for (int i = 0; i < n_mb; i++) {
        mbs[i].fwd_ms = times + (size_t)i * 2 * n_units;
        mbs[i].bwd_ms = mbs[i].fwd_ms + n_units;
        if ((st = profile_microbatch(&cfg, dev, bs[i], t, a->reps, &mbs[i])) ||
            (st = co_runners_alive(co, a->co_runners)))
            goto out;
        print_row(&cfg, t, &mbs[i]);
    }
    if ((st = write_profile(&af, a, &cfg, device_type, t, threads, tflops, mbs, n_mb))) goto out;
    printf("wrote %s\n", a->out);
out:
    for (int i = 0; i < a->co_runners; i++)
        if (co[i] > 0) {
            kill(co[i], SIGKILL);
            waitpid(co[i], NULL, 0);
        }
    xdt_atomic_abort(&af); /* removes the temp file unless committed */
    free(mbs);
    free(times);
    xdt_device_destroy(dev);
    return st;
}

int xdt_cmd_profile(int argc, char **argv) {
    profile_args a = {.device = "cpu", .microbatch = "1,2,4,8", .reps = 5};
    xdt_cli_opt opts[] = {
        XDT_OPT_REQUIRED("model", &a.model, "M.yaml", "model config"),
        XDT_OPT_STRING("device", &a.device, "DEV", "device to measure: cpu [cpu]"),
        XDT_OPT_STRING("device-type", &a.device_type, "NAME",
                       "catalog name the times are recorded for [the device's name]"),
        XDT_OPT_STRING("microbatch", &a.microbatch, "B,B,...", "microbatch sizes [1,2,4,8]"),
        XDT_OPT_INT("seq", &a.seq, "T", "tokens per row, 0 = max_seq_len [0]", 0, 1 << 20),
        XDT_OPT_INT("threads", &a.threads, "N", "CPU threads, 0 = all cores [0]", 0, 1024),
        XDT_OPT_INT("reps", &a.reps, "K", "timed passes; the median is kept [5]", 1, 1000),
        XDT_OPT_INT("co-runners", &a.co_runners, "N",
                    "other processes training meanwhile, as ranks sharing this host do [0]", 0, 64),
        XDT_OPT_REQUIRED("o", &a.out, "profile.json", "write the profile"),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("profile", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "profile",
                      "Measures the forward and backward time of every model unit (embedding, "
                      "blocks, head with the loss) for each microbatch size, and the device's "
                      "GEMM rate, and writes profile.json for the planner's cost model.",
                      opts, n_opts);
        return 0;
    }
    return run(&a) == XDT_OK ? 0 : 1;
}
