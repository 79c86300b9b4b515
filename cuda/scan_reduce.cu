// Launchers of the final reductions (kernels in scan_reduce.cuh).
#include "cuda_check.h"
#include "scan_launch.h"
#include "scan_reduce.cuh"

namespace s6kit::cuda_scan {

void launch_reduce_rows(const RowReduction* jobs, int njobs, int64_t batch, cudaStream_t stream) {
  if (njobs <= 0) return;
  if (njobs > kMaxRowJobs) throw std::runtime_error("s6kit CUDA selective scan: too many row reductions");
  RowJobs all;
  all.batch = batch;
  int64_t most = 0;
  for (int i = 0; i < njobs; ++i) {
    all.job[i] = jobs[i];
    most = jobs[i].count > most ? jobs[i].count : most;
  }
  if (most == 0) return;
  const int threads = 256;
  const int64_t blocks = (most + threads - 1) / threads;
  const dim3 grid(static_cast<unsigned>(blocks < 65535 ? blocks : 65535), static_cast<unsigned>(njobs));
  reduce_rows_kernel<<<grid, threads, 0, stream>>>(all);
  cuda_check(cudaGetLastError(), "launch of reduce_rows_kernel");
}

void launch_reduce_bc(DType type, const BcReduction& a, cudaStream_t stream) {
  const int64_t blocks = a.groups * ((a.L + kBcSteps - 1) / kBcSteps);
  if (blocks == 0 || (a.dB == nullptr && a.dC == nullptr)) return;
  const unsigned grid = grid_size(blocks);
  switch (type) {
    case DType::f32:
      reduce_bc_kernel<float><<<grid, kBcThreads, kBcSmemBytes, stream>>>(a);
      break;
    case DType::f16:
      reduce_bc_kernel<__half><<<grid, kBcThreads, kBcSmemBytes, stream>>>(a);
      break;
    case DType::bf16:
      reduce_bc_kernel<__nv_bfloat16><<<grid, kBcThreads, kBcSmemBytes, stream>>>(a);
      break;
    default:
      throw std::runtime_error("s6kit CUDA selective scan: unsupported dtype in reduce_bc");
  }
  cuda_check(cudaGetLastError(), "launch of reduce_bc_kernel");
}

}  // namespace s6kit::cuda_scan
