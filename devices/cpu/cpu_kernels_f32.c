/* cpu_kernels_f32.c: the fp32 instance of the CPU kernels (the backend's). */
#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "devices/cpu/cpu_kernels.h"

#define XDT_REAL   float
#define XDT_KFN(n) xdt_cpu_##n##_f32
#define XDT_GEMM   cblas_sgemm
#include "devices/cpu/cpu_kernels.inc"
