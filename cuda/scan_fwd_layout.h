// Launch geometry and shared-memory plan of the CUDA selective scan's forward kernel
// (scan_fwd.cuh), shared by the host launcher and the kernel.
//
// Work split: a thread owns kS (2, 4 or 8) consecutive states of one row (b, d); the R lanes of
// a row (R * kS >= N, R a power of two <= 32) are lanes of one warp, in the order of
// row_major_index (scan_device.cuh); a block of nt threads holds rows = nt / R consecutive channels
// of one (batch, group). The block walks L in tiles of T steps (T divides the checkpoint interval
// 64). Shared memory:
//   raw[2]  the inputs of a tile as stored (rows of u, delta, z; states of variable B, C), two
//           buffers: the next tile's asynchronous copies fly while the block works on this one.
//           Per-row arrays have a pitch of T * es + 16 bytes (an odd number of 16-byte words:
//           reading one 16-byte word of each of 8 consecutive rows is free of bank conflicts);
//   dtu     [T][rows] float2: (dt, dt u), or (exp(dt A), dt u) for scalar A;
//   B, C    [T][sb] floats (variable) or [rows][sb] (time-invariant), states at state_pos;
//   yp      [T / 4][rows][Rp] float4: each lane's partial sums C . h of four steps, added over
//           the R lanes of the row when the outputs are written (no shuffles in the recurrence);
//   src/dst the copy table of the staging: per copied row (u, delta, z of each channel, variable
//           B / C states) its source pointer and its offset in a raw buffer, set once per block.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>

#include "scan_layout.h"

namespace s6kit::cuda_scan {

constexpr int kFwdMaxThreads = 128;
constexpr int kFwdSmemBudget = 72 * 1024;  // 3 blocks per multiprocessor at the largest
// Blocks per multiprocessor the register allocation must allow (128 threads each): 64 registers
// per thread for kS = 2, 128 for kS = 4 and 8. The staged tiles of kS = 4 with z and variable
// B / C leave room for 4 blocks anyway (55 KB each in 16-bit storage); given 128 registers
// instead of 80 (6 blocks), its forward ran 2-6 % faster at most anchor shapes on an H100
// (bench/results/h100_extra/fwd_registers_ab.log). Shapes whose tiles take less shared memory
// (no z, time-invariant B / C) lose blocks per multiprocessor by it: not measured.
__host__ __device__ constexpr int fwd_min_blocks(int kS) { return kS == 2 ? 8 : 4; }
// Below this many blocks the forward halves its blocks (down to one warp), so that the few rows
// spread over more multiprocessors.
constexpr int64_t kFwdFewBlocks = 264;

// States per thread: 4 up to N = 32, 8 above (rows of at most 8 lanes up to N = 64, at most 32
// lanes always), but 2 for float32 storage up to N = 16 unless the 4-state grid ends in a nearly
// full wave (choose_fwd_layout); or as forced (2, 4, 8). Fewer states per thread give more threads
// (latency hiding) at more instructions per state and more lanes per row whose partial sums of y
// are added up. Measured on an H100 (bench/scan_cuda_bench --variants, bench/results/README.md):
// at (8, 1536, 2048, N) bf16, 4 states beat 2 and 8 at N = 16 (0.35 ms against 0.40 and 0.41) and
// 8 beat 4 at N = 64 (0.85 ms against 1.51). With float32 storage, whose staged tiles take twice
// the shared memory, 2 states in 16-step tiles (blocks of half the rows, twice as many per
// multiprocessor) beat 4 states in 32-step tiles by 3-46 % at the anchor shapes with N = 16 whose
// 4-state grid ends in a wave at most 73 % full, and lose by 6-15 % where it ends in one 85-97 %
// full: (8, 1536, 2048, 16) 0.417 against 0.357 ms, scalar A 0.397 against 0.336 ms
// (bench/results/h100_extra/fwd_fp32_layout_ab.log). (S6KIT_CUDA_FWD_STATES forces a default at
// compile time, so that tests reach every layout; choose_fwd_layout reads it.)
#ifndef S6KIT_CUDA_FWD_STATES
#define S6KIT_CUDA_FWD_STATES 0
#endif
inline bool fwd_prefers_two_states(const ScanParams& p) {
  return dtype_size(p.input_type) == 4 && p.dstate <= 16;
}
inline int fwd_states_per_thread(const ScanParams& p, int forced) {
  int kS = forced != 0 ? forced : fwd_prefers_two_states(p) ? 2 : (p.dstate > 32 ? 8 : 4);
  while (kS * 32 < p.dstate) kS *= 2;
  return kS;
}

struct FwdLayout {
  int kS = 4;       // states per thread
  int R = 1;        // lanes per row (power of two, <= 32)
  int log2R = 0;
  int rows = 1;     // rows per block (a power of two)
  int log2rows = 0;
  int nt = 32;      // threads per block (rows * R)
  int npad = 4;     // R * kS >= N (a power of two)
  int log2npad = 2;
  int T = 32;       // steps per tile
  int log2T = 5;
  int es = 4;       // bytes per stored element of u, delta, z, out, variable B / C
  int V = 4;        // elements per 16-byte chunk
  int cpr = 8;      // 16-byte chunks per row and tile (T / V)
  int log2cpr = 3;
  int rowp = 144;   // bytes per raw per-row array row (T * es + 16)
  int bcp = 128;    // bytes per raw B / C state row (T * es)
  int sb = 4;       // floats per B / C row (>= npad rounded up to 4, odd number of float4s)
  int Rp = 1;       // float4s per row in yp (R, odd)
  // Byte offsets into dynamic shared memory (16-byte aligned); -1 when absent.
  int off_raw[2] = {-1, -1};
  int raw_u = -1, raw_delta = -1, raw_z = -1, raw_B = -1, raw_C = -1;  // inside a raw buffer
  int off_dtu = -1, off_B = -1, off_C = -1, off_yp = -1;
  int off_rowD = -1, off_rowBias = -1, off_rowA = -1;
  int off_src = -1, off_dst = -1;
  int smem_bytes = 0;
};

inline FwdLayout make_fwd_layout(const ScanParams& p, int kS, int nt, int T) {
  FwdLayout a;
  const int N = static_cast<int>(p.dstate);
  a.kS = kS;
  a.R = 1;
  while (a.R * kS < N) a.R *= 2;
  a.log2R = ilog2(a.R);
  a.nt = std::max(nt, a.R);
  a.rows = a.nt / a.R;
  a.log2rows = ilog2(a.rows);
  // row_major_index swaps bits 1 and log2 R of the thread index for rows of 4 to 16 lanes: a warp
  // must hold two rows or more (nt >= 32).
  assert(a.R < 4 || a.R > 16 || (a.nt >= 32 && a.rows >= 2));
  a.npad = a.R * kS;
  a.log2npad = ilog2(a.npad);
  assert(T % 8 == 0);  // fwd_recurrence runs whole groups of eight steps
  a.T = T;
  a.log2T = ilog2(T);
  a.es = static_cast<int>(dtype_size(p.input_type));
  a.V = 16 / a.es;
  a.cpr = T / a.V;
  a.log2cpr = ilog2(a.cpr);
  a.rowp = T * a.es + 16;
  a.bcp = T * a.es;
  const int q = (a.npad + 3) / 4;
  a.sb = 4 * (q % 2 == 1 ? q : q + 1);
  a.Rp = a.R % 2 == 1 ? a.R : a.R + 1;

  int off = 0;
  auto take = [&off](int bytes) {
    const int at = off;
    off += (bytes + 15) & ~15;
    return at;
  };
  // One raw buffer: per-row arrays, then B / C state rows.
  int raw = 0;
  auto take_raw = [&raw](int bytes) {
    const int at = raw;
    raw += bytes;
    return at;
  };
  a.raw_u = take_raw(a.rows * a.rowp);
  a.raw_delta = take_raw(a.rows * a.rowp);
  if (p.has_z) a.raw_z = take_raw(a.rows * a.rowp);
  if (p.variable_B) a.raw_B = take_raw(N * a.bcp);
  if (p.variable_C) a.raw_C = take_raw(N * a.bcp);
  a.off_raw[0] = take(raw);
  a.off_raw[1] = take(raw);
  a.off_dtu = take(T * a.rows * 8);
  a.off_B = take((p.variable_B ? T : a.rows) * a.sb * 4);
  a.off_C = take((p.variable_C ? T : a.rows) * a.sb * 4);
  a.off_yp = take((T / 4) * a.rows * a.Rp * 16);
  a.off_rowD = take(a.rows * 4);
  a.off_rowBias = take(a.rows * 4);
  a.off_rowA = take(a.rows * 4);
  const int copied_rows = (p.has_z ? 3 : 2) * a.rows + (p.variable_B ? N : 0) + (p.variable_C ? N : 0);
  a.off_src = take(copied_rows * 8);
  a.off_dst = take(copied_rows * 4);
  a.smem_bytes = off;
  return a;
}

inline int64_t fwd_row_blocks(const ScanParams& p, const FwdLayout& lay) {
  return p.batch * p.n_groups * ((p.dim_per_group + lay.rows - 1) / lay.rows);
}

// Whether the grid of `lay` ends in a wave of blocks at least 80 % full (or in whole waves) on an
// H100.
inline bool fwd_last_wave_filled(const ScanParams& p, const FwdLayout& lay) {
  const int64_t wave = kSplitMultiprocessors *
                       blocks_per_multiprocessor(lay.smem_bytes, fwd_min_blocks(lay.kS),
                                                 kFwdMaxThreads, lay.nt);
  const int64_t last = fwd_row_blocks(p, lay) % wave;
  return last == 0 || last * 5 >= wave * 4;
}

// The forward's layout for `p` (choose_fwd adds the split along L): kS as fwd_states_per_thread
// (for float32 storage up to N = 16, 4 states where their grid's last wave is at least 80 % full,
// else 2), blocks of kFwdMaxThreads threads (fewer when that leaves few blocks, unless
// full_blocks: the split along L fills the machine with chunks instead), and the longest tile (32
// or 16 steps) within the budget; or kS and T (16, 32, 64) as forced (benchmarks of the
// alternatives).
inline FwdLayout choose_fwd_layout(const ScanParams& p, int forced_kS = 0, int forced_T = 0,
                                   bool full_blocks = false) {
  const int forced = forced_kS != 0 ? forced_kS : S6KIT_CUDA_FWD_STATES;
  const int kS = fwd_states_per_thread(p, forced);
  if (forced == 0 && kS == 2) {  // float32 storage, N <= 16: see fwd_states_per_thread
    const FwdLayout four = choose_fwd_layout(p, 4, forced_T, full_blocks);
    if (fwd_last_wave_filled(p, four)) return four;
  }
  int R = 1;
  while (R * kS < p.dstate) R *= 2;
  auto blocks = [&p, R](int nt) {
    const int64_t rows = nt / R;
    return p.batch * p.n_groups * ((p.dim_per_group + rows - 1) / rows);
  };
  int nt = kFwdMaxThreads;
  while (!full_blocks && nt > 32 && nt > R && blocks(nt) < kFwdFewBlocks) nt /= 2;
  // 32-step tiles, or 16 for the float32 two-state layout (see fwd_states_per_thread).
  int T = forced_T != 0 ? forced_T : (kS == 2 && fwd_prefers_two_states(p) ? 16 : 32);
  FwdLayout a = make_fwd_layout(p, kS, nt, T);
  while (forced_T == 0 && a.smem_bytes > kFwdSmemBudget && T > 16) {
    T /= 2;
    a = make_fwd_layout(p, kS, nt, T);
  }
  return a;
}

// Split along L (scan_fwd.cuh). Each warp's walk along L is latency bound, so row blocks of few
// warps leave the machine idle: when they hold fewer than S6KIT_CUDA_FWD_SPLIT_BELOW_WARPS warps
// (4 per multiprocessor of an H100) and L leaves chunks of at least S6KIT_CUDA_FWD_MIN_CHUNK
// steps, L is cut into chunks so that each of the split's two scanning passes is about one full
// wave of blocks of kFwdMaxThreads threads on an H100. Shapes with more warps keep the single
// pass. (The threshold and the chunk length are overridable at compile time, so that tests reach
// the split on small shapes.)
#ifndef S6KIT_CUDA_FWD_SPLIT_BELOW_WARPS
#define S6KIT_CUDA_FWD_SPLIT_BELOW_WARPS (132 * 4)
#endif
#ifndef S6KIT_CUDA_FWD_MIN_CHUNK
#define S6KIT_CUDA_FWD_MIN_CHUNK 1024
#endif
constexpr int64_t kFwdSplitBelowWarps = S6KIT_CUDA_FWD_SPLIT_BELOW_WARPS;
constexpr int64_t kFwdMinChunk = S6KIT_CUDA_FWD_MIN_CHUNK;

struct FwdChoice {
  FwdLayout lay;
  LSplit split;
};

// The forward's layout and split along L for `p`; forced_chunks > 0: about that many chunks
// (benchmarks; 1: no split).
inline FwdChoice choose_fwd(const ScanParams& p, int64_t forced_chunks = 0) {
  const int64_t L = p.seqlen;
  FwdChoice c;
  c.lay = choose_fwd_layout(p);
  const FwdLayout full = choose_fwd_layout(p, 0, 0, true);
  int64_t k = forced_chunks;
  if (k <= 0) {
    const int64_t warps = fwd_row_blocks(p, c.lay) * (c.lay.nt / 32);
    k = 1;
    if (warps < kFwdSplitBelowWarps && L >= 2 * kFwdMinChunk) {
      // Chunks 0 .. K - 2, then 1 .. K - 1, each pass one wave of the row blocks' chunks.
      const int64_t wave = kSplitMultiprocessors *
                           blocks_per_multiprocessor(full.smem_bytes, fwd_min_blocks(full.kS),
                                                     kFwdMaxThreads, full.nt);
      const int64_t rb = fwd_row_blocks(p, full);
      k = std::min(1 + (wave + rb - 1) / rb, L / kFwdMinChunk);
    }
  }
  c.split = split_along_L(L, k, c.lay.T);
  if (c.split.nchunks >= 2) c.lay = full;
  return c;
}

}  // namespace s6kit::cuda_scan
