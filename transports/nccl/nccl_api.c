/* nccl_api.c: finds libnccl or librccl at run time, resolves the functions xdt calls, checks the
 * version. One attempt per vendor and process: the outcome (the table, or why not) is kept. */
#include "transports/nccl/nccl_api.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Directories the build found the toolkits in, colon-separated (transports/nccl/meson.build). */
#ifndef XDT_NCCL_DIRS
#define XDT_NCCL_DIRS ""
#endif
#ifndef XDT_RCCL_DIRS
#define XDT_RCCL_DIRS ""
#endif

typedef struct vendor_info {
    const char *name, *env, *dirs;
    const char *sonames[2];
} vendor_info;

static const vendor_info vendors[2] = {
    [XDT_NCCL_NVIDIA] = {"NCCL", "XDT_NCCL_LIBRARY", XDT_NCCL_DIRS, {"libnccl.so.2", "libnccl.so"}},
    [XDT_NCCL_AMD] = {"RCCL", "XDT_RCCL_LIBRARY", XDT_RCCL_DIRS, {"librccl.so.1", "librccl.so"}},
};

typedef struct loaded {
    bool tried;
    xdt_status st;
    char why[512];
    xdt_nccl_api api;
} loaded;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static loaded cache[2];

const char *xdt_nccl_vendor_name(xdt_nccl_vendor vendor) {
    return vendor == XDT_NCCL_AMD ? "RCCL" : "NCCL";
}

bool xdt_nccl_vendor_of(xdt_mem_type mem, xdt_nccl_vendor *out) {
    if (mem == XDT_MEM_CUDA)
        *out = XDT_NCCL_NVIDIA;
    else if (mem == XDT_MEM_HIP)
        *out = XDT_NCCL_AMD;
    else
        return false;
    return true;
}

/* Appends "; <text>" to a reason list. */
static void note(char *list, size_t cap, const char *text) {
    const size_t len = strlen(list);
    if (len + 3 < cap) snprintf(list + len, cap - len, "%s%s", len ? "; " : "", text);
}

/* Resolves every function; names the first one missing. */
static bool resolve(void *h, xdt_nccl_api *api, const char **missing) {
    struct {
        const char *name;
        void **slot;
    } fns[] = {
        {"ncclGetVersion", (void **)&api->get_version},
        {"ncclGetUniqueId", (void **)&api->get_unique_id},
        {"ncclCommInitRankConfig", (void **)&api->comm_init_rank_config},
        {"ncclCommGetAsyncError", (void **)&api->comm_get_async_error},
        {"ncclCommFinalize", (void **)&api->comm_finalize},
        {"ncclCommDestroy", (void **)&api->comm_destroy},
        {"ncclCommAbort", (void **)&api->comm_abort},
        {"ncclAllReduce", (void **)&api->all_reduce},
        {"ncclGetErrorString", (void **)&api->get_error_string},
        {"ncclGetLastError", (void **)&api->get_last_error},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        /* POSIX: a data pointer holds a function's address */
        *fns[i].slot = dlsym(h, fns[i].name);
        if (!*fns[i].slot) {
            *missing = fns[i].name;
            return false;
        }
    }
    return true;
}

/* Tries one candidate: loads it, resolves the functions and checks the version. On failure
 * closes it, appends why to `tried` (quiet_absent: not when the file is simply not there) and
 * returns false. */
static bool try_candidate(const vendor_info *vi, const char *path, bool quiet_absent,
                          xdt_nccl_api *api, char *tried, size_t cap) {
    char why[320];
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        if (!quiet_absent || strchr(path, '/') == NULL || access(path, F_OK) == 0)
            note(tried, cap, e ? e : path);
        return false;
    }
    const char *missing = NULL;
    int version = 0;
    if (!resolve(h, api, &missing)) {
        snprintf(why, sizeof why, "%s lacks %s (not %s %d.%d or newer)", path, missing, vi->name,
                 XDT_NCCL_MIN_VERSION / 10000, XDT_NCCL_MIN_VERSION / 100 % 100);
    } else if (api->get_version(&version) != XDT_NCCL_SUCCESS || version < XDT_NCCL_MIN_VERSION) {
        snprintf(why, sizeof why, "%s is %s %d.%d.%d; xdt needs %d.%d or newer", path, vi->name,
                 version / 10000, version / 100 % 100, version % 100, XDT_NCCL_MIN_VERSION / 10000,
                 XDT_NCCL_MIN_VERSION / 100 % 100);
    } else {
        api->version = version;
        snprintf(api->path, sizeof api->path, "%s", path);
        return true; /* never closed: the library starts threads that outlive any one group */
    }
    dlclose(h);
    note(tried, cap, why);
    return false;
}

/* The environment's path alone when set; else the dynamic loader's search (LD_LIBRARY_PATH,
 * ld.so.cache: what the user set up comes first), then the directories the build saw; the
 * first candidate that loads, has every function and is new enough wins. */
static void load(xdt_nccl_vendor vendor, loaded *l) {
    const vendor_info *vi = &vendors[vendor];
    l->tried = true;
    l->st = XDT_ERR_UNSUPPORTED;
    l->api.vendor = vendor;
    char tried[400] = "";
    const char *env = getenv(vi->env);
    if (env && env[0]) {
        if (strlen(env) >= sizeof l->api.path) {
            snprintf(l->why, sizeof l->why, "%s names a path of %zu characters (at most %zu)",
                     vi->env, strlen(env), sizeof l->api.path - 1);
            return;
        }
        if (!try_candidate(vi, env, false, &l->api, tried, sizeof tried)) {
            snprintf(l->why, sizeof l->why, "%s unusable (%s, from %s)", vi->name, tried, vi->env);
            return;
        }
    } else {
        bool found = false;
        for (int i = 0; i < 2 && !found; i++)
            found = try_candidate(vi, vi->sonames[i], false, &l->api, tried, sizeof tried);
        char dirs[1024];
        snprintf(dirs, sizeof dirs, "%s", vi->dirs);
        char *save = NULL;
        for (char *dir = strtok_r(dirs, ":", &save); dir && !found;
             dir = strtok_r(NULL, ":", &save)) {
            char path[sizeof l->api.path];
            snprintf(path, sizeof path, "%s/%s", dir, vi->sonames[0]);
            found = try_candidate(vi, path, true, &l->api, tried, sizeof tried);
        }
        if (!found) {
            snprintf(l->why, sizeof l->why, "%s not found (%s; set %s to the library's path)",
                     vi->name, tried, vi->env);
            return;
        }
    }
    l->st = XDT_OK;
    xdt_log_debug("%s %d.%d.%d loaded from %s", vi->name, l->api.version / 10000,
                  l->api.version / 100 % 100, l->api.version % 100, l->api.path);
}

xdt_status xdt_nccl_api_try_load(xdt_nccl_vendor vendor, const xdt_nccl_api **out, char *why,
                                 size_t cap) {
    if (vendor != XDT_NCCL_NVIDIA && vendor != XDT_NCCL_AMD) {
        if (why && cap) snprintf(why, cap, "no collective library for vendor %d", (int)vendor);
        return XDT_ERR_INVALID_ARG;
    }
    loaded *l = &cache[vendor];
    pthread_mutex_lock(&lock);
    if (!l->tried) load(vendor, l);
    pthread_mutex_unlock(&lock);
    if (l->st == XDT_OK) {
        *out = &l->api;
        if (why && cap) why[0] = 0;
    } else if (why && cap) {
        snprintf(why, cap, "%s", l->why);
    }
    return l->st;
}

xdt_status xdt_nccl_api_load(xdt_nccl_vendor vendor, const xdt_nccl_api **out) {
    char why[512];
    const xdt_status st = xdt_nccl_api_try_load(vendor, out, why, sizeof why);
    return st ? xdt_fail(st, "%s", why) : XDT_OK;
}
