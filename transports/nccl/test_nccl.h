/* test_nccl.h: what the NCCL tests share: a check that counts failures and says why, and a
 * bootstrap store on a free loopback port for their threads (each member opens its own client;
 * member 0 serves). */
#ifndef XDT_TEST_NCCL_H
#define XDT_TEST_NCCL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "transports/bootstrap.h"

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Binds port 0 and returns what the kernel chose, or -1. */
static inline int test_free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(s, (struct sockaddr *)&sa, &sl)) {
        if (s >= 0) close(s);
        return -1;
    }
    close(s);
    return ntohs(sa.sin_port);
}

static inline xdt_bootstrap_env test_store_env(int rank, int world, int port) {
    xdt_bootstrap_env env = {.rank = rank, .world_size = world, .master_port = port};
    snprintf(env.master_addr, sizeof env.master_addr, "127.0.0.1");
    snprintf(env.token, sizeof env.token, "test-nccl-group");
    env.rank_var = "test";
    return env;
}

#endif
