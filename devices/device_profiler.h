/* device_profiler.h: where a device's time goes, op by op. The profiler is a device that wraps
 * another: everything passes through to the inner device, and each kernel, copy and memset is
 * timed -- on GPUs by a pair of events recorded around it on the device's stream (so the time is
 * the GPU's, not the launch's, and nothing waits), elsewhere by the host clock around the call
 * (the CPU backend runs its kernels inside the call). Times are gathered at each sync. GEMMs are
 * counted by shape (transposes, m x n x k, batch) with their achieved GFLOP/s, the other ops by
 * name. Used by `bench_train_step --profile` to compare a step's make-up across devices and
 * precisions, and with a PyTorch profile of the same model (bench/torch_gpt.py --profile). */
#ifndef XDT_DEVICE_PROFILER_H
#define XDT_DEVICE_PROFILER_H

#include <stdio.h>

#include "devices/device.h"

typedef struct xdt_op_profile {
    char name[64]; /* "layernorm_forward", "gemm NT 8192x2304x768", "copy host->device" */
    long calls;
    double ms;    /* total */
    double flops; /* total, GEMMs only (2 m n k per product) */
} xdt_op_profile;

/* A device that times the ops it passes to `inner`. inner must outlive it and is not destroyed
 * with it (xdt_device_destroy on the profiler frees only the profiler). */
xdt_status xdt_device_profiler_create(xdt_device *inner, xdt_device **out);

/* Waits for the device, then gives the rows so far, the longest first (valid until the next op
 * through the profiler). */
xdt_status xdt_device_profiler_rows(xdt_device *prof, const xdt_op_profile **rows, int *n);

/* Forgets the rows (e.g. after warm-up steps). */
void xdt_device_profiler_reset(xdt_device *prof);

/* Writes the rows as a table (op, calls, total ms, share, mean us, GFLOP/s) with `title`, at
 * most max_rows of them (the rest summed in one line). */
xdt_status xdt_device_profiler_print(xdt_device *prof, FILE *f, const char *title, int max_rows);

#endif
