/* gpu_stream.h: a GPU device's stream as libraries that queue their own work beside the kernels
 * see it (NCCL, RCCL): the runtime's handle and the two things they need from the runtime. Shared
 * by devices (which fill it) and transports (which use it), like mem_type.h. */
#ifndef XDT_GPU_STREAM_H
#define XDT_GPU_STREAM_H

#include <stdbool.h>

#include "core/status.h"

typedef struct xdt_gpu_stream {
    void *handle; /* cudaStream_t or hipStream_t */
    int index;    /* the GPU's number in its runtime */
    void *arg;    /* the device's context, for the functions below */
    /* Makes the stream's GPU the calling thread's current device. */
    xdt_status (*make_current)(void *arg);
    /* Without waiting: *idle = whether everything queued on the stream has finished. A failure
     * of the queued work is returned (and reported) as the device's sync would. */
    xdt_status (*query)(void *arg, bool *idle);
} xdt_gpu_stream;

#endif
