// Pieces shared by the row kernels (p = 1 scans, gathers, the general-p unpermute): the channel
// range of a block, the per-element row environment, the NaN policy, and the pipeline that
// stages x rows in shared memory.
#pragma once

#include "softsort_kernels.h"
#include "softsort_rowscan.cuh"

namespace s6kit::cuda_softsort {

// Channels [d0, d1) of channel group `group` of `groups` (by default blockIdx.x of gridDim.x, with
// blockIdx.y the batch element).
struct ChannelRange {
  int d0, d1;
  __device__ ChannelRange(int D, int group, int groups) {
    d0 = int(int64_t(D) * group / groups);
    d1 = int(int64_t(D) * (group + 1) / groups);
  }
  __device__ explicit ChannelRange(int D) : ChannelRange(D, blockIdx.x, gridDim.x) {}
  __device__ int rows() const { return d1 - d0; }
};

__device__ __forceinline__ RowEnv make_env(const Args& a, int b, bool with_invz) {
  RowEnv e;
  e.L = a.L;
  e.tiles = a.tiles;
  e.tile = a.tile;
  e.sign = a.sign;
  e.inv_tau = a.inv_tau;
  e.t = a.t + int64_t(b) * a.L;
  e.perm = a.perm + int64_t(b) * a.L;
  e.invz = with_invz ? a.inv_z + int64_t(b) * a.L : nullptr;
  return e;
}

// Sorting puts NaN and infinities at the ends of the row: a batch element with any of them gets
// NaN everywhere (the documented policy). `t`: the row's L sorted scores.
__device__ __forceinline__ bool sorted_row_finite(const float* t, int L) {
  return isfinite(t[0]) && isfinite(t[L - 1]);
}
__device__ __forceinline__ bool row_finite(const RowEnv& e) { return sorted_row_finite(e.t, e.L); }

template <typename T>
__device__ void fill_rows_nan(T* rows, int n_rows, int L) {
  const int64_t n = int64_t(n_rows) * L;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) rows[i] = from_f<T>(nan_f());
}

// Rows d0 .. d0 + n of one batch element (x, and the incoming gradient when `with_g`), staged
// through `stages` shared-memory buffers with asynchronous copies (stages - 1 rows in flight);
// stages == 0 reads global memory directly. A stage holds the x row, then the g row. One barrier
// per row (two with a single stage, which cannot prefetch; asking L2 for the next row meanwhile
// made the gathers of bfloat16 rows of 65536 positions 17-18 % slower on an H100).
template <typename T>
struct RowPipe {
  T* buf;
  unsigned buf_s;  // buf's shared-memory address
  int stages, L, n;
  int slot = 0;  // the stage of the next row acquired (rows are acquired in order)
  int cur = 0;   // the stage of the row last acquired
  bool lean = false;  // see acquire
  const T *x, *g;
  int64_t x_dstride, g_dstride;
  bool x_chunks, g_chunks;  // rows copied in 16-byte chunks (rows_in_chunks)

  __device__ RowPipe(void* smem, int stages_, int L_, int n_, const T* x_first, int64_t x_dstride_,
                     const T* g_first = nullptr, int64_t g_dstride_ = 0)
      : buf(static_cast<T*>(smem)),
        buf_s(static_cast<unsigned>(__cvta_generic_to_shared(smem))),
        stages(stages_), L(L_), n(n_), x(x_first), g(g_first), x_dstride(x_dstride_),
        g_dstride(g_dstride_), x_chunks(rows_in_chunks(x_first, x_dstride_, L_)),
        g_chunks(g_first != nullptr && rows_in_chunks(g_first, g_dstride_, L_)) {}

  __device__ int64_t stage_size() const { return int64_t(g ? 2 : 1) * L; }
  // Shared memory after the stages.
  __device__ T* end() const { return buf + stages * stage_size(); }
  // The stage of the row last acquired (stages > 0): a pointer the compiler sees in shared
  // memory, so that reads of it are shared-memory loads.
  __device__ const T* current() const { return buf + cur * stage_size(); }

  __device__ void fill(int stage, int r) {
    const int64_t at = stage * stage_size();  // within shared memory
    const unsigned at_s = buf_s + unsigned(at * int64_t(sizeof(T)));
    row_to_smem(buf + at, at_s, x + r * x_dstride, L, x_chunks);
    if (g) row_to_smem(buf + at + L, at_s + unsigned(L * int(sizeof(T))), g + r * g_dstride, L,
                       g_chunks);
  }

  __device__ void prologue() {
    for (int k = 0; k + 1 < stages; ++k) {
      if (k < n) fill(k, k);
      cp_async_commit();
    }
  }

  // Makes the stage of row r (the x row, then the g row) ready for every thread of the block
  // (current()); nothing to do when stages == 0. Block-wide.
  //
  // A lean pipe of three stages or more saves this barrier from the second row on. It is for
  // kernels whose threads read a row's stage only before a block-wide barrier that they pass
  // before acquiring the next row (the scan's barrier, scan_values): each thread waits for its
  // copies of row r + 1 when it acquires row r, so that barrier makes row r + 1 visible to the
  // block and frees row r's stage for a refill. A row then has one row less to arrive in.
  __device__ void acquire(int r) {
    if (stages == 0) return;
    if (stages == 1) {
      __syncthreads();  // every thread is done with the buffer
      fill(0, r);
      cp_async_commit();
      cp_async_wait(0);
      __syncthreads();
      cur = 0;
      return;
    }
    // Committed so far: rows 0 .. r + stages - 2, one group each; row r's is complete when at
    // most stages - 2 are pending. After the barrier every thread is done with row r - 1, whose
    // buffer (the stage before row r's) then takes row r + stages - 1.
    const bool by_caller = lean && stages >= 3;
    if (!by_caller || r == 0) {
      cp_async_wait(stages - 2);
      __syncthreads();
    }
    const int next = r + stages - 1;
    if (next < n) fill(slot == 0 ? stages - 1 : slot - 1, next);
    cp_async_commit();
    if (by_caller) cp_async_wait(stages - 2);  // row r + 1: rows 0 .. r + stages - 1 committed
    cur = slot;
    slot = slot + 1 == stages ? 0 : slot + 1;
  }

  // Acquires row r and calls f with its x row: the stage (shared-memory loads), or the row in
  // global memory when stages == 0 (f is compiled for both). Block-wide.
  template <typename F>
  __device__ void with_row(int r, F&& f) {
    acquire(r);
    if (stages > 0)
      f(current());
    else
      f(x + r * x_dstride);
  }
};

// The two score-gradient terms at the thread's positions from the scans of y and gh = g / Z
// (softsort_scan.cu): q = gh (SR - SL)[y] + y (SR - SL)[gh] and c = gh out.
__device__ __forceinline__ void score_terms(const Ctx& c, const float (&v)[2][kE],
                                            const TileScan<2, true>& ts, float (&q)[kE],
                                            float (&cc)[kE]) {
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    const float out = (ts.il[0][j] + ts.gx[0][j]) * c.invz[j];
    q[j] = v[1][j] * ts.w[0][j] + v[0][j] * ts.w[1][j];
    cc[j] = v[1][j] * out;
  }
}

// The key gradient at the thread's positions from the scans of ones and C (softsort_scan.cu):
// dk_i = -(Q_i - C_i (SR - SL)[1]_i - (SR - SL)[C]_i) / tau, written to dk, or scattered by the
// permutation into dscores (sign included) when the op has one.
__device__ __forceinline__ void emit_key_gradient(const Args& a, int b, const Ctx& c,
                                                  const float (&v)[2][kE],
                                                  const TileScan<2, true>& ts) {
  const float* Q = a.qc + int64_t(b) * 2 * a.L;
#pragma unroll
  for (int j = 0; j < kE; ++j)
    if (j < c.n) {
      const int i = c.s + j;
      const float dkv = -a.inv_tau * (Q[i] - v[1][j] * ts.w[0][j] - ts.w[1][j]);
      if (a.dscores)
        a.dscores[int64_t(b) * a.L + c.perm[j]] = a.sign * dkv;
      else
        a.dk[int64_t(b) * a.L + i] = dkv;
    }
}

// dst[0, L) = src[0, L) by the whole block (16-byte chunks when both allow it).
template <typename T>
__device__ void copy_row(T* dst, const T* src, int L) {
  const bool vec = reinterpret_cast<uintptr_t>(dst) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   (int64_t(L) * sizeof(T)) % 16 == 0;
  if (vec) {
    const int chunks = int(int64_t(L) * sizeof(T) / 16);
#pragma unroll 4
    for (int k = threadIdx.x; k < chunks; k += blockDim.x)
      reinterpret_cast<uint4*>(dst)[k] = reinterpret_cast<const uint4*>(src)[k];
  } else {
    for (int k = threadIdx.x; k < L; k += blockDim.x) dst[k] = src[k];
  }
}

}  // namespace s6kit::cuda_softsort
