// Final, fixed-order reductions of the backward's partial sums (see scan_bwd.cuh).
#include "cuda_check.h"
#include "scan_device.cuh"
#include "scan_launch.h"

namespace s6kit::cuda_scan {
namespace {

constexpr int kMaxRowJobs = 5;

struct RowJobs {
  RowReduction job[kMaxRowJobs];
};

__global__ void reduce_rows_kernel(const __grid_constant__ RowJobs jobs, int64_t batch) {
  const RowReduction& job = jobs.job[blockIdx.y];
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < job.count;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t b = 0; b < batch; ++b) acc += job.part[b * job.count + j];
    job.out[j] = acc;
  }
}

constexpr int kBcSteps = 32;     // steps per block
constexpr int kBcThreads = 256;

// One block per (batch * group, 32 steps): sums the slots of each (step, state) (reads along the
// state, contiguous in the partials) and writes (state, step) through shared memory (writes
// along L, contiguous in dB / dC).
template <typename in_t>
__global__ void __launch_bounds__(kBcThreads)
    reduce_bc_kernel(const float* __restrict__ part, in_t* __restrict__ dB, in_t* __restrict__ dC,
                     int64_t groups, int64_t slots, int64_t L, int N) {
  __shared__ float tile[kMaxDstate][kBcSteps + 1];
  const int64_t nlt = (L + kBcSteps - 1) / kBcSteps;
  for (int64_t blk = blockIdx.x; blk < groups * nlt; blk += gridDim.x) {
    const int64_t bg = blk / nlt, l0 = (blk % nlt) * kBcSteps;
    for (int plane = 0; plane < 2; ++plane) {
      in_t* const out = plane == 0 ? dB : dC;
      if (out == nullptr) continue;
      __syncthreads();  // the previous plane's writes have read the tile
      for (int e = threadIdx.x; e < kBcSteps * N; e += kBcThreads) {
        const int n = e % N, ll = e / N;
        const int64_t l = l0 + ll;
        float acc = 0.f;
        if (l < L)
          for (int64_t s = 0; s < slots; ++s) acc += part[(((bg * slots + s) * L + l) * 2 + plane) * N + n];
        tile[n][ll] = acc;
      }
      __syncthreads();
      for (int e = threadIdx.x; e < kBcSteps * N; e += kBcThreads) {
        const int ll = e % kBcSteps, n = e / kBcSteps;
        const int64_t l = l0 + ll;
        if (l < L) out[(bg * N + n) * L + l] = from_float<in_t>(tile[n][ll]);
      }
    }
  }
}

unsigned grid_for(int64_t blocks) {
  return static_cast<unsigned>(blocks < kMaxGridBlocks ? (blocks > 0 ? blocks : 1) : kMaxGridBlocks);
}

}  // namespace

void launch_reduce_rows(const RowReduction* jobs, int njobs, int64_t batch, cudaStream_t stream) {
  if (njobs <= 0) return;
  if (njobs > kMaxRowJobs) throw std::runtime_error("s6kit CUDA selective scan: too many row reductions");
  RowJobs all;
  int64_t most = 0;
  for (int i = 0; i < njobs; ++i) {
    all.job[i] = jobs[i];
    most = jobs[i].count > most ? jobs[i].count : most;
  }
  if (most == 0) return;
  const int threads = 256;
  const int64_t blocks = (most + threads - 1) / threads;
  const dim3 grid(static_cast<unsigned>(blocks < 65535 ? blocks : 65535), static_cast<unsigned>(njobs));
  reduce_rows_kernel<<<grid, threads, 0, stream>>>(all, batch);
  cuda_check(cudaGetLastError(), "launch of reduce_rows_kernel");
}

void launch_reduce_bc(DType type, const float* part, void* dB, void* dC, int64_t groups,
                      int64_t slots, int64_t L, int N, cudaStream_t stream) {
  const int64_t blocks = groups * ((L + kBcSteps - 1) / kBcSteps);
  if (blocks == 0 || (dB == nullptr && dC == nullptr)) return;
  const unsigned grid = grid_for(blocks);
  switch (type) {
    case DType::f32:
      reduce_bc_kernel<float><<<grid, kBcThreads, 0, stream>>>(
          part, static_cast<float*>(dB), static_cast<float*>(dC), groups, slots, L, N);
      break;
    case DType::f16:
      reduce_bc_kernel<__half><<<grid, kBcThreads, 0, stream>>>(
          part, static_cast<__half*>(dB), static_cast<__half*>(dC), groups, slots, L, N);
      break;
    case DType::bf16:
      reduce_bc_kernel<__nv_bfloat16><<<grid, kBcThreads, 0, stream>>>(
          part, static_cast<__nv_bfloat16*>(dB), static_cast<__nv_bfloat16*>(dC), groups, slots, L, N);
      break;
    default:
      throw std::runtime_error("s6kit CUDA selective scan: unsupported dtype in reduce_bc");
  }
  cuda_check(cudaGetLastError(), "launch of reduce_bc_kernel");
}

}  // namespace s6kit::cuda_scan
