/* pipeline_comm.c: the communication thread: queues, buffer pools, posting and completion. */
#include "core/pipeline_comm.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "transports/channel.h"
#include "transports/frame/frame.h"

/* Pipeline tags carry the step modulo 2^20 - 1: the step value 2^20 - 1 is left to the
 * collectives' tag spaces (xdt_pipeline_group_tag). */
#define STEP_WRAP ((UINT64_C(1) << XDT_TAG_STEP_BITS) - 1)

typedef struct message {
    xdt_msg_id id;
    uint64_t tag, seq;
    float *data;         /* decoded (receives) or to encode (sends) */
    unsigned char *wire; /* framed bytes */
    size_t wire_cap, wire_len;
    xdt_request *req;
    bool posted, ready;
    struct message *next; /* queue / free list */
} message;

typedef struct peer_link {
    int rank;
    xdt_channel *act, *grad, *tied, *raw; /* each kind with its codec; NORM raw */
    uint64_t send_seq[XDT_MSG_KIND_COUNT], recv_seq[XDT_MSG_KIND_COUNT];
    uint64_t wire_bytes, raw_bytes; /* sent; under the engine lock */
} peer_link;

struct xdt_comm {
    xdt_transport *t;
    xdt_comm_config cfg;
    peer_link *peers;
    int n_peers;
    size_t wire_cap[XDT_MSG_KIND_COUNT]; /* the largest frame of each kind over all peers */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t lock;
    pthread_cond_t changed; /* any state change, both directions */
    /* under lock */
    bool stop, drain, drained;
    xdt_status error;
    char error_text[256];
    message *send_queue, *send_tail; /* queued by compute, not yet taken by the thread */
    message *reserved;               /* xdt_comm_send_reserve's, not yet committed */
    message *free_list[XDT_MSG_KIND_COUNT];
    message **recvs; /* the step's receives, in order */
    int n_recvs, cap_recvs, n_posted;
    int step;
    /* the thread's own */
    message *in_flight; /* sends posted to the transport */
};

static peer_link *link_of(xdt_comm *c, int rank) {
    for (int i = 0; i < c->n_peers; i++)
        if (c->peers[i].rank == rank) return &c->peers[i];
    return NULL;
}

static xdt_channel *channel_of(peer_link *l, xdt_msg_kind kind) {
    return kind == XDT_MSG_ACT || kind == XDT_MSG_EVAL ? l->act
           : kind == XDT_MSG_GRAD                      ? l->grad
           : kind == XDT_MSG_TIED                      ? l->tied
                                                       : l->raw;
}

static const char *kind_name(xdt_msg_kind k) {
    static const char *const names[] = {"activation", "gradient", "tied gradient", "norm",
                                        "evaluation activation"};
    return k < XDT_MSG_KIND_COUNT ? names[k] : "?";
}

static void describe(const xdt_msg_id *id, char *buf, size_t cap) {
    if (id->kind == XDT_MSG_ACT || id->kind == XDT_MSG_GRAD || id->kind == XDT_MSG_EVAL)
        snprintf(buf, cap, "%s of microbatch %d (chunk %d) from/to rank %d", kind_name(id->kind),
                 id->microbatch, id->chunk, id->peer);
    else
        snprintf(buf, cap, "%s from/to rank %d", kind_name(id->kind), id->peer);
}

/* Records the first error and wakes everyone; under lock. */
static void set_error(xdt_comm *c, xdt_status st, const char *text) {
    if (c->error) return;
    c->error = st;
    snprintf(c->error_text, sizeof c->error_text, "%s", text);
    pthread_cond_broadcast(&c->changed);
}

static void free_data(xdt_comm *c, float *data) {
    if (c->cfg.free_host)
        c->cfg.free_host(c->cfg.alloc_arg, data);
    else
        free(data);
}

/* A pooled message sized for `kind`; under lock. */
static message *take_message(xdt_comm *c, xdt_msg_kind kind) {
    message *m = c->free_list[kind];
    if (m) {
        c->free_list[kind] = m->next;
        m->next = NULL;
        return m;
    }
    m = calloc(1, sizeof *m);
    if (!m) return NULL;
    const size_t n = c->cfg.max_floats[kind] ? c->cfg.max_floats[kind] : 1;
    m->wire_cap = c->wire_cap[kind];
    m->data = c->cfg.alloc_host ? c->cfg.alloc_host(c->cfg.alloc_arg, n * sizeof(float))
                                : malloc(n * sizeof(float));
    m->wire = malloc(m->wire_cap);
    if (!m->data || !m->wire) {
        if (m->data) free_data(c, m->data);
        free(m->wire);
        free(m);
        return NULL;
    }
    return m;
}

static void give_back(xdt_comm *c, message *m) {
    m->req = NULL;
    m->posted = m->ready = false;
    m->next = c->free_list[m->id.kind];
    c->free_list[m->id.kind] = m;
}

static uint64_t tag_of(int step, const xdt_msg_id *id) {
    return xdt_tag_make((uint64_t)step % STEP_WRAP, (uint64_t)id->microbatch,
                        (uint64_t)id->kind + 1, (uint64_t)id->chunk);
}

/* Thread: encode and post the queued sends, post the step's receives. Returns work done. */
static int post_work(xdt_comm *c) {
    pthread_mutex_lock(&c->lock);
    message *queue = c->send_queue;
    c->send_queue = c->send_tail = NULL;
    const int from = c->n_posted, to = c->n_recvs;
    message **recvs = c->recvs; /* stable until these receives arrive (see begin_step) */
    pthread_mutex_unlock(&c->lock);
    int work = 0;
    char what[160], why[256];
    for (int i = from; i < to; i++) {
        message *m = recvs[i];
        xdt_status st =
            xdt_irecv(c->t, m->id.peer, m->tag, m->wire, m->wire_cap, XDT_MEM_HOST, &m->req);
        if (st) {
            describe(&m->id, what, sizeof what);
            snprintf(why, sizeof why, "cannot post the receive of %s: %s", what,
                     xdt_status_string(st));
            pthread_mutex_lock(&c->lock);
            set_error(c, st, why);
            pthread_mutex_unlock(&c->lock);
            return work;
        }
        pthread_mutex_lock(&c->lock);
        m->posted = true;
        c->n_posted = i + 1;
        pthread_mutex_unlock(&c->lock);
        work++;
    }
    while (queue) {
        message *m = queue;
        queue = m->next;
        m->next = NULL;
        peer_link *l = link_of(c, m->id.peer);
        xdt_status st = xdt_channel_pack_into(channel_of(l, m->id.kind), m->tag, m->seq, m->data,
                                              m->id.n, m->wire, m->wire_cap, &m->wire_len);
        if (!st)
            st = xdt_isend(c->t, m->id.peer, m->tag, m->wire, m->wire_len, XDT_MEM_HOST, &m->req);
        if (st) {
            describe(&m->id, what, sizeof what);
            snprintf(why, sizeof why, "cannot send %s: %s", what, xdt_status_string(st));
            pthread_mutex_lock(&c->lock);
            give_back(c, m);
            set_error(c, st, why);
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        pthread_mutex_lock(&c->lock);
        l->wire_bytes += m->wire_len;
        l->raw_bytes += m->id.n * sizeof(float);
        pthread_mutex_unlock(&c->lock);
        m->next = c->in_flight;
        c->in_flight = m;
        work++;
    }
    return work;
}

/* Thread: completes sends and receives. Returns work done. */
static int complete_work(xdt_comm *c) {
    int work = xdt_transport_progress(c->t);
    char what[160], why[256];
    for (message **p = &c->in_flight; *p;) {
        message *m = *p;
        bool done = false;
        xdt_completion cpl;
        xdt_status st = xdt_test(c->t, m->req, &done, &cpl);
        if (!st && done) st = cpl.status;
        if (!done && !st) {
            p = &m->next;
            continue;
        }
        *p = m->next;
        work++;
        pthread_mutex_lock(&c->lock);
        if (st) {
            describe(&m->id, what, sizeof what);
            snprintf(why, sizeof why, "sending %s failed: %s", what, xdt_status_string(st));
            set_error(c, st, why);
        }
        give_back(c, m);
        pthread_mutex_unlock(&c->lock);
    }
    for (int i = 0;; i++) {
        /* a receive not yet ready cannot be handed back by begin_step (it requires every
         * receive of the last step to have arrived), so m stays valid outside the lock */
        pthread_mutex_lock(&c->lock);
        message *m = i < c->n_posted ? c->recvs[i] : NULL;
        const bool skip = m && (!m->posted || m->ready || !m->req);
        pthread_mutex_unlock(&c->lock);
        if (!m) break;
        if (skip) continue;
        bool done = false;
        xdt_completion cpl;
        xdt_status st = xdt_test(c->t, m->req, &done, &cpl);
        if (!st && done) st = cpl.status;
        if (!done && !st) continue;
        m->req = NULL;
        work++;
        if (!st) {
            peer_link *l = link_of(c, m->id.peer);
            st = xdt_channel_unpack(channel_of(l, m->id.kind), m->tag, m->seq, m->wire, cpl.bytes,
                                    m->data, m->id.n);
        }
        pthread_mutex_lock(&c->lock);
        if (st) {
            describe(&m->id, what, sizeof what);
            snprintf(why, sizeof why, "receiving %s failed: %s", what, xdt_status_string(st));
            set_error(c, st, why);
        } else {
            m->ready = true;
            pthread_cond_broadcast(&c->changed);
        }
        pthread_mutex_unlock(&c->lock);
    }
    return work;
}

/* Under lock: every send has left and every receive of the step is posted (receives still
 * outstanding complete in the transport meanwhile and are found after the resume). */
static bool quiet(const xdt_comm *c) {
    return !c->send_queue && !c->in_flight && c->n_posted == c->n_recvs;
}

static void *comm_main(void *arg) {
    xdt_comm *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        while (!c->stop && (c->drained || c->error))
            pthread_cond_wait(&c->changed, &c->lock);
        const bool stop = c->stop;
        pthread_mutex_unlock(&c->lock);
        if (stop) break;
        int work = post_work(c);
        work += complete_work(c);
        pthread_mutex_lock(&c->lock);
        if (c->drain && quiet(c)) {
            c->drained = true;
            pthread_cond_broadcast(&c->changed);
            pthread_mutex_unlock(&c->lock);
            continue;
        }
        const bool idle = work == 0 && !c->send_queue && c->n_posted == c->n_recvs;
        pthread_mutex_unlock(&c->lock);
        /* sleep in the transport until a message moves or the compute thread wakes us */
        if (idle) xdt_transport_block(c->t, 100);
    }
    return NULL;
}

xdt_status xdt_comm_create(xdt_transport *t, const xdt_comm_config *cfg, xdt_comm **out) {
    if (cfg->n_peers < 1)
        return xdt_fail(XDT_ERR_INVALID_ARG, "pipeline comm: no peers to talk to");
    xdt_comm *c = calloc(1, sizeof *c);
    if (!c) return xdt_fail(XDT_ERR_NO_MEMORY, "pipeline comm: out of memory");
    c->t = t;
    c->cfg = *cfg;
    if (c->cfg.timeout_ms <= 0) c->cfg.timeout_ms = XDT_DEFAULT_TIMEOUT_MS;
    c->drained = true; /* idle until the first step */
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->changed, NULL);
    xdt_status st = XDT_OK;
    c->peers = calloc((size_t)cfg->n_peers, sizeof *c->peers);
    if (!c->peers) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "pipeline comm: out of memory");
        goto err;
    }
    c->n_peers = cfg->n_peers;
    for (int i = 0; i < cfg->n_peers && !st; i++) {
        peer_link *l = &c->peers[i];
        const xdt_comm_peer *cp = &cfg->peers[i];
        l->rank = cp->rank;
        xdt_channel_config cc = {.job_id = cfg->job_id,
                                 .codec = cp->codec_act,
                                 .max_floats = cp->coded_floats,
                                 .timeout_ms = c->cfg.timeout_ms};
        if (cp->coded_floats) st = xdt_channel_create(t, l->rank, &cc, &l->act);
        cc.codec = cp->codec_grad;
        if (!st && cp->coded_floats) st = xdt_channel_create(t, l->rank, &cc, &l->grad);
        cc.codec = cp->codec_tied;
        cc.max_floats = cp->raw_floats ? cp->raw_floats : 1;
        if (!st) st = xdt_channel_create(t, l->rank, &cc, &l->tied);
        cc.codec = (xdt_codec_spec){.kind = XDT_CODEC_NONE};
        if (!st) st = xdt_channel_create(t, l->rank, &cc, &l->raw);
        for (int k = 0; !st && k < XDT_MSG_KIND_COUNT; k++) {
            xdt_channel *ch = channel_of(l, (xdt_msg_kind)k);
            const size_t cap = ch ? xdt_channel_wire_capacity(ch) : 0;
            if (cap > c->wire_cap[k]) c->wire_cap[k] = cap;
        }
    }
    if (st) goto err;
    if (pthread_create(&c->thread, NULL, comm_main, c) != 0) {
        st = xdt_fail(XDT_ERR_IO, "pipeline comm: cannot start the thread: %s", strerror(errno));
        goto err;
    }
    c->thread_started = true;
    *out = c;
    return XDT_OK;
err:
    xdt_comm_destroy(c);
    return st;
}

static void free_list_all(xdt_comm *c, message *m) {
    while (m) {
        message *next = m->next;
        if (m->data) free_data(c, m->data);
        free(m->wire);
        free(m);
        m = next;
    }
}

void xdt_comm_destroy(xdt_comm *c) {
    if (!c) return;
    if (c->thread_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_broadcast(&c->changed);
        pthread_mutex_unlock(&c->lock);
        xdt_transport_wake(c->t);
        pthread_join(c->thread, NULL);
    }
    for (message *m = c->in_flight; m; m = m->next)
        if (m->req) xdt_cancel(c->t, m->req);
    for (int i = 0; i < c->n_recvs; i++)
        if (c->recvs[i]->req) xdt_cancel(c->t, c->recvs[i]->req);
    free_list_all(c, c->in_flight);
    free_list_all(c, c->send_queue);
    free_list_all(c, c->reserved);
    for (int i = 0; i < c->n_recvs; i++) {
        c->recvs[i]->next = NULL;
        free_list_all(c, c->recvs[i]);
    }
    free(c->recvs);
    for (int k = 0; k < XDT_MSG_KIND_COUNT; k++)
        free_list_all(c, c->free_list[k]);
    for (int i = 0; c->peers && i < c->n_peers; i++) {
        xdt_channel_destroy(c->peers[i].act);
        xdt_channel_destroy(c->peers[i].grad);
        xdt_channel_destroy(c->peers[i].tied);
        xdt_channel_destroy(c->peers[i].raw);
    }
    free(c->peers);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->changed);
    free(c);
}

static xdt_status check_id(xdt_comm *c, const xdt_msg_id *id, peer_link **l) {
    *l = link_of(c, id->peer);
    if (!*l || id->kind >= XDT_MSG_KIND_COUNT || id->n > c->cfg.max_floats[id->kind] ||
        !channel_of(*l, id->kind) ||
        !xdt_tag_fits((uint64_t)id->microbatch, (uint64_t)id->kind + 1, (uint64_t)id->chunk) ||
        id->microbatch < 0 || id->chunk < 0)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "pipeline comm: message to/from rank %d (kind %d, microbatch %d, chunk "
                        "%d, %zu floats) is outside what the engine was configured for",
                        id->peer, (int)id->kind, id->microbatch, id->chunk, id->n);
    return XDT_OK;
}

/* Under lock: the thread's error as a status, logged once by the caller that sees it. */
static xdt_status thread_error(xdt_comm *c) {
    return xdt_fail(c->error, "rank %d: %s", c->t->rank, c->error_text);
}

xdt_status xdt_comm_begin_step(xdt_comm *c, int step, const xdt_msg_id *recvs, int n) {
    pthread_mutex_lock(&c->lock);
    xdt_status st = XDT_OK;
    if (c->error) {
        st = thread_error(c);
        goto out;
    }
    for (int i = 0; i < c->n_recvs; i++)
        if (!c->recvs[i]->ready) {
            st = xdt_fail(XDT_ERR_INVALID_ARG,
                          "pipeline comm: step %d begun before step %d's receive %d arrived", step,
                          c->step, i);
            goto out;
        }
    for (int i = 0; i < c->n_recvs; i++)
        give_back(c, c->recvs[i]);
    c->n_recvs = c->n_posted = 0;
    if (n > c->cap_recvs) {
        message **r = realloc(c->recvs, sizeof *r * (size_t)n);
        if (!r) {
            st = xdt_fail(XDT_ERR_NO_MEMORY, "pipeline comm: out of memory");
            goto out;
        }
        c->recvs = r;
        c->cap_recvs = n;
    }
    for (int i = 0; i < n; i++) {
        peer_link *l;
        if ((st = check_id(c, &recvs[i], &l))) goto out;
        message *m = take_message(c, recvs[i].kind);
        if (!m) {
            st = xdt_fail(XDT_ERR_NO_MEMORY, "pipeline comm: out of memory");
            goto out;
        }
        m->id = recvs[i];
        m->tag = tag_of(step, &recvs[i]);
        m->seq = l->recv_seq[recvs[i].kind]++;
        c->recvs[c->n_recvs++] = m;
    }
    c->step = step;
    c->drain = c->drained = false;
    pthread_cond_broadcast(&c->changed);
out:
    pthread_mutex_unlock(&c->lock);
    if (!st) xdt_transport_wake(c->t);
    return st;
}

xdt_status xdt_comm_send_reserve(xdt_comm *c, const xdt_msg_id *id, float **buf) {
    peer_link *l;
    xdt_status st = check_id(c, id, &l);
    if (st) return st;
    if (c->reserved)
        return xdt_fail(XDT_ERR_INVALID_ARG, "pipeline comm: a reserved message is not committed");
    pthread_mutex_lock(&c->lock);
    if (c->error) {
        st = thread_error(c);
        pthread_mutex_unlock(&c->lock);
        return st;
    }
    message *m = take_message(c, id->kind);
    if (!m) {
        pthread_mutex_unlock(&c->lock);
        return xdt_fail(XDT_ERR_NO_MEMORY, "pipeline comm: out of memory");
    }
    m->id = *id;
    m->tag = tag_of(c->step, id);
    m->seq = l->send_seq[id->kind]++;
    pthread_mutex_unlock(&c->lock);
    c->reserved = m; /* the compute thread's own until committed: the thread cannot see it */
    *buf = m->data;
    return XDT_OK;
}

xdt_status xdt_comm_send_commit(xdt_comm *c) {
    message *m = c->reserved;
    if (!m) return xdt_fail(XDT_ERR_INVALID_ARG, "pipeline comm: no reserved message to commit");
    c->reserved = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->send_tail)
        c->send_tail->next = m;
    else
        c->send_queue = m;
    c->send_tail = m;
    pthread_mutex_unlock(&c->lock);
    xdt_transport_wake(c->t);
    return XDT_OK;
}

void xdt_comm_send_abort(xdt_comm *c) {
    message *m = c->reserved;
    if (!m) return;
    c->reserved = NULL;
    pthread_mutex_lock(&c->lock);
    peer_link *l = link_of(c, m->id.peer);
    if (l) l->send_seq[m->id.kind]--; /* the next send takes its number */
    give_back(c, m);
    pthread_mutex_unlock(&c->lock);
}

xdt_status xdt_comm_send(xdt_comm *c, const xdt_msg_id *id, const float *x) {
    float *buf;
    xdt_status st = xdt_comm_send_reserve(c, id, &buf);
    if (st) return st;
    memcpy(buf, x, id->n * sizeof(float));
    return xdt_comm_send_commit(c);
}

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

xdt_status xdt_comm_recv(xdt_comm *c, int index, float *x) {
    const float *data;
    xdt_status st = xdt_comm_recv_view(c, index, &data);
    if (!st) memcpy(x, data, c->recvs[index]->id.n * sizeof(float));
    return st;
}

xdt_status xdt_comm_recv_view(xdt_comm *c, int index, const float **data) {
    struct timespec deadline;
    deadline_after(&deadline, c->cfg.timeout_ms);
    pthread_mutex_lock(&c->lock);
    xdt_status st = XDT_OK;
    if (index < 0 || index >= c->n_recvs) {
        st = xdt_fail(XDT_ERR_INVALID_ARG, "pipeline comm: receive %d of a step of %d", index,
                      c->n_recvs);
        goto out;
    }
    message *m = c->recvs[index];
    while (!m->ready && !c->error)
        if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT) break;
    if (c->error) {
        st = thread_error(c);
    } else if (!m->ready) {
        char what[160];
        describe(&m->id, what, sizeof what);
        st = xdt_fail(XDT_ERR_TIMEOUT, "rank %d: no %s within %.0f s: is rank %d alive?",
                      c->t->rank, what, c->cfg.timeout_ms / 1000.0, m->id.peer);
    } else {
        *data = m->data; /* the thread is done with m until the next step begins */
    }
out:
    pthread_mutex_unlock(&c->lock);
    return st;
}

xdt_status xdt_comm_drain(xdt_comm *c) {
    struct timespec deadline;
    deadline_after(&deadline, c->cfg.timeout_ms);
    pthread_mutex_lock(&c->lock);
    c->drain = true;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    xdt_transport_wake(c->t);
    pthread_mutex_lock(&c->lock);
    while (!c->drained && !c->error)
        if (pthread_cond_timedwait(&c->changed, &c->lock, &deadline) == ETIMEDOUT) break;
    xdt_status st = XDT_OK;
    if (c->error)
        st = thread_error(c);
    else if (!c->drained)
        st =
            xdt_fail(XDT_ERR_TIMEOUT, "rank %d: step %d's messages did not all leave within %.0f s",
                     c->t->rank, c->step, c->cfg.timeout_ms / 1000.0);
    pthread_mutex_unlock(&c->lock);
    return st;
}

xdt_status xdt_comm_resume(xdt_comm *c) {
    pthread_mutex_lock(&c->lock);
    xdt_status st = c->error ? thread_error(c) : XDT_OK;
    c->drain = c->drained = false;
    pthread_cond_broadcast(&c->changed);
    pthread_mutex_unlock(&c->lock);
    xdt_transport_wake(c->t);
    return st;
}

void xdt_comm_sent_bytes(xdt_comm *c, int peer, uint64_t *wire, uint64_t *raw) {
    pthread_mutex_lock(&c->lock);
    peer_link *l = link_of(c, peer);
    *wire = l ? l->wire_bytes : 0;
    *raw = l ? l->raw_bytes : 0;
    pthread_mutex_unlock(&c->lock);
}
