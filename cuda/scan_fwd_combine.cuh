// The middle pass of the forward split along L (scan_fwd.cuh): the chunk_states pass left in
// states[c] the final state of chunk c started from zero (chunk 0: from initial_state, so that one
// is already true) and in decays[c] the chunk's decay. One thread per (b, d, n) walks the chunks in
// order and makes every states[c] the true state at the end of chunk c:
//   H_0 = states[0],  H_c = exp(A_dn S_c) H_{c-1} + states[c]   (scalar A: P_c H_{c-1} + states[c])
// since h_l is linear in the state before the chunk with factor prod_l exp(dt_l A) = exp(A S_c)
// (paper eq. 2). float32, fixed order: deterministic. Included by scan_fwd_combine.cu only.
#pragma once

#include "scan_launch.h"

namespace s6kit::cuda_scan {

__global__ void scan_fwd_combine_kernel(const __grid_constant__ FwdCombine a) {
  const int64_t count = a.rows * a.N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t bd = i / a.N, n = i % a.N, d = bd % a.dim;
    const float A2 = a.scalar_A ? 0.f : a.A[d * a.A_dim_stride + n * a.A_state_stride] * kLog2e;
    float h = a.states[i];
    for (int64_t c = 1; c < a.nchunks - 1; ++c) {
      float* const s = a.states + c * count + i;
      const float dec = a.decays[c * a.rows + bd];
      h = fmaf(a.scalar_A ? dec : exp2f(A2 * dec), h, *s);
      *s = h;
    }
  }
}

}  // namespace s6kit::cuda_scan
