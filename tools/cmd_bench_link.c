/* cmd_bench_link.c: `xdt bench link`: two ranks (two processes over UCX, or two threads over the
 * in-process transport) measure a link: the median one-way latency of small ping-pongs, the
 * delivered bandwidth of `size`-byte tensors (encoded by the codec on the sender, decoded on the
 * receiver, so codec work counts), the compression ratio, and the CPU each side used while
 * streaming. Links can be shaped like a WAN (--bandwidth, --latency, --jitter). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/rng.h"
#include "tools/cli_args.h"
#include "tools/commands.h"
#include "transports/bootstrap.h"
#include "transports/codecs/codec.h"
#include "transports/inproc/inproc_transport.h"
#ifdef XDT_HAVE_UCX
#include "transports/ucx/ucx_transport.h"
#endif
#include "transports/wan_shaper.h"

#define PINGS  41
#define WINDOW 16 /* tensors in flight: enough to fill a long fat link */
enum { TAG_PING = 1, TAG_PONG = 2, TAG_GO = 3, TAG_DATA = 16, TAG_RESULT = 4 };

typedef struct link_args {
    const char *transport, *tls, *bandwidth, *latency, *jitter, *codec;
    double size;
    int iters;
    bool json;
} link_args;

/* What each side measured; rank 1 sends its half to rank 0. */
typedef struct side_result {
    double latency_ms, bandwidth_MBps, ratio, cpu_percent;
    int status;
} side_result;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static xdt_status wrap_shaper(const link_args *a, xdt_transport *inner, xdt_transport **out) {
    if (!a->bandwidth && !a->latency && !a->jitter) {
        *out = inner;
        return XDT_OK;
    }
    xdt_link_shape shapes[2], s;
    memset(shapes, 0, sizeof shapes);
    memset(&s, 0, sizeof s);
    xdt_status st = XDT_OK;
    if (a->bandwidth) st = xdt_parse_bandwidth(a->bandwidth, &s.bandwidth_bps);
    if (!st && a->latency) st = xdt_parse_duration(a->latency, &s.latency_s);
    if (!st && a->jitter) st = xdt_parse_duration(a->jitter, &s.jitter_s);
    if (st) return st;
    shapes[1 - inner->rank] = s;
    xdt_shaper_options o = {.seed = 1};
    return xdt_shaper_create(inner, shapes, &o, out);
}

/* One streaming round: rank 0 encodes and sends `iters` tensors with WINDOW in flight after
 * rank 1's go signal; rank 1 receives and decodes them. Sets *wall0 and *cpu0 when the round
 * starts (on the receiver: just before its go signal) and *encoded to the bytes sent. */
static xdt_status stream(const link_args *a, xdt_transport *t, xdt_codec *codec, bool raw,
                         float *data, size_t n, unsigned char **wire, size_t cap, double *wall0,
                         double *cpu0, double *encoded) {
    const int me = t->rank, peer = 1 - me;
    uint64_t ping = 0;
    xdt_status st = XDT_OK;
    xdt_request *req[WINDOW] = {0};
    xdt_completion c;
    double encoded_total = 0;
    if (me == 0) {
        st = xdt_recv(t, peer, TAG_GO, &ping, sizeof ping, NULL, 60000);
        *wall0 = mono_s();
        *cpu0 = cpu_s();
        for (int i = 0; i < a->iters && !st; i++) {
            int w = i % WINDOW;
            if (req[w] && (st = xdt_wait(t, req[w], 60000, "bench send", &c))) break;
            req[w] = NULL;
            size_t len = n * sizeof(float);
            const void *payload = data; /* codec none: the tensor itself goes on the wire */
            if (!raw) {
                if ((st = xdt_codec_encode(codec, data, n, wire[w], cap, &len))) break;
                payload = wire[w];
            }
            encoded_total += (double)len;
            st = xdt_isend(t, peer, TAG_DATA + (uint64_t)w, payload, len, XDT_MEM_HOST, &req[w]);
        }
        for (int w = 0; w < WINDOW && !st; w++)
            if (req[w]) st = xdt_wait(t, req[w], 60000, "bench send", &c);
    } else {
        for (int w = 0; w < WINDOW && w < a->iters && !st; w++)
            st = xdt_irecv(t, peer, TAG_DATA + (uint64_t)w, wire[w], cap, XDT_MEM_HOST, &req[w]);
        *wall0 = mono_s();
        *cpu0 = cpu_s();
        if (!st) st = xdt_send(t, peer, TAG_GO, &ping, sizeof ping, 60000);
        for (int i = 0; i < a->iters && !st; i++) {
            int w = i % WINDOW;
            if ((st = xdt_wait(t, req[w], 60000, "bench recv", &c)) || (st = c.status)) break;
            req[w] = NULL;
            if (raw) {
                if (c.bytes != n * sizeof(float)) st = XDT_ERR_FORMAT;
            } else if ((st = xdt_codec_decode(codec, wire[w], c.bytes, data, n))) {
                break;
            }
            if (i + WINDOW < a->iters)
                st =
                    xdt_irecv(t, peer, TAG_DATA + (uint64_t)w, wire[w], cap, XDT_MEM_HOST, &req[w]);
        }
    }
    *encoded = encoded_total;
    return st;
}

/* Runs one side of the measurement on a connected transport. */
static side_result run_side(const link_args *a, xdt_transport *t) {
    side_result r = {0};
    const int me = t->rank, peer = 1 - me;
    const size_t n = (size_t)a->size / sizeof(float);
    xdt_codec_spec spec;
    xdt_codec *codec = NULL;
    float *data = NULL;
    unsigned char *wire[WINDOW] = {0};
    xdt_status st = xdt_codec_parse(a->codec, &spec);
    size_t cap = st ? 0 : xdt_codec_max_encoded_bytes(&spec, n);
    if (!st) st = xdt_codec_create(&spec, n, &codec);
    data = malloc((n ? n : 1) * sizeof(float));
    for (int w = 0; w < WINDOW; w++) {
        wire[w] = malloc(cap ? cap : 1);
        if (wire[w]) memset(wire[w], 0, cap ? cap : 1); /* fault pages in before timing */
    }
    if (st || !data || !wire[WINDOW - 1]) goto out;
    const bool raw = spec.kind == XDT_CODEC_NONE;
    xdt_rng rng;
    xdt_rng_seed(&rng, 7, (uint64_t)me);
    for (size_t i = 0; i < n; i++)
        data[i] = (float)xdt_rng_normal(&rng);

    /* latency: ping-pong of 8 bytes, one-way = median round trip / 2 */
    double rtt[PINGS];
    uint64_t ping = 0;
    for (int i = 0; i < PINGS + 3 && !st; i++) {
        double t0 = mono_s();
        if (me == 0) {
            st = xdt_send(t, peer, TAG_PING, &ping, sizeof ping, 60000);
            if (!st) st = xdt_recv(t, peer, TAG_PONG, &ping, sizeof ping, NULL, 60000);
        } else {
            st = xdt_recv(t, peer, TAG_PING, &ping, sizeof ping, NULL, 60000);
            if (!st) st = xdt_send(t, peer, TAG_PONG, &ping, sizeof ping, 60000);
        }
        if (i >= 3) rtt[i - 3] = mono_s() - t0;
    }
    if (st) goto out;
    qsort(rtt, PINGS, sizeof rtt[0], cmp_double);
    r.latency_ms = rtt[PINGS / 2] / 2 * 1e3;

    /* bandwidth: one untimed round to warm up (buffers, registrations, caches), then the timed
     * one */
    double wall0 = 0, cpu0 = 0, encoded_total = 0;
    st = stream(a, t, codec, raw, data, n, wire, cap, &wall0, &cpu0, &encoded_total);
    if (!st) st = stream(a, t, codec, raw, data, n, wire, cap, &wall0, &cpu0, &encoded_total);
    if (st) goto out;
    if (me == 0)
        r.ratio =
            encoded_total > 0 ? (double)a->iters * (double)n * sizeof(float) / encoded_total : 0;
    double wall = mono_s() - wall0;
    r.cpu_percent = wall > 0 ? (cpu_s() - cpu0) / wall * 100 : 0;
    /* delivered bandwidth: raw bytes over the receiver's time from sending the go signal to
     * the last arrival, less two one-way latencies (the go signal's trip, and the first
     * tensor's time in flight), so a long link's latency is not counted as lost bandwidth */
    const double bytes = (double)n * sizeof(float);
    double span = wall - 2 * r.latency_ms * 1e-3;
    if (me == 1) r.bandwidth_MBps = a->iters * bytes / (span > 0 ? span : wall) / 1e6;
out:
    r.status = st;
    for (int w = 0; w < WINDOW; w++)
        free(wire[w]);
    free(data);
    xdt_codec_destroy(codec);
    return r;
}

/* Side 1 reports to side 0; side 0 returns both halves merged in out[0..1]. */
static void exchange_results(xdt_transport *t, side_result *mine, side_result out[2]) {
    if (t->rank == 1) {
        xdt_send(t, 0, TAG_RESULT, mine, sizeof *mine, 60000);
        return;
    }
    out[0] = *mine;
    if (mine->status == XDT_OK &&
        xdt_recv(t, 1, TAG_RESULT, &out[1], sizeof out[1], NULL, 60000) != XDT_OK)
        out[1].status = XDT_ERR_PEER;
}

typedef struct thread_arg {
    const link_args *a;
    xdt_transport *t;
    side_result results[2];
} thread_arg;

static void *inproc_side(void *p) {
    thread_arg *ta = p;
    side_result mine = run_side(ta->a, ta->t);
    exchange_results(ta->t, &mine, ta->results);
    return NULL;
}

static int run_inproc(const link_args *a, side_result out[2]) {
    xdt_inproc_fabric *f = NULL;
    thread_arg ta[2];
    memset(ta, 0, sizeof ta);
    ta[0].a = ta[1].a = a;
    if (xdt_inproc_fabric_create(2, &f)) return 1;
    for (int r = 0; r < 2; r++) {
        xdt_transport *inner = NULL;
        if (xdt_inproc_transport_create(f, r, &inner) || wrap_shaper(a, inner, &ta[r].t)) return 1;
    }
    pthread_t th[2];
    for (int r = 0; r < 2; r++)
        pthread_create(&th[r], NULL, inproc_side, &ta[r]);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++)
        xdt_transport_destroy(ta[r].t);
    xdt_inproc_fabric_destroy(f);
    out[0] = ta[0].results[0];
    out[1] = ta[0].results[1];
    return 0;
}

#ifdef XDT_HAVE_UCX
/* One UCX rank in its own process: bootstrap, connect, measure; rank 0 writes the results. */
static int ucx_process(const link_args *a, int rank, int port, const char *token, int fd) {
    char v[32];
    snprintf(v, sizeof v, "%d", rank);
    setenv("RANK", v, 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("MASTER_ADDR", "127.0.0.1", 1);
    snprintf(v, sizeof v, "%d", port);
    setenv("MASTER_PORT", v, 1);
    setenv("XDT_JOB_TOKEN", token, 1);
    xdt_bootstrap_env env;
    xdt_store *store = NULL;
    xdt_transport *inner = NULL, *t = NULL;
    xdt_ucx_options o = {.tls = !strcmp(a->tls, "shm") ? "posix,sysv,cma,self" : "tcp,self"};
    if (xdt_bootstrap_env_read(&env) || xdt_store_open(&env, 30000, &store) ||
        xdt_ucx_transport_create(rank, 2, &o, &inner) ||
        xdt_store_connect_transport(store, inner, 30000) || wrap_shaper(a, inner, &t))
        return 1;
    side_result mine = run_side(a, t), both[2];
    memset(both, 0, sizeof both);
    exchange_results(t, &mine, both);
    xdt_store_barrier(store, "bench-done", 30000);
    xdt_transport_destroy(t);
    xdt_store_close(store);
    if (rank == 0 && write(fd, both, sizeof both) != (ssize_t)sizeof both) return 1;
    return 0;
}

static int run_ucx(const link_args *a, side_result out[2]) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) ||
        getsockname(s, (struct sockaddr *)&sa, &sl))
        return 1;
    int port = ntohs(sa.sin_port);
    close(s);
    char token[33];
    xdt_rng rng;
    xdt_rng_seed(&rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20), 99);
    for (int i = 0; i < 32; i++)
        token[i] = "0123456789abcdef"[xdt_rng_below(&rng, 16)];
    token[32] = 0;
    int fds[2];
    if (pipe(fds)) return 1;
    pid_t pid[2];
    for (int r = 0; r < 2; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            close(fds[0]);
            _exit(ucx_process(a, r, port, token, fds[1]));
        }
    }
    close(fds[1]);
    ssize_t got = read(fds[0], out, 2 * sizeof *out);
    close(fds[0]);
    int failed = 0;
    for (int r = 0; r < 2; r++) {
        int status = 0;
        waitpid(pid[r], &status, 0);
        failed |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
    }
    return failed || got != (ssize_t)(2 * sizeof *out);
}
#else
static int run_ucx(const link_args *a, side_result out[2]) {
    (void)a;
    (void)out;
    xdt_log_error("xdt bench link: this build has no UCX (install libucx-dev and rebuild)");
    return 1;
}
#endif

int xdt_cmd_bench_link(int argc, char **argv) {
    link_args a = {.transport = "ucx", .tls = "tcp", .codec = "none", .size = 4 << 20, .iters = 50};
    xdt_cli_opt opts[] = {
        XDT_OPT_STRING("transport", &a.transport, "ucx|inproc",
                       "two processes over UCX, or two "
                       "threads in one [ucx]"),
        XDT_OPT_STRING("tls", &a.tls, "tcp|shm", "UCX transports [tcp]"),
        XDT_OPT_DOUBLE("size", &a.size, "BYTES", "tensor size [4194304]", 4, 1 << 30),
        XDT_OPT_STRING("bandwidth", &a.bandwidth, "BW", "shape the link: e.g. 1Gbps"),
        XDT_OPT_STRING("latency", &a.latency, "T", "shape the link: one-way latency, e.g. 25ms"),
        XDT_OPT_STRING("jitter", &a.jitter, "T", "shape the link: jitter, e.g. 1ms"),
        XDT_OPT_STRING("codec", &a.codec, "NAME",
                       "wire codec: none, zstd, bf16, int8+ef, ... [none]"),
        XDT_OPT_INT("iters", &a.iters, "N", "tensors streamed [50]", 1, 1000000),
        XDT_OPT_FLAG("json", &a.json, "print one JSON object"),
    };
    const int n_opts = (int)(sizeof opts / sizeof opts[0]);
    bool help = false;
    if (xdt_cli_parse("bench link", argc, argv, opts, n_opts, &help) != XDT_OK) return 2;
    if (help) {
        xdt_cli_usage(stdout, "bench link",
                      "Measures a link between two local ranks: one-way "
                      "latency (median), delivered bandwidth, codec ratio, CPU use per side.",
                      opts, n_opts);
        return 0;
    }
    xdt_codec_spec spec;
    double tmp;
    if (xdt_codec_parse(a.codec, &spec) ||
        (a.bandwidth && xdt_parse_bandwidth(a.bandwidth, &tmp)) ||
        (a.latency && xdt_parse_duration(a.latency, &tmp)) ||
        (a.jitter && xdt_parse_duration(a.jitter, &tmp)))
        return 2;
    if (strcmp(a.transport, "ucx") && strcmp(a.transport, "inproc"))
        return xdt_fail(XDT_ERR_CONFIG, "xdt bench link: --transport '%s' is not ucx or inproc",
                        a.transport),
               2;
    if (strcmp(a.tls, "tcp") && strcmp(a.tls, "shm"))
        return xdt_fail(XDT_ERR_CONFIG, "xdt bench link: --tls '%s' is not tcp or shm", a.tls), 2;
    side_result r[2];
    memset(r, 0, sizeof r);
    int rc = !strcmp(a.transport, "inproc") ? run_inproc(&a, r) : run_ucx(&a, r);
    if (rc || r[0].status || r[1].status) {
        xdt_log_error("xdt bench link: the measurement failed (%s)",
                      xdt_status_string(r[0].status ? r[0].status : r[1].status));
        return 1;
    }
    if (a.json) {
        printf("{\"transport\":\"%s\",\"tls\":\"%s\",\"codec\":\"%s\",\"size\":%.0f,\"iters\":%d,"
               "\"latency_ms\":%.4f,\"bandwidth_MBps\":%.2f,\"ratio\":%.3f,"
               "\"cpu_sender_percent\":%.1f,\"cpu_receiver_percent\":%.1f}\n",
               a.transport, a.tls, a.codec, a.size, a.iters, r[0].latency_ms, r[1].bandwidth_MBps,
               r[0].ratio, r[0].cpu_percent, r[1].cpu_percent);
    } else {
        printf("link       %s%s%s, codec %s, %.0f-byte tensors x %d\n", a.transport,
               strcmp(a.transport, "ucx") ? "" : "/", strcmp(a.transport, "ucx") ? "" : a.tls,
               a.codec, a.size, a.iters);
        printf("latency    %.3f ms one-way (median of %d ping-pongs)\n", r[0].latency_ms, PINGS);
        printf("bandwidth  %.1f MB/s delivered (raw tensor bytes)\n", r[1].bandwidth_MBps);
        printf("ratio      %.2fx\n", r[0].ratio);
        printf("cpu        sender %.0f %%, receiver %.0f %%\n", r[0].cpu_percent, r[1].cpu_percent);
    }
    return 0;
}
