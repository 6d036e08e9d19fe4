/* precision.c: names of the GEMM precisions. */
#include "core/precision.h"

#include <string.h>

static const char *const names[] = {"fp32", "tf32", "bf16"};

const char *xdt_precision_name(xdt_precision p) {
    return (unsigned)p < 3 ? names[p] : "?";
}

bool xdt_precision_parse(const char *name, xdt_precision *out) {
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, names[i])) {
            *out = (xdt_precision)i;
            return true;
        }
    return false;
}
