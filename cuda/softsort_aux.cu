// Small CUDA kernels of the SoftSort ops: importance scores, the end of the p = 1 backward (dx into
// token order, score_and_permute's score term), and the fixed-order reductions of the per-group
// partial sums (deterministic: no atomics).
#include <algorithm>

#include "softsort_kernels.h"
#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {
namespace {

constexpr int kScorePositions = 64;  // positions per block: 8 threads x kE
constexpr int kScoreLanes = 32;      // channel lanes per block

// scores[b, l] = sum_d w[d] x[b, d, l]: 8 threads read 64 consecutive tokens of one channel,
// 32 channel lanes per block, summed in shared memory in a fixed order.
template <typename T>
__global__ void __launch_bounds__(256) scores_kernel(const T* x, int64_t xb, int64_t xd,
                                                     const float* w, float* scores, int D, int L) {
  __shared__ float red[kScoreLanes][kScorePositions + 1];
  const int b = blockIdx.y, l0 = blockIdx.x * kScorePositions;
  const int lane = threadIdx.x % 8, dz = threadIdx.x / 8;
  const int s = l0 + lane * kE;
  float acc[kE] = {};
  for (int d = dz; d < D; d += kScoreLanes) {
    float v[kE];
    load_run<T, kE>(x + b * xb + d * xd, 1, s, L, v);
    const float wd = w[d];
#pragma unroll
    for (int j = 0; j < kE; ++j) acc[j] = fmaf(wd, v[j], acc[j]);
  }
#pragma unroll
  for (int j = 0; j < kE; ++j) red[dz][lane * kE + j] = acc[j];
  __syncthreads();
  if (threadIdx.x < kScorePositions && l0 + threadIdx.x < L) {
    float sum = 0.f;
    for (int z = 0; z < kScoreLanes; ++z) sum += red[z][threadIdx.x];
    scores[int64_t(b) * L + l0 + threadIdx.x] = sum;
  }
}

// The end of the p = 1 backward: the sweep (rows of one tile) or the tiles' apply pass (rows that
// fit in shared memory, a.dy_in_dx) left K (g / Z) (g itself in the hard mode) in sorted order in
// dx; row (b, d) is put back into token order through shared memory (inv: the sorted position of
// each token), and score_and_permute (kWithW) adds the gradient through the scores
// s_l = <w, x_l>, given ds = dLoss / ds in token order:
//   dx[b, d, l] = K(g / Z)[b, d, inv[b, l]] + ds[b, l] w[d]
//   dw_part[b, d] = sum_l ds[b, l] x[b, d, l]
// A block per kRows rows of one batch element (consecutive channels), grid (ceil(D / kRows), B);
// ds and inv come through L2, read once for the block's rows (finish_dx_rows picks kRows). On an
// H100, bf16: (8, 4096, 1536) 0.124 -> 0.118 ms with four rows a block, (8, 1024, 1536) 0.031 ->
// 0.028 ms with four (0.030 with eight), (64, 196, 320) 0.020 -> 0.013 ms with eight. 16-bit dx
// is rounded twice with w (the sorted part, then the sum): an extra error of at most half a unit
// in the last place of the sorted part.
template <typename T, bool kWithW, int kRows>
__global__ void __launch_bounds__(kFinishThreads) finish_dx_kernel(const Args a) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ float red[32];
  T* const sorted = reinterpret_cast<T*>(dyn);
  const int L = a.L, D = a.D, b = int(blockIdx.y);
  const int d0 = int(blockIdx.x) * kRows;  // grid (ceil(D / kRows), B): within its limits
  const int nr = kRows == 1 ? 1 : min(kRows, D - d0);  // rows of the block
  const int64_t r0 = int64_t(b) * D + d0;
  T* const dxr = static_cast<T*>(a.dx) + r0 * L;
  if (!sorted_row_finite(a.t + int64_t(b) * L, L)) {  // the NaN policy
    fill_rows_nan(dxr, nr, L);
    if (kWithW && threadIdx.x < nr) a.dw_part[r0 + threadIdx.x] = nan_f();
    return;
  }
  const int* const inv = a.inv_perm + int64_t(b) * L;
  copy_row(sorted, dxr, nr * L);  // the block's rows are consecutive in dx
  __syncthreads();  // the whole rows are read before any of them is written
  const T* xr = nullptr;
  const float* dsr = nullptr;
  float wd[kRows] = {}, acc[kRows] = {};
  if constexpr (kWithW) {
    xr = static_cast<const T*>(a.x) + b * a.xb + d0 * a.xd;
    dsr = a.dk + int64_t(b) * L;
#pragma unroll
    for (int r = 0; r < kRows; ++r) wd[r] = r < nr ? a.w[d0 + r] : 0.f;
  }
  for (int s = threadIdx.x * kE; s < L; s += blockDim.x * kE) {
    int from[kE];
    load_indices<kE>(inv, s, L, 0, from);  // read once for the block's rows
    float sv[kE];  // ds, read with the first row
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= nr) break;
      float v[kE];
#pragma unroll
      for (int j = 0; j < kE; ++j) v[j] = to_f(sorted[r * L + from[j]]);
      if constexpr (kWithW) {
        float xv[kE];
        load_run<T, kE>(xr + r * a.xd, 1, s, L, xv);
        if (r == 0) load_run<float, kE>(dsr, 1, s, L, sv);
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          acc[r] = fmaf(sv[j], xv[j], acc[r]);
          v[j] = fmaf(sv[j], wd[r], v[j]);
        }
      }
      store_run<T, kE>(dxr + int64_t(r) * L, s, L, v);
    }
  }
  if constexpr (kWithW) {
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      if (r >= nr) break;
      const float sum = block_sum(acc[r], red);
      if (threadIdx.x == 0) a.dw_part[r0 + r] = sum;
    }
  }
}

// qc[b, :, i] = sum over groups of part[b, g, :, i].
__global__ void reduce_qc_kernel(const float* part, float* qc, int parts, int L) {
  const int b = blockIdx.y, i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= L) return;
  const float* src = part + int64_t(b) * parts * 2 * L + i;
  float q = 0.f, c = 0.f;
  for (int g = 0; g < parts; ++g) {
    q += src[int64_t(g) * 2 * L];
    c += src[int64_t(g) * 2 * L + L];
  }
  qc[int64_t(b) * 2 * L + i] = q;
  qc[int64_t(b) * 2 * L + L + i] = c;
}

// dw[d] = sum_b dw_part[b, d].
__global__ void reduce_dw_kernel(const float* dw_part, float* dw, int B, int D) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  float s = 0.f;
  for (int b = 0; b < B; ++b) s += dw_part[int64_t(b) * D + d];
  dw[d] = s;
}

// perm as int32 when out is given, and its inverse when inv is given (the sorted position of
// each token).
__global__ void narrow_perm_kernel(const int64_t* perm, int* out, int* inv, int L, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int to = int(perm[i]);
  if (out) out[i] = to;
  if (inv) inv[i - i % L + to] = int(i % L);
}

}  // namespace

void launch_scores(const void* x, int64_t xb, int64_t xd, const float* w, float* scores, int B,
                   int D, int L, DType dtype, cudaStream_t s) {
  const dim3 grid((L + kScorePositions - 1) / kScorePositions, B);
  switch (dtype) {
    case DType::f16:
      scores_kernel<__half><<<grid, 256, 0, s>>>(static_cast<const __half*>(x), xb, xd, w, scores, D, L);
      break;
    case DType::bf16:
      scores_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(static_cast<const __nv_bfloat16*>(x), xb, xd, w, scores,
                                         D, L);
      break;
    default:
      scores_kernel<float><<<grid, 256, 0, s>>>(static_cast<const float*>(x), xb, xd, w, scores, D, L);
      break;
  }
}

// Rows of one tile: up to 256 threads, several blocks per multiprocessor (their copy-in and
// gather phases overlap; 512 threads took 0.161 ms against 0.118 ms at (8, 4096, 1536) bf16 on an
// H100). Longer rows: 1024 threads, since their shared memory leaves room for few blocks.
int finish_dx_threads(int L) {
  const int need = std::max(32, ((L + kE - 1) / kE + 31) / 32 * 32);
  return L <= kMaxThreads * kE ? std::min(256, need) : kFinishThreads;
}

size_t finish_dx_smem_bytes(const Args& a) {
  return size_t(a.finish_rows) * size_t(a.L) * dtype_size(a.dtype);
}

int finish_dx_rows(const Args& a) {
  const size_t row = size_t(a.L) * dtype_size(a.dtype);
  return 8 * row <= 8 * 1024 ? 8 : 4 * row <= 32 * 1024 ? 4 : 1;
}

namespace {
template <typename T, int kRows>
const void* finish_dx_instance(bool with_w) {
  return with_w ? reinterpret_cast<const void*>(&finish_dx_kernel<T, true, kRows>)
                : reinterpret_cast<const void*>(&finish_dx_kernel<T, false, kRows>);
}

template <typename T>
const void* finish_dx_instance(bool with_w, int rows) {
  return rows == 8   ? finish_dx_instance<T, 8>(with_w)
         : rows == 4 ? finish_dx_instance<T, 4>(with_w)
                     : finish_dx_instance<T, 1>(with_w);
}
}  // namespace

const void* finish_dx_kernel_handle(const Args& a, bool with_w) {
  switch (a.dtype) {
    case DType::f16: return finish_dx_instance<__half>(with_w, a.finish_rows);
    case DType::bf16: return finish_dx_instance<__nv_bfloat16>(with_w, a.finish_rows);
    default: return finish_dx_instance<float>(with_w, a.finish_rows);
  }
}

void launch_reduce_qc(const Args& a, cudaStream_t s) {
  reduce_qc_kernel<<<dim3((a.L + 255) / 256, a.B), 256, 0, s>>>(a.part, a.qc, a.parts, a.L);
}

void launch_reduce_dw(const Args& a, cudaStream_t s) {
  reduce_dw_kernel<<<(a.D + 255) / 256, 256, 0, s>>>(a.dw_part, a.dw, a.B, a.D);
}

void launch_narrow_perm(const Args& a, cudaStream_t s) {
  const int64_t n = int64_t(a.B) * a.L;
  narrow_perm_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(a.perm, a.perm32, a.inv_perm, a.L, n);
}

}  // namespace s6kit::cuda_softsort
