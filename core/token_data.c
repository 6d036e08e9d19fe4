/* token_data.c: loading text files and llm.c token shards. */
#include "core/token_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file_util.h"
#include "core/log.h"

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static xdt_status load_shard(FILE *f, long long size, xdt_token_data *d) {
    int32_t header[256];
    if (size < (long long)sizeof header)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: truncated llm.c shard: %lld bytes, the header alone "
                        "is 1024",
                        d->path, size);
    if (fread(header, sizeof header, 1, f) != 1)
        return xdt_fail(XDT_ERR_IO, "%s: cannot read the shard header", d->path);
    if (header[0] != XDT_LLMC_SHARD_MAGIC)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: header field 'magic' is %d, expected %d (llm.c token "
                        "shard)",
                        d->path, header[0], XDT_LLMC_SHARD_MAGIC);
    if (header[1] != XDT_LLMC_SHARD_VERSION)
        return xdt_fail(XDT_ERR_FORMAT, "%s: header field 'version' is %d, expected %d", d->path,
                        header[1], XDT_LLMC_SHARD_VERSION);
    if (header[2] < 0)
        return xdt_fail(XDT_ERR_FORMAT, "%s: header field 'token count' is negative (%d)", d->path,
                        header[2]);
    size_t n = (size_t)header[2];
    long long expect = (long long)sizeof header + (long long)n * 2;
    if (size != expect)
        return xdt_fail(XDT_ERR_FORMAT,
                        "%s: header field 'token count' says %zu tokens (%lld bytes)"
                        " but the file has %lld bytes%s",
                        d->path, n, expect, size, size < expect ? " (truncated)" : "");
    d->tokens = malloc(n ? n * sizeof(uint16_t) : 1);
    if (!d->tokens)
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory for %zu tokens", d->path, n);
    if (n && fread(d->tokens, sizeof(uint16_t), n, f) != n) {
        free(d->tokens);
        d->tokens = NULL;
        return xdt_fail(XDT_ERR_IO, "%s: short read of the tokens", d->path);
    }
    d->n = n;
    d->format = XDT_TOKENS_LLMC_SHARD;
    return XDT_OK;
}

static xdt_status load_text(FILE *f, long long size, xdt_token_data *d) {
    unsigned char *bytes = malloc(size ? (size_t)size : 1);
    d->tokens = malloc(size ? (size_t)size * sizeof(uint16_t) : 1);
    if (!bytes || !d->tokens) {
        free(bytes);
        free(d->tokens);
        d->tokens = NULL;
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory for %lld bytes", d->path, size);
    }
    if (size && fread(bytes, 1, (size_t)size, f) != (size_t)size) {
        free(bytes);
        free(d->tokens);
        d->tokens = NULL;
        return xdt_fail(XDT_ERR_IO, "%s: short read", d->path);
    }
    for (long long i = 0; i < size; i++)
        d->tokens[i] = bytes[i];
    free(bytes);
    d->n = (size_t)size;
    d->format = XDT_TOKENS_TEXT_BYTES;
    return XDT_OK;
}

xdt_status xdt_token_data_load(const char *path, xdt_token_data *out) {
    xdt_token_data d = {0};
    snprintf(d.path, sizeof d.path, "%s", path);
    FILE *f = NULL;
    xdt_status st0 = xdt_fopen_read(path, " data file", &f);
    if (st0 != XDT_OK) return st0;
    long long size = xdt_file_size(f);
    int32_t first = 0;
    size_t got = fread(&first, 1, sizeof first, f);
    rewind(f);
    xdt_status st;
    if (size < 0)
        st = xdt_fail(XDT_ERR_IO, "%s: cannot stat", path);
    else if (ends_with(path, ".bin") || (got == sizeof first && first == XDT_LLMC_SHARD_MAGIC))
        st = load_shard(f, size, &d);
    else
        st = load_text(f, size, &d);
    fclose(f);
    if (st != XDT_OK) return st;
    if (d.n == 0) {
        xdt_token_data_free(&d);
        return xdt_fail(XDT_ERR_FORMAT, "%s: holds no tokens", path);
    }
    *out = d;
    return XDT_OK;
}

void xdt_token_data_free(xdt_token_data *d) {
    if (!d) return;
    free(d->tokens);
    d->tokens = NULL;
    d->n = 0;
}

xdt_status xdt_token_data_check_vocab(const xdt_token_data *d, int vocab_size) {
    for (size_t i = 0; i < d->n; i++)
        if (d->tokens[i] >= vocab_size)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: token #%zu has id %u, outside the model's vocab_size %d", d->path,
                            i, d->tokens[i], vocab_size);
    return XDT_OK;
}
