/* run_checkpoint.h: checkpoints of a pipelined run (`xdt worker --ckpt-dir D`). Every rank
 * writes one xdt checkpoint (core/checkpoint.h) per chunk it holds,
 * D/step-NNNNNNNN/rank-R-chunk-V.xdt, the ranks meet at a store barrier, and rank 0 then writes
 * D/step-NNNNNNNN/manifest.json atomically: the step, the plan's identity (cluster, model,
 * ranks, stages, replicas, chunks, global batch, seq, microbatch, every rank's unit ranges) and
 * every shard with its size. A step directory without a manifest is incomplete and ignored.
 * Shards of ranks that read data carry the batch loader's state in their header (all such ranks
 * read the same global batch, so they share it).
 *
 * manifest.json: {"format": "xdt-pipeline-checkpoint", "version": 1, "step": N,
 *   "plan": {"cluster", "model", "ranks", "stages", "replicas", "chunks", "global_batch", "seq",
 *            "microbatch", "units": [per rank: [per chunk: [first, last]]]},
 *   "shards": [{"rank", "chunk", "file" (relative to the step directory), "bytes"}]} */
#ifndef XDT_RUN_CHECKPOINT_H
#define XDT_RUN_CHECKPOINT_H

#include <stdint.h>

#include "core/batch_loader.h"
#include "tools/worker_setup.h"

/* Saves the state after `step` completed steps: this rank's shards (loader: the batch loader's
 * state on ranks that read data, else NULL), a barrier on link->store, then rank 0's manifest.
 * Every rank learns (through the store) whether any rank failed to write its shards, and then
 * fails too, so no rank waits for a peer that has stopped. */
xdt_status xdt_run_checkpoint_save(const char *dir, int64_t step, const xdt_loaded_plan *plan,
                                   xdt_worker_link *link, xdt_executor *ex,
                                   const xdt_loader_state *loader, int timeout_ms);

/* Finds the latest complete checkpoint in dir (the highest step with a manifest), checks that
 * it was saved for this plan (a mismatch names the field) and at most max_step steps, loads
 * this rank's shards (size and checksums verified) into the executor's stages and optimizers
 * and, when loader != NULL, the saved batch loader state into *loader. The ranks then agree
 * through the store: if any rank failed, every rank fails. Sets *step (steps completed) on
 * success. */
xdt_status xdt_run_checkpoint_resume(const char *dir, const xdt_loaded_plan *plan,
                                     xdt_worker_link *link, xdt_executor *ex,
                                     xdt_loader_state *loader, int max_step, int timeout_ms,
                                     int64_t *step);

/* Fails (naming the manifest) when dir already holds a complete checkpoint: a fresh run would
 * mix its checkpoints with an older run's. A missing dir is fine. */
xdt_status xdt_run_checkpoint_check_fresh(const char *dir);

#endif
