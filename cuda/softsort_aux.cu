// Small CUDA kernels of the SoftSort ops: importance scores, and the fixed-order reductions of the
// per-group partial sums (deterministic: no atomics).
#include "softsort_kernels.h"
#include "softsort_rowscan.cuh"

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

__global__ void narrow_perm_kernel(const int64_t* perm, int* out, int64_t n) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = int(perm[i]);
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

void launch_reduce_qc(const Args& a, cudaStream_t s) {
  reduce_qc_kernel<<<dim3((a.L + 255) / 256, a.B), 256, 0, s>>>(a.part, a.qc, a.parts, a.L);
}

void launch_reduce_dw(const Args& a, cudaStream_t s) {
  reduce_dw_kernel<<<(a.D + 255) / 256, 256, 0, s>>>(a.dw_part, a.dw, a.B, a.D);
}

void launch_narrow_perm(const Args& a, cudaStream_t s) {
  const int64_t n = int64_t(a.B) * a.L;
  narrow_perm_kernel<<<unsigned((n + 255) / 256), 256, 0, s>>>(a.perm, a.perm32, n);
}

}  // namespace s6kit::cuda_softsort
