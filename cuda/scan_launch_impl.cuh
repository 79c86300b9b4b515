// Definitions of launch_fwd / launch_bwd, instantiated once per storage dtype.
#pragma once

#include "cuda_check.h"
#include "scan_launch.h"

namespace s6kit::cuda_scan {

template <typename in_t>
void launch_fwd(const FwdArgs& args, cudaStream_t stream) {
  const auto kernel = fwd_kernel<in_t>(args);
  // The kernels stream their global data and do not rely on L1: the largest carveout.
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), args.lay.smem_bytes, true);
  kernel<<<grid_size(fwd_blocks(args)), args.lay.nt, args.lay.smem_bytes, stream>>>(args);
  cuda_check(cudaGetLastError(), "launch of scan_fwd_kernel");
}

template <typename in_t>
void launch_bwd(const BwdArgs& args, cudaStream_t stream) {
  const auto kernel = bwd_kernel<in_t>(args);
  allow_dynamic_smem(reinterpret_cast<const void*>(kernel), args.lay.smem_bytes, true);
  kernel<<<grid_size(bwd_blocks(args)), args.lay.nt, args.lay.smem_bytes, stream>>>(args);
  cuda_check(cudaGetLastError(), "launch of scan_bwd_kernel");
}

}  // namespace s6kit::cuda_scan
