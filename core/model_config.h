/* model_config.h: the shape of a GPT model, read from configs/models/NAME.yaml. */
#ifndef XDT_MODEL_CONFIG_H
#define XDT_MODEL_CONFIG_H

#include "core/status.h"

typedef struct xdt_model_config {
    char name[64];
    int vocab_size;        /* V: tokens the data can hold */
    int padded_vocab_size; /* Vp >= V: rows of the embedding table (padding never predicted) */
    int max_seq_len;       /* maximum T: rows of the position table */
    int n_layer;           /* L transformer blocks */
    int n_head;            /* NH attention heads; n_embd % n_head == 0 */
    int n_embd;            /* C channels */
} xdt_model_config;

/* Reads and validates a model YAML file. Keys: name, vocab_size, padded_vocab_size (optional,
 * default vocab_size rounded up to 64), max_seq_len, n_layer, n_head, n_embd. Any unknown,
 * missing or bad field is reported as "file:line: field ..." and returns XDT_ERR_CONFIG. */
xdt_status xdt_model_config_load(const char *path, xdt_model_config *out);

/* Checks each size against its bounds (XDT_MODEL_*_MAX) and the relations between fields;
 * `where` names the source in the message. */
xdt_status xdt_model_config_check(const xdt_model_config *cfg, const char *where);

/* The largest sizes a model may have, wherever its config comes from. */
#define XDT_MODEL_VOCAB_MAX  (1 << 24)
#define XDT_MODEL_SEQ_MAX    (1 << 20)
#define XDT_MODEL_LAYERS_MAX 4096
#define XDT_MODEL_HEADS_MAX  4096
#define XDT_MODEL_EMBD_MAX   (1 << 16)

#endif
