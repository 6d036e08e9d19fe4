/* bootstrap.h: how ranks find each other. The rank and world size come from the environment
 * with torchrun's conventions (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or Slurm's
 * (SLURM_PROCID, SLURM_NTASKS) or Open MPI's (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE).
 * Rank 0 serves a small TCP key-value store; every rank connects to it, and both sides prove they
 * hold the job secret (XDT_JOB_TOKEN) by answering a random challenge with HMAC-SHA256: the
 * secret never crosses the wire, and a peer without it is refused and logged. Ranks publish their
 * transport addresses in the store and read each other's.
 *
 * Wire protocol (after the handshake), all integers little-endian:
 *   request  u8 op ('S' set, 'G' get, 'A' add), u32 key length, u32 value length, key, value
 *   reply    u8 status (0 ok, 1 timeout, 2 bad request), u32 value length, value
 * Handshake: server sends "XDTB1" + 32-byte nonce Ns; client sends its rank (u32), a 32-byte
 * nonce Nc and HMAC(token, "client" | Ns | Nc | rank); server checks it, answers
 * HMAC(token, "server" | Nc | Ns | rank) and the client checks that. */
#ifndef XDT_BOOTSTRAP_H
#define XDT_BOOTSTRAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "transports/transport.h"

typedef struct xdt_bootstrap_env {
    int rank, world_size;
    char master_addr[256];
    int master_port;
    char token[256];
    const char *rank_var; /* which variable gave the rank, for messages */
} xdt_bootstrap_env;

/* Reads the environment. A missing or malformed variable is an error naming it. */
xdt_status xdt_bootstrap_env_read(xdt_bootstrap_env *out);

typedef struct xdt_store xdt_store;

/* Rank 0 also starts the store server (a thread) on master_addr:master_port; every rank then
 * connects and authenticates within timeout_ms. */
xdt_status xdt_store_open(const xdt_bootstrap_env *env, int timeout_ms, xdt_store **out);
void xdt_store_close(xdt_store *store);

xdt_status xdt_store_set(xdt_store *s, const char *key, const void *value, size_t len);
/* Waits until `key` exists (at most timeout_ms), then copies its value. */
xdt_status xdt_store_get(xdt_store *s, const char *key, void *value, size_t cap, size_t *len,
                         int timeout_ms);
/* Adds delta to the integer at `key` (0 if absent) and returns the new value. */
xdt_status xdt_store_add(xdt_store *s, const char *key, int64_t delta, int64_t *out);
/* Every rank calls it with the same name; returns once all world_size ranks have. */
xdt_status xdt_store_barrier(xdt_store *s, const char *name, int timeout_ms);

/* Publishes this rank's transport address and connects to every other rank. */
xdt_status xdt_store_connect_transport(xdt_store *s, xdt_transport *t, int timeout_ms);

#endif
