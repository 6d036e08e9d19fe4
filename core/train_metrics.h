/* train_metrics.h: per-step metrics as JSON lines, and the progress display (a bar on a terminal,
 * one plain line per log interval elsewhere). */
#ifndef XDT_TRAIN_METRICS_H
#define XDT_TRAIN_METRICS_H

#include <stdbool.h>
#include <stdio.h>

#include "core/status.h"

typedef struct xdt_step_metrics {
    int step; /* 1-based */
    double loss, lr, tokens_per_s, step_ms, grad_norm;
    bool has_val;
    double val_loss;
    /* pipelines: bytes sent between sites (after and before the codec), and the fraction of
     * all ranks' time spent not computing */
    bool pipeline;
    double wan_bytes, wan_raw_bytes, bubble;
} xdt_step_metrics;

typedef struct xdt_metrics_file {
    FILE *f;
    char path[1024];
} xdt_metrics_file;

/* Opens path for appending when `append` (a resumed run), else truncates it. */
xdt_status xdt_metrics_open(xdt_metrics_file *m, const char *path, bool append);
/* One JSON object per line: step, loss, lr, tokens_per_s, step_ms, grad_norm, wan_bytes
 * [, val_loss] [, wan_raw_bytes, bubble for pipelines]. */
xdt_status xdt_metrics_write(xdt_metrics_file *m, const xdt_step_metrics *s);
void xdt_metrics_close(xdt_metrics_file *m);

typedef struct xdt_progress {
    bool tty;
    int total_steps, log_every;
    double started_s; /* wall clock at the first shown step */
    int first_step;
} xdt_progress;

void xdt_progress_init(xdt_progress *p, int first_step, int total_steps, int log_every);
/* Shows step s: redraws the bar on a terminal, or prints a line every log_every steps. */
void xdt_progress_show(xdt_progress *p, const xdt_step_metrics *s);
void xdt_progress_done(xdt_progress *p);

/* Monotonic wall clock in seconds. */
double xdt_now_s(void);

#endif
