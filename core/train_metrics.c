/* train_metrics.c: JSONL metrics and the progress display. */
#include "core/train_metrics.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

double xdt_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

xdt_status xdt_metrics_open(xdt_metrics_file *m, const char *path, bool append) {
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, append ? "a" : "w");
    if (!m->f)
        return xdt_fail(XDT_ERR_IO, "%s: cannot open metrics file: %s", path, strerror(errno));
    return XDT_OK;
}

xdt_status xdt_metrics_write(xdt_metrics_file *m, const xdt_step_metrics *s) {
    if (!m->f) return XDT_OK;
    fprintf(m->f,
            "{\"step\":%d,\"loss\":%.17g,\"lr\":%.9g,\"tokens_per_s\":%.6g,\"step_ms\":%.6g,"
            "\"grad_norm\":%.9g,\"wan_bytes\":%.0f",
            s->step, s->loss, s->lr, s->tokens_per_s, s->step_ms, s->grad_norm, s->wan_bytes);
    if (s->has_val) fprintf(m->f, ",\"val_loss\":%.9g", s->val_loss);
    if (s->pipeline)
        fprintf(m->f, ",\"wan_raw_bytes\":%.0f,\"bubble\":%.4f", s->wan_raw_bytes, s->bubble);
    fprintf(m->f, "}\n");
    if (fflush(m->f) != 0)
        return xdt_fail(XDT_ERR_IO, "%s: write failed: %s", m->path, strerror(errno));
    return XDT_OK;
}

void xdt_metrics_close(xdt_metrics_file *m) {
    if (m->f) fclose(m->f);
    m->f = NULL;
}

void xdt_progress_init(xdt_progress *p, int first_step, int total_steps, int log_every) {
    p->tty = isatty(STDOUT_FILENO);
    p->total_steps = total_steps;
    p->log_every = log_every > 0 ? log_every : 10;
    p->first_step = first_step;
    p->started_s = xdt_now_s();
}

static void format_eta(double s, char *out, size_t cap) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    snprintf(out, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

void xdt_progress_show(xdt_progress *p, const xdt_step_metrics *s) {
    double elapsed = xdt_now_s() - p->started_s;
    int done = s->step - p->first_step;
    double eta = done > 0 ? elapsed / done * (p->total_steps - s->step) : 0;
    char eta_s[32];
    format_eta(eta, eta_s, sizeof eta_s);
    char val[48] = "", pipe[96] = "";
    if (s->has_val) snprintf(val, sizeof val, " | val %.4f", s->val_loss);
    if (s->pipeline)
        snprintf(pipe, sizeof pipe, " | bubble %.0f %% | WAN %.2f MB/s x%.1f", 100 * s->bubble,
                 s->step_ms > 0 ? s->wan_bytes / 1e6 / (s->step_ms * 1e-3) : 0.0,
                 s->wan_bytes > 0 ? s->wan_raw_bytes / s->wan_bytes : 1.0);
    if (p->tty) {
        const int width = 24;
        int filled = p->total_steps ? (int)((double)s->step / p->total_steps * width) : width;
        char bar[32];
        for (int i = 0; i < width; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[width] = 0;
        printf("\r\033[K[%s] step %d/%d | loss %.4f%s | %.0f tok/s | %.1f ms%s | ETA %s", bar,
               s->step, p->total_steps, s->loss, val, s->tokens_per_s, s->step_ms, pipe, eta_s);
        if (s->has_val) printf("\n");
        fflush(stdout);
        return;
    }
    if (s->step % p->log_every == 0 || s->step == p->total_steps || s->has_val) {
        printf("step %d/%d | loss %.4f%s | lr %.3e | %.0f tok/s | %.1f ms%s | ETA %s\n", s->step,
               p->total_steps, s->loss, val, s->lr, s->tokens_per_s, s->step_ms, pipe, eta_s);
        fflush(stdout);
    }
}

void xdt_progress_done(xdt_progress *p) {
    if (p->tty) printf("\n");
    fflush(stdout);
}
