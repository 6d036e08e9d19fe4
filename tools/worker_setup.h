/* worker_setup.h: what `xdt worker` needs before its first step: the rank's place in the plan
 * (plan.json -> the executor's plain xdt_rank_plan, every rank's backend and device), the name
 * of the device it opens ("cpu", "cuda:N", "hip:N"), and a transport to the other ranks --
 * bootstrap from the environment (torchrun, Slurm or Open MPI variables, XDT_JOB_TOKEN), UCX,
 * and between ranks of different sites the WAN shaper with the plan's link figures. */
#ifndef XDT_WORKER_SETUP_H
#define XDT_WORKER_SETUP_H

#include "core/pipeline_executor.h"
#include "planner/plan_io.h"
#include "transports/bootstrap.h"

typedef struct xdt_worker_link {
    xdt_bootstrap_env env;
    xdt_store *store;
    xdt_transport *t; /* shaped when emulating the WAN */
    uint64_t job_id;  /* carried by every frame: a stray rank of another job is refused */
} xdt_worker_link;

/* Reads the environment, checks its world size against the plan, opens the store (rank 0
 * serves it), creates the UCX transport (`tls`: "tcp" or "shm"), connects every pair and, with
 * emulate_wan, shapes the links between ranks of different sites. */
xdt_status xdt_worker_connect(const xdt_loaded_plan *plan, const char *tls, bool emulate_wan,
                              int timeout_ms, xdt_worker_link *out);
void xdt_worker_disconnect(xdt_worker_link *w);

/* The executor's description of `rank` in the plan. site_of and device_of (plan->ranks entries
 * each) are filled and referenced by out; a rank whose backend is not cpu, cuda or hip is a
 * configuration error naming it. out->store and out->dp_comm are left for the caller. */
xdt_status xdt_worker_rank_plan(const xdt_loaded_plan *plan, int rank, uint64_t job_id,
                                int *site_of, xdt_rank_device *device_of, xdt_rank_plan *out);

/* The device `rank` opens: "cpu" for cpu ranks, else "<backend>:<device index on its node>". */
xdt_status xdt_worker_device_name(const xdt_loaded_plan *plan, int rank, char *out, size_t cap);

/* The worker's --device `asked` in place of the plan's device `planned` (from
 * xdt_worker_device_name): the same backend ("cpu" for a cpu rank; "cuda", "cuda:N" for a cuda
 * rank, ...), another GPU number allowed, as where CUDA_VISIBLE_DEVICES shows each process its
 * own GPU as 0. Writes the name to open into out and, for a GPU, its number into *index. A
 * different backend or a malformed name is a configuration error naming the rank. */
xdt_status xdt_worker_device_choose(const char *planned, const char *asked, int rank, char *out,
                                    size_t cap, int *index);

#endif
