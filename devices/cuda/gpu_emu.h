/* gpu_emu.h: a CPU emulation of the part of CUDA that the GPU backend's sources use, so that the
 * kernels themselves (indexing, masks, block reductions, shuffles, shared memory, the tiled GEMM)
 * run and are tested against the CPU backend on machines without a GPU. Selected by
 * gpu_vendor.h when XDT_GPU_EMU is defined; the sources compile unchanged as C++ (tests/gpu/
 * meson.build builds them into test_device_ops_emu, suite unit).
 *
 * A launch runs the grid block after block on the calling thread; the threads of a block are
 * ucontext fibers switched only at __syncthreads() and shuffles, so each block runs as the
 * hardware would let it (every thread reaches a barrier before any passes it). Shuffles exchange
 * through a per-thread slot between two barriers. Shared memory is `static`: one block at a
 * time. Memory is host memory, stream handles are accepted and ignored (work runs at once, in
 * order), copies are memcpy. Not fast: tests keep their sizes small. Not thread-safe: one launch at
 * a time per process. The warp-level exchanges (shuffles, mma, ldmatrix) wait for the whole block,
 * so they also act as __syncthreads() and cannot reveal a missing one, nor allow a warp to skip
 * them: every thread must reach each of them. */
#ifndef XDT_GPU_EMU_H
#define XDT_GPU_EMU_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include <mutex>
#include <tuple>
#include <unordered_map>
#include <utility>

#ifndef XDT_EMU_WARP_SIZE
#define XDT_EMU_WARP_SIZE 32
#endif

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(n)
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 {
    unsigned x, y, z;
};

inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

namespace xdt_emu {

constexpr int kMaxThreads = 1024;
constexpr size_t kStack = 64 * 1024;

struct state {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
    ucontext_t sched;
    ucontext_t fiber[kMaxThreads];
    char *stacks = nullptr;
    int status[kMaxThreads]; /* 0 runnable, 1 at a barrier, 2 done */
    int current = 0;
    unsigned char slot[kMaxThreads][8]; /* shuffle exchange */
    uint32_t mma_in[kMaxThreads][6];    /* mma_bf16_16816's operands, a then b */
    void (*body)(void *) = nullptr;
    void *body_arg = nullptr;
    int last_error = 0;
};

inline state &st() {
    static state s;
    return s;
}

/* Returns to the scheduler until every live thread of the block has arrived. */
inline void barrier() {
    state &s = st();
    s.status[s.current] = 1;
    swapcontext(&s.fiber[s.current], &s.sched);
}

inline void fiber_entry() {
    state &s = st();
    s.body(s.body_arg);
    s.status[s.current] = 2;
    /* uc_link returns to the scheduler */
}

/* Runs body(arg) as every thread of every block of the grid. */
inline void run_grid(dim3 grid, dim3 block, void (*body)(void *), void *arg) {
    state &s = st();
    const int n = (int)(block.x * block.y * block.z);
    if (n < 1 || n > kMaxThreads) {
        s.last_error = 9; /* cudaErrorInvalidConfiguration */
        return;
    }
    if (!s.stacks) s.stacks = static_cast<char *>(malloc(kStack * kMaxThreads));
    if (!s.stacks) {
        s.last_error = 2; /* cudaErrorMemoryAllocation: the threads' stacks */
        return;
    }
    s.body = body;
    s.body_arg = arg;
    s.block_dim = block;
    s.grid_dim = grid;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                s.block_idx = {bx, by, bz};
                for (int i = 0; i < n; i++) {
                    getcontext(&s.fiber[i]);
                    s.fiber[i].uc_stack.ss_sp = s.stacks + (size_t)i * kStack;
                    s.fiber[i].uc_stack.ss_size = kStack;
                    s.fiber[i].uc_link = &s.sched;
                    makecontext(&s.fiber[i], fiber_entry, 0);
                    s.status[i] = 0;
                }
                for (;;) {
                    bool live = false;
                    for (int i = 0; i < n; i++) {
                        if (s.status[i] != 0) continue;
                        s.current = i;
                        s.thread_idx = {(unsigned)i % block.x, (unsigned)i / block.x % block.y,
                                        (unsigned)i / (block.x * block.y)};
                        swapcontext(&s.sched, &s.fiber[i]);
                    }
                    for (int i = 0; i < n; i++)
                        if (s.status[i] == 1) {
                            s.status[i] = 0; /* everyone alive has arrived: pass the barrier */
                            live = true;
                        }
                    if (!live) break;
                }
            }
}

template <typename K, typename... A> struct launcher {
    K kernel;
    dim3 grid, block;
    void operator()(A... args) const {
        struct call {
            K k;
            std::tuple<A...> a;
        } c{kernel, std::tuple<A...>(args...)};
        run_grid(
            grid, block,
            [](void *p) { std::apply(static_cast<call *>(p)->k, static_cast<call *>(p)->a); }, &c);
    }
};

template <typename... A> launcher<void (*)(A...), A...> launch(dim3 g, dim3 b, void (*k)(A...)) {
    return {k, g, b};
}

template <typename T> inline T shfl_xor(T v, int lane) {
    static_assert(sizeof(T) <= 8, "shuffle of a wide type");
    state &s = st();
    const int me = s.current;
    memcpy(s.slot[me], &v, sizeof v);
    barrier();
    T r;
    memcpy(&r, s.slot[me ^ lane], sizeof r);
    barrier();
    return r;
}

/* The warp-wide mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 of 32 lanes, d += a b, on the
 * PTX ISA's fragment layout (lane = 4 group + tig): a (16 x 16, row-major) in 4 registers of two
 * bf16 each, {a[g][2tig..], a[g+8][2tig..], a[g][2tig+8..], a[g+8][2tig+8..]}; b (16 x 8) in 2,
 * {b[2tig..][g], b[2tig+8..][g]}; d (16 x 8) as {d[g][2tig], d[g][2tig+1], d[g+8][2tig],
 * d[g+8][2tig+1]}. The lower-indexed value of a pair sits in the low half. Every thread of the
 * block calls it together (an exchange between two barriers, as the shuffles). 32-lane warps
 * only. */
#if XDT_EMU_WARP_SIZE == 32
inline float bf16_half(uint32_t reg, int hi) {
    uint32_t u = (hi ? reg >> 16 : reg & 0xffffu) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

inline void mma_bf16_16816(float d[4], const uint32_t a[4], const uint32_t b[2]) {
    state &s = st();
    const int me = s.current, base = me - me % 32, lane = me % 32, g = lane / 4, tig = lane % 4;
    memcpy(s.mma_in[me], a, 4 * sizeof(uint32_t));
    memcpy(s.mma_in[me] + 4, b, 2 * sizeof(uint32_t));
    barrier();
    for (int e = 0; e < 4; e++) {
        const int row = g + (e >= 2 ? 8 : 0), col = 2 * tig + (e & 1);
        float sum = d[e];
        for (int kk = 0; kk < 16; kk++) {
            const uint32_t *al = s.mma_in[base + (row % 8) * 4 + (kk % 8) / 2];
            const uint32_t *bl = s.mma_in[base + col * 4 + (kk % 8) / 2];
            const float x = bf16_half(al[(row >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0)], kk & 1);
            const float y = bf16_half(bl[4 + (kk >= 8 ? 1 : 0)], kk & 1);
            sum += x * y;
        }
        d[e] = sum;
    }
    barrier();
}

/* The warp-wide ldmatrix.sync.aligned.m8n8.x4(.trans).shared.b16: lanes 8i..8i+7 give the
 * addresses of matrix i's eight rows (eight 16-bit values each); register i of lane 4g + tig gets
 * matrix i's row g, values 2tig and 2tig + 1, or with trans its column g, rows 2tig and 2tig + 1
 * (the lower-indexed value in the low half). Called by every thread of the block together. */
inline void ldmatrix_x4(uint32_t r[4], const uint16_t *row, bool trans) {
    state &s = st();
    const int me = s.current, base = me - me % 32, lane = me % 32, g = lane / 4, tig = lane % 4;
    static_assert(sizeof row <= sizeof s.slot[0], "an address fits a shuffle slot");
    if ((uintptr_t)row % 16) { /* the hardware faults on such rows */
        fprintf(stderr, "ldmatrix: row address %p is not 16-byte aligned\n", (const void *)row);
        abort();
    }
    memcpy(s.slot[me], &row, sizeof row);
    barrier();
    for (int i = 0; i < 4; i++) {
        uint32_t v[2];
        for (int h = 0; h < 2; h++) {
            const int rr = trans ? 2 * tig + h : g, cc = trans ? g : 2 * tig + h;
            const uint16_t *p;
            memcpy(&p, s.slot[base + 8 * i + rr], sizeof p);
            v[h] = p[cc];
        }
        r[i] = v[0] | v[1] << 16;
    }
    barrier();
}
#endif

} // namespace xdt_emu

#define threadIdx                (::xdt_emu::st().thread_idx)
#define blockIdx                 (::xdt_emu::st().block_idx)
#define blockDim                 (::xdt_emu::st().block_dim)
#define gridDim                  (::xdt_emu::st().grid_dim)
#define __syncthreads()          ::xdt_emu::barrier()
#define WARP_SIZE                XDT_EMU_WARP_SIZE
#define XDT_SHFL_XOR(v, lane)    ::xdt_emu::shfl_xor((v), (lane))
#define XDT_LAUNCH(g, b, s, ...) ((void)(s), ::xdt_emu::launch(dim3(g), dim3(b), __VA_ARGS__))

/* ---- the runtime API subset ---- */

typedef int cudaError_t;
typedef void *cudaStream_t;
enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorNotReady = 600,
};
enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
};
#define cudaStreamNonBlocking 1
#define cudaHostAllocMapped   2

/* Allocations above this fail as out of memory (a GPU's size, not the host's). */
#define XDT_EMU_MEMORY ((size_t)16 << 30)

/* Live allocations and their sizes: cudaMemGetInfo's free memory is XDT_EMU_MEMORY less these
 * (so tests can see what a backend allocates for itself). */
struct xdt_emu_heap {
    std::mutex lock;
    std::unordered_map<void *, size_t> sizes;
    size_t live = 0;
};
inline xdt_emu_heap &xdt_emu_heap_state() {
    static xdt_emu_heap h;
    return h;
}

inline cudaError_t xdt_emu_alloc(void **p, size_t n) {
    xdt_emu_heap &h = xdt_emu_heap_state();
    std::lock_guard<std::mutex> guard(h.lock);
    if (n > XDT_EMU_MEMORY - h.live || posix_memalign(p, 256, n ? n : 1) != 0) {
        ::xdt_emu::st().last_error = cudaErrorMemoryAllocation;
        return cudaErrorMemoryAllocation;
    }
    h.sizes[*p] = n;
    h.live += n;
    return cudaSuccess;
}
inline void xdt_emu_release(void *p) {
    if (!p) return;
    xdt_emu_heap &h = xdt_emu_heap_state();
    std::lock_guard<std::mutex> guard(h.lock);
    const auto it = h.sizes.find(p);
    if (it != h.sizes.end()) {
        h.live -= it->second;
        h.sizes.erase(it);
    }
    free(p);
}
inline cudaError_t cudaMalloc(void **p, size_t n) {
    return xdt_emu_alloc(p, n);
}
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t n) {
    return xdt_emu_alloc(reinterpret_cast<void **>(p), n);
}
inline cudaError_t cudaMallocHost(void **p, size_t n) {
    return xdt_emu_alloc(p, n);
}
inline cudaError_t cudaHostAlloc(void **p, size_t n, int) {
    return xdt_emu_alloc(p, n);
}
inline cudaError_t cudaHostGetDevicePointer(void **d, void *h, int) {
    *d = h;
    return cudaSuccess;
}
inline cudaError_t cudaFree(void *p) {
    xdt_emu_release(p);
    return cudaSuccess;
}
inline cudaError_t cudaFreeHost(void *p) {
    xdt_emu_release(p);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) {
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) {
    memset(p, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, int) {
    *s = reinterpret_cast<cudaStream_t>(1);
    return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t) {
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) {
    return cudaSuccess;
}
inline cudaError_t cudaStreamQuery(cudaStream_t) {
    return cudaSuccess; /* work runs at once */
}
/* Events: work runs at once, so an event records the host clock when it is recorded. */
struct xdt_emu_event {
    double ms;
};
typedef xdt_emu_event *cudaEvent_t;
inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = static_cast<cudaEvent_t>(calloc(1, sizeof(xdt_emu_event)));
    return *e ? cudaSuccess : cudaErrorMemoryAllocation;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t e) {
    free(e);
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    e->ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return cudaSuccess;
}
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}
inline cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
inline cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    xdt_emu_heap &h = xdt_emu_heap_state();
    std::lock_guard<std::mutex> guard(h.lock);
    *free_b = XDT_EMU_MEMORY - h.live;
    *total_b = XDT_EMU_MEMORY;
    return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
    int e = ::xdt_emu::st().last_error;
    ::xdt_emu::st().last_error = 0;
    return e;
}
inline const char *cudaGetErrorString(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "out of memory" : "emulated error";
}
inline const char *cudaGetErrorName(cudaError_t e) {
    return e == cudaErrorMemoryAllocation ? "cudaErrorMemoryAllocation" : "cudaError";
}

#endif
