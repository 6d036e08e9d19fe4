/* test_nccl_api.c: the run-time loader of NCCL/RCCL (nccl_api.c), no GPU needed. A library that
 * is not there, and one that is not NCCL, are refused with the reason; where the build saw NCCL
 * (or XDT_NCCL_LIBRARY names one), it is loaded, its version read and a unique id drawn, and
 * the same file loads as RCCL through XDT_RCCL_LIBRARY (the two share one API). Members whose
 * machines differ agree through a real bootstrap store (xdt_nccl_group_agree). A foreign
 * libnccl.so.2 first on the loader's path is passed over for the next candidate. A first member
 * that fails before drawing the group's id tells the others at once. Where nccl.h is
 * installed, nccl_api.h's ABI is checked against it at compile time. Each case runs in a child
 * process, the loader keeping its outcome for the life of a process. Exits 77 after the other
 * checks when no NCCL can be found here. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "transports/nccl/nccl_api.h"
#include "transports/nccl/nccl_group.h"
#include "transports/nccl/test_nccl.h"

#if defined(XDT_TEST_NCCL_HEADER)
#include <stddef.h>

#include <nccl.h>
/* nccl_api.h declares NCCL's ABI itself; it must be the header's. */
_Static_assert(sizeof(xdt_nccl_unique_id) == sizeof(ncclUniqueId), "unique id size");
_Static_assert(sizeof(xdt_nccl_result) == sizeof(ncclResult_t), "result size");
_Static_assert(XDT_NCCL_SUCCESS == (int)ncclSuccess &&
                   XDT_NCCL_IN_PROGRESS == (int)ncclInProgress &&
                   XDT_NCCL_UNHANDLED_CUDA_ERROR == (int)ncclUnhandledCudaError &&
                   XDT_NCCL_SYSTEM_ERROR == (int)ncclSystemError &&
                   XDT_NCCL_INTERNAL_ERROR == (int)ncclInternalError &&
                   XDT_NCCL_INVALID_ARGUMENT == (int)ncclInvalidArgument &&
                   XDT_NCCL_INVALID_USAGE == (int)ncclInvalidUsage &&
                   XDT_NCCL_REMOTE_ERROR == (int)ncclRemoteError,
               "result values");
_Static_assert(XDT_NCCL_FLOAT32 == (int)ncclFloat32 && XDT_NCCL_SUM == (int)ncclSum,
               "data type and reduction");
_Static_assert(offsetof(xdt_nccl_config, magic) == offsetof(ncclConfig_t, magic) &&
                   offsetof(xdt_nccl_config, version) == offsetof(ncclConfig_t, version) &&
                   offsetof(xdt_nccl_config, blocking) == offsetof(ncclConfig_t, blocking) &&
                   offsetof(xdt_nccl_config, cga_cluster_size) ==
                       offsetof(ncclConfig_t, cgaClusterSize) &&
                   offsetof(xdt_nccl_config, min_ctas) == offsetof(ncclConfig_t, minCTAs) &&
                   offsetof(xdt_nccl_config, max_ctas) == offsetof(ncclConfig_t, maxCTAs) &&
                   offsetof(xdt_nccl_config, net_name) == offsetof(ncclConfig_t, netName) &&
                   sizeof(xdt_nccl_config) <= sizeof(ncclConfig_t),
               "config layout (a prefix of the header's)");
_Static_assert(XDT_NCCL_CONFIG_VERSION == NCCL_VERSION(2, 14, 3), "config version");
_Static_assert(XDT_NCCL_UNDEF_INT == NCCL_CONFIG_UNDEF_INT, "undefined int");
#define HEADER_CHECKED 1
#else
#define HEADER_CHECKED 0
#endif

/* Runs fn in a child process with the environment variable `var` set to `value` (NULL: unset);
 * returns the child's exit code (its failures; 77: NCCL not found). */
static int in_child(const char *var, const char *value, int (*fn)(const char *arg),
                    const char *arg) {
    fflush(NULL);
    const pid_t pid = fork();
    if (pid == 0) {
        failures = 0; /* the child's own */
        unsetenv("XDT_NCCL_LIBRARY");
        unsetenv("XDT_RCCL_LIBRARY");
        if (value) setenv(var, value, 1);
        const int rc = fn(arg);
        fflush(NULL); /* _exit flushes nothing */
        _exit(rc);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return 100;
    return WEXITSTATUS(status);
}

/* A path that does not exist: refused, naming the path and the variable. */
static int refuses_missing(const char *path) {
    const xdt_nccl_api *api = NULL;
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(XDT_NCCL_NVIDIA, &api, why, sizeof why);
    CHECK(st == XDT_ERR_UNSUPPORTED && api == NULL, "missing library: status %d", st);
    CHECK(strstr(why, path) && strstr(why, "from XDT_NCCL_LIBRARY") && strstr(why, "NCCL unusable"),
          "missing library: why = \"%s\"", why);
    /* the outcome is kept: the same answer again */
    char again[512];
    CHECK(xdt_nccl_api_try_load(XDT_NCCL_NVIDIA, &api, again, sizeof again) == st &&
              !strcmp(why, again),
          "the second attempt answers the same");
    CHECK(xdt_nccl_api_load(XDT_NCCL_NVIDIA, &api) == XDT_ERR_UNSUPPORTED, "reporting load");
    return failures;
}

/* A library that is not NCCL (libm): refused, naming the first function it lacks. */
static int refuses_foreign(const char *path) {
    const xdt_nccl_api *api = NULL;
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(XDT_NCCL_AMD, &api, why, sizeof why);
    CHECK(st == XDT_ERR_UNSUPPORTED, "foreign library: status %d", st);
    CHECK(strstr(why, path) && strstr(why, "lacks ncclGetVersion") && strstr(why, "RCCL"),
          "foreign library: why = \"%s\"", why);
    return failures;
}

/* The library found by the default search (or XDT_NCCL_LIBRARY): loaded, usable. Writes its
 * path to the file `out` for the next case. */
static int loads_default(const char *out) {
    const xdt_nccl_api *api = NULL;
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(XDT_NCCL_NVIDIA, &api, why, sizeof why);
    if (st) {
        printf("skip: %s\n", why);
        return failures ? failures : 77;
    }
    CHECK(api->vendor == XDT_NCCL_NVIDIA && api->version >= XDT_NCCL_MIN_VERSION && api->path[0],
          "loaded: vendor %d, version %d, path \"%s\"", api->vendor, api->version, api->path);
    int version = 0;
    CHECK(api->get_version(&version) == XDT_NCCL_SUCCESS && version == api->version,
          "version %d again", version);
    xdt_nccl_unique_id id;
    memset(&id, 0, sizeof id);
    const xdt_nccl_result r = api->get_unique_id(&id);
    bool nonzero = false;
    for (size_t i = 0; i < sizeof id.internal; i++)
        nonzero |= id.internal[i] != 0;
    CHECK(r == XDT_NCCL_SUCCESS && nonzero, "unique id: result %d", r);
    const char *words = api->get_error_string(XDT_NCCL_IN_PROGRESS);
    CHECK(words && strstr(words, "progress"), "error string \"%s\"", words ? words : "(null)");
    const xdt_nccl_api *again = NULL;
    CHECK(xdt_nccl_api_load(XDT_NCCL_NVIDIA, &again) == XDT_OK && again == api, "one table");
    printf("%s %d.%d.%d loaded from %s\n", xdt_nccl_vendor_name(api->vendor), api->version / 10000,
           api->version / 100 % 100, api->version % 100, api->path);
    FILE *f = fopen(out, "w");
    CHECK(f && fprintf(f, "%s", api->path) > 0, "cannot write %s", out);
    if (f) fclose(f);
    return failures;
}

/* The same file as RCCL: the AMD vendor's variable and table. */
static int loads_as_rccl(const char *path) {
    const xdt_nccl_api *api = NULL;
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(XDT_NCCL_AMD, &api, why, sizeof why);
    CHECK(st == XDT_OK, "as RCCL: %s", why);
    if (!st)
        CHECK(api->vendor == XDT_NCCL_AMD && !strcmp(api->path, path) &&
                  api->version >= XDT_NCCL_MIN_VERSION,
              "as RCCL: vendor %d, path \"%s\"", api->vendor, api->path);
    /* the NVIDIA vendor is looked up on its own (XDT_NCCL_LIBRARY is unset here) */
    return failures;
}

/* Run with LD_LIBRARY_PATH naming a directory whose libnccl.so.2 is not NCCL (libm): the
 * loader's search finds that one first; loading must go on to the next candidate. */
static int falls_back(void) {
    const xdt_nccl_api *api = NULL;
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(XDT_NCCL_NVIDIA, &api, why, sizeof why);
    CHECK(st == XDT_OK && api->version >= XDT_NCCL_MIN_VERSION,
          "past an unusable first candidate: %s", why);
    if (!st) printf("past a foreign libnccl.so.2, loaded %s\n", api->path);
    return failures;
}

/* The fallback case in a fresh process (the loader reads LD_LIBRARY_PATH at start). */
static int run_fallback(void) {
    char dir[] = "/tmp/xdt-test-nccl-dir-XXXXXX", link[64];
    if (!mkdtemp(dir)) return 100;
    snprintf(link, sizeof link, "%s/libnccl.so.2", dir);
    const char *libm = "/lib/x86_64-linux-gnu/libm.so.6";
    if (access(libm, R_OK) != 0) libm = "/usr/lib/x86_64-linux-gnu/libm.so.6";
    int rc = 100;
    if (symlink(libm, link) == 0) {
        fflush(NULL);
        const pid_t pid = fork();
        if (pid == 0) {
            setenv("LD_LIBRARY_PATH", dir, 1);
            unsetenv("XDT_NCCL_LIBRARY");
            execl("/proc/self/exe", "test_nccl_api", "--fallback", (char *)NULL);
            _exit(101);
        }
        int status = 0;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status))
            rc = WEXITSTATUS(status);
        unlink(link);
    }
    rmdir(dir);
    return rc;
}

/* --- agreement among members --- */

enum { MEMBERS = 3 };

typedef struct agree_arg {
    int member, port, version;
    bool usable;
    xdt_status st;
    bool all;
    char why[320];
} agree_arg;

static void *agree_member(void *p) {
    agree_arg *a = p;
    xdt_bootstrap_env env = test_store_env(a->member, MEMBERS, a->port);
    xdt_store *store = NULL;
    if ((a->st = xdt_store_open(&env, 20000, &store))) return NULL;
    char group[32];
    snprintf(group, sizeof group, "agree-%d", a->port);
    a->st = xdt_nccl_group_agree(store, group, a->member, MEMBERS, 20000, a->usable, a->version,
                                 "libnccl.so.2: cannot open shared object file", &a->all, a->why,
                                 sizeof a->why);
    /* member 0 serves the store: nobody leaves before everyone has read */
    xdt_store_barrier(store, "agreed", 20000);
    xdt_store_close(store);
    return NULL;
}

/* Members publish whether they can use the library and its version; all see the same answer,
 * and `want_why` in it when they cannot all use it. */
static void agree_round(const bool usable[MEMBERS], const int version[MEMBERS], bool want_all,
                        const char *want_why) {
    const int port = test_free_port();
    CHECK(port > 0, "a free port");
    agree_arg a[MEMBERS];
    pthread_t th[MEMBERS];
    for (int m = 0; m < MEMBERS; m++) {
        a[m] = (agree_arg){.member = m, .port = port, .usable = usable[m], .version = version[m]};
        pthread_create(&th[m], NULL, agree_member, &a[m]);
    }
    for (int m = 0; m < MEMBERS; m++)
        pthread_join(th[m], NULL);
    for (int m = 0; m < MEMBERS; m++) {
        CHECK(a[m].st == XDT_OK && a[m].all == want_all, "member %d: status %d, all %d", m, a[m].st,
              a[m].all);
        if (!want_all)
            CHECK(strstr(a[m].why, want_why) && !strcmp(a[m].why, a[0].why),
                  "member %d: why = \"%s\"", m, a[m].why);
    }
}

/* --- the first member's failure, published in the id's place --- */

static xdt_status cannot_make_current(void *arg) {
    (void)arg;
    return XDT_ERR_DEVICE; /* as a GPU that cannot be selected */
}

static xdt_status made_current(void *arg) {
    (void)arg;
    return XDT_OK;
}

static xdt_status idle_stream(void *arg, bool *idle) {
    (void)arg;
    *idle = true;
    return XDT_OK;
}

typedef struct marker_arg {
    int member, port;
    xdt_status st;
    double took_s;
} marker_arg;

static void *marker_member(void *p) {
    marker_arg *a = p;
    xdt_bootstrap_env env = test_store_env(a->member, 2, a->port);
    xdt_store *store = NULL;
    if ((a->st = xdt_store_open(&env, 20000, &store))) return NULL;
    const int ranks[2] = {0, 1};
    /* streams that stand in for the devices: member 0's GPU cannot be selected; no stream is
     * queued on, the group failing before its communicator exists */
    const xdt_nccl_group_config cfg = {
        .name = "marker",
        .ranks = ranks,
        .size = 2,
        .rank = a->member,
        .vendor = XDT_NCCL_NVIDIA,
        .stream = {.make_current = a->member == 0 ? cannot_make_current : made_current,
                   .query = idle_stream},
        .timeout_ms = 20000};
    xdt_nccl_group *g = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    a->st = xdt_nccl_group_create(store, &cfg, &g);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    a->took_s = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    xdt_nccl_group_destroy(g);
    xdt_store_barrier(store, "marker-done", 20000);
    xdt_store_close(store);
    return NULL;
}

/* Member 0 fails before it can draw the id: member 1 must fail naming that (XDT_ERR_PEER), not
 * wait out its 20 s timeout (XDT_ERR_TIMEOUT). Runs where the library loads (the group loads it
 * first). */
static int first_member_fails(const char *arg) {
    (void)arg;
    const int port = test_free_port();
    CHECK(port > 0, "a free port");
    marker_arg a[2] = {{.member = 0, .port = port}, {.member = 1, .port = port}};
    pthread_t th[2];
    fprintf(stderr, "(error lines about group marker are expected next)\n");
    for (int m = 0; m < 2; m++)
        pthread_create(&th[m], NULL, marker_member, &a[m]);
    for (int m = 0; m < 2; m++)
        pthread_join(th[m], NULL);
    CHECK(a[0].st == XDT_ERR_DEVICE, "member 0: status %d", a[0].st);
    CHECK(a[1].st == XDT_ERR_PEER, "member 1: status %d after %.1f s", a[1].st, a[1].took_s);
    return failures;
}

static void test_agreement(void) {
    const bool every[MEMBERS] = {true, true, true};
    const int same[MEMBERS] = {22809, 22809, 22809}, mixed[MEMBERS] = {22809, 22809, 22105};
    agree_round(every, same, true, NULL);
    /* member 1 lacks the library (as does member 2; the first is named) */
    const bool some[MEMBERS] = {true, false, false};
    agree_round(some, same, false, "member 1 of group agree-");
    /* all have one, of two versions: they would refuse each other at init */
    agree_round(every, mixed, false, "2.28.9 (member 0), 2.21.5 (member 2)");
    bool all = true;
    char why[64];
    CHECK(xdt_nccl_group_agree(NULL, "g", 0, 2, 100, true, 22809, NULL, &all, why, sizeof why) ==
                  XDT_ERR_INVALID_ARG &&
              !all,
          "no store");
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--fallback")) return falls_back();
    test_agreement();
    xdt_nccl_vendor v = XDT_NCCL_AMD;
    CHECK(xdt_nccl_vendor_of(XDT_MEM_CUDA, &v) && v == XDT_NCCL_NVIDIA, "CUDA memory: NCCL");
    CHECK(xdt_nccl_vendor_of(XDT_MEM_HIP, &v) && v == XDT_NCCL_AMD, "HIP memory: RCCL");
    CHECK(!xdt_nccl_vendor_of(XDT_MEM_HOST, &v) && !xdt_nccl_vendor_of(XDT_MEM_PINNED_HOST, &v),
          "host memory: none");
    CHECK(!strcmp(xdt_nccl_vendor_name(XDT_NCCL_AMD), "RCCL") &&
              !strcmp(xdt_nccl_vendor_name(XDT_NCCL_NVIDIA), "NCCL"),
          "vendor names");
    const xdt_nccl_api *api = NULL;
    char why[128];
    CHECK(xdt_nccl_api_try_load((xdt_nccl_vendor)7, &api, why, sizeof why) == XDT_ERR_INVALID_ARG &&
              strstr(why, "vendor 7"),
          "unknown vendor");

    const char *missing = "/nonexistent/xdt-test/libnccl.so.2";
    CHECK(in_child("XDT_NCCL_LIBRARY", missing, refuses_missing, missing) == 0,
          "a missing library");
    CHECK(in_child("XDT_RCCL_LIBRARY", "libm.so.6", refuses_foreign, "libm.so.6") == 0,
          "a library that is not RCCL");

    char out[] = "/tmp/xdt-test-nccl-XXXXXX";
    const int fd = mkstemp(out);
    CHECK(fd >= 0, "temporary file");
    if (fd >= 0) close(fd);
    const char *env = getenv("XDT_NCCL_LIBRARY");
    const int found = in_child("XDT_NCCL_LIBRARY", env, loads_default, out);
    CHECK(found == 0 || found == 77, "loading the library found here: %d failures", found);
    if (found == 0) {
        char path[256] = "";
        FILE *f = fopen(out, "r");
        CHECK(f && fgets(path, sizeof path, f), "the path written");
        if (f) fclose(f);
        CHECK(in_child("XDT_RCCL_LIBRARY", path, loads_as_rccl, path) == 0, "as RCCL");
        CHECK(run_fallback() == 0, "past an unusable first candidate");
        CHECK(in_child("XDT_NCCL_LIBRARY", NULL, first_member_fails, NULL) == 0,
              "the first member's failure reaches the others");
    }
    unlink(out);
    printf("test_nccl_api: ABI %s against nccl.h, %d failures\n",
           HEADER_CHECKED ? "checked" : "not checked (no nccl.h here)", failures);
    if (failures) return 1;
    return found == 77 ? 77 : 0;
}
