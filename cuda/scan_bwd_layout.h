// Launch geometry and shared-memory plan of the CUDA selective scan's backward kernel
// (scan_bwd.cuh), shared by the host launcher and the kernel.
//
// Work split as in the forward: a thread owns kS (2, 4 or 8) consecutive states of one row; the
// R lanes of a row are adjacent lanes of a warp; a block holds rows = nt / R channels of one
// (batch, group). The block walks the checkpoint intervals (64 steps) in reverse; an interval is
// covered by tiles of T steps (T divides 64) and sub-chunks of U steps (U divides T). Shared
// memory:
//   raw     one tile's inputs as stored (rows of u, delta, z, dout; states of variable B, C),
//           copied asynchronously: the next tile's copies fly while the block computes;
//   rowf    [T][rows] float4 (dt, dt u, dy, u), then (du, d delta, dz, -) once a step is done;
//   rowg    [T][rows] float2 (dout silu'(z), sigmoid(delta + bias));
//   B, C    [T][sb] floats (variable) or [rows][sb] (time-invariant), states at state_pos;
//   stack   [64 / U][nt][kS] floats: h at every sub-chunk start of the interval;
//   ex      [kX][2][rows][npad] floats (slab pitch ps): the dB / dC terms of kX steps;
//   sums    [2][kX][rows][R] floats: each lane's partial sums over its states of g B and
//           g exp(dt A) h_prev A of kX steps; ysum [U][rows][R]: partial C . h (for dz);
//   acc     [3][nt] floats: per-thread partial sums of dD, d delta_bias, scalar dA.
#pragma once

#include <algorithm>
#include <cstdint>

#include "scan_layout.h"

namespace s6kit::cuda_scan {

constexpr int kBwdMaxThreads = 128;
constexpr int kBwdExSteps = 4;              // steps per dB / dC exchange (kX)
constexpr int kBwdSmemBudget = 75 * 1024;   // 3 blocks per multiprocessor
// Below this many blocks the backward halves its blocks (down to one warp).
constexpr int64_t kBwdFewBlocks = 264;

// Sub-chunk length: the decays and states of U steps stay in registers (2 U kS floats).
__host__ __device__ constexpr int bwd_substeps(int kS) { return kS == 2 ? 16 : kS == 4 ? 8 : 4; }

// States per thread: 4, or 8 for N > 128, or as forced (2, 4, 8); at most 32 lanes per row.
// (S6KIT_CUDA_BWD_STATES forces a default at compile time, so that tests reach every layout.)
#ifndef S6KIT_CUDA_BWD_STATES
#define S6KIT_CUDA_BWD_STATES 0
#endif
inline int bwd_states_per_thread(const ScanParams& p, int forced) {
  if (forced == 0) forced = S6KIT_CUDA_BWD_STATES;
  int kS = forced != 0 ? forced : (p.dstate > 128 ? 8 : 4);
  while (kS * 32 < p.dstate) kS *= 2;
  return kS;
}

struct BwdLayout {
  int kS = 4, R = 1, log2R = 0;
  int rows = 1, log2rows = 0;  // rows per block (a power of two)
  int nt = 32;                 // threads per block (rows * R)
  int npad = 4;                // R * kS >= N
  int nq = 1;                  // float4 groups of states in a B / C row
  int T = 32, log2T = 5;       // steps per tile
  int U = 8;                   // steps per sub-chunk
  int es = 4, V = 4;           // bytes per stored element; elements per 16-byte chunk
  int cpr = 8, log2cpr = 3;    // 16-byte chunks per row and tile
  int rowp = 144;              // bytes per raw per-row array row (T * es + 16)
  int bcp = 128;               // bytes per raw B / C state row (T * es)
  int sb = 4;                  // floats per B / C row
  int exr = 4;                 // floats per row in the exchange (npad rounded up to 4)
  int ps = 0;                  // floats per (step, plane) slab of the exchange
  int exP = 1, log2exP = 0;    // rows of the exchange summed in parts by adjacent lanes
  // Byte offsets into dynamic shared memory (16-byte aligned); -1 when absent.
  int off_raw = -1;
  int raw_u = -1, raw_delta = -1, raw_z = -1, raw_dout = -1, raw_B = -1, raw_C = -1;
  int off_rowf = -1, off_rowg = -1, off_B = -1, off_C = -1, off_stack = -1;
  int off_ex = -1, off_sums = -1, off_ysum = -1, off_acc = -1, off_rowD = -1, off_rowBias = -1,
      off_rowA = -1;
  int smem_bytes = 0;
};

inline BwdLayout make_bwd_layout(const ScanParams& p, int kS, int nt, int T) {
  BwdLayout a;
  const int N = static_cast<int>(p.dstate);
  a.kS = kS;
  a.R = 1;
  while (a.R * kS < N) a.R *= 2;
  a.log2R = ilog2(a.R);
  a.nt = std::max(nt, a.R);
  a.rows = a.nt / a.R;
  a.log2rows = ilog2(a.rows);
  a.npad = a.R * kS;
  a.nq = (a.npad + 3) / 4;
  a.T = T;
  a.log2T = ilog2(T);
  a.U = std::min(bwd_substeps(kS), T);
  a.es = static_cast<int>(dtype_size(p.input_type));
  a.V = 16 / a.es;
  a.cpr = T / a.V;
  a.log2cpr = ilog2(a.cpr);
  a.rowp = T * a.es + 16;
  a.bcp = T * a.es;
  const int q = a.nq;
  a.sb = 4 * (q % 2 == 1 ? q : q + 1);
  // Exchange slab: rows * exr floats, padded so that slabs start in different banks. Its
  // reduction: kX * 2 * nq float4 sums over the rows, each split into exP parts (adjacent
  // lanes, combined by shuffles) so that the block's threads share the work.
  a.exr = 4 * a.nq;
  a.ps = a.rows * a.exr + 4;
  a.exP = 1;
  while (a.exP < 8 && a.exP < a.rows && kBwdExSteps * 2 * a.nq * a.exP * 2 <= a.nt) a.exP *= 2;
  a.log2exP = ilog2(a.exP);

  int off = 0;
  auto take = [&off](int bytes) {
    const int at = off;
    off += (bytes + 15) & ~15;
    return at;
  };
  int raw = 0;
  auto take_raw = [&raw](int bytes) {
    const int at = raw;
    raw += bytes;
    return at;
  };
  a.raw_u = take_raw(a.rows * a.rowp);
  a.raw_delta = take_raw(a.rows * a.rowp);
  if (p.has_z) a.raw_z = take_raw(a.rows * a.rowp);
  a.raw_dout = take_raw(a.rows * a.rowp);
  if (p.variable_B) a.raw_B = take_raw(N * a.bcp);
  if (p.variable_C) a.raw_C = take_raw(N * a.bcp);
  a.off_raw = take(raw);
  a.off_rowf = take(T * a.rows * 16);
  a.off_rowg = take(T * a.rows * 8);
  a.off_B = take((p.variable_B ? T : a.rows) * a.sb * 4);
  a.off_C = take((p.variable_C ? T : a.rows) * a.sb * 4);
  a.off_stack = take((kScanCheckpointInterval / a.U) * a.nt * kS * 4);
  if (p.variable_B || p.variable_C) a.off_ex = take(kBwdExSteps * 2 * a.ps * 4);
  a.off_sums = take(2 * kBwdExSteps * a.nt * 4);
  if (p.has_z) a.off_ysum = take(a.U * a.nt * 4);
  a.off_acc = take(3 * a.nt * 4);
  a.off_rowD = take(a.rows * 4);
  a.off_rowBias = take(a.rows * 4);
  a.off_rowA = take(a.rows * 4);
  a.smem_bytes = off;
  return a;
}

// The backward's layout for `p`: kS as bwd_states_per_thread, blocks of kBwdMaxThreads threads
// (fewer when that leaves few blocks, or to fit the budget), and the longest tile (32 or 16
// steps) within the budget; or kS and T as forced (benchmarks of the alternatives).
inline BwdLayout choose_bwd_layout(const ScanParams& p, int forced_kS = 0, int forced_T = 0) {
  const int kS = bwd_states_per_thread(p, forced_kS);
  int R = 1;
  while (R * kS < p.dstate) R *= 2;
  auto blocks = [&p, R](int nt) {
    const int64_t rows = nt / R;
    return p.batch * p.n_groups * ((p.dim_per_group + rows - 1) / rows);
  };
  int nt = kBwdMaxThreads;
  while (nt > 32 && nt > R && blocks(nt) < kBwdFewBlocks) nt /= 2;
  int T = forced_T != 0 ? forced_T : 32;
  BwdLayout a = make_bwd_layout(p, kS, nt, T);
  while (forced_T == 0 && a.smem_bytes > kBwdSmemBudget && (T > 16 || (nt > 32 && nt > R))) {
    if (T > 16)
      T /= 2;
    else
      nt /= 2;
    a = make_bwd_layout(p, kS, nt, T);
  }
  return a;
}

}  // namespace s6kit::cuda_scan
