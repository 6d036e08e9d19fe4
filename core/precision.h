/* precision.h: the arithmetic a device's GEMMs use, one enum for the planner (whose cost model
 * takes the matching peak TFLOP/s), plan.json ("precision") and the device layer (which computes
 * in it). Storage is fp32 in every mode; only the products change (devices/device.h). */
#ifndef XDT_PRECISION_H
#define XDT_PRECISION_H

#include <stdbool.h>

typedef enum xdt_precision {
    XDT_PRECISION_FP32 = 0, /* full fp32: the reference */
    /* TF32 tensor cores where the backend has them (cuBLAS: about 3x faster on A100 and H100,
     * about 1e-3 relative error); fp32 elsewhere */
    XDT_PRECISION_TF32 = 1,
    /* inputs rounded to bf16 (to nearest even), products summed in fp32: bf16 tensor cores on
     * GPUs; the CPU backend computes the same numbers without being faster, as the reference
     * for the GPUs and for mixed-device pipelines */
    XDT_PRECISION_BF16 = 2,
} xdt_precision;

/* "fp32", "tf32", "bf16". */
const char *xdt_precision_name(xdt_precision p);
/* Parses one of those names; false (nothing reported) for anything else. */
bool xdt_precision_parse(const char *name, xdt_precision *out);

#endif
