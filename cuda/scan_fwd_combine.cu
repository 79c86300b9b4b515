// Launcher of the forward split's middle pass (kernel in scan_fwd_combine.cuh).
#include "cuda_check.h"
#include "scan_fwd_combine.cuh"
#include "scan_launch.h"

namespace s6kit::cuda_scan {

void launch_fwd_combine(const FwdCombine& a, cudaStream_t stream) {
  const int64_t count = a.rows * a.N;
  if (count == 0 || a.nchunks < 3) return;
  const int threads = 256;
  const int64_t blocks = (count + threads - 1) / threads;
  const unsigned grid = static_cast<unsigned>(blocks < kMaxGridBlocks ? blocks : kMaxGridBlocks);
  scan_fwd_combine_kernel<<<grid, threads, 0, stream>>>(a);
  cuda_check(cudaGetLastError(), "launch of scan_fwd_combine_kernel");
}

}  // namespace s6kit::cuda_scan
