/* mem_type.h: where a buffer lives. Shared by devices (which allocate it) and transports (which
 * must know whether they can read it). */
#ifndef XDT_MEM_TYPE_H
#define XDT_MEM_TYPE_H

typedef enum xdt_mem_type {
    XDT_MEM_HOST = 0,
    XDT_MEM_PINNED_HOST = 1,
    XDT_MEM_CUDA = 2,
    XDT_MEM_HIP = 3,
} xdt_mem_type;

/* "host", "pinned", "cuda", "hip". */
static inline const char *xdt_mem_type_name(xdt_mem_type m) {
    switch (m) {
    case XDT_MEM_HOST: return "host";
    case XDT_MEM_PINNED_HOST: return "pinned";
    case XDT_MEM_CUDA: return "cuda";
    case XDT_MEM_HIP: return "hip";
    }
    return "?";
}

#endif
