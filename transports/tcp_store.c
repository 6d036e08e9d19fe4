/* tcp_store.c: the bootstrap key-value store over TCP, with the HMAC-SHA256 handshake
 * described in bootstrap.h. Rank 0 runs the server in a thread; all ranks are clients. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "transports/bootstrap.h"

#define NONCE     32
#define MAC       32
#define MAX_KEY   256
#define MAX_VALUE (1 << 20)
static const char HELLO[5] = {'X', 'D', 'T', 'B', '1'};

enum { REPLY_OK = 0, REPLY_TIMEOUT = 1, REPLY_BAD = 2 };

/* ---- socket helpers ---- */

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* Reads or writes exactly n bytes before the deadline; 0 on success, -1 on failure or EOF. */
static int io_all(int fd, void *buf, size_t n, bool writing, double deadline) {
    unsigned char *p = buf;
    while (n) {
        int left = (int)(deadline - now_ms());
        if (left <= 0) return -1;
        struct pollfd pfd = {fd, writing ? POLLOUT : POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static void hmac(const char *token, const char *label, const unsigned char *a,
                 const unsigned char *b, uint32_t rank, unsigned char out[MAC]) {
    unsigned char msg[8 + 2 * NONCE + 4];
    size_t n = strlen(label);
    memcpy(msg, label, n);
    memcpy(msg + n, a, NONCE);
    memcpy(msg + n + NONCE, b, NONCE);
    memcpy(msg + n + 2 * NONCE, &rank, 4);
    unsigned int len = MAC;
    HMAC(EVP_sha256(), token, (int)strlen(token), msg, n + 2 * NONCE + 4, out, &len);
}

static void peer_name(int fd, char *out, size_t cap) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
            port = ntohs(in6->sin6_port);
        }
    }
    snprintf(out, cap, "%s:%d", host, port);
}

/* ---- server ---- */

typedef struct kv {
    char key[MAX_KEY + 1];
    unsigned char *value;
    uint32_t len;
} kv;

typedef struct client {
    int fd;
    int rank;
    char waiting_key[MAX_KEY + 1]; /* a GET not answered yet */
    double waiting_deadline;
} client;

typedef struct server {
    int listen_fd, world_size;
    char token[256];
    pthread_t thread;
    int stop_pipe[2];
    client *clients;
    int n_clients, cap_clients;
    kv *kvs;
    int n_kvs, cap_kvs;
    int authenticated; /* clients that ever passed the handshake */
} server;

static kv *kv_find(server *s, const char *key) {
    for (int i = 0; i < s->n_kvs; i++)
        if (!strcmp(s->kvs[i].key, key)) return &s->kvs[i];
    return NULL;
}

static kv *kv_put(server *s, const char *key, const void *value, uint32_t len) {
    kv *e = kv_find(s, key);
    if (!e) {
        if (s->n_kvs == s->cap_kvs) {
            int cap = s->cap_kvs ? 2 * s->cap_kvs : 64;
            kv *n = realloc(s->kvs, (size_t)cap * sizeof *n);
            if (!n) return NULL;
            s->kvs = n;
            s->cap_kvs = cap;
        }
        e = &s->kvs[s->n_kvs++];
        snprintf(e->key, sizeof e->key, "%s", key);
        e->value = NULL;
    }
    unsigned char *v = malloc(len ? len : 1);
    if (!v) return NULL;
    memcpy(v, value, len);
    free(e->value);
    e->value = v;
    e->len = len;
    return e;
}

static int reply(int fd, uint8_t status, const void *value, uint32_t len) {
    unsigned char h[5];
    h[0] = status;
    memcpy(h + 1, &len, 4);
    double deadline = now_ms() + 5000;
    if (io_all(fd, h, 5, true, deadline)) return -1;
    return len ? io_all(fd, (void *)value, len, true, deadline) : 0;
}

/* Handshake as the server: returns the client's rank, or -1 (after logging) if refused. */
static int server_handshake(server *s, int fd) {
    unsigned char ns[NONCE], nc[NONCE], mac[MAC], want[MAC];
    uint32_t rank = 0;
    char who[96];
    peer_name(fd, who, sizeof who);
    double deadline = now_ms() + 5000;
    if (RAND_bytes(ns, NONCE) != 1) return -1;
    if (io_all(fd, (void *)HELLO, sizeof HELLO, true, deadline) ||
        io_all(fd, ns, NONCE, true, deadline) || io_all(fd, &rank, 4, false, deadline) ||
        io_all(fd, nc, NONCE, false, deadline) || io_all(fd, mac, MAC, false, deadline)) {
        xdt_log_warn("bootstrap store: refused connection from %s: incomplete handshake", who);
        return -1;
    }
    hmac(s->token, "client", ns, nc, rank, want);
    if (CRYPTO_memcmp(mac, want, MAC) != 0 || rank >= (uint32_t)s->world_size) {
        xdt_log_warn("bootstrap store: refused connection from %s (claims rank %u): it does not "
                     "hold the job token",
                     who, rank);
        return -1;
    }
    hmac(s->token, "server", nc, ns, rank, mac);
    if (io_all(fd, mac, MAC, true, deadline)) return -1;
    return (int)rank;
}

/* n_clients and authenticated are read by the closing thread: written atomically. */
static void drop_client(server *s, int i) {
    close(s->clients[i].fd);
    s->clients[i] = s->clients[s->n_clients - 1];
    __atomic_store_n(&s->n_clients, s->n_clients - 1, __ATOMIC_RELEASE);
}

/* Answers GETs waiting on `key`, and times out expired ones. */
static void serve_waiting(server *s) {
    double t = now_ms();
    for (int i = 0; i < s->n_clients; i++) {
        client *c = &s->clients[i];
        if (!c->waiting_key[0]) continue;
        kv *e = kv_find(s, c->waiting_key);
        if (e) {
            c->waiting_key[0] = 0;
            reply(c->fd, REPLY_OK, e->value, e->len);
        } else if (t > c->waiting_deadline) {
            c->waiting_key[0] = 0;
            reply(c->fd, REPLY_TIMEOUT, NULL, 0);
        }
    }
}

/* Reads and serves one request; returns -1 when the client is gone or misbehaves. */
static int serve_request(server *s, client *c) {
    unsigned char h[9];
    double deadline = now_ms() + 5000;
    if (io_all(c->fd, h, 9, false, deadline)) return -1;
    uint32_t klen, vlen;
    memcpy(&klen, h + 1, 4);
    memcpy(&vlen, h + 5, 4);
    if (klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE) {
        reply(c->fd, REPLY_BAD, NULL, 0);
        return -1;
    }
    char key[MAX_KEY + 1];
    unsigned char *value = malloc(vlen ? vlen : 1);
    if (!value || io_all(c->fd, key, klen, false, deadline) ||
        (vlen && io_all(c->fd, value, vlen, false, deadline))) {
        free(value);
        return -1;
    }
    key[klen] = 0;
    int rc = 0;
    if (h[0] == 'S') {
        rc = kv_put(s, key, value, vlen) ? reply(c->fd, REPLY_OK, NULL, 0) : -1;
    } else if (h[0] == 'G' && vlen == 4) {
        uint32_t timeout_ms;
        memcpy(&timeout_ms, value, 4);
        snprintf(c->waiting_key, sizeof c->waiting_key, "%s", key);
        c->waiting_deadline = now_ms() + timeout_ms;
    } else if (h[0] == 'A' && vlen == 8) {
        int64_t delta, cur = 0;
        memcpy(&delta, value, 8);
        kv *e = kv_find(s, key);
        if (e && e->len == 8) memcpy(&cur, e->value, 8);
        cur += delta;
        rc = kv_put(s, key, &cur, 8) ? reply(c->fd, REPLY_OK, &cur, 8) : -1;
    } else {
        reply(c->fd, REPLY_BAD, NULL, 0);
        rc = -1;
    }
    free(value);
    return rc;
}

static void *server_main(void *arg) {
    server *s = arg;
    for (;;) {
        int n = s->n_clients;
        struct pollfd *pfds = calloc((size_t)n + 2, sizeof *pfds);
        if (!pfds) break;
        pfds[0] = (struct pollfd){s->stop_pipe[0], POLLIN, 0};
        pfds[1] = (struct pollfd){s->listen_fd, POLLIN, 0};
        for (int i = 0; i < n; i++)
            pfds[i + 2] = (struct pollfd){s->clients[i].fd, POLLIN, 0};
        int r = poll(pfds, (nfds_t)n + 2, 50);
        if (r < 0 && errno != EINTR) {
            free(pfds);
            break;
        }
        if (pfds[0].revents) {
            free(pfds);
            break;
        }
        for (int i = n - 1; i >= 0; i--)
            if (pfds[i + 2].revents && serve_request(s, &s->clients[i]) != 0) drop_client(s, i);
        if (pfds[1].revents & POLLIN) {
            int fd = accept(s->listen_fd, NULL, NULL);
            if (fd >= 0) {
                int rank = server_handshake(s, fd);
                if (rank < 0 || (s->n_clients == s->cap_clients && s->cap_clients >= 4096)) {
                    close(fd);
                } else {
                    if (s->n_clients == s->cap_clients) {
                        int cap = s->cap_clients ? 2 * s->cap_clients : 16;
                        client *nc = realloc(s->clients, (size_t)cap * sizeof *nc);
                        if (!nc) {
                            close(fd);
                            free(pfds);
                            continue;
                        }
                        s->clients = nc;
                        s->cap_clients = cap;
                    }
                    s->clients[s->n_clients] = (client){.fd = fd, .rank = rank};
                    __atomic_store_n(&s->n_clients, s->n_clients + 1, __ATOMIC_RELEASE);
                    __atomic_add_fetch(&s->authenticated, 1, __ATOMIC_RELEASE);
                }
            }
        }
        free(pfds);
        serve_waiting(s);
    }
    return NULL;
}

static xdt_status server_start(const xdt_bootstrap_env *env, server **out) {
    char port[16];
    snprintf(port, sizeof port, "%d", env->master_port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int gai = getaddrinfo(env->master_addr, port, &hints, &ai);
    if (gai != 0)
        return xdt_fail(XDT_ERR_CONFIG, "MASTER_ADDR '%s': %s", env->master_addr,
                        gai_strerror(gai));
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 256) != 0) {
        xdt_status st = xdt_fail(XDT_ERR_IO, "bootstrap store: cannot listen on %s:%d: %s",
                                 env->master_addr, env->master_port, strerror(errno));
        if (fd >= 0) close(fd);
        freeaddrinfo(ai);
        return st;
    }
    freeaddrinfo(ai);
    server *s = calloc(1, sizeof *s);
    if (!s || pipe(s->stop_pipe) != 0) {
        free(s);
        close(fd);
        return xdt_fail(XDT_ERR_NO_MEMORY, "bootstrap store: out of memory");
    }
    s->listen_fd = fd;
    s->world_size = env->world_size;
    snprintf(s->token, sizeof s->token, "%s", env->token);
    if (pthread_create(&s->thread, NULL, server_main, s) != 0) {
        close(fd);
        close(s->stop_pipe[0]);
        close(s->stop_pipe[1]);
        free(s);
        return xdt_fail(XDT_ERR_IO, "bootstrap store: cannot start its thread");
    }
    *out = s;
    return XDT_OK;
}

static void server_stop(server *s) {
    if (!s) return;
    if (write(s->stop_pipe[1], "x", 1) != 1) xdt_log_warn("bootstrap store: stop signal failed");
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->n_clients; i++)
        close(s->clients[i].fd);
    for (int i = 0; i < s->n_kvs; i++)
        free(s->kvs[i].value);
    close(s->listen_fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    free(s->clients);
    free(s->kvs);
    free(s);
}

/* ---- client ---- */

struct xdt_store {
    xdt_bootstrap_env env;
    int fd;
    server *srv; /* rank 0 only */
};

static xdt_status client_connect(xdt_store *st, int timeout_ms) {
    const xdt_bootstrap_env *e = &st->env;
    char port[16];
    snprintf(port, sizeof port, "%d", e->master_port);
    double deadline = now_ms() + timeout_ms;
    const char *last = "no attempt";
    while (now_ms() < deadline) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        struct addrinfo *ai = NULL;
        if (getaddrinfo(e->master_addr, port, &hints, &ai) == 0) {
            int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                freeaddrinfo(ai);
                int one = 1;
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                st->fd = fd;
                return XDT_OK;
            }
            last = strerror(errno);
            if (fd >= 0) close(fd);
            freeaddrinfo(ai);
        } else {
            last = "cannot resolve";
        }
        usleep(20000);
    }
    return xdt_fail(XDT_ERR_TIMEOUT,
                    "rank %d: bootstrap store at %s:%d did not answer within %d "
                    "ms (%s)",
                    e->rank, e->master_addr, e->master_port, timeout_ms, last);
}

static xdt_status client_handshake(xdt_store *st) {
    unsigned char hello[sizeof HELLO], ns[NONCE], nc[NONCE], mac[MAC], want[MAC];
    uint32_t rank = (uint32_t)st->env.rank;
    double deadline = now_ms() + 10000;
    if (RAND_bytes(nc, NONCE) != 1) return xdt_fail(XDT_ERR_IO, "no randomness for the nonce");
    if (io_all(st->fd, hello, sizeof hello, false, deadline) || memcmp(hello, HELLO, 5) != 0 ||
        io_all(st->fd, ns, NONCE, false, deadline))
        return xdt_fail(XDT_ERR_PEER, "rank %d: %s:%d is not an xdt bootstrap store", st->env.rank,
                        st->env.master_addr, st->env.master_port);
    hmac(st->env.token, "client", ns, nc, rank, mac);
    if (io_all(st->fd, &rank, 4, true, deadline) || io_all(st->fd, nc, NONCE, true, deadline) ||
        io_all(st->fd, mac, MAC, true, deadline) || io_all(st->fd, mac, MAC, false, deadline))
        return xdt_fail(XDT_ERR_AUTH,
                        "rank %d: the bootstrap store at %s:%d refused this rank: "
                        "check XDT_JOB_TOKEN",
                        st->env.rank, st->env.master_addr, st->env.master_port);
    hmac(st->env.token, "server", nc, ns, rank, want);
    if (CRYPTO_memcmp(mac, want, MAC) != 0)
        return xdt_fail(XDT_ERR_AUTH,
                        "rank %d: the bootstrap store at %s:%d does not hold the "
                        "job token",
                        st->env.rank, st->env.master_addr, st->env.master_port);
    return XDT_OK;
}

xdt_status xdt_store_open(const xdt_bootstrap_env *env, int timeout_ms, xdt_store **out) {
    xdt_store *st = calloc(1, sizeof *st);
    if (!st) return xdt_fail(XDT_ERR_NO_MEMORY, "bootstrap store: out of memory");
    st->env = *env;
    st->fd = -1;
    xdt_status rc = XDT_OK;
    if (env->rank == 0 && (rc = server_start(env, &st->srv))) goto err;
    if ((rc = client_connect(st, timeout_ms)) || (rc = client_handshake(st))) goto err;
    *out = st;
    return XDT_OK;
err:
    xdt_store_close(st);
    return rc;
}

void xdt_store_close(xdt_store *st) {
    if (!st) return;
    if (st->fd >= 0) close(st->fd);
    if (st->srv) {
        /* stay up until the other ranks have left, so none loses its store mid-call */
        double deadline = now_ms() + 10000;
        while (now_ms() < deadline) {
            struct timespec ts = {0, 20 * 1000 * 1000};
            nanosleep(&ts, NULL);
            if (__atomic_load_n(&st->srv->n_clients, __ATOMIC_ACQUIRE) == 0 &&
                __atomic_load_n(&st->srv->authenticated, __ATOMIC_ACQUIRE) >= st->env.world_size)
                break;
        }
        server_stop(st->srv);
    }
    free(st);
}

static xdt_status request(xdt_store *st, char op, const char *key, const void *value, uint32_t vlen,
                          void *out, size_t cap, size_t *out_len, int wait_ms) {
    uint32_t klen = (uint32_t)strlen(key);
    if (klen == 0 || klen > MAX_KEY || vlen > MAX_VALUE)
        return xdt_fail(XDT_ERR_INVALID_ARG, "bootstrap store: key '%s' or value too long", key);
    unsigned char h[9];
    h[0] = (unsigned char)op;
    memcpy(h + 1, &klen, 4);
    memcpy(h + 5, &vlen, 4);
    double deadline = now_ms() + wait_ms + 10000;
    unsigned char r[5];
    if (io_all(st->fd, h, 9, true, deadline) || io_all(st->fd, (void *)key, klen, true, deadline) ||
        (vlen && io_all(st->fd, (void *)value, vlen, true, deadline)) ||
        io_all(st->fd, r, 5, false, deadline))
        return xdt_fail(XDT_ERR_PEER, "rank %d: lost the bootstrap store at %s:%d (key '%s')",
                        st->env.rank, st->env.master_addr, st->env.master_port, key);
    uint32_t len;
    memcpy(&len, r + 1, 4);
    if (r[0] == REPLY_TIMEOUT)
        return xdt_fail(XDT_ERR_TIMEOUT,
                        "rank %d: key '%s' did not appear in the bootstrap store "
                        "within %d ms",
                        st->env.rank, key, wait_ms);
    if (r[0] != REPLY_OK || len > cap || len > MAX_VALUE)
        return xdt_fail(XDT_ERR_FORMAT, "rank %d: bad reply from the bootstrap store for key '%s'",
                        st->env.rank, key);
    if (len && io_all(st->fd, out, len, false, deadline))
        return xdt_fail(XDT_ERR_PEER, "rank %d: lost the bootstrap store", st->env.rank);
    if (out_len) *out_len = len;
    return XDT_OK;
}

xdt_status xdt_store_set(xdt_store *st, const char *key, const void *value, size_t len) {
    if (len > MAX_VALUE)
        return xdt_fail(XDT_ERR_INVALID_ARG, "bootstrap store: value of %zu bytes for '%s'", len,
                        key);
    return request(st, 'S', key, value, (uint32_t)len, NULL, 0, NULL, 0);
}

xdt_status xdt_store_get(xdt_store *st, const char *key, void *value, size_t cap, size_t *len,
                         int timeout_ms) {
    uint32_t t = timeout_ms < 0 ? UINT32_MAX / 2 : (uint32_t)timeout_ms;
    return request(st, 'G', key, &t, 4, value, cap, len, (int)t);
}

xdt_status xdt_store_add(xdt_store *st, const char *key, int64_t delta, int64_t *out) {
    int64_t v = 0;
    size_t n = 0;
    xdt_status rc = request(st, 'A', key, &delta, 8, &v, sizeof v, &n, 0);
    if (rc == XDT_OK && out) *out = v;
    return rc;
}

xdt_status xdt_store_barrier(xdt_store *st, const char *name, int timeout_ms) {
    char key[MAX_KEY], done[MAX_KEY];
    snprintf(key, sizeof key, "barrier/%s/count", name);
    snprintf(done, sizeof done, "barrier/%s/done", name);
    int64_t n = 0;
    xdt_status rc = xdt_store_add(st, key, 1, &n);
    if (rc) return rc;
    if (n == st->env.world_size && (rc = xdt_store_set(st, done, "1", 1))) return rc;
    char b;
    return xdt_store_get(st, done, &b, 1, NULL, timeout_ms);
}

xdt_status xdt_store_connect_transport(xdt_store *st, xdt_transport *t, int timeout_ms) {
    unsigned char addr[8192];
    size_t len = 0;
    char key[64];
    xdt_status rc = t->ops->local_address(t->ctx, addr, sizeof addr, &len);
    if (rc) return rc;
    snprintf(key, sizeof key, "addr/%s/%d", t->name, t->rank);
    if ((rc = xdt_store_set(st, key, addr, len))) return rc;
    for (int p = 0; p < t->world_size; p++) {
        if (p == t->rank) continue;
        snprintf(key, sizeof key, "addr/%s/%d", t->name, p);
        if ((rc = xdt_store_get(st, key, addr, sizeof addr, &len, timeout_ms)) ||
            (rc = t->ops->connect(t->ctx, p, addr, len)))
            return rc;
    }
    return XDT_OK;
}
