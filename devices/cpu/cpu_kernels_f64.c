/* cpu_kernels_f64.c: the double instance of the CPU kernels, the reference that gradient tests
 * take finite differences with. Same source as the fp32 backend. */
#include <cblas.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "devices/cpu/cpu_kernels.h"

#define XDT_EXP    exp
#define XDT_TANH   tanh
#define XDT_REAL   double
#define XDT_KFN(n) xdt_cpu_##n##_f64
#define XDT_GEMM   cblas_dgemm
#include "devices/cpu/cpu_kernels.inc"
