// Final, fixed-order reductions of the backward's partial sums (see scan_bwd.cuh). Included by
// the translation unit that launches them only (scan_reduce.cu).
#pragma once

#include "scan_launch.h"

namespace s6kit::cuda_scan {

// Grid: (blocks over j, job).
__global__ void reduce_rows_kernel(const __grid_constant__ RowJobs jobs) {
  const RowReduction& job = jobs.job[blockIdx.y];
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < job.count;
       j += int64_t(gridDim.x) * blockDim.x) {
    float acc = 0.f;
    for (int64_t b = 0; b < jobs.batch; ++b) acc += job.part[b * job.count + j];
    job.out[j] = acc;
  }
}

// One block per (batch * group, 32 steps): sums the slots of each (step, state) (reads along the
// state, contiguous in the partials) and writes (state, step) through shared memory (writes along
// L, contiguous in dB / dC). Dynamic shared memory: kBcSmemBytes.
template <typename in_t>
__global__ void __launch_bounds__(kBcThreads) reduce_bc_kernel(const __grid_constant__ BcReduction a) {
  extern __shared__ float4 smem_f4[];
  float* const tile = reinterpret_cast<float*>(smem_f4);  // [N][kBcSteps + 1]
  const int N = a.N;
  const int64_t nlt = (a.L + kBcSteps - 1) / kBcSteps;
  for (int64_t blk = blockIdx.x; blk < a.groups * nlt; blk += gridDim.x) {
    const int64_t bg = blk / nlt;
    const int l0 = static_cast<int>(blk % nlt) * kBcSteps;
    for (int plane = 0; plane < 2; ++plane) {
      in_t* const out = static_cast<in_t*>(plane == 0 ? a.dB : a.dC);
      if (out == nullptr) continue;
      __syncthreads();  // the previous plane (or block) is done reading the tile
      for (int e = threadIdx.x; e < kBcSteps * N; e += kBcThreads) {
        const int n = e % N, ll = e / N, l = l0 + ll;
        float acc = 0.f;
        if (l < a.L)
          for (int64_t s = 0; s < a.slots; ++s)
            acc += a.part[(((bg * a.slots + s) * a.L + l) * 2 + plane) * N + n];
        tile[n * (kBcSteps + 1) + ll] = acc;
      }
      __syncthreads();
      for (int e = threadIdx.x; e < kBcSteps * N; e += kBcThreads) {
        const int ll = e % kBcSteps, n = e / kBcSteps, l = l0 + ll;
        if (l < a.L) out[(bg * N + n) * a.L + l] = from_float<in_t>(tile[n * (kBcSteps + 1) + ll]);
      }
    }
  }
}

}  // namespace s6kit::cuda_scan
