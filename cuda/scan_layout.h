// Launch geometry of the CUDA selective scan's backward kernel (scan_bwd.cuh), shared by the host
// launcher and the kernel, and the helpers the forward's layout (scan_fwd_layout.h) uses too.
//
// Work split of the backward:
//   * a thread owns kS consecutive states of one row (b, d); the R = ceil(N / kS) lanes of a row
//     (rounded up to a power of two) are lanes of one warp, adjacent, or for scalar A up to
//     N = 16 in the order of row_major_index (scan_device.cuh), so per-step sums over the states
//     are xor-shuffles inside the warp;
//   * a block holds `rows` consecutive channels of one (batch, group): B and C of that group are
//     staged in shared memory once per time tile for all of them;
//   * the block walks L in tiles of T steps (T divides the checkpoint interval 64). Per tile it
//     stages the per-row inputs ([T][rows + 1] floats, padded so that both the coalesced loads
//     along L and the per-step reads across rows are free of bank conflicts) and B / C
//     ([T][sb] floats, float4 rows).
#pragma once

#include <algorithm>
#include <cstdint>

#include "s6kit/scan_params.h"

namespace s6kit::cuda_scan {

constexpr int kMaxDstate = 256;
constexpr int kMaxThreads = 128;    // threads of the largest block
constexpr int kExchangeSteps = 4;   // backward: steps of dB / dC partials reduced at once
constexpr int kSmemBudget = 72 * 1024;  // keeps 3 blocks of 128 threads on a 228 KB multiprocessor

// States per thread of the backward: 4 up to N = 128 (its per-thread registers grow with the
// states), 8 above (at most 32 lanes per row), and 2 where bwd_prefers_two_states says so (the
// launcher's choice); or as forced (2 up to N = 64, 4 up to N = 128, 8).
// (S6KIT_CUDA_BWD_STATES forces a default at compile time, so that tests reach every layout;
// plan_bwd reads it.)
#ifndef S6KIT_CUDA_BWD_STATES
#define S6KIT_CUDA_BWD_STATES 0
#endif
inline int bwd_states_per_thread(const ScanParams& p, int forced = 0) {
  if (forced == 2 && p.dstate <= 64) return 2;
  if (forced == 4 && p.dstate <= 128) return 4;
  if (forced == 8) return 8;
  return p.dstate > 128 ? 8 : 4;
}
// Backward: the tile is recomputed in sub-chunks of U steps whose states and decays stay in
// registers; the tile is at most bwd_max_tile steps (64 for kS = 2 and 4, 16 for kS = 8).
__host__ __device__ constexpr int bwd_substeps(int kS) { return kS == 8 ? 4 : 8; }
__host__ __device__ constexpr int bwd_max_tile(int kS) { return kS == 8 ? 16 : 64; }
// The states at the sub-chunk starts: with kS = 4 (registers are tight) every bwd_stack_skip-th
// on a register stack, the others in shared memory (Layout::off_odd); all in registers otherwise.
__host__ __device__ constexpr int bwd_stack_skip(int kS) { return kS == 4 ? 2 : 1; }

// Position of state n in a shared-memory row of B, C or the dB / dC exchange. With kS <= 4 a
// thread's states are contiguous (n itself: one 8- or 16-byte read); with kS = 8 thread `slice`
// reads its states as two float4s at ((h * R + slice) * 4), h < 2, so that the lanes of a warp
// read consecutive 16-byte words.
__host__ __device__ inline int state_pos(int n, int kS, int R) {
  if (kS <= 4) return n;
  const int slice = n / kS, i = n % kS;
  return ((i >> 2) * R + slice) * 4 + (i & 3);
}

struct Layout {
  int kS = 4;        // states per thread
  int R = 1;         // lanes per row (power of two, <= 32)
  int log2R = 0;
  int rows = 1;      // rows (channels) per block
  int nt = 32;       // threads per block = rows * R
  int npad = 4;      // max(4, R * kS) >= N
  int log2npad = 2;
  int T = 64;        // steps per tile (16, 32 or 64)
  int log2T = 6;
  int rp = 2;        // row pitch of the per-row arrays: rows + 1 (odd: no bank conflicts)
  int sb = 12;       // row pitch of B / C rows: a multiple of 4 whose quarter is odd
  int ps = 0;        // pitch of one (step, plane) slab of the dB / dC exchange
  // Offsets (in floats, 16-byte aligned) into dynamic shared memory; -1 when absent.
  int off_dt = -1, off_u = -1;
  int off_dy = -1, off_zf = -1;  // dy, dz factor
  int off_odd = -1;  // [slot][state][thread]: h at the sub-chunk starts off the register stack
  int off_B = -1, off_C = -1, off_ex = -1;
  int off_inv = -1;  // [plane][row][state] sums of time-invariant dB / dC
  int off_rowD = -1, off_rowBias = -1;
  int smem_bytes = 0;
};

inline int ilog2(int x) {
  int r = 0;
  while ((1 << r) < x) ++r;
  return r;
}

inline Layout make_layout(const ScanParams& p, int T, int kS) {
  Layout a;
  const int N = static_cast<int>(p.dstate);
  a.kS = kS;  // bwd_states_per_thread keeps R = N / kS at most 32
  a.R = 1;
  while (a.R * a.kS < N) a.R *= 2;
  a.log2R = ilog2(a.R);
  a.nt = std::min(kMaxThreads, 32 * a.R);
  a.rows = a.nt / a.R;
  a.npad = std::max(4, a.R * a.kS);  // whole float4 groups of B / C (kS = 2 with N <= 2)
  a.log2npad = ilog2(a.npad);
  a.T = T;
  a.log2T = ilog2(T);
  a.rp = a.rows + 1;
  const int q = a.npad / 4;
  a.sb = 4 * (q + (q % 2 == 0 ? 1 : 2));
  int off = 0;
  auto alloc = [&off](int floats) {
    const int at = off;
    off += (floats + 3) & ~3;
    return at;
  };
  const int per_row = T * a.rp;
  a.off_dt = alloc(per_row);
  a.off_u = alloc(per_row);
  a.off_dy = alloc(per_row);
  if (p.has_z) a.off_zf = alloc(per_row);
  const int skip = bwd_stack_skip(kS);
  if (skip > 1) a.off_odd = alloc(T / bwd_substeps(kS) / skip * (skip - 1) * kS * a.nt);
  // Variable B/C: one row per step; time-invariant B/C: one row per channel.
  a.off_B = alloc((p.variable_B ? T : a.rows) * a.sb);
  a.off_C = alloc((p.variable_C ? T : a.rows) * a.sb);
  // dB / dC exchange, [step][plane][row][state]; the slab pitch keeps the reduction's reads
  // conflict-free when one warp spans several slabs (npad < 32).
  a.ps = ((a.rows * a.npad + 31) & ~31) + (a.npad < 32 ? a.npad : 0);
  a.off_ex = alloc(kExchangeSteps * 2 * a.ps);
  if (!p.variable_B || !p.variable_C) a.off_inv = alloc(2 * a.rows * a.npad);
  a.off_rowD = alloc(a.rows);
  a.off_rowBias = alloc(a.rows);
  a.smem_bytes = off * 4;
  return a;
}

// The largest tile (64, 32 or 16 steps) whose shared memory fits the budget; forced_kS: see
// bwd_states_per_thread.
inline Layout choose_layout(const ScanParams& p, int forced_kS = 0) {
  const int kS = bwd_states_per_thread(p, forced_kS);
  int T = bwd_max_tile(kS);
  Layout a = make_layout(p, T, kS);
  while (a.smem_bytes > kSmemBudget && T > 16) {
    T /= 2;
    a = make_layout(p, T, kS);
  }
  return a;
}

// Whether the backward reduces its variable dB / dC exchange four consecutive states per item
// (scan_bwd.cuh, reduce_exchange; a separate kernel instance): with 8 states per thread (N > 128),
// and with 4 from 64 padded states per row (N > 32) up. Measured on an H100, bf16 backward:
// (8, 1536, 2048, 64) 8.82 -> 6.24 ms, (4, 1536, 2048, 128) 22.0 -> 13.4 ms, (2, 1536, 2048, 256)
// 24.5 -> 15.4 ms; at N = 16, where a thread has one state per item and an item per thread,
// reducing by four states was 3-11 % slower (bench/results/h100_extra/bwd_reduce_quads_ab.log).
inline bool bwd_reduces_quads(const Layout& lay) {
  return lay.kS == 8 || (lay.kS == 4 && lay.npad >= 64);
}

// A split along L (both directions): nchunks chunks of chunk_len steps, a multiple of the
// checkpoint interval (so of every tile length); nchunks = 1: no split, one chunk of L rounded up
// to the tile.
struct LSplit {
  int64_t nchunks = 1;
  int64_t chunk_len = 0;
};

// L cut into about k chunks (k < 2, or chunks that would all fall into one: no split).
inline LSplit split_along_L(int64_t L, int64_t k, int T) {
  const int64_t ival = kScanCheckpointInterval;
  LSplit s;
  if (k >= 2) {
    s.chunk_len = ((L + k - 1) / k + ival - 1) / ival * ival;
    s.nchunks = (L + s.chunk_len - 1) / s.chunk_len;
  }
  if (s.nchunks < 2) {
    s.nchunks = 1;
    s.chunk_len = (L + T - 1) / T * T;
  }
  return s;
}

// Both directions' splits along L size their chunks for one wave of blocks on an H100 SXM.
constexpr int64_t kSplitMultiprocessors = 132;
constexpr int64_t kSmemPerMultiprocessor = 232448;  // bytes a multiprocessor's blocks may use
constexpr int64_t kSmemReservedPerBlock = 1024;

// Blocks of `nt` threads one multiprocessor holds at once: bounded by shared memory (smem_bytes per
// block), by the registers (the kernel's launch bounds promise min_blocks blocks of bound_threads
// threads) and by 32.
inline int64_t blocks_per_multiprocessor(int smem_bytes, int min_blocks, int bound_threads, int nt) {
  const int64_t by_smem = kSmemPerMultiprocessor / (smem_bytes + kSmemReservedPerBlock);
  const int64_t by_regs = int64_t(min_blocks) * bound_threads / nt;
  return std::max<int64_t>(1, std::min<int64_t>({by_smem, by_regs, 32}));
}

// Split of the backward along L (scan_bwd.cuh), by the forward's criterion (scan_fwd_layout.h):
// when the row blocks hold fewer than S6KIT_CUDA_BWD_SPLIT_BELOW_WARPS warps (4 per multiprocessor
// of an H100) and L leaves chunks of at least S6KIT_CUDA_BWD_MIN_CHUNK steps, L is cut into about
// as many chunks as make the gradient pass one full wave of blocks on an H100. (Overridable at
// compile time, so that tests reach the split on small shapes.)
#ifndef S6KIT_CUDA_BWD_SPLIT_BELOW_WARPS
#define S6KIT_CUDA_BWD_SPLIT_BELOW_WARPS (132 * 4)
#endif
#ifndef S6KIT_CUDA_BWD_MIN_CHUNK
#define S6KIT_CUDA_BWD_MIN_CHUNK 1024
#endif
constexpr int64_t kBwdSplitBelowWarps = S6KIT_CUDA_BWD_SPLIT_BELOW_WARPS;
constexpr int64_t kBwdMinChunk = S6KIT_CUDA_BWD_MIN_CHUNK;

// Blocks per multiprocessor the backward kernel's launch bounds promise (128 threads each).
__host__ __device__ constexpr int bwd_min_blocks(int kS) { return kS == 2 ? 4 : kS == 4 ? 3 : 2; }

// Whether the backward should run with 2 states per thread instead of 4 (bwd_states_per_thread's
// default), given the 4-state layout, its row blocks and split. Two states per thread give twice
// the lanes per row, so twice the warps for the same rows, at fewer rows per second and
// multiprocessor when both fill the GPU; so they pay only where the 4-state grid leaves the GPU
// short of warps: a single wave of blocks well short of full. Measured on an H100
// (bench/scan_cuda_bench --variants, N = 16, 4 states against 2,
// bench/results/h100_extra/bwd_states_variants_76fbb4d.log): one partial wave 65 % full, 2 win
// ((4, 2048, 4096): bf16 2.61 against 2.38 ms, float32 2.39 against 2.24 ms; (2, 4096, 8192): 5.11
// against 4.69 ms); one wave 97 % full, 4 win ((8, 1536, 2048): 1.51 against 2.02 ms;
// (16, 768, 1024): 0.76 against 1.02 ms); several waves, 4 win or lose by under 2 %
// ((256, 160, 784): 2.20 against 2.29 ms; (128, 320, 196): bf16 0.691 against 0.680 ms, float32
// 0.586 against 0.609 ms); with a split along L ((1, 1536, 65536)) and at N = 64, 4 win, and rows
// shorter than one tile keep 4 ((128, 640, 49): 0.37 against 0.42 ms). Hence: N <= 16, L >= 64, no
// split, and the 4-state grid from one block per multiprocessor up to 80 % of one wave.
inline bool bwd_prefers_two_states(const ScanParams& p, const Layout& lay4, int64_t row_blocks4,
                                   const LSplit& split4) {
  if (p.dstate > 16 || p.seqlen < kScanCheckpointInterval || split4.nchunks > 1 ||
      row_blocks4 < kSplitMultiprocessors)
    return false;
  const int64_t wave = kSplitMultiprocessors *
                       blocks_per_multiprocessor(lay4.smem_bytes, bwd_min_blocks(lay4.kS),
                                                 kMaxThreads, lay4.nt);
  return row_blocks4 * 5 <= wave * 4;
}

// The split along L of a backward of `row_blocks` blocks of layout `lay`; forced_chunks > 0:
// about that many chunks (benchmarks; 1: no split).
inline LSplit choose_bwd_split(const ScanParams& p, const Layout& lay, int64_t row_blocks,
                               int64_t forced_chunks = 0) {
  const int64_t L = p.seqlen;
  int64_t k = forced_chunks;
  if (k <= 0) {
    k = 1;
    if (row_blocks * (lay.nt / 32) < kBwdSplitBelowWarps && L >= 2 * kBwdMinChunk) {
      const int64_t wave = kSplitMultiprocessors *
                           blocks_per_multiprocessor(lay.smem_bytes, bwd_min_blocks(lay.kS),
                                                     kMaxThreads, lay.nt);
      k = std::min(std::max<int64_t>(2, wave / std::max<int64_t>(1, row_blocks)), L / kBwdMinChunk);
    }
  }
  return split_along_L(L, k, lay.T);
}

}  // namespace s6kit::cuda_scan
