// Pieces of the CUDA selective scan's launch geometry shared by the forward and backward
// layouts (scan_fwd_layout.h, scan_bwd_layout.h): limits, the order of a thread's states in
// shared memory, small integer helpers.
#pragma once

#include <cstdint>

#include "s6kit/scan_params.h"

namespace s6kit::cuda_scan {

constexpr int kMaxDstate = 256;

// Position of state n in a shared-memory row of B, C or the dB / dC exchange. With kS <= 4 a
// thread's states are contiguous (n itself: one 8- or 16-byte read); with kS = 8 thread `slice`
// reads its states as two float4s at ((h * R + slice) * 4), h < 2, so that the lanes of a warp
// read consecutive 16-byte words.
__host__ __device__ inline int state_pos(int n, int kS, int R) {
  if (kS <= 4) return n;
  const int slice = n / kS, i = n % kS;
  return ((i >> 2) * R + slice) * 4 + (i & 3);
}

inline int ilog2(int x) {
  int r = 0;
  while ((1 << r) < x) ++r;
  return r;
}

}  // namespace s6kit::cuda_scan
