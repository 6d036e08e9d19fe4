/* gpu_vendor.h: the one header the GPU kernel sources include for runtime, BLAS and warp names.
 * Written against CUDA's names; under HIP (hipcc defines __HIP_PLATFORM_AMD__, the build adds
 * XDT_GPU_HIP) they are renamed to HIP's, as ggml's vendors/hip.h does, so that
 * devices/cuda/ *.cu compile unchanged for AMD GPUs.
 *
 * It also names the backend a translation unit belongs to, so that the CUDA and the HIP builds
 * of the same sources can live in one binary: XDT_GPU_NS (C++ namespace of everything inside),
 * XDT_GPU_CREATE (the exported constructor), XDT_GPU_MEM (memory type), XDT_GPU_PREFIX ("cuda",
 * "hip").
 *
 * XDT_GPU_HAVE_BLAS: GEMMs go to cuBLAS (always under CUDA) or hipBLAS (when the build found it,
 * -DXDT_GPU_HIPBLAS); without it the backend uses its own tiled GEMM kernel (gpu_gemm.cu).
 * XDT_GPU_BLAS_BF16: the BLAS runs the bf16 GEMM mode (cuBLAS, on bf16 copies of the
 * operands: gpu_gemm.cu); where it cannot (hipBLAS of ROCm 5), bf16 GEMMs run in the tiled
 * kernel.
 *
 * XDT_GPU_HAVE_BLASLT: cuBLASLt is there for GEMMs with a fused bias (CUDA; the 32-lane
 * emulation's stand-in, gpu_emu_blas.h); elsewhere the bias is added by a kernel after the GEMM.
 *
 * XDT_GPU_HAVE_MMA_BF16: the warp-level bf16 tensor-core product mma.sync.m16n8k16 exists
 * (CUDA, for devices of compute capability 8.0 and up; the CPU emulation with 32-lane warps), for
 * the bf16 flash attention (gpu_flash_attention_mma.cu). Not on HIP.
 *
 * WARP_SIZE: 32 on NVIDIA; on AMD the wavefront of the architecture being compiled (64 on CDNA
 * such as gfx908/gfx90a, 32 on RDNA such as gfx1030). Kernels use it only inside warp-level
 * reductions; launch shapes never depend on it (blocks are multiples of 64). */
#ifndef XDT_GPU_VENDOR_H
#define XDT_GPU_VENDOR_H

/* XDT_LAUNCH(grid, block, stream, kernel)(args...) queues a kernel: CUDA's and HIP's
 * kernel<<<grid, block, 0, stream>>>(args...), written as a macro so that the CPU emulation can
 * run the same line (the kernel comes last so that template arguments may hold commas). */

#if defined(XDT_GPU_EMU) /* CPU emulation for tests without a GPU (gpu_emu.h) */
#include "devices/cuda/gpu_emu.h"
#define XDT_GPU_NS     xdt_gpuemu
#define XDT_GPU_CREATE xdt_gpuemu_device_create
#define XDT_GPU_MEM    XDT_MEM_HOST
#define XDT_GPU_PREFIX "emu"
#define XDT_GPU_RT     "emulated GPU"
#if XDT_EMU_WARP_SIZE == 32 /* the CUDA flavour: with (emulated) cuBLAS and cuBLASLt */
#include "devices/cuda/gpu_emu_blas.h"
#define XDT_GPU_HAVE_BLAS   1
#define XDT_GPU_BLAS_NAME   "cuBLAS (emulated)"
#define XDT_GPU_BLAS_BF16   1
#define XDT_GPU_HAVE_BLASLT 1
#endif

#elif defined(XDT_GPU_HIP) || defined(__HIP_PLATFORM_AMD__)
#ifndef XDT_GPU_HIP
#define XDT_GPU_HIP 1
#endif
#include <hip/hip_runtime.h>

#define XDT_GPU_NS     xdt_hip
#define XDT_GPU_CREATE xdt_hip_device_create
#define XDT_GPU_MEM    XDT_MEM_HIP
#define XDT_GPU_PREFIX "hip"
#define XDT_GPU_RT     "HIP"

/* The wavefront of the architecture being compiled: the compiler's macro (spelled two ways, the
 * older deprecated in newer ROCm), else by family (RDNA, gfx10-12, runs wave32 by default), else
 * 64 (GCN, CDNA; also the host pass, where no kernel runs). */
#if defined(__AMDGCN_WAVEFRONT_SIZE__)
#define WARP_SIZE __AMDGCN_WAVEFRONT_SIZE__
#elif defined(__AMDGCN_WAVEFRONT_SIZE)
#define WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__GFX10__) || defined(__GFX11__) || defined(__GFX12__)
#define WARP_SIZE 32
#else
#define WARP_SIZE 64
#endif
/* HIP's shuffles act on the whole wavefront and take no mask. */
#define XDT_SHFL_XOR(v, lane)    __shfl_xor((v), (lane))
#define XDT_LAUNCH(g, b, s, ...) __VA_ARGS__<<<(g), (b), 0, (s)>>>

#define cudaDeviceProp              hipDeviceProp_t
#define cudaError_t                 hipError_t
#define cudaErrorInsufficientDriver hipErrorInsufficientDriver
#define cudaErrorInvalidDevice      hipErrorInvalidDevice
#define cudaErrorInvalidValue       hipErrorInvalidValue
#define cudaErrorMemoryAllocation   hipErrorOutOfMemory
#define cudaErrorNoDevice           hipErrorNoDevice
#define cudaErrorNotReady           hipErrorNotReady
#define cudaEventCreate             hipEventCreate
#define cudaEventDestroy            hipEventDestroy
#define cudaEventElapsedTime        hipEventElapsedTime
#define cudaEventRecord             hipEventRecord
#define cudaEvent_t                 hipEvent_t
#define cudaFree                    hipFree
#define cudaFreeHost                hipHostFree
#define cudaGetDevice               hipGetDevice
#define cudaGetDeviceCount          hipGetDeviceCount
#define cudaGetDeviceProperties     hipGetDeviceProperties
#define cudaGetErrorName            hipGetErrorName
#define cudaGetErrorString          hipGetErrorString
#define cudaGetLastError            hipGetLastError
#define cudaHostAlloc               hipHostMalloc
#define cudaHostAllocMapped         hipHostMallocMapped
#define cudaHostGetDevicePointer    hipHostGetDevicePointer
#define cudaMalloc                  hipMalloc
#define cudaMallocHost(p, n)        hipHostMalloc((p), (n), hipHostMallocDefault)
#define cudaMemGetInfo              hipMemGetInfo
#define cudaMemcpyAsync             hipMemcpyAsync
#define cudaMemcpyDeviceToDevice    hipMemcpyDeviceToDevice
#define cudaMemcpyDeviceToHost      hipMemcpyDeviceToHost
#define cudaMemcpyHostToDevice      hipMemcpyHostToDevice
#define cudaMemsetAsync             hipMemsetAsync
#define cudaSetDevice               hipSetDevice
#define cudaStreamCreateWithFlags   hipStreamCreateWithFlags
#define cudaStreamDestroy           hipStreamDestroy
#define cudaStreamNonBlocking       hipStreamNonBlocking
#define cudaStreamQuery             hipStreamQuery
#define cudaStreamSynchronize       hipStreamSynchronize
#define cudaStream_t                hipStream_t
#define cudaSuccess                 hipSuccess

#if defined(XDT_GPU_HIPBLAS)
#define XDT_GPU_HAVE_BLAS 1
#define XDT_GPU_BLAS_NAME "hipBLAS"
#if __has_include(<hipblas/hipblas.h>)
#include <hipblas/hipblas.h>
#else
#include <hipblas.h>
#endif
#define CUBLAS_DEFAULT_MATH            0 /* hipBLAS has no math modes: fp32 is computed in fp32 */
#define CUBLAS_TF32_TENSOR_OP_MATH     0
#define CUBLAS_OP_N                    HIPBLAS_OP_N
#define CUBLAS_OP_T                    HIPBLAS_OP_T
#define CUBLAS_STATUS_ALLOC_FAILED     HIPBLAS_STATUS_ALLOC_FAILED
#define CUBLAS_STATUS_ARCH_MISMATCH    HIPBLAS_STATUS_ARCH_MISMATCH
#define CUBLAS_STATUS_EXECUTION_FAILED HIPBLAS_STATUS_EXECUTION_FAILED
#define CUBLAS_STATUS_INTERNAL_ERROR   HIPBLAS_STATUS_INTERNAL_ERROR
#define CUBLAS_STATUS_INVALID_VALUE    HIPBLAS_STATUS_INVALID_VALUE
#define CUBLAS_STATUS_MAPPING_ERROR    HIPBLAS_STATUS_MAPPING_ERROR
#define CUBLAS_STATUS_NOT_INITIALIZED  HIPBLAS_STATUS_NOT_INITIALIZED
#define CUBLAS_STATUS_NOT_SUPPORTED    HIPBLAS_STATUS_NOT_SUPPORTED
#define CUBLAS_STATUS_SUCCESS          HIPBLAS_STATUS_SUCCESS
#define cublasCreate                   hipblasCreate
#define cublasDestroy                  hipblasDestroy
#define cublasHandle_t                 hipblasHandle_t
#define cublasOperation_t              hipblasOperation_t
#define cublasSetMathMode(h, m)        ((void)(h), (void)(m), HIPBLAS_STATUS_SUCCESS)
#define cublasSetStream                hipblasSetStream
#define cublasSgemm                    hipblasSgemm
#define cublasSgemmStridedBatched      hipblasSgemmStridedBatched
#define cublasStatus_t                 hipblasStatus_t
#endif

#else /* CUDA */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#define XDT_GPU_NS          xdt_cuda
#define XDT_GPU_CREATE      xdt_cuda_device_create
#define XDT_GPU_MEM         XDT_MEM_CUDA
#define XDT_GPU_PREFIX      "cuda"
#define XDT_GPU_RT          "CUDA"
#define XDT_GPU_HAVE_BLAS   1
#define XDT_GPU_BLAS_NAME   "cuBLAS"
#define XDT_GPU_BLAS_BF16   1
#define XDT_GPU_HAVE_BLASLT 1

#define WARP_SIZE                32
#define XDT_SHFL_XOR(v, lane)    __shfl_xor_sync(0xffffffffu, (v), (lane))
#define XDT_LAUNCH(g, b, s, ...) __VA_ARGS__<<<(g), (b), 0, (s)>>>
#endif

#ifndef XDT_GPU_HAVE_BLAS
#define XDT_GPU_HAVE_BLAS 0
#define XDT_GPU_BLAS_NAME "none"
#endif
#ifndef XDT_GPU_BLAS_BF16
#define XDT_GPU_BLAS_BF16 0
#endif
#ifndef XDT_GPU_HAVE_BLASLT
#define XDT_GPU_HAVE_BLASLT 0
#endif
#if !defined(XDT_GPU_HIP) && (!defined(XDT_GPU_EMU) || XDT_EMU_WARP_SIZE == 32)
#define XDT_GPU_HAVE_MMA_BF16 1
#else
#define XDT_GPU_HAVE_MMA_BF16 0
#endif

#endif
