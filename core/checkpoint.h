/* checkpoint.h: xdt's own checkpoint format: a 256-byte header (magic, version, model config,
 * stage range, step, data position, checksums) then the stage's weights and AdamW m and v.
 * Written atomically; every field is checked on load, so --resume continues exactly.
 *
 * Header, little-endian, byte offsets:
 *   0 magic "XDTCKPT\0"        8 u32 version (1)          12 u32 header bytes (256)
 *  16 i32 vocab_size          20 i32 padded_vocab_size   24 i32 max_seq_len
 *  28 i32 n_layer             32 i32 n_head              36 i32 n_embd
 *  40 i32 first_unit          44 i32 last_unit           48 i32 batch   52 i32 seq
 *  56 u64 n_params            64 i64 step (completed)    72 u64 x4 data rng state
 * 104 u64 data cursor        112 u32 arrays (3 with optimizer state, 1 weights only)
 * 120 u64 xxh64 of the payload                          248 u64 xxh64 of bytes [0, 248)
 * Payload: n_params fp32 weights, then (arrays == 3) m and v. */
#ifndef XDT_CHECKPOINT_H
#define XDT_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/batch_loader.h"
#include "core/gpt.h"
#include "core/model_config.h"
#include "core/optimizer.h"

#define XDT_CKPT_VERSION 1

typedef struct xdt_ckpt_meta {
    int64_t step; /* training steps completed */
    int first_unit, last_unit;
    int b, t;
    xdt_loader_state loader;
} xdt_ckpt_meta;

/* Writes the stage's weights (and opt's state when opt != NULL) to `path` atomically. */
xdt_status xdt_checkpoint_save(const char *path, xdt_stage *stage, xdt_optimizer *opt,
                               const xdt_ckpt_meta *meta);

/* Reads the model config and metadata only (to build the matching stage). */
xdt_status xdt_checkpoint_peek(const char *path, xdt_model_config *cfg, xdt_ckpt_meta *meta);

/* Loads into a stage built for the same config and unit range; opt may be NULL (weights only).
 * Any mismatch, truncation or checksum failure is reported naming the file and field, and
 * leaves the stage untouched on the host side of the check. */
xdt_status xdt_checkpoint_load(const char *path, xdt_stage *stage, xdt_optimizer *opt,
                               xdt_ckpt_meta *meta);

/* DIR/ckpt_%08d.xdt for `step`. */
void xdt_checkpoint_path(const char *dir, int64_t step, char *out, size_t cap);
/* Path of the highest-step checkpoint in dir; XDT_ERR_IO (reported) if there is none. */
xdt_status xdt_checkpoint_latest(const char *dir, char *out, size_t cap);
/* XDT_OK when dir is missing or holds no checkpoint; otherwise XDT_ERR_CONFIG (reported), so a
 * new run never mixes its checkpoints with an earlier run's. */
xdt_status xdt_checkpoint_check_fresh(const char *dir);
/* The refusal both checkpoint formats give for a used --ckpt-dir, naming what was found there
 * (a checkpoint file, a step's manifest): XDT_ERR_CONFIG, reported. */
xdt_status xdt_checkpoint_refuse_used(const char *found);

#endif
