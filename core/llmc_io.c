/* llmc_io.c: import and export of llm.c GPT-2 model files. */
#include "core/llmc_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file_util.h"
#include "core/log.h"

static const xdt_param_role LAYER_ROLES[12] = {
    XDT_P_LN1W, XDT_P_LN1B, XDT_P_QKVW, XDT_P_QKVB, XDT_P_ATTPROJW, XDT_P_ATTPROJB,
    XDT_P_LN2W, XDT_P_LN2B, XDT_P_FCW,  XDT_P_FCB,  XDT_P_FCPROJW,  XDT_P_FCPROJB,
};

/* The stage's tensor for (role, layer), or NULL. */
static const xdt_param_tensor *find_tensor(const xdt_stage *stage, xdt_param_role role, int layer) {
    int n = 0;
    const xdt_param_tensor *t = xdt_stage_tensors(stage, &n);
    for (int i = 0; i < n; i++)
        if (t[i].role == role && t[i].layer == layer) return &t[i];
    return NULL;
}

/* Calls fn on every tensor of the model in llm.c's order. */
typedef xdt_status (*tensor_fn)(const xdt_param_tensor *t, void *arg);
static xdt_status walk_llmc_order(const xdt_stage *stage, tensor_fn fn, void *arg) {
    const xdt_model_config *c = xdt_stage_config(stage);
    xdt_status st;
    if ((st = fn(find_tensor(stage, XDT_P_WTE, -1), arg)) ||
        (st = fn(find_tensor(stage, XDT_P_WPE, -1), arg)))
        return st;
    for (int r = 0; r < 12; r++)
        for (int l = 0; l < c->n_layer; l++)
            if ((st = fn(find_tensor(stage, LAYER_ROLES[r], l), arg))) return st;
    if ((st = fn(find_tensor(stage, XDT_P_LNFW, -1), arg)) ||
        (st = fn(find_tensor(stage, XDT_P_LNFB, -1), arg)))
        return st;
    return XDT_OK;
}

static xdt_status require_whole_model(const xdt_stage *stage, const char *path) {
    if (!xdt_stage_has_embedding(stage) || !xdt_stage_has_head(stage))
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "%s: llm.c files hold the whole model; this stage "
                        "holds only part of it",
                        path);
    return XDT_OK;
}

static xdt_status read_header(FILE *f, const char *path, int32_t h[256], xdt_model_config *cfg) {
    if (fread(h, sizeof(int32_t), 256, f) != 256)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: truncated llm.c model file: no complete 1024-byte "
                        "header",
                        path);
    if (h[0] != XDT_LLMC_MODEL_MAGIC)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: header field 'magic' is %d, expected %d (llm.c "
                        "model)",
                        path, h[0], XDT_LLMC_MODEL_MAGIC);
    if (h[1] != XDT_LLMC_MODEL_VERSION)
        return xdt_fail(XDT_ERR_FORMAT, "%s: header field 'version' is %d, expected %d (fp32)",
                        path, h[1], XDT_LLMC_MODEL_VERSION);
    xdt_model_config c = {0};
    snprintf(c.name, sizeof c.name, "llmc");
    c.max_seq_len = h[2];
    c.vocab_size = h[3];
    c.n_layer = h[4];
    c.n_head = h[5];
    c.n_embd = h[6];
    c.padded_vocab_size = h[7];
    if (xdt_model_config_check(&c, path) != XDT_OK) return XDT_ERR_FORMAT;
    *cfg = c;
    return XDT_OK;
}

xdt_status xdt_llmc_peek(const char *path, xdt_model_config *out) {
    FILE *f = NULL;
    xdt_status st = xdt_fopen_read(path, "", &f);
    if (st != XDT_OK) return st;
    int32_t h[256];
    st = read_header(f, path, h, out);
    fclose(f);
    return st;
}

typedef struct io_ctx {
    FILE *f;
    xdt_atomic_file *af;
    const char *path;
    xdt_device *dev;
    float *params;
    float *buf;
} io_ctx;

static xdt_status read_tensor(const xdt_param_tensor *t, void *arg) {
    io_ctx *io = arg;
    if (fread(io->buf, sizeof(float), t->count, io->f) != t->count)
        return xdt_fail(XDT_ERR_FORMAT, "%s: truncated while reading %s", io->path,
                        xdt_param_role_name(t->role));
    io->dev->ops->copy(io->dev->ctx, io->params + t->offset, io->buf, t->count * sizeof(float),
                       XDT_COPY_HOST_TO_DEVICE);
    return XDT_OK;
}

static xdt_status write_tensor(const xdt_param_tensor *t, void *arg) {
    io_ctx *io = arg;
    io->dev->ops->copy(io->dev->ctx, io->buf, io->params + t->offset, t->count * sizeof(float),
                       XDT_COPY_DEVICE_TO_HOST);
    xdt_status st = xdt_device_sync(io->dev);
    return st ? st : xdt_atomic_write(io->af, io->buf, t->count * sizeof(float));
}

static size_t largest_tensor(const xdt_stage *stage) {
    int n = 0;
    size_t m = 0;
    const xdt_param_tensor *t = xdt_stage_tensors(stage, &n);
    for (int i = 0; i < n; i++)
        m = t[i].count > m ? t[i].count : m;
    return m;
}

#define CHECK_SHAPE(field, a, b)                                                                   \
    if ((a) != (b)) {                                                                              \
        st = xdt_fail(XDT_ERR_FORMAT,                                                              \
                      "%s: header field '" field "' is %d but the model config "                   \
                      "has %d",                                                                    \
                      path, (a), (b));                                                             \
        goto out;                                                                                  \
    }

xdt_status xdt_llmc_import(const char *path, xdt_stage *stage) {
    xdt_status st = require_whole_model(stage, path);
    if (st) return st;
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, "", &f);
    if (st0 != XDT_OK) return st0;
    int32_t h[256];
    xdt_model_config c = {0};
    const xdt_model_config *want = xdt_stage_config(stage);
    float *buf = NULL;
    if ((st = read_header(f, path, h, &c))) goto out;
    CHECK_SHAPE("max_seq_len", c.max_seq_len, want->max_seq_len);
    CHECK_SHAPE("vocab_size", c.vocab_size, want->vocab_size);
    CHECK_SHAPE("n_layer", c.n_layer, want->n_layer);
    CHECK_SHAPE("n_head", c.n_head, want->n_head);
    CHECK_SHAPE("n_embd", c.n_embd, want->n_embd);
    CHECK_SHAPE("padded_vocab_size", c.padded_vocab_size, want->padded_vocab_size);
    long long expect = 1024 + (long long)xdt_stage_num_params(stage) * 4;
    long long size = xdt_file_size(f);
    if (size != expect) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: %lld bytes, but a model of this shape needs %lld%s",
                      path, size, expect, size < expect ? " (truncated)" : "");
        goto out;
    }
    buf = malloc(largest_tensor(stage) * sizeof(float));
    if (!buf) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    io_ctx io = {f, NULL, path, xdt_stage_device(stage), xdt_stage_params(stage), buf};
    if ((st = walk_llmc_order(stage, read_tensor, &io))) goto out;
    st = xdt_device_sync(io.dev);
out:
    free(buf);
    fclose(f);
    return st;
}

xdt_status xdt_llmc_export(const char *path, xdt_stage *stage) {
    xdt_status st = require_whole_model(stage, path);
    if (st) return st;
    const xdt_model_config *c = xdt_stage_config(stage);
    int32_t h[256] = {0};
    h[0] = XDT_LLMC_MODEL_MAGIC;
    h[1] = XDT_LLMC_MODEL_VERSION;
    h[2] = c->max_seq_len;
    h[3] = c->vocab_size;
    h[4] = c->n_layer;
    h[5] = c->n_head;
    h[6] = c->n_embd;
    h[7] = c->padded_vocab_size;
    float *buf = malloc(largest_tensor(stage) * sizeof(float));
    if (!buf) return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
    xdt_atomic_file af;
    if ((st = xdt_atomic_open(&af, path))) goto out;
    io_ctx io = {NULL, &af, path, xdt_stage_device(stage), xdt_stage_params(stage), buf};
    if ((st = xdt_atomic_write(&af, h, sizeof h)) ||
        (st = walk_llmc_order(stage, write_tensor, &io))) {
        xdt_atomic_abort(&af);
        goto out;
    }
    st = xdt_atomic_commit(&af);
out:
    free(buf);
    return st;
}
