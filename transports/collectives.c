/* collectives.c: ring all-reduce, broadcast and barrier over a transport. */
#include "transports/collectives.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define STEP_BITS 12

xdt_status xdt_group_init(xdt_group *g, xdt_transport *t, const int *ranks, int n,
                          uint64_t tag_base, int timeout_ms) {
    if (n < 1 || n > (int)(sizeof g->ranks / sizeof g->ranks[0]))
        return xdt_fail(XDT_ERR_INVALID_ARG, "group of %d ranks", n);
    if (tag_base & ((UINT64_C(1) << 24) - 1) || tag_base & ~XDT_TAG_MASK)
        return xdt_fail(XDT_ERR_INVALID_ARG,
                        "group tag base 0x%llx must leave its low 24 bits "
                        "free and fit in %d bits",
                        (unsigned long long)tag_base, XDT_TAG_BITS);
    memset(g, 0, sizeof *g);
    g->me = -1;
    for (int i = 0; i < n; i++) {
        if (ranks[i] < 0 || ranks[i] >= t->world_size)
            return xdt_fail(XDT_ERR_INVALID_ARG, "group member %d is not a rank", ranks[i]);
        g->ranks[i] = ranks[i];
        if (ranks[i] == t->rank) g->me = i;
    }
    if (g->me < 0)
        return xdt_fail(XDT_ERR_INVALID_ARG, "rank %d is not in the group it joins", t->rank);
    g->t = t;
    g->size = n;
    g->tag_base = tag_base;
    g->timeout_ms = timeout_ms ? timeout_ms : XDT_DEFAULT_TIMEOUT_MS;
    return XDT_OK;
}

/* The tag of step `step` of the current call. */
static uint64_t step_tag(const xdt_group *g, int step) {
    return g->tag_base | ((uint64_t)(g->calls & 0xfff) << STEP_BITS) | (uint64_t)step;
}

/* Sends `out` to the right neighbour and receives at most in_cap bytes into `in` from the left
 * one, both tagged `step`; *got gets the bytes received. */
static xdt_status shift_any(xdt_group *g, int step, const void *out, size_t out_len, void *in,
                            size_t in_cap, size_t *got) {
    const int right = g->ranks[(g->me + 1) % g->size];
    const int left = g->ranks[(g->me + g->size - 1) % g->size];
    xdt_request *rr = NULL, *sr = NULL;
    xdt_completion rc = {0}, sc = {0};
    char what[96];
    uint64_t tag = step_tag(g, step);
    xdt_status st = xdt_irecv(g->t, left, tag, in, in_cap, XDT_MEM_HOST, &rr);
    if (st) return st;
    if ((st = xdt_isend(g->t, right, tag, out, out_len, XDT_MEM_HOST, &sr))) {
        g->t->ops->cancel(g->t->ctx, rr);
        return st;
    }
    snprintf(what, sizeof what, "collective step %d: recv from rank %d", step, left);
    st = xdt_wait(g->t, rr, g->timeout_ms, what, &rc);
    if (st) {
        g->t->ops->cancel(g->t->ctx, sr);
        return st;
    }
    snprintf(what, sizeof what, "collective step %d: send to rank %d", step, right);
    if ((st = xdt_wait(g->t, sr, g->timeout_ms, what, &sc))) return st;
    if (rc.status) return rc.status;
    if (sc.status) return sc.status;
    *got = rc.bytes;
    return XDT_OK;
}

/* shift_any for a message of exactly in_len bytes. */
static xdt_status shift(xdt_group *g, int step, const void *out, size_t out_len, void *in,
                        size_t in_len) {
    size_t got = 0;
    xdt_status st = shift_any(g, step, out, out_len, in, in_len, &got);
    if (st == XDT_OK && got != in_len)
        return xdt_fail(XDT_ERR_FORMAT,
                        "rank %d: collective step %d: %zu bytes from rank %d, "
                        "expected %zu",
                        g->t->rank, step, got, g->ranks[(g->me + g->size - 1) % g->size], in_len);
    return st;
}

/* Chunk i of n floats split into `parts`: [*off, *off + *len). */
static void chunk(size_t n, int parts, int i, size_t *off, size_t *len) {
    size_t base = n / (size_t)parts, extra = n % (size_t)parts;
    *off = (size_t)i * base + ((size_t)i < extra ? (size_t)i : extra);
    *len = base + ((size_t)i < extra ? 1 : 0);
}

/* Grows the receive scratch once to the largest chunk reduced; steady-state calls allocate
 * nothing. */
static xdt_status reserve_scratch(xdt_group *g, size_t floats) {
    if (floats <= g->scratch_floats) return XDT_OK;
    float *grown = realloc(g->scratch, floats * sizeof(float));
    if (!grown) return xdt_fail(XDT_ERR_NO_MEMORY, "allreduce: %zu floats of scratch", floats);
    g->scratch = grown;
    g->scratch_floats = floats;
    return XDT_OK;
}

xdt_status xdt_allreduce(xdt_group *g, float *buf, size_t n, xdt_reduce_op op) {
    const int p = g->size;
    xdt_status st = XDT_OK;
    if (p > 1) {
        size_t off0, max_len;
        chunk(n, p, 0, &off0, &max_len); /* chunk 0 is the largest */
        if ((st = reserve_scratch(g, max_len))) return st;
        float *tmp = g->scratch;
        /* reduce-scatter: after p-1 steps member i holds the full sum of chunk (i + 1) % p */
        for (int s = 0; s < p - 1 && !st; s++) {
            int send_c = (g->me - s + p) % p, recv_c = (g->me - s - 1 + 2 * p) % p;
            size_t soff, slen, roff, rlen;
            chunk(n, p, send_c, &soff, &slen);
            chunk(n, p, recv_c, &roff, &rlen);
            st = shift(g, s, buf + soff, slen * sizeof(float), tmp, rlen * sizeof(float));
            for (size_t i = 0; !st && i < rlen; i++)
                buf[roff + i] += tmp[i];
        }
        /* all-gather: pass the finished chunks around the ring */
        for (int s = 0; s < p - 1 && !st; s++) {
            int send_c = (g->me + 1 - s + p) % p, recv_c = (g->me - s + p) % p;
            size_t soff, slen, roff, rlen;
            chunk(n, p, send_c, &soff, &slen);
            chunk(n, p, recv_c, &roff, &rlen);
            st = shift(g, p - 1 + s, buf + soff, slen * sizeof(float), buf + roff,
                       rlen * sizeof(float));
        }
    }
    g->calls++;
    if (st == XDT_OK && op == XDT_REDUCE_AVG)
        for (size_t i = 0; i < n; i++)
            buf[i] /= (float)p;
    return st;
}

static void release_codecs(xdt_group *g) {
    if (g->codecs)
        for (int i = 0; i < g->size; i++)
            xdt_codec_destroy(g->codecs[i]);
    free(g->codecs);
    free(g->wire[0]);
    free(g->wire[1]);
    g->codecs = NULL;
    g->wire[0] = g->wire[1] = NULL;
    g->codec_max_n = g->wire_cap = 0;
}

void xdt_group_release(xdt_group *g) {
    free(g->scratch);
    g->scratch = NULL;
    g->scratch_floats = 0;
    release_codecs(g);
}

/* Makes sure the group holds codecs for `spec` and chunks of max_n values (created once; a
 * larger buffer or another spec starts new streams). */
static xdt_status prepare_codecs(xdt_group *g, const xdt_codec_spec *spec, size_t max_n) {
    if (g->codecs && max_n <= g->codec_max_n && !memcmp(spec, &g->codec_spec, sizeof *spec))
        return XDT_OK;
    release_codecs(g);
    g->codecs = calloc((size_t)g->size, sizeof *g->codecs);
    g->wire_cap = xdt_codec_max_encoded_bytes(spec, max_n);
    g->wire[0] = malloc(g->wire_cap ? g->wire_cap : 1);
    g->wire[1] = malloc(g->wire_cap ? g->wire_cap : 1);
    if (!g->codecs || !g->wire[0] || !g->wire[1] || !g->wire_cap) {
        release_codecs(g);
        return xdt_fail(XDT_ERR_NO_MEMORY, "allreduce: codec buffers for %zu values", max_n);
    }
    for (int i = 0; i < g->size; i++) {
        xdt_status st = xdt_codec_create(spec, max_n, &g->codecs[i]);
        if (st) {
            release_codecs(g);
            return st;
        }
    }
    g->codec_spec = *spec;
    g->codec_max_n = max_n;
    return XDT_OK;
}

xdt_status xdt_allreduce_encoded(xdt_group *g, float *buf, size_t n, xdt_reduce_op op,
                                 const xdt_codec_spec *spec) {
    const int p = g->size;
    if (spec->kind == XDT_CODEC_NONE || p == 1) return xdt_allreduce(g, buf, n, op);
    size_t off0, max_len;
    chunk(n, p, 0, &off0, &max_len);
    xdt_status st = prepare_codecs(g, spec, max_len ? max_len : 1);
    if (st) return st;
    if ((st = reserve_scratch(g, max_len))) return st;
    float *tmp = g->scratch;
    unsigned char *out = g->wire[0], *in = g->wire[1];
    size_t len = 0, got = 0;
    /* reduce-scatter: each hop sends its partial sum encoded by that hop's codec */
    for (int s = 0; s < p - 1 && !st; s++) {
        int send_c = (g->me - s + p) % p, recv_c = (g->me - s - 1 + 2 * p) % p;
        size_t soff, slen, roff, rlen;
        chunk(n, p, send_c, &soff, &slen);
        chunk(n, p, recv_c, &roff, &rlen);
        if ((st = xdt_codec_encode(g->codecs[s], buf + soff, slen, out, g->wire_cap, &len)) ||
            (st = shift_any(g, s, out, len, in, g->wire_cap, &got)) ||
            (st = xdt_codec_decode(g->codecs[s], in, got, tmp, rlen)))
            break;
        for (size_t i = 0; i < rlen; i++)
            buf[roff + i] += tmp[i];
    }
    /* all-gather: the owner encodes its finished chunk once and keeps the decoded value; the
     * same bytes then travel the ring, each member decoding them */
    if (!st) {
        size_t ooff, olen;
        chunk(n, p, (g->me + 1) % p, &ooff, &olen);
        st = xdt_codec_encode(g->codecs[p - 1], buf + ooff, olen, out, g->wire_cap, &len);
        if (!st) st = xdt_codec_decode(g->codecs[p - 1], out, len, buf + ooff, olen);
    }
    for (int s = 0; s < p - 1 && !st; s++) {
        int recv_c = (g->me - s + p) % p;
        size_t roff, rlen;
        chunk(n, p, recv_c, &roff, &rlen);
        if ((st = shift_any(g, p - 1 + s, out, len, in, g->wire_cap, &got)) ||
            (st = xdt_codec_decode(g->codecs[p - 1], in, got, buf + roff, rlen)))
            break;
        unsigned char *swap = out; /* forward what arrived, unchanged */
        out = in;
        in = swap;
        len = got;
    }
    g->calls++;
    if (st == XDT_OK && op == XDT_REDUCE_AVG)
        for (size_t i = 0; i < n; i++)
            buf[i] /= (float)p;
    return st;
}

xdt_status xdt_broadcast(xdt_group *g, void *buf, size_t bytes, int root) {
    if (root < 0 || root >= g->size)
        return xdt_fail(XDT_ERR_INVALID_ARG, "broadcast root %d outside a group of %d", root,
                        g->size);
    xdt_status st = XDT_OK;
    /* a chain along the ring from the root: simple, and bandwidth-optimal for large buffers */
    const int pos = (g->me - root + g->size) % g->size;
    const uint64_t tag = step_tag(g, 0);
    char what[96];
    if (pos > 0) {
        int left = g->ranks[(g->me + g->size - 1) % g->size];
        size_t got = 0;
        snprintf(what, sizeof what, "broadcast from rank %d", left);
        st = xdt_recv(g->t, left, tag, buf, bytes, &got, g->timeout_ms);
        if (st == XDT_OK && got != bytes)
            st = xdt_fail(XDT_ERR_FORMAT,
                          "rank %d: broadcast: %zu bytes from rank %d, expected "
                          "%zu",
                          g->t->rank, got, left, bytes);
    }
    if (st == XDT_OK && pos < g->size - 1)
        st = xdt_send(g->t, g->ranks[(g->me + 1) % g->size], tag, buf, bytes, g->timeout_ms);
    g->calls++;
    return st;
}

xdt_status xdt_barrier(xdt_group *g) {
    /* two trips of a token around the ring: after the first every member has entered; the
     * second tells every member so */
    char token = 1;
    xdt_status st = XDT_OK;
    for (int trip = 0; trip < 2 && st == XDT_OK && g->size > 1; trip++) {
        const uint64_t tag = step_tag(g, trip);
        const int left = g->ranks[(g->me + g->size - 1) % g->size];
        const int right = g->ranks[(g->me + 1) % g->size];
        if (g->me == 0) {
            st = xdt_send(g->t, right, tag, &token, 1, g->timeout_ms);
            if (st == XDT_OK) st = xdt_recv(g->t, left, tag, &token, 1, NULL, g->timeout_ms);
        } else {
            st = xdt_recv(g->t, left, tag, &token, 1, NULL, g->timeout_ms);
            if (st == XDT_OK) st = xdt_send(g->t, right, tag, &token, 1, g->timeout_ms);
        }
    }
    g->calls++;
    return st;
}
