/* checkpoint.c: saving and loading xdt checkpoints (format in checkpoint.h). */
#include "core/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "core/file_util.h"
#include "core/log.h"

#define HEADER_BYTES 256
#define CHUNK_FLOATS (1u << 22) /* host staging: 16 MiB at a time */
static const char MAGIC[8] = "XDTCKPT";

static void put32(uint8_t *h, int off, uint32_t v) {
    memcpy(h + off, &v, 4);
}
static void put64(uint8_t *h, int off, uint64_t v) {
    memcpy(h + off, &v, 8);
}
static uint32_t get32(const uint8_t *h, int off) {
    uint32_t v;
    memcpy(&v, h + off, 4);
    return v;
}
static uint64_t get64(const uint8_t *h, int off) {
    uint64_t v;
    memcpy(&v, h + off, 8);
    return v;
}

static void encode_header(uint8_t *h, const xdt_model_config *c, const xdt_ckpt_meta *m,
                          uint64_t n_params, uint32_t arrays, uint64_t payload_hash) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MAGIC, 8);
    put32(h, 8, XDT_CKPT_VERSION);
    put32(h, 12, HEADER_BYTES);
    put32(h, 16, (uint32_t)c->vocab_size);
    put32(h, 20, (uint32_t)c->padded_vocab_size);
    put32(h, 24, (uint32_t)c->max_seq_len);
    put32(h, 28, (uint32_t)c->n_layer);
    put32(h, 32, (uint32_t)c->n_head);
    put32(h, 36, (uint32_t)c->n_embd);
    put32(h, 40, (uint32_t)m->first_unit);
    put32(h, 44, (uint32_t)m->last_unit);
    put32(h, 48, (uint32_t)m->b);
    put32(h, 52, (uint32_t)m->t);
    put64(h, 56, n_params);
    put64(h, 64, (uint64_t)m->step);
    for (int i = 0; i < 4; i++)
        put64(h, 72 + 8 * i, m->loader.rng.s[i]);
    put64(h, 104, m->loader.cursor);
    put32(h, 112, arrays);
    put64(h, 120, payload_hash);
    put64(h, 248, XXH64(h, 248, 0));
}

/* Copies n floats from device memory into the file, hashing as it goes. */
static xdt_status write_array(xdt_atomic_file *af, xdt_device *dev, const float *src, size_t n,
                              float *stage_buf, XXH64_state_t *hash) {
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK_FLOATS ? n - done : CHUNK_FLOATS;
        dev->ops->copy(dev->ctx, stage_buf, src + done, k * sizeof(float), XDT_COPY_DEVICE_TO_HOST);
        xdt_status st = xdt_device_sync(dev);
        if (st == XDT_OK) st = xdt_atomic_write(af, stage_buf, k * sizeof(float));
        if (st != XDT_OK) return st;
        XXH64_update(hash, stage_buf, k * sizeof(float));
        done += k;
    }
    return XDT_OK;
}

xdt_status xdt_checkpoint_save(const char *path, xdt_stage *stage, xdt_optimizer *opt,
                               const xdt_ckpt_meta *meta) {
    xdt_device *dev = xdt_stage_device(stage);
    const size_t n = xdt_stage_num_params(stage);
    float *buf = malloc(CHUNK_FLOATS * sizeof(float));
    XXH64_state_t *hash = XXH64_createState();
    if (!buf || !hash) {
        free(buf);
        XXH64_freeState(hash);
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory for checkpoint staging", path);
    }
    XXH64_reset(hash, 0);
    uint8_t header[HEADER_BYTES];
    uint32_t arrays = opt ? 3 : 1;
    xdt_atomic_file af;
    xdt_status st = xdt_atomic_open(&af, path);
    if (st != XDT_OK) goto out;
    memset(header, 0, sizeof header); /* rewritten once the payload hash is known */
    if ((st = xdt_atomic_write(&af, header, sizeof header)) ||
        (st = write_array(&af, dev, xdt_stage_params(stage), n, buf, hash)))
        goto fail;
    if (opt && ((st = write_array(&af, dev, xdt_optimizer_m(opt), n, buf, hash)) ||
                (st = write_array(&af, dev, xdt_optimizer_v(opt), n, buf, hash))))
        goto fail;
    encode_header(header, xdt_stage_config(stage), meta, n, arrays, XXH64_digest(hash));
    if (fseek(af.f, 0, SEEK_SET) != 0) {
        st = xdt_fail(XDT_ERR_IO, "%s: seek failed: %s", af.tmp_path, strerror(errno));
        goto fail;
    }
    if ((st = xdt_atomic_write(&af, header, sizeof header))) goto fail;
    st = xdt_atomic_commit(&af);
    goto out;
fail:
    xdt_atomic_abort(&af);
out:
    free(buf);
    XXH64_freeState(hash);
    return st;
}

/* Reads and checks the header; fills cfg, meta, n_params, arrays, payload hash. */
static xdt_status read_header(FILE *f, const char *path, xdt_model_config *cfg, xdt_ckpt_meta *meta,
                              uint64_t *n_params, uint32_t *arrays, uint64_t *payload_hash) {
    uint8_t h[HEADER_BYTES];
    long long size = xdt_file_size(f);
    if (size < HEADER_BYTES || fread(h, HEADER_BYTES, 1, f) != 1)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: truncated checkpoint: %lld bytes, the header alone "
                        "is %d",
                        path, size, HEADER_BYTES);
    if (memcmp(h, MAGIC, 8) != 0)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'magic' is wrong: not an xdt checkpoint", path);
    if (get32(h, 8) != XDT_CKPT_VERSION)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'version' is %u, this build reads %d", path,
                        get32(h, 8), XDT_CKPT_VERSION);
    if (get32(h, 12) != HEADER_BYTES || get64(h, 248) != XXH64(h, 248, 0))
        return xdt_fail(XDT_ERR_FORMAT, "%s: header checksum mismatch: the header is corrupt",
                        path);
    xdt_model_config c = {0};
    snprintf(c.name, sizeof c.name, "checkpoint");
    c.vocab_size = (int)get32(h, 16);
    c.padded_vocab_size = (int)get32(h, 20);
    c.max_seq_len = (int)get32(h, 24);
    c.n_layer = (int)get32(h, 28);
    c.n_head = (int)get32(h, 32);
    c.n_embd = (int)get32(h, 36);
    xdt_ckpt_meta m = {0};
    m.first_unit = (int)get32(h, 40);
    m.last_unit = (int)get32(h, 44);
    m.b = (int)get32(h, 48);
    m.t = (int)get32(h, 52);
    m.step = (int64_t)get64(h, 64);
    for (int i = 0; i < 4; i++)
        m.loader.rng.s[i] = get64(h, 72 + 8 * i);
    m.loader.cursor = get64(h, 104);
    uint64_t n = get64(h, 56);
    uint32_t k = get32(h, 112);
    if (k != 1 && k != 3)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'arrays' is %u, expected 1 or 3", path, k);
    if (xdt_model_config_check(&c, path) != XDT_OK) return XDT_ERR_FORMAT;
    long long expect = HEADER_BYTES + (long long)(n * k * sizeof(float));
    if (n > (1ull << 40) || size != expect)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: field 'n_params' (%llu x %u arrays) needs %lld bytes, "
                        "the file has %lld%s",
                        path, (unsigned long long)n, k, expect, size,
                        size < expect ? " (truncated)" : "");
    *cfg = c;
    *meta = m;
    *n_params = n;
    *arrays = k;
    *payload_hash = get64(h, 120);
    return XDT_OK;
}

xdt_status xdt_checkpoint_peek(const char *path, xdt_model_config *cfg, xdt_ckpt_meta *meta) {
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, " checkpoint", &f);
    if (st0 != XDT_OK) return st0;
    uint64_t n, hash;
    uint32_t arrays;
    xdt_status st = read_header(f, path, cfg, meta, &n, &arrays, &hash);
    fclose(f);
    return st;
}

#define CHECK_FIELD(name, a, b)                                                                    \
    if ((a) != (b))                                                                                \
    return xdt_fail(XDT_ERR_FORMAT,                                                                \
                    "%s: field '" name "' is %lld in the checkpoint but %lld "                     \
                    "in this run",                                                                 \
                    path, (long long)(a), (long long)(b))

static xdt_status check_matches(const char *path, const xdt_model_config *c,
                                const xdt_model_config *want, const xdt_ckpt_meta *m,
                                const xdt_stage *stage, uint64_t n) {
    CHECK_FIELD("vocab_size", c->vocab_size, want->vocab_size);
    CHECK_FIELD("padded_vocab_size", c->padded_vocab_size, want->padded_vocab_size);
    CHECK_FIELD("max_seq_len", c->max_seq_len, want->max_seq_len);
    CHECK_FIELD("n_layer", c->n_layer, want->n_layer);
    CHECK_FIELD("n_head", c->n_head, want->n_head);
    CHECK_FIELD("n_embd", c->n_embd, want->n_embd);
    int first, last;
    xdt_stage_unit_range(stage, &first, &last);
    CHECK_FIELD("first_unit", m->first_unit, first);
    CHECK_FIELD("last_unit", m->last_unit, last);
    CHECK_FIELD("n_params", n, xdt_stage_num_params(stage));
    return XDT_OK;
}

static xdt_status read_array(FILE *f, const char *path, xdt_device *dev, float *dst, size_t n,
                             float *buf, XXH64_state_t *hash) {
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK_FLOATS ? n - done : CHUNK_FLOATS;
        if (fread(buf, sizeof(float), k, f) != k)
            return xdt_fail(XDT_ERR_IO, "%s: short read in the payload", path);
        XXH64_update(hash, buf, k * sizeof(float));
        if (dst)
            dev->ops->copy(dev->ctx, dst + done, buf, k * sizeof(float), XDT_COPY_HOST_TO_DEVICE);
        done += k;
    }
    return xdt_device_sync(dev);
}

xdt_status xdt_checkpoint_load(const char *path, xdt_stage *stage, xdt_optimizer *opt,
                               xdt_ckpt_meta *meta) {
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, " checkpoint", &f);
    if (st0 != XDT_OK) return st0;
    xdt_model_config c;
    xdt_ckpt_meta m;
    uint64_t n, want_hash;
    uint32_t arrays;
    float *buf = NULL;
    XXH64_state_t *hash = NULL;
    xdt_status st = read_header(f, path, &c, &m, &n, &arrays, &want_hash);
    if (st) goto out;
    if ((st = check_matches(path, &c, xdt_stage_config(stage), &m, stage, n))) goto out;
    if (opt && arrays != 3) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: holds weights only; resuming needs optimizer state",
                      path);
        goto out;
    }
    /* Verify the whole payload before touching anything, so a corrupt file changes nothing. */
    buf = malloc(CHUNK_FLOATS * sizeof(float));
    hash = XXH64_createState();
    if (!buf || !hash) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
        goto out;
    }
    xdt_device *dev = xdt_stage_device(stage);
    XXH64_reset(hash, 0);
    for (uint32_t a = 0; a < arrays; a++)
        if ((st = read_array(f, path, dev, NULL, n, buf, hash))) goto out;
    if (XXH64_digest(hash) != want_hash) {
        st = xdt_fail(XDT_ERR_FORMAT, "%s: payload checksum mismatch: the file is corrupt", path);
        goto out;
    }
    fseek(f, HEADER_BYTES, SEEK_SET);
    XXH64_reset(hash, 0);
    if ((st = read_array(f, path, dev, xdt_stage_params(stage), n, buf, hash))) goto out;
    if (opt && ((st = read_array(f, path, dev, xdt_optimizer_m(opt), n, buf, hash)) ||
                (st = read_array(f, path, dev, xdt_optimizer_v(opt), n, buf, hash))))
        goto out;
    if (meta) *meta = m;
out:
    free(buf);
    XXH64_freeState(hash);
    fclose(f);
    return st;
}

void xdt_checkpoint_path(const char *dir, int64_t step, char *out, size_t cap) {
    snprintf(out, cap, "%s/ckpt_%08lld.xdt", dir, (long long)step);
}

/* The highest step of the checkpoints in the open directory d, or -1: only names exactly as
 * xdt_checkpoint_path writes them (ckpt_%08lld.xdt; more digits past step 99999999). */
static long long latest_step(DIR *d) {
    long long best = -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *digits = e->d_name + 5;
        const size_t n = strspn(digits, "0123456789");
        if (strncmp(e->d_name, "ckpt_", 5) || n < 8 || n > 18) continue;
        const long long step = strtoll(digits, NULL, 10);
        char canonical[32];
        snprintf(canonical, sizeof canonical, "ckpt_%08lld.xdt", step);
        if (!strcmp(e->d_name, canonical) && step > best) best = step;
    }
    return best;
}

xdt_status xdt_checkpoint_latest(const char *dir, char *out, size_t cap) {
    DIR *d = opendir(dir);
    if (!d)
        return xdt_fail(XDT_ERR_IO, "%s: cannot open checkpoint directory: %s", dir,
                        strerror(errno));
    const long long best = latest_step(d);
    closedir(d);
    if (best < 0) return xdt_fail(XDT_ERR_IO, "%s: no checkpoint (ckpt_NNNNNNNN.xdt) found", dir);
    xdt_checkpoint_path(dir, best, out, cap);
    return XDT_OK;
}

xdt_status xdt_checkpoint_check_fresh(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return XDT_OK; /* not there yet: created on the first save */
    const long long best = latest_step(d);
    closedir(d);
    if (best < 0) return XDT_OK;
    char path[4096];
    xdt_checkpoint_path(dir, best, path, sizeof path);
    return xdt_checkpoint_refuse_used(path);
}

xdt_status xdt_checkpoint_refuse_used(const char *found) {
    return xdt_fail(XDT_ERR_CONFIG,
                    "%s: --ckpt-dir already holds a checkpoint; pass --resume to continue from it, "
                    "or choose another --ckpt-dir",
                    found);
}
