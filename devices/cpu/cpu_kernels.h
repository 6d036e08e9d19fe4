/* cpu_kernels.h: the CPU kernels, instantiated for float (the backend) and double (the
 * reference that tests take finite differences with). One source: cpu_kernels.inc. */
#ifndef XDT_CPU_KERNELS_H
#define XDT_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "devices/device.h"

#define XDT_REAL   float
#define XDT_KFN(n) xdt_cpu_##n##_f32
#include "devices/cpu/cpu_kernels_decl.inc"
#undef XDT_REAL
#undef XDT_KFN

#define XDT_REAL   double
#define XDT_KFN(n) xdt_cpu_##n##_f64
#include "devices/cpu/cpu_kernels_decl.inc"
#undef XDT_REAL
#undef XDT_KFN

#endif
