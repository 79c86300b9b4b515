// The middle pass of the backward split along L (scan_bwd.cuh): the chunk_adjoints pass left in
// adj[c] (c >= 1) the adjoint at the start of chunk c walked from 0 at its end, and in decays[c]
// the sum S_c of dt over the chunk. One thread per (b, d, n) walks the chunks in reverse order
// and makes every adj[c] the true adjoint at the END of chunk c:
//   G_{K-1} = d last_state (or 0),  G_{c-1} = exp(A_dn S_c) G_c + adj[c]
// since the adjoint at a chunk's start is linear in the one at its end with factor
// prod_l exp(dt_l A) = exp(A S_c) (A diagonal; paper eq. 2). float32, fixed order:
// deterministic. Included by scan_bwd_combine.cu only (and the emulation).
#pragma once

#include "scan_launch.h"

namespace s6kit::cuda_scan {

__global__ void scan_bwd_combine_kernel(const __grid_constant__ BwdCombine a) {
  const int64_t count = a.rows * a.N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bd = i / a.N, n = i % a.N, d = bd % a.dim;
    const float A2 = a.A[d * a.A_dim_stride + (a.scalar_A ? 0 : n * a.A_state_stride)] * kLog2e;
    float g = a.dlast != nullptr ? a.dlast[i] : 0.f;
    for (int64_t c = a.nchunks - 1; c >= 1; --c) {
      float* const s = a.adj + c * count + i;
      const float local = *s;
      *s = g;
      g = fmaf(exp2f(A2 * a.decays[c * a.rows + bd]), g, local);
    }
    a.adj[i] = g;
  }
}

}  // namespace s6kit::cuda_scan
