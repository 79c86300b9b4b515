// Definitions of launch_fwd / launch_bwd, instantiated once per storage dtype.
#pragma once

#include <map>
#include <mutex>
#include <utility>

#include "cuda_check.h"
#include "scan_launch.h"

namespace s6kit::cuda_scan {

namespace detail {

// Dynamic shared memory above the default 48 KB must be allowed per kernel; and the kernels want
// the largest shared-memory carveout (several blocks of up to ~72 KB per multiprocessor; they
// stream their global data and do not rely on L1). Each setting is a driver call, so the size
// granted per device and kernel is remembered and only ever raised.
template <typename Kernel>
void set_smem(Kernel kernel, int bytes) {
  static std::mutex mutex;
  static std::map<std::pair<int, const void*>, int> granted;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  int& have = granted[{device, reinterpret_cast<const void*>(kernel)}];  // 0: nothing set yet
  if (have > 0 && bytes <= have) return;
  if (bytes > 48 * 1024)
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
               "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  int(cudaSharedmemCarveoutMaxShared)),
             "cudaFuncSetAttribute(PreferredSharedMemoryCarveout)");
  have = bytes > 0 ? bytes : 1;
}

}  // namespace detail

template <typename in_t>
void launch_fwd(const FwdArgs& args, cudaStream_t stream) {
  const auto kernel = fwd_kernel<in_t>(args);
  detail::set_smem(kernel, args.lay.smem_bytes);
  kernel<<<grid_size(fwd_blocks(args)), args.lay.nt, args.lay.smem_bytes, stream>>>(args);
  cuda_check(cudaGetLastError(), "launch of scan_fwd_kernel");
}

template <typename in_t>
void launch_bwd(const BwdArgs& args, cudaStream_t stream) {
  const auto kernel = bwd_kernel<in_t>(args);
  detail::set_smem(kernel, args.lay.smem_bytes);
  kernel<<<grid_size(bwd_blocks(args)), args.lay.nt, args.lay.smem_bytes, stream>>>(args);
  cuda_check(cudaGetLastError(), "launch of scan_bwd_kernel");
}

}  // namespace s6kit::cuda_scan
