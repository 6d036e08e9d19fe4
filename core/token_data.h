/* token_data.h: a token stream in memory, read from (a) any text file as byte-level tokens
 * (vocab 256) or (b) an llm.c token shard: a header of 256 int32 (magic 20240520, version 1,
 * token count, rest unused) followed by that many uint16 tokens. */
#ifndef XDT_TOKEN_DATA_H
#define XDT_TOKEN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#define XDT_LLMC_SHARD_MAGIC   20240520
#define XDT_LLMC_SHARD_VERSION 1

typedef enum xdt_token_format {
    XDT_TOKENS_TEXT_BYTES = 0,
    XDT_TOKENS_LLMC_SHARD = 1,
} xdt_token_format;

typedef struct xdt_token_data {
    uint16_t *tokens;
    size_t n;
    xdt_token_format format;
    char path[1024];
} xdt_token_data;

/* Loads `path`. Files whose name ends in .bin, or that begin with the shard magic, are read as
 * llm.c shards and fully validated (magic, version, token count against the file size);
 * anything else is text. Errors name the file and what is wrong. */
xdt_status xdt_token_data_load(const char *path, xdt_token_data *out);
void xdt_token_data_free(xdt_token_data *d);

/* Fails naming the file and token index if any token is >= vocab_size. */
xdt_status xdt_token_data_check_vocab(const xdt_token_data *d, int vocab_size);

#endif
