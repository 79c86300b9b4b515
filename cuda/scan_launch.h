// Launchers of the CUDA selective scan kernels, one explicit instantiation per storage dtype
// (scan_fwd_<dtype>.cu, scan_bwd_<dtype>.cu), of the splits' middle passes
// (scan_split_combine.cu) and of the final reductions (scan_reduce.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "s6kit/tensor.h"
#include "scan_bwd.cuh"
#include "scan_fwd.cuh"

namespace s6kit::cuda_scan {

// Blocks beyond this run in the kernels' grid-stride loops.
constexpr int64_t kMaxGridBlocks = 0x7fffffff;

inline unsigned grid_size(int64_t blocks) {
  return static_cast<unsigned>(blocks < kMaxGridBlocks ? blocks : kMaxGridBlocks);
}

// The forward kernel instance of a launch (storage type, scalar A, states per thread, rows all
// 16-byte aligned).
template <typename in_t, bool kAligned>
auto fwd_kernel_aligned(const FwdArgs& a) {
  const bool s = a.p.scalar_A;
  switch (a.lay.kS) {
    case 2: return s ? scan_fwd_kernel<in_t, true, 2, kAligned>
                     : scan_fwd_kernel<in_t, false, 2, kAligned>;
    case 4: return s ? scan_fwd_kernel<in_t, true, 4, kAligned>
                     : scan_fwd_kernel<in_t, false, 4, kAligned>;
    default: return s ? scan_fwd_kernel<in_t, true, 8, kAligned>
                      : scan_fwd_kernel<in_t, false, 8, kAligned>;
  }
}
// The instance for rows aligned to less than 16 bytes (kAligned false) only where its pieces hold
// more than one element or its stores are 8-byte halves: 4-byte aligned float32 rows keep the
// element loads of the other instance, which ran 4 % faster at (128, 640, 49, 16) on an H100
// (bench/results/h100_extra/aligned_rows_ab.log).
inline bool fwd_copies_pieces(const FwdArgs& a) {
  const int es = static_cast<int>(dtype_size(a.p.input_type));
  auto pieces = [es](int align) { return align > es && align < 16; };
  return pieces(a.in_align) || pieces(a.bc_align) || a.out_align == 8;
}
template <typename in_t>
auto fwd_kernel(const FwdArgs& a) {
  return fwd_copies_pieces(a) ? fwd_kernel_aligned<in_t, false>(a)
                              : fwd_kernel_aligned<in_t, true>(a);
}

// The backward kernel instance of a launch (storage type, scalar A, states per thread, pass, and
// with 4 states whether the exchange is reduced four states per item: bwd_reduces_quads).
template <typename in_t>
auto bwd_kernel(const BwdArgs& a) {
  const bool s = a.p.scalar_A;
  if (a.pass == BwdPass::chunk_adjoints) {
    switch (a.lay.kS) {
      case 2: return s ? scan_bwd_kernel<in_t, true, 2, true, false>
                       : scan_bwd_kernel<in_t, false, 2, true, false>;
      case 4: return s ? scan_bwd_kernel<in_t, true, 4, true, false>
                       : scan_bwd_kernel<in_t, false, 4, true, false>;
      default: return s ? scan_bwd_kernel<in_t, true, 8, true, false>
                        : scan_bwd_kernel<in_t, false, 8, true, false>;
    }
  }
  switch (a.lay.kS) {
    case 2: return s ? scan_bwd_kernel<in_t, true, 2, false, false>
                     : scan_bwd_kernel<in_t, false, 2, false, false>;
    case 4:
      if (bwd_reduces_quads(a.lay))
        return s ? scan_bwd_kernel<in_t, true, 4, false, true>
                 : scan_bwd_kernel<in_t, false, 4, false, true>;
      return s ? scan_bwd_kernel<in_t, true, 4, false, false>
               : scan_bwd_kernel<in_t, false, 4, false, false>;
    default: return s ? scan_bwd_kernel<in_t, true, 8, false, true>
                      : scan_bwd_kernel<in_t, false, 8, false, true>;
  }
}

// The forward's arguments for `p` (layout, vector-access flags); kS, T = 0: the default states
// per thread and tile length, else forced (benchmarks of the alternatives).
FwdArgs make_fwd_args(const ScanParams& p, float* ckpt, bool write_out, int kS = 0, int T = 0);
FwdArgs make_fwd_args(const ScanParams& p, const FwdLayout& lay, float* ckpt, bool write_out);

// The forward of scan_fwd_cuda: its layout, split along L and workspace (byte offsets into
// p.workspace of the chunk states and decays; -1: absent).
struct FwdPlan {
  FwdLayout lay;
  LSplit split;
  int64_t off_states = -1, off_decays = -1, bytes = 0;
};

// forced_chunks > 0: about that many chunks (benchmarks of the split), else choose_fwd's.
FwdPlan plan_fwd(const ScanParams& p, int64_t forced_chunks = 0);

// Runs the forward of `p` (L > 0) as planned: one launch, or the split's three; p.workspace holds
// plan.bytes.
void run_fwd(const ScanParams& p, const FwdPlan& plan, cudaStream_t stream);

template <typename in_t>
void launch_fwd(const FwdArgs& args, cudaStream_t stream);

// Blocks of a forward launch: every row block for each chunk it runs.
inline int64_t fwd_blocks(const FwdArgs& a) { return a.p.batch * a.p.n_groups * a.ntiles * a.run_chunks; }

// The middle pass of a split along L (scan_split_combine.cuh): the forward's chunk end states,
// or the backward's chunk-start adjoints, made true from the chunks' decays.
struct ChunkCombine {
  float* carry = nullptr;         // forward: states (nchunks - 1, rows, N); backward: adj (nchunks, rows, N)
  const float* decays = nullptr;  // (nchunks - 1 or nchunks, rows)
  const float* dlast = nullptr;   // backward: d last_state (rows, N), or null
  const float* A = nullptr;
  int64_t A_dim_stride = 0, A_state_stride = 0;
  bool scalar_A = false;
  int64_t rows = 0, dim = 0, N = 0, nchunks = 0;  // rows = batch * dim
};

void launch_fwd_combine(const ChunkCombine& args, cudaStream_t stream);
void launch_bwd_combine(const ChunkCombine& args, cudaStream_t stream);

template <typename in_t>
void launch_bwd(const BwdArgs& args, cudaStream_t stream);

// Blocks of a backward launch: every row block for each chunk it runs.
inline int64_t bwd_blocks(const BwdArgs& a) { return a.p.batch * a.p.n_groups * a.slots * a.run_chunks; }

// The backward of scan_bwd_cuda: its layout, row tiles per block, split along L and workspace
// (byte offsets into p.workspace; -1: absent).
struct BwdPlan {
  Layout lay;
  int64_t ntiles = 0, slots = 0, subtiles = 1;
  LSplit split;
  int64_t off_ckpt = -1, off_bc = -1, off_dA = -1, off_dBinv = -1, off_dCinv = -1;
  int64_t off_dD = -1, off_ddb = -1, off_adj = -1, off_decays = -1;
  int64_t bytes = 0;
};

// forced_chunks > 0: about that many chunks (benchmarks of the split), else choose_bwd_split's;
// forced_kS: the states per thread (see bwd_states_per_thread).
BwdPlan plan_bwd(const ScanBwdParams& p, int64_t forced_chunks = 0, int forced_kS = 0);

// Runs the backward of `p` (batch * dim > 0, L > 0) as planned: the kernel (or the split's three
// launches) and the final reductions; p.workspace holds plan.bytes.
void run_bwd(const ScanBwdParams& p, const BwdPlan& plan, cudaStream_t stream);

// out[j] = sum over t (in order) of part[t * count + j], j < count, t < batch (RowJobs::batch:
// the batch entries times the chunks of a split along L): the reduction of the per-(b, d)
// partials of dA, time-invariant dB / dC, dD and d delta_bias.
struct RowReduction {
  const float* part = nullptr;
  float* out = nullptr;
  int64_t count = 0;
};

constexpr int kMaxRowJobs = 5;

struct RowJobs {
  RowReduction job[kMaxRowJobs];
  int64_t batch = 0;
};

void launch_reduce_rows(const RowReduction* jobs, int njobs, int64_t batch, cudaStream_t stream);

constexpr int kBcSteps = 32;     // steps per block
constexpr int kBcThreads = 256;
constexpr int kBcSmemBytes = kMaxDstate * (kBcSteps + 1) * 4;

struct BcReduction {
  const float* part = nullptr;  // (groups, slots, L, 2, N)
  void* dB = nullptr;           // (groups, N, L) in the input dtype, or null
  void* dC = nullptr;
  int64_t groups = 0, slots = 0;
  int L = 0, N = 0;
};

// Variable dB / dC (batch, G, N, L) in the input dtype from the (batch * G, slots, L, 2, N)
// partials, summed over the slots in order.
void launch_reduce_bc(DType type, const BcReduction& args, cudaStream_t stream);

}  // namespace s6kit::cuda_scan
