/* test_dp_staging.c: the executor on devices whose memory is not host memory, without a GPU.
 * A "fake CUDA" device is the CPU backend with its memory type set to CUDA and its copies
 * counted: the executor must then move everything through host staging buffers -- the
 * activations, the tied gradient and, in the ring all-reduce of the replicas, every chunk's
 * gradients. Two replicas of two stages run as threads over the in-process transport, once all
 * on the CPU and once mixed (fake CUDA and CPU ranks, a fake one in each data-parallel group);
 * staging only copies, so losses and weights must be bit-identical. Also the choice between
 * NCCL and the ring (xdt_executor_dp_choice) for each kind of group. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/pipeline_executor.h"
#include "devices/device.h"
#include "tests/unit/test_util.h"
#include "transports/inproc/inproc_transport.h"

#define P     2 /* stages */
#define D     2 /* replicas */
#define GB    4 /* global batch */
#define T     16
#define STEPS 3

/* --- the fake CUDA device --- */

static xdt_device_ops fake_ops;
static const xdt_device_ops *cpu_ops;
static atomic_size_t fake_d2h_bytes;

static void fake_copy(void *ctx, void *dst, const void *src, size_t bytes, xdt_copy_dir dir) {
    if (dir == XDT_COPY_DEVICE_TO_HOST) atomic_fetch_add(&fake_d2h_bytes, bytes);
    cpu_ops->copy(ctx, dst, src, bytes, dir);
}

static xdt_status open_device(bool fake, xdt_device **out) {
    xdt_device_options o = {.threads = 1};
    xdt_status st = xdt_cpu_device_create(&o, out);
    if (st || !fake) return st;
    (*out)->ops = &fake_ops; /* fake_ops was filled from the CPU table in main */
    snprintf((*out)->name, sizeof(*out)->name, "fake-cuda");
    return XDT_OK;
}

/* --- one rank as a thread --- */

typedef struct rank_run {
    int rank;
    bool fake;
    xdt_inproc_fabric *fabric;
    const xdt_schedule *sched;
    const xdt_model_config *cfg;
    const xdt_rank_device *device_of;
    const int32_t *inputs, *targets;
    pthread_barrier_t *done;
    double loss[STEPS];
    float *params; /* the final weights (a copy) */
    size_t n_params;
    xdt_status st;
} rank_run;

static void *rank_main(void *arg) {
    rank_run *r = arg;
    const int d = r->rank / P, p = r->rank % P, L = r->cfg->n_layer;
    xdt_device *dev = NULL;
    xdt_transport *t = NULL;
    xdt_executor *ex = NULL;
    xdt_rank_plan rp = {
        .model = *r->cfg,
        .replica = d,
        .replicas = D,
        .pipeline_rank = p,
        .stages = P,
        .chunks = 1,
        .global_batch = GB,
        .seq = T,
        .microbatch = 1,
        .replica_microbatches = GB / D,
        .replica_first_microbatch = d * (GB / D),
        .units = {{p == 0 ? 0 : L / 2 + 1, p == 0 ? L / 2 : L + 1}},
        .schedule = r->sched,
        .slowdown = 1,
        .job_id = 7,
        .timeout_ms = 20000,
        .device_of = r->device_of,
    };
    const xdt_optim_config oc = {.lr = 1e-3f,
                                 .beta1 = 0.9f,
                                 .beta2 = 0.95f,
                                 .eps = 1e-8f,
                                 .weight_decay = 0.1f,
                                 .grad_clip = 1.0f,
                                 .total_steps = STEPS};
    if (!(r->st = open_device(r->fake, &dev)) &&
        !(r->st = xdt_inproc_transport_create(r->fabric, r->rank, &t)) &&
        !(r->st = xdt_executor_create(&rp, dev, t, &oc, 1234, &ex))) {
        const bool data = xdt_executor_needs_data(ex);
        for (int s = 0; s < STEPS && !r->st; s++) {
            xdt_exec_result res;
            r->st = xdt_executor_step(ex, s, data ? r->inputs + (size_t)s * GB * T : NULL,
                                      data ? r->targets + (size_t)s * GB * T : NULL, &res);
            r->loss[s] = res.loss;
        }
        if (!r->st) r->st = xdt_executor_finish(ex);
        if (!r->st) {
            xdt_stage *stage = xdt_executor_stage(ex, 0);
            r->n_params = xdt_stage_num_params(stage);
            r->params = malloc(r->n_params * sizeof(float));
            if (r->params) /* the fake device's memory is host memory underneath */
                memcpy(r->params, xdt_stage_params(stage), r->n_params * sizeof(float));
        }
    }
    /* nobody closes its transport while another rank may still read from it */
    pthread_barrier_wait(r->done);
    xdt_executor_destroy(ex);
    xdt_transport_destroy(t);
    xdt_device_destroy(dev);
    return NULL;
}

/* Runs the 2 x 2 pipeline; fake[g] puts rank g on the fake CUDA device. */
static void run(const bool fake[D * P], const xdt_model_config *cfg, const xdt_schedule *sched,
                const int32_t *inputs, const int32_t *targets, rank_run out[D * P]) {
    xdt_inproc_fabric *fabric = NULL;
    CHECK(xdt_inproc_fabric_create(D * P, &fabric) == XDT_OK);
    xdt_rank_device devs[D * P];
    for (int g = 0; g < D * P; g++)
        devs[g] = (xdt_rank_device){fake[g] ? XDT_MEM_CUDA : XDT_MEM_HOST, 0, g};
    pthread_barrier_t done;
    pthread_barrier_init(&done, NULL, D * P);
    pthread_t th[D * P];
    for (int g = 0; g < D * P; g++) {
        out[g] = (rank_run){.rank = g,
                            .fake = fake[g],
                            .fabric = fabric,
                            .sched = sched,
                            .cfg = cfg,
                            .device_of = devs,
                            .inputs = inputs,
                            .targets = targets,
                            .done = &done};
        pthread_create(&th[g], NULL, rank_main, &out[g]);
    }
    for (int g = 0; g < D * P; g++)
        pthread_join(th[g], NULL);
    pthread_barrier_destroy(&done);
    xdt_inproc_fabric_destroy(fabric);
}

static void test_staging(void) {
    xdt_model_config cfg = {.vocab_size = 64,
                            .padded_vocab_size = 64,
                            .max_seq_len = T,
                            .n_layer = 2,
                            .n_head = 2,
                            .n_embd = 32};
    snprintf(cfg.name, sizeof cfg.name, "staging-test");
    CHECK(xdt_model_config_check(&cfg, "test") == XDT_OK);
    xdt_schedule *sched = NULL;
    CHECK(xdt_schedule_1f1b(P, GB / D, &sched) == XDT_OK);
    if (!sched) return;
    int32_t *inputs = malloc(sizeof(int32_t) * STEPS * GB * T);
    int32_t *targets = malloc(sizeof(int32_t) * STEPS * GB * T);
    uint32_t x = 12345;
    for (int i = 0; i < STEPS * GB * T; i++) {
        x = x * 1664525u + 1013904223u;
        inputs[i] = (int32_t)((x >> 8) % 64);
        x = x * 1664525u + 1013904223u;
        targets[i] = (int32_t)((x >> 8) % 64);
    }
    static const bool all_cpu[D * P] = {false, false, false, false};
    /* rank 0 (replica 0, stage 0) and rank 3 (replica 1, stage 1) on fake CUDA: every
     * pipeline link and every data-parallel group crosses backends */
    static const bool mixed[D * P] = {true, false, false, true};
    rank_run ref[D * P], got[D * P];
    run(all_cpu, &cfg, sched, inputs, targets, ref);
    const size_t host_d2h = atomic_load(&fake_d2h_bytes);
    run(mixed, &cfg, sched, inputs, targets, got);
    const size_t staged = atomic_load(&fake_d2h_bytes) - host_d2h;
    size_t fake_params = 0;
    for (int g = 0; g < D * P; g++) {
        CHECK_MSG(ref[g].st == XDT_OK && got[g].st == XDT_OK, "rank %d: status %d / %d", g,
                  ref[g].st, got[g].st);
        for (int s = 0; s < STEPS; s++)
            CHECK_MSG(ref[g].loss[s] == got[g].loss[s], "rank %d step %d: loss %.9g vs %.9g", g, s,
                      ref[g].loss[s], got[g].loss[s]);
        CHECK_MSG(ref[g].params && got[g].params && ref[g].n_params == got[g].n_params &&
                      !memcmp(ref[g].params, got[g].params, ref[g].n_params * sizeof(float)),
                  "rank %d: final weights differ", g);
        if (mixed[g]) fake_params += got[g].n_params;
        free(ref[g].params);
        free(got[g].params);
    }
    CHECK(ref[0].loss[STEPS - 1] < ref[0].loss[0] + 1.0); /* it trained, no NaN */
    /* every step, each fake rank copied at least its gradients out for the ring */
    CHECK_MSG(staged >= (size_t)STEPS * fake_params * sizeof(float),
              "fake CUDA ranks copied %zu bytes to the host; their gradients alone are %zu", staged,
              (size_t)STEPS * fake_params * sizeof(float));
    xdt_schedule_destroy(sched);
    free(inputs);
    free(targets);
}

/* --- the choice between NCCL and the ring --- */

static char why[160]; /* the reason of the last choice */

static xdt_dp_comm choose(const xdt_rank_plan *rp, xdt_status *st) {
    xdt_dp_comm via = XDT_DP_AUTO;
    why[0] = 0;
    *st = xdt_executor_dp_choice(rp, &via, why, sizeof why);
    return via;
}

static void test_choice(void) {
    int store_stub = 0; /* dp_choice only asks whether a store is there */
    const int site_of[4] = {0, 0, 0, 0};
    xdt_rank_device devs[4] = {
        {XDT_MEM_CUDA, 0, 0}, {XDT_MEM_CUDA, 0, 1}, {XDT_MEM_CUDA, 1, 0}, {XDT_MEM_CUDA, 1, 1}};
    /* 2 replicas of 2 stages: pipeline rank 1's group is ranks 1 and 3 */
    xdt_rank_plan rp = {.replica = 0,
                        .replicas = 2,
                        .pipeline_rank = 1,
                        .stages = 2,
                        .site_of = site_of,
                        .device_of = devs,
                        .store = (xdt_store *)&store_stub};
    xdt_status st;
    CHECK(choose(&rp, &st) == XDT_DP_NCCL && st == XDT_OK && strstr(why, "2 CUDA ranks"));
    rp.dp_comm = XDT_DP_RING;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    rp.dp_comm = XDT_DP_AUTO;
    rp.store = NULL;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    rp.store = (xdt_store *)&store_stub;
    rp.dp_codec.kind = XDT_CODEC_INT8;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    rp.dp_codec.kind = XDT_CODEC_NONE;
    /* one member a CPU rank, or a HIP rank */
    devs[3].mem = XDT_MEM_HOST;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    CHECK(strstr(why, "rank 3 computes in host"));
    /* CUDA and HIP members: two libraries cannot form one group */
    devs[3].mem = XDT_MEM_HIP;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK && strstr(why, "different vendors"));
    /* all HIP: RCCL */
    devs[1].mem = XDT_MEM_HIP;
    CHECK(choose(&rp, &st) == XDT_DP_NCCL && st == XDT_OK && strstr(why, "2 HIP ranks"));
    devs[1].mem = XDT_MEM_CUDA;
    devs[3].mem = XDT_MEM_CUDA;
    /* pipeline rank 0's group is unaffected by rank 3 */
    devs[3].mem = XDT_MEM_HOST;
    rp.pipeline_rank = 0;
    CHECK(choose(&rp, &st) == XDT_DP_NCCL && st == XDT_OK);
    rp.pipeline_rank = 1;
    devs[3].mem = XDT_MEM_CUDA;
    /* two members on one GPU (same node, same index): NCCL refuses that */
    devs[3] = (xdt_rank_device){XDT_MEM_CUDA, 0, 1};
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    /* the same index on another node is another GPU */
    devs[3] = (xdt_rank_device){XDT_MEM_CUDA, 1, 1};
    CHECK(choose(&rp, &st) == XDT_DP_NCCL && st == XDT_OK);
    /* different sites */
    const int two_sites[4] = {0, 0, 1, 1};
    rp.site_of = two_sites;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    /* NCCL asked for where it cannot be: a configuration error */
    rp.dp_comm = XDT_DP_NCCL;
    fprintf(stderr, "(an error line about NCCL across sites is expected next)\n");
    choose(&rp, &st);
    CHECK(st == XDT_ERR_CONFIG);
    rp.site_of = site_of;
    CHECK(choose(&rp, &st) == XDT_DP_NCCL && st == XDT_OK);
    /* no device table: every rank is a CPU rank */
    rp.dp_comm = XDT_DP_AUTO;
    rp.device_of = NULL;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
    /* one replica: nothing to reduce */
    rp.device_of = devs;
    rp.replicas = 1;
    CHECK(choose(&rp, &st) == XDT_DP_RING && st == XDT_OK);
}

int main(void) {
    xdt_device *cpu = NULL;
    xdt_device_options o = {.threads = 1};
    if (xdt_cpu_device_create(&o, &cpu) != XDT_OK) return 1;
    cpu_ops = cpu->ops; /* static const: outlives the device */
    fake_ops = *cpu->ops;
    fake_ops.name = "fake-cuda";
    fake_ops.mem_type = XDT_MEM_CUDA;
    fake_ops.copy = fake_copy;
    xdt_device_destroy(cpu);
    test_choice();
    test_staging();
    return test_exit_code("dp_staging");
}
