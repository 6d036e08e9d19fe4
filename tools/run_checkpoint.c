/* run_checkpoint.c: sharded checkpoints of a pipelined run and --resume (layout and manifest
 * format in run_checkpoint.h). */
#include "tools/run_checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/checkpoint.h"
#include "core/file_util.h"
#include "core/log.h"

#define MANIFEST_FORMAT  "xdt-pipeline-checkpoint"
#define MANIFEST_VERSION 1
#define MANIFEST_MAX     (64 << 20) /* bytes: far beyond any plan's manifest */

static void step_dir(const char *dir, int64_t step, char *out, size_t cap) {
    snprintf(out, cap, "%s/step-%08lld", dir, (long long)step);
}

static void shard_name(int rank, int chunk, char *out, size_t cap) {
    snprintf(out, cap, "rank-%d-chunk-%d.xdt", rank, chunk);
}

/* The step of a "step-NNNNNNNN" directory name, or -1. */
static int64_t parse_step_name(const char *name) {
    if (strncmp(name, "step-", 5) != 0 || strlen(name) != 13) return -1;
    int64_t v = 0;
    for (const char *c = name + 5; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        v = v * 10 + (*c - '0');
    }
    return v;
}

static bool is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The highest step in dir whose directory holds a manifest (-1 when none); *opened tells
 * whether dir could be read at all (errno is kept for the message). */
static int64_t latest_step(const char *dir, bool *opened) {
    DIR *d = opendir(dir);
    *opened = d != NULL;
    if (!d) return -1;
    int64_t best = -1;
    char path[4096];
    const struct dirent *e;
    while ((e = readdir(d))) {
        const int64_t s = parse_step_name(e->d_name);
        if (s <= best) continue;
        snprintf(path, sizeof path, "%s/%s/manifest.json", dir, e->d_name);
        if (is_file(path)) best = s;
    }
    closedir(d);
    return best;
}

xdt_status xdt_run_checkpoint_check_fresh(const char *dir) {
    bool opened;
    const int64_t s = latest_step(dir, &opened);
    if (s < 0) return XDT_OK;
    char sd[4096], manifest[4200];
    step_dir(dir, s, sd, sizeof sd);
    snprintf(manifest, sizeof manifest, "%s/manifest.json", sd);
    return xdt_checkpoint_refuse_used(manifest);
}

/* ---- saving ---- */

static cJSON *plan_identity(const xdt_loaded_plan *p) {
    cJSON *o = cJSON_CreateObject(), *units = NULL;
    bool ok = cJSON_AddStringToObject(o, "cluster", p->cluster) &&
              cJSON_AddStringToObject(o, "model", p->model.name) &&
              cJSON_AddNumberToObject(o, "ranks", p->ranks) &&
              cJSON_AddNumberToObject(o, "stages", p->stages) &&
              cJSON_AddNumberToObject(o, "replicas", p->replicas) &&
              cJSON_AddNumberToObject(o, "chunks", p->chunks) &&
              cJSON_AddNumberToObject(o, "global_batch", p->global_batch) &&
              cJSON_AddNumberToObject(o, "seq", p->seq) &&
              cJSON_AddNumberToObject(o, "microbatch", p->microbatch) &&
              (units = cJSON_AddArrayToObject(o, "units"));
    for (int g = 0; ok && g < p->ranks; g++) {
        cJSON *r = cJSON_CreateArray();
        ok = r && cJSON_AddItemToArray(units, r);
        if (!ok) cJSON_Delete(r);
        for (int v = 0; ok && v < p->chunks; v++) {
            cJSON *u = cJSON_CreateIntArray(p->rank[g].units[v], 2);
            ok = u && cJSON_AddItemToArray(r, u);
            if (!ok) cJSON_Delete(u);
        }
    }
    if (ok) return o;
    cJSON_Delete(o);
    return NULL;
}

/* Rank 0: gathers every rank's shard sizes from the store and writes the manifest. */
static xdt_status write_manifest(const char *dir, int64_t step, const xdt_loaded_plan *p,
                                 xdt_worker_link *link, int timeout_ms) {
    const int V = p->chunks;
    int64_t *bytes = calloc((size_t)V, sizeof *bytes);
    cJSON *root = cJSON_CreateObject(), *shards = cJSON_CreateArray();
    char *text = NULL;
    xdt_status st = XDT_OK;
    if (!bytes || !root || !shards) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory for the manifest");
        goto out;
    }
    cJSON *identity = plan_identity(p);
    if (!identity || !cJSON_AddStringToObject(root, "format", MANIFEST_FORMAT) ||
        !cJSON_AddNumberToObject(root, "version", MANIFEST_VERSION) ||
        !cJSON_AddNumberToObject(root, "step", (double)step) ||
        !cJSON_AddItemToObject(root, "plan", identity)) {
        cJSON_Delete(identity);
        st = xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory for the manifest");
        goto out;
    }
    double total = 0;
    for (int g = 0; g < p->ranks; g++) {
        char key[128], name[64];
        size_t len = 0;
        snprintf(key, sizeof key, "xdt/ckpt/%lld/rank-%d", (long long)step, g);
        if ((st = xdt_store_get(link->store, key, bytes, (size_t)V * sizeof *bytes, &len,
                                timeout_ms)))
            goto out;
        if (len != (size_t)V * sizeof *bytes) {
            st = xdt_fail(XDT_ERR_PEER,
                          "checkpoint at step %lld: rank %d reported %zu bytes of "
                          "shard sizes, expected %zu",
                          (long long)step, g, len, (size_t)V * sizeof *bytes);
            goto out;
        }
        for (int v = 0; v < V; v++) {
            cJSON *s = cJSON_CreateObject();
            shard_name(g, v, name, sizeof name);
            const bool ok = s && cJSON_AddNumberToObject(s, "rank", g) &&
                            cJSON_AddNumberToObject(s, "chunk", v) &&
                            cJSON_AddStringToObject(s, "file", name) &&
                            cJSON_AddNumberToObject(s, "bytes", (double)bytes[v]) &&
                            cJSON_AddItemToArray(shards, s);
            if (!ok) {
                cJSON_Delete(s);
                st = xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory for the manifest");
                goto out;
            }
            total += (double)bytes[v];
        }
    }
    if (!cJSON_AddItemToObject(root, "shards", shards)) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory for the manifest");
        goto out;
    }
    shards = NULL;
    text = cJSON_Print(root);
    if (!text) {
        st = xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory for the manifest");
        goto out;
    }
    char sd[4096], path[4200];
    step_dir(dir, step, sd, sizeof sd);
    snprintf(path, sizeof path, "%s/manifest.json", sd);
    xdt_atomic_file af;
    if ((st = xdt_atomic_open(&af, path))) goto out;
    if ((st = xdt_atomic_write(&af, text, strlen(text))) || (st = xdt_atomic_write(&af, "\n", 1))) {
        xdt_atomic_abort(&af);
        goto out;
    }
    if ((st = xdt_atomic_commit(&af))) goto out;
    xdt_log_info("saved checkpoint %s (%d ranks x %d chunks, %.1f MiB)", sd, p->ranks, V,
                 total / (1 << 20));
out:
    free(text);
    cJSON_Delete(shards);
    cJSON_Delete(root);
    free(bytes);
    return st;
}

/* This rank's shards; sizes (chunks entries) are filled. */
static xdt_status write_shards(const char *dir, int64_t step, const xdt_loaded_plan *p, int rank,
                               xdt_executor *ex, const xdt_loader_state *loader, int64_t *sizes) {
    char sd[4096], name[64], path[4200];
    step_dir(dir, step, sd, sizeof sd);
    xdt_status st = xdt_mkdir_p(sd);
    for (int v = 0; v < p->chunks && !st; v++) {
        xdt_ckpt_meta meta = {
            .step = step,
            .first_unit = p->rank[rank].units[v][0],
            .last_unit = p->rank[rank].units[v][1],
            .b = p->global_batch,
            .t = p->seq,
        };
        if (loader) meta.loader = *loader;
        shard_name(rank, v, name, sizeof name);
        snprintf(path, sizeof path, "%s/%s", sd, name);
        if ((st = xdt_checkpoint_save(path, xdt_executor_stage(ex, v),
                                      xdt_executor_optimizer(ex, v), &meta)))
            break;
        struct stat sb;
        if (stat(path, &sb) != 0)
            st = xdt_fail(XDT_ERR_IO, "%s: cannot read back its size: %s", path, strerror(errno));
        else
            sizes[v] = (int64_t)sb.st_size;
    }
    return st;
}

xdt_status xdt_run_checkpoint_save(const char *dir, int64_t step, const xdt_loaded_plan *p,
                                   xdt_worker_link *link, xdt_executor *ex,
                                   const xdt_loader_state *loader, int timeout_ms) {
    const int rank = link->env.rank;
    if (xdt_executor_chunks(ex) != p->chunks)
        return xdt_fail(XDT_ERR_INVALID_ARG, "checkpoint: rank %d holds %d chunks, the plan %d",
                        rank, xdt_executor_chunks(ex), p->chunks);
    int64_t *sizes = calloc((size_t)p->chunks, sizeof *sizes);
    if (!sizes) return xdt_fail(XDT_ERR_NO_MEMORY, "checkpoint: out of memory");
    char key[128], failed_key[128], barrier[128];
    snprintf(failed_key, sizeof failed_key, "xdt/ckpt/%lld/failed", (long long)step);
    snprintf(barrier, sizeof barrier, "xdt/ckpt/%lld", (long long)step);
    snprintf(key, sizeof key, "xdt/ckpt/%lld/rank-%d", (long long)step, rank);
    const xdt_status mine = write_shards(dir, step, p, rank, ex, loader, sizes);
    int64_t failed = 0;
    xdt_status st = mine
                        ? xdt_store_add(link->store, failed_key, 1, &failed)
                        : xdt_store_set(link->store, key, sizes, (size_t)p->chunks * sizeof *sizes);
    free(sizes);
    if (!st) st = xdt_store_barrier(link->store, barrier, timeout_ms);
    if (!st) st = xdt_store_add(link->store, failed_key, 0, &failed);
    if (mine) return mine;
    if (st) return st;
    if (failed > 0)
        return xdt_fail(XDT_ERR_PEER,
                        "checkpoint at step %lld: %lld rank(s) could not write their shards "
                        "(their errors say why); no manifest written",
                        (long long)step, (long long)failed);
    return rank == 0 ? write_manifest(dir, step, p, link, timeout_ms) : XDT_OK;
}

/* ---- resuming ---- */

static xdt_status read_text(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    const long long n = xdt_file_size(f);
    char *buf = n >= 0 && n <= MANIFEST_MAX ? malloc((size_t)n + 1) : NULL;
    xdt_status st = XDT_OK;
    if (n < 0 || n > MANIFEST_MAX)
        st = xdt_fail(XDT_ERR_FORMAT, "%s: %lld bytes is not a manifest", path, n);
    else if (!buf)
        st = xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
    else if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        st = xdt_fail(XDT_ERR_IO, "%s: short read", path);
    fclose(f);
    if (st) {
        free(buf);
        return st;
    }
    buf[n] = 0;
    *out = buf;
    return XDT_OK;
}

static xdt_status get_int(const cJSON *o, const char *key, const char *path, const char *where,
                          int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble ||
        v->valuedouble < 0)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s' is missing or not a whole number", path,
                        where, key);
    *out = (int64_t)v->valuedouble;
    return XDT_OK;
}

static xdt_status get_str(const cJSON *o, const char *key, const char *path, const char *where,
                          const char **out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field '%s%s' is missing or not a string", path, where,
                        key);
    *out = v->valuestring;
    return XDT_OK;
}

/* "saved for 2 stages, the plan has 3" */
static xdt_status check_count(const cJSON *o, const char *key, const char *what, int64_t want,
                              const char *path) {
    int64_t v = 0;
    xdt_status st = get_int(o, key, path, "plan.", &v);
    if (st) return st;
    if (v != want)
        return xdt_fail(XDT_ERR_CONFIG, "%s: saved for %lld %s, the plan has %lld", path,
                        (long long)v, what, (long long)want);
    return XDT_OK;
}

static xdt_status check_text(const cJSON *o, const char *key, const char *want, const char *path) {
    const char *v = "";
    xdt_status st = get_str(o, key, path, "plan.", &v);
    if (st) return st;
    if (strcmp(v, want) != 0)
        return xdt_fail(XDT_ERR_CONFIG, "%s: saved for %s %s, the plan has %s", path, key, v, want);
    return XDT_OK;
}

static xdt_status check_plan(const cJSON *plan, const xdt_loaded_plan *p, const char *path) {
    if (!cJSON_IsObject(plan))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'plan' is missing or not an object", path);
    xdt_status st;
    if ((st = check_count(plan, "stages", "stages", p->stages, path)) ||
        (st = check_count(plan, "replicas", "replicas", p->replicas, path)) ||
        (st = check_count(plan, "ranks", "ranks", p->ranks, path)) ||
        (st = check_count(plan, "chunks", "chunks per rank", p->chunks, path)) ||
        (st = check_text(plan, "model", p->model.name, path)) ||
        (st = check_text(plan, "cluster", p->cluster, path)) ||
        (st = check_count(plan, "global_batch", "sequences per global batch", p->global_batch,
                          path)) ||
        (st = check_count(plan, "seq", "tokens per sequence (seq)", p->seq, path)) ||
        (st = check_count(plan, "microbatch", "sequences per microbatch", p->microbatch, path)))
        return st;
    const cJSON *units = cJSON_GetObjectItemCaseSensitive(plan, "units");
    if (!cJSON_IsArray(units) || cJSON_GetArraySize(units) != p->ranks)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'plan.units' is missing or not %d entries", path,
                        p->ranks);
    for (int g = 0; g < p->ranks; g++) {
        const cJSON *r = cJSON_GetArrayItem(units, g);
        if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != p->chunks)
            return xdt_fail(XDT_ERR_FORMAT, "%s: field 'plan.units[%d]' is not %d entries", path, g,
                            p->chunks);
        for (int v = 0; v < p->chunks; v++) {
            const cJSON *u = cJSON_GetArrayItem(r, v);
            const cJSON *a = cJSON_GetArrayItem(u, 0), *b = cJSON_GetArrayItem(u, 1);
            if (!cJSON_IsArray(u) || cJSON_GetArraySize(u) != 2 || !cJSON_IsNumber(a) ||
                !cJSON_IsNumber(b))
                return xdt_fail(XDT_ERR_FORMAT,
                                "%s: field 'plan.units[%d][%d]' is not [first, last]", path, g, v);
            const int *w = p->rank[g].units[v];
            if (a->valueint != w[0] || b->valueint != w[1])
                return xdt_fail(XDT_ERR_CONFIG,
                                "%s: saved with units [%d, %d] on rank %d chunk %d, the plan "
                                "puts [%d, %d] there",
                                path, a->valueint, b->valueint, g, v, w[0], w[1]);
        }
    }
    return XDT_OK;
}

/* The manifest's entry for (rank, chunk): its size, after checking its file name. */
static xdt_status find_shard(const cJSON *shards, int rank, int chunk, const char *path,
                             int64_t *bytes) {
    char want[64];
    shard_name(rank, chunk, want, sizeof want);
    const cJSON *s;
    cJSON_ArrayForEach(s, shards) {
        int64_t r = -1, v = -1;
        const char *file = "";
        xdt_status st;
        if ((st = get_int(s, "rank", path, "shards[].", &r)) ||
            (st = get_int(s, "chunk", path, "shards[].", &v)))
            return st;
        if (r != rank || v != chunk) continue;
        if ((st = get_str(s, "file", path, "shards[].", &file)) ||
            (st = get_int(s, "bytes", path, "shards[].", bytes)))
            return st;
        if (strcmp(file, want) != 0)
            return xdt_fail(XDT_ERR_FORMAT, "%s: rank %d chunk %d's shard is '%s', expected '%s'",
                            path, rank, chunk, file, want);
        return XDT_OK;
    }
    return xdt_fail(XDT_ERR_FORMAT, "%s: no shard listed for rank %d chunk %d", path, rank, chunk);
}

/* Loads this rank's shards of the manifest at `path` (step directory sd). */
static xdt_status load_shards(const cJSON *root, const char *sd, const char *path, int64_t step,
                              const xdt_loaded_plan *p, int rank, xdt_executor *ex,
                              xdt_loader_state *loader) {
    const cJSON *shards = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (!cJSON_IsArray(shards))
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'shards' is missing or not an array", path);
    if (xdt_executor_chunks(ex) != p->chunks)
        return xdt_fail(XDT_ERR_INVALID_ARG, "resume: rank %d holds %d chunks, the plan %d", rank,
                        xdt_executor_chunks(ex), p->chunks);
    for (int v = 0; v < p->chunks; v++) {
        int64_t bytes = -1;
        xdt_status st = find_shard(shards, rank, v, path, &bytes);
        if (st) return st;
        char name[64], shard[4200];
        shard_name(rank, v, name, sizeof name);
        snprintf(shard, sizeof shard, "%s/%s", sd, name);
        struct stat sb;
        if (stat(shard, &sb) != 0)
            return xdt_fail(XDT_ERR_IO, "%s: cannot read the shard %s lists: %s", shard, path,
                            strerror(errno));
        if ((int64_t)sb.st_size != bytes)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: %lld bytes, %s lists %lld (truncated or replaced); cannot resume",
                            shard, (long long)sb.st_size, path, (long long)bytes);
        xdt_ckpt_meta meta;
        if ((st = xdt_checkpoint_load(shard, xdt_executor_stage(ex, v),
                                      xdt_executor_optimizer(ex, v), &meta)))
            return st;
        if (meta.step != step || meta.b != p->global_batch || meta.t != p->seq)
            return xdt_fail(XDT_ERR_FORMAT,
                            "%s: holds step %lld of batch %d x %d, %s says step %lld of %d x %d",
                            shard, (long long)meta.step, meta.b, meta.t, path, (long long)step,
                            p->global_batch, p->seq);
        if (loader && v == 0) *loader = meta.loader;
    }
    return XDT_OK;
}

/* The manifest's format, version and step (which must match its directory's). */
static xdt_status check_header(const cJSON *root, const char *path, int64_t step) {
    if (!cJSON_IsObject(root))
        return xdt_fail(XDT_ERR_FORMAT, "%s: not a JSON object (corrupt manifest)", path);
    const char *format = "";
    int64_t version = 0, saved = -1;
    xdt_status st;
    if ((st = get_str(root, "format", path, "", &format))) return st;
    if (strcmp(format, MANIFEST_FORMAT) != 0)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'format' is '%s', expected '%s'", path, format,
                        MANIFEST_FORMAT);
    if ((st = get_int(root, "version", path, "", &version))) return st;
    if (version != MANIFEST_VERSION)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'version' is %lld, this build reads %d", path,
                        (long long)version, MANIFEST_VERSION);
    if ((st = get_int(root, "step", path, "", &saved))) return st;
    if (saved != step)
        return xdt_fail(XDT_ERR_FORMAT, "%s: field 'step' is %lld, the directory says %lld", path,
                        (long long)saved, (long long)step);
    return XDT_OK;
}

/* This rank's part of a resume: find, check, load. */
static xdt_status resume_local(const char *dir, const xdt_loaded_plan *p, int rank,
                               xdt_executor *ex, xdt_loader_state *loader, int max_step,
                               int64_t *step_out) {
    bool opened;
    const int64_t step = latest_step(dir, &opened);
    if (!opened)
        return xdt_fail(XDT_ERR_IO, "%s: cannot open the checkpoint directory for --resume: %s",
                        dir, strerror(errno));
    if (step < 0)
        return xdt_fail(XDT_ERR_IO,
                        "%s: no complete checkpoint (step-NNNNNNNN/manifest.json) to resume from",
                        dir);
    char sd[4096], path[4200];
    step_dir(dir, step, sd, sizeof sd);
    snprintf(path, sizeof path, "%s/manifest.json", sd);
    char *text = NULL;
    xdt_status st = read_text(path, &text);
    if (st) return st;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!st) st = check_header(root, path, step);
    if (!st) st = check_plan(cJSON_GetObjectItemCaseSensitive(root, "plan"), p, path);
    if (!st && step > max_step)
        st = xdt_fail(XDT_ERR_CONFIG, "%s: already at step %lld, beyond --steps %d", path,
                      (long long)step, max_step);
    if (!st) st = load_shards(root, sd, path, step, p, rank, ex, loader);
    cJSON_Delete(root);
    if (!st) *step_out = step;
    return st;
}

xdt_status xdt_run_checkpoint_resume(const char *dir, const xdt_loaded_plan *p,
                                     xdt_worker_link *link, xdt_executor *ex,
                                     xdt_loader_state *loader, int max_step, int timeout_ms,
                                     int64_t *step) {
    const int rank = link->env.rank;
    xdt_loader_state ls = {0};
    int64_t mine_step = -1, failed = 0;
    const xdt_status mine =
        resume_local(dir, p, rank, ex, loader ? &ls : NULL, max_step, &mine_step);
    xdt_status st = XDT_OK;
    if (mine)
        st = xdt_store_add(link->store, "xdt/resume/failed", 1, &failed);
    else if (rank == 0)
        st = xdt_store_set(link->store, "xdt/resume/step", &mine_step, sizeof mine_step);
    if (!st) st = xdt_store_barrier(link->store, "xdt/resume", timeout_ms);
    if (!st) st = xdt_store_add(link->store, "xdt/resume/failed", 0, &failed);
    if (mine) return mine;
    if (st) return st;
    if (failed > 0)
        return xdt_fail(XDT_ERR_PEER,
                        "rank %d: --resume from %s: %lld other rank(s) could not load their "
                        "shards (their errors say why)",
                        rank, dir, (long long)failed);
    int64_t lead_step = mine_step;
    size_t len = 0;
    if (rank != 0 && (st = xdt_store_get(link->store, "xdt/resume/step", &lead_step,
                                         sizeof lead_step, &len, timeout_ms)))
        return st;
    if (lead_step != mine_step)
        return xdt_fail(XDT_ERR_CONFIG,
                        "rank %d: --resume from %s: found step %lld, rank 0 found %lld (do all "
                        "ranks see the same --ckpt-dir?)",
                        rank, dir, (long long)mine_step, (long long)lead_step);
    if (loader) *loader = ls;
    if (rank == 0)
        xdt_log_info("resumed from %s/step-%08lld at step %lld", dir, (long long)mine_step,
                     (long long)mine_step);
    *step = mine_step;
    return XDT_OK;
}
