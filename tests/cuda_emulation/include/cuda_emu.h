// A CPU emulation of the small part of CUDA that s6kit's scan kernels use, so that the kernel
// sources in cuda/ compile with a host C++ compiler and run here, thread by thread:
//   * every CUDA thread of a block is a cooperative fiber; __syncthreads, __syncwarp and the warp
//     shuffles are real barriers (a shuffle exchanges values through a per-warp buffer), run in a
//     random order per round, so a missing barrier shows up as a wrong result;
//   * a barrier that not all threads of its scope reach (divergent __syncthreads, a shuffle
//     with lanes missing) is reported as a deadlock;
//   * shared memory is filled with NaN before every block, and the bytes past the block's
//     dynamic size are checked afterwards (out-of-bounds writes).
// Not emulated: anything the kernels do not use.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#include "s6kit/cpu/storage.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__
#define __restrict__

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3() = default;
  constexpr dim3(unsigned x_, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(8) float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) uint2 {
  unsigned x, y;
};

namespace emu {

extern dim3 g_block_idx, g_block_dim, g_grid_dim;
const dim3& thread_idx();
void sync_block();
void sync_warp();
float shfl_xor(float v, int lane_mask);

// Runs body() once per thread of every block of the grid (blocks one after another).
void run_grid(dim3 grid, dim3 block, size_t smem_bytes, const std::function<void()>& body);
// Largest grid the emulated launchers use, 0: none (a cap exercises the grid-stride loops).
unsigned max_grid();
void set_max_grid(unsigned blocks);
// Seed of the random fiber order (0: run in thread order).
void set_schedule_seed(unsigned seed);

}  // namespace emu

#define threadIdx (::emu::thread_idx())
#define blockIdx (::emu::g_block_idx)
#define blockDim (::emu::g_block_dim)
#define gridDim (::emu::g_grid_dim)
#define __syncthreads() ::emu::sync_block()
#define __syncwarp(...) ::emu::sync_warp()
#define __shfl_xor_sync(mask, v, off) ::emu::shfl_xor((v), (off))

inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }

// 16-bit storage: the CPU kernels' round-to-nearest-even conversions (bit-identical to CUDA's).
struct __half {
  uint16_t bits;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
inline float __half2float(__half h) { return s6kit::cpu::to_float(s6kit::cpu::f16_t{h.bits}); }
inline __half __float2half_rn(float f) { return {s6kit::cpu::to_f16(f).bits}; }
inline float __bfloat162float(__nv_bfloat16 h) { return s6kit::cpu::to_float(s6kit::cpu::bf16_t{h.bits}); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {s6kit::cpu::to_bf16(f).bits}; }

// Host API: synchronous, on host memory.
using cudaError_t = int;
constexpr cudaError_t cudaSuccess = 0;
using cudaStream_t = void*;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaMemcpyKind { cudaMemcpyDeviceToDevice = 3 };
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulation"; }
inline const char* cudaGetErrorString(cudaError_t) { return "emulation error"; }
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
inline cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t = nullptr) {
  std::memset(p, v, n);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t = nullptr) {
  std::memmove(d, s, n);
  return cudaSuccess;
}
template <typename F>
cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) {
  return cudaSuccess;
}
