// Launchers of the split along L's middle passes (kernels in scan_split_combine.cuh).
#include "cuda_check.h"
#include "scan_launch.h"
#include "scan_split_combine.cuh"

namespace s6kit::cuda_scan {
namespace {

void launch_combine(void (*kernel)(ChunkCombine), const ChunkCombine& a, const char* name,
                    cudaStream_t stream) {
  const int64_t count = a.rows * a.N;
  const int threads = 256;
  kernel<<<grid_size((count + threads - 1) / threads), threads, 0, stream>>>(a);
  cuda_check(cudaGetLastError(), name);
}

}  // namespace

void launch_fwd_combine(const ChunkCombine& a, cudaStream_t stream) {
  if (a.rows * a.N == 0 || a.nchunks < 3) return;  // two chunks: chunk 0's end state is true
  launch_combine(scan_fwd_combine_kernel, a, "launch of scan_fwd_combine_kernel", stream);
}

void launch_bwd_combine(const ChunkCombine& a, cudaStream_t stream) {
  if (a.rows * a.N == 0) return;
  launch_combine(scan_bwd_combine_kernel, a, "launch of scan_bwd_combine_kernel", stream);
}

}  // namespace s6kit::cuda_scan
