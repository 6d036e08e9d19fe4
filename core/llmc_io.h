/* llmc_io.h: llm.c GPT-2 model files, so weights move between xdt and llm.c.
 * Layout: 256 int32 header (magic 20240326, version 3 = fp32, max_seq_len, vocab_size,
 * n_layer, n_head, n_embd, padded_vocab_size, the rest 0), then fp32 parameters in llm.c's
 * order: wte, wpe, then each of ln1w ln1b qkvw qkvb attprojw attprojb ln2w ln2b fcw fcb
 * fcprojw fcprojb for all layers in turn, then lnfw, lnfb. */
#ifndef XDT_LLMC_IO_H
#define XDT_LLMC_IO_H

#include "core/gpt.h"
#include "core/model_config.h"

#define XDT_LLMC_MODEL_MAGIC   20240326
#define XDT_LLMC_MODEL_VERSION 3

/* Reads the header of an llm.c model file into a config (name "llmc"). */
xdt_status xdt_llmc_peek(const char *path, xdt_model_config *out);

/* Loads an llm.c file into a whole-model stage (units 0..L+1). The file's shape must equal the
 * stage's config; mismatches name the field. */
xdt_status xdt_llmc_import(const char *path, xdt_stage *stage);

/* Writes a whole-model stage as an llm.c model file, atomically. */
xdt_status xdt_llmc_export(const char *path, xdt_stage *stage);

#endif
