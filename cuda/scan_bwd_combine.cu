// Launcher of the backward split's middle pass (kernel in scan_bwd_combine.cuh).
#include "cuda_check.h"
#include "scan_bwd_combine.cuh"
#include "scan_launch.h"

namespace s6kit::cuda_scan {

void launch_bwd_combine(const BwdCombine& a, cudaStream_t stream) {
  const int64_t count = a.rows * a.N;
  if (count == 0) return;
  const int threads = 256;
  const int64_t blocks = (count + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < kMaxGridBlocks ? blocks : kMaxGridBlocks);
  scan_bwd_combine_kernel<<<grid, threads, 0, stream>>>(a);
  cuda_check(cudaGetLastError(), "launch of scan_bwd_combine_kernel");
}

}  // namespace s6kit::cuda_scan
