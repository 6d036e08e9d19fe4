/* nccl_api.h: the part of the NCCL API that xdt calls, loaded at run time (dlopen) from NVIDIA's
 * libnccl or from AMD's librccl, which exports the same functions under the same names.
 *
 * Why at run time: the two libraries cannot both be linked into one binary (same symbols), yet
 * a job that mixes NVIDIA and AMD GPUs runs one xdt; libnccl is 200 MB, which a build or a
 * bundle need not carry when the machine that runs has one already (e.g. the copy PyTorch
 * installs); and a build made where neither library exists can still use one where it does.
 *
 * The types below are the C ABI of NCCL >= 2.14 (the first with non-blocking communicators and
 * ncclCommFinalize), which RCCL shares; test_nccl_api checks them against nccl.h where the
 * header is installed. The library is looked for in this order: the path in XDT_NCCL_LIBRARY
 * (NVIDIA) or XDT_RCCL_LIBRARY (AMD), when set (then only there); the directories the build
 * found the toolkit in; the dynamic loader's own search (LD_LIBRARY_PATH, ld.so.cache). A
 * library once loaded stays loaded. */
#ifndef XDT_NCCL_API_H
#define XDT_NCCL_API_H

#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"
#include "devices/mem_type.h"

typedef enum xdt_nccl_vendor {
    XDT_NCCL_NVIDIA = 0, /* libnccl, for CUDA devices */
    XDT_NCCL_AMD = 1,    /* librccl, for HIP devices */
} xdt_nccl_vendor;

/* ncclResult_t */
typedef enum xdt_nccl_result {
    XDT_NCCL_SUCCESS = 0,
    XDT_NCCL_UNHANDLED_CUDA_ERROR = 1,
    XDT_NCCL_SYSTEM_ERROR = 2,
    XDT_NCCL_INTERNAL_ERROR = 3,
    XDT_NCCL_INVALID_ARGUMENT = 4,
    XDT_NCCL_INVALID_USAGE = 5,
    XDT_NCCL_REMOTE_ERROR = 6,
    XDT_NCCL_IN_PROGRESS = 7,
} xdt_nccl_result;

/* ncclDataType_t and ncclRedOp_t values xdt uses */
#define XDT_NCCL_FLOAT32 7
#define XDT_NCCL_SUM     0

/* ncclUniqueId: 128 opaque bytes (NCCL_UNIQUE_ID_BYTES), passed by value */
typedef struct xdt_nccl_unique_id {
    char internal[128];
} xdt_nccl_unique_id;

/* The first fields of ncclConfig_t (`blocking` came in 2.14, the four after it in 2.17). NCCL
 * copies `size` bytes of it and leaves later fields at their defaults; claiming version 2.14.3
 * makes 2.17 and later reset the 2.17 fields to defaults too, which is what xdt sets them to:
 * only `blocking` is used, and one layout serves every version since 2.14. */
typedef struct xdt_nccl_config {
    size_t size;
    unsigned int magic;   /* XDT_NCCL_CONFIG_MAGIC */
    unsigned int version; /* XDT_NCCL_CONFIG_VERSION */
    int blocking;
    int cga_cluster_size;
    int min_ctas;
    int max_ctas;
    const char *net_name;
} xdt_nccl_config;

#define XDT_NCCL_CONFIG_MAGIC   0xcafebeefu
#define XDT_NCCL_CONFIG_VERSION 21403 /* NCCL_VERSION(2, 14, 3) */
#define XDT_NCCL_UNDEF_INT      (-2147483647 - 1)
/* The oldest library accepted (ncclGetVersion's code: major * 10000 + minor * 100 + patch). */
#define XDT_NCCL_MIN_VERSION 21400

typedef void *xdt_nccl_comm; /* ncclComm_t */

/* The library's functions, resolved once. */
typedef struct xdt_nccl_api {
    xdt_nccl_vendor vendor;
    int version;    /* ncclGetVersion's code, e.g. 22809 for 2.28.9 */
    char path[256]; /* the file the library was loaded from (as dlopen was given it) */
    xdt_nccl_result (*get_version)(int *version);
    xdt_nccl_result (*get_unique_id)(xdt_nccl_unique_id *id);
    xdt_nccl_result (*comm_init_rank_config)(xdt_nccl_comm *comm, int nranks, xdt_nccl_unique_id id,
                                             int rank, xdt_nccl_config *config);
    xdt_nccl_result (*comm_get_async_error)(xdt_nccl_comm comm, xdt_nccl_result *async_error);
    xdt_nccl_result (*comm_finalize)(xdt_nccl_comm comm);
    xdt_nccl_result (*comm_destroy)(xdt_nccl_comm comm);
    xdt_nccl_result (*comm_abort)(xdt_nccl_comm comm);
    xdt_nccl_result (*all_reduce)(const void *send, void *recv, size_t count, int datatype, int op,
                                  xdt_nccl_comm comm, void *stream);
    const char *(*get_error_string)(xdt_nccl_result result);
    const char *(*get_last_error)(xdt_nccl_comm comm);
} xdt_nccl_api;

/* "NCCL" or "RCCL". */
const char *xdt_nccl_vendor_name(xdt_nccl_vendor vendor);

/* The vendor whose library serves devices of memory type `mem` (CUDA: NVIDIA, HIP: AMD); false
 * for memory no such library reaches. */
bool xdt_nccl_vendor_of(xdt_mem_type mem, xdt_nccl_vendor *out);

/* Loads the vendor's library (once per process; later calls return the same table) and checks
 * its version. On failure says why in `why` (the names tried, dlopen's words, or the version
 * found) and returns XDT_ERR_UNSUPPORTED without reporting: callers that can do without (the
 * executor's automatic choice) stay quiet. `why` may be NULL. */
xdt_status xdt_nccl_api_try_load(xdt_nccl_vendor vendor, const xdt_nccl_api **out, char *why,
                                 size_t cap);

/* The same, reporting a failure in one line. */
xdt_status xdt_nccl_api_load(xdt_nccl_vendor vendor, const xdt_nccl_api **out);

#endif
