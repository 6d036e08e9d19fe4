/* run_trace.c: per-rank trace parts, merged by rank 0. */
#include "tools/run_trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "planner/trace_writer.h"

/* Writes this rank's events as trace event lines (each starting with ",\n"). */
static xdt_status write_part(const char *part, int rank, int chunks, const xdt_exec_event *ev,
                             int n) {
    FILE *f = fopen(part, "w");
    if (!f) return xdt_fail(XDT_ERR_IO, "%s: cannot create: %s", part, strerror(errno));
    fprintf(f,
            ",\n{\"ph\":\"M\",\"pid\":0,\"tid\":%d,\"name\":\"thread_name\",\"args\":{\"name\":"
            "\"rank %d\"}}",
            rank, rank);
    char label[64];
    for (int i = 0; i < n; i++) {
        xdt_trace_op_label(&ev[i].op, chunks, label, sizeof label);
        fprintf(f,
                ",\n{\"ph\":\"X\",\"pid\":0,\"tid\":%d,\"name\":\"%s\",\"cat\":\"%s\",\"ts\":%.3f,"
                "\"dur\":%.3f,\"args\":{\"step\":%d,\"microbatch\":%d,\"chunk\":%d}}",
                rank, label, xdt_trace_op_category(ev[i].op.kind), ev[i].start_s * 1e6,
                (ev[i].end_s - ev[i].start_s) * 1e6, ev[i].step, ev[i].op.microbatch,
                ev[i].op.chunk);
    }
    if (fclose(f) != 0) return xdt_fail(XDT_ERR_IO, "%s: write failed", part);
    return XDT_OK;
}

/* The parts' times are absolute: shift them so the run starts at 0. */
static double earliest_start(const char *path, int ranks) {
    double t0 = -1;
    char part[4200];
    for (int r = 0; r < ranks; r++) {
        snprintf(part, sizeof part, "%s.rank%d", path, r);
        FILE *f = fopen(part, "r");
        if (!f) continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            const char *ts = strstr(line, "\"ts\":");
            if (!ts) continue;
            const double v = strtod(ts + 5, NULL);
            if (t0 < 0 || v < t0) t0 = v;
        }
        fclose(f);
    }
    return t0 < 0 ? 0 : t0;
}

static xdt_status merge(const char *path, const xdt_loaded_plan *plan) {
    char tmp[4200], part[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    const double t0 = earliest_start(path, plan->ranks);
    FILE *out = fopen(tmp, "w");
    if (!out) return xdt_fail(XDT_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    char title[256];
    snprintf(title, sizeof title, "%s on %s (measured)", plan->model.name, plan->cluster);
    if (!xdt_trace_begin(out, title)) {
        fclose(out);
        remove(tmp);
        return xdt_fail(XDT_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    xdt_status st = XDT_OK;
    for (int r = 0; r < plan->ranks && !st; r++) {
        snprintf(part, sizeof part, "%s.rank%d", path, r);
        FILE *f = fopen(part, "r");
        if (!f) {
            st = xdt_fail(XDT_ERR_IO, "%s: missing: %s", part, strerror(errno));
            break;
        }
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char *ts = strstr(line, "\"ts\":");
            if (!ts) {
                fputs(line, out);
                continue;
            }
            /* rewrite "ts":ABS as "ts":REL */
            char *end;
            const double v = strtod(ts + 5, &end);
            fprintf(out, "%.*s\"ts\":%.3f%s", (int)(ts - line), line, v - t0, end);
        }
        fclose(f);
        remove(part);
    }
    fprintf(out, "\n],\"displayTimeUnit\":\"ms\"}\n");
    if (fclose(out) != 0 && !st) st = xdt_fail(XDT_ERR_IO, "%s: write failed", tmp);
    if (!st && rename(tmp, path) != 0)
        st = xdt_fail(XDT_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st) remove(tmp);
    return st;
}

xdt_status xdt_run_trace_write(const char *path, xdt_worker_link *link, const xdt_loaded_plan *plan,
                               const xdt_exec_event *events, int n) {
    char part[4200];
    const int rank = link->env.rank;
    snprintf(part, sizeof part, "%s.rank%d", path, rank);
    xdt_status st = write_part(part, rank, plan->chunks, events, n);
    /* every rank reaches the barrier, even after a failed write, so nobody waits for nothing */
    xdt_status bst = xdt_store_barrier(link->store, "xdt/trace", 60000);
    if (!st) st = bst;
    if (!st && rank == 0) st = merge(path, plan);
    if (!st) xdt_log_info("rank %d: trace %s", rank, rank == 0 ? path : "part written");
    return st;
}
