// CUDA kernels of the p = 1 SoftSort: 1 / Z and the key gradient, and the dispatch of the row
// kernels (forward, gather, backward sweeps) of softsort_scan.cuh. The scans themselves live in
// softsort_rowscan.cuh.
//
// Backward, per batch element (cpp/include/s6kit/softsort_params.h has the math):
//   sweep (kBwdPartials / kBwdPartialsDx): per channel, y = x[perm] and gh = g / Z are scanned;
//     every block adds q_i = gh_i (SR - SL)[y]_i + y_i (SR - SL)[gh]_i and c_i = gh_i out_i over
//     its channels into its slice of `part` (and writes dx = K gh unpermuted, soft_permute);
//   reduce_qc: Q_i, C_i = sums over the slices;
//   keygrad: dk_i = -(Q_i - C_i (SR - SL)[1]_i - (SR - SL)[C]_i) / tau, scattered into dscores
//     (soft_permute) or kept for the
//   sweep (kBwdDxScore, score_and_permute): dx = K gh (unpermuted) + dscores w, dw partials.
#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

// Instantiated in softsort_scan_<dtype>.cu.
template <typename T> void launch_fwd_t(const Args& a, cudaStream_t s, size_t smem);
template <typename T> void launch_bwd_t(const Args& a, RowKernel kind, cudaStream_t s, size_t smem);
template <typename T> const void* row_kernel_handle_t(RowKernel kind);

namespace {

// ---- 1 / Z ------------------------------------------------------------------------------------

__global__ void __launch_bounds__(kMaxThreads) norm_kernel(const Args a) {
  __shared__ Shared<1> sh;
  const int b = blockIdx.x;
  const RowEnv env = make_env(a, b, false);
  if (!row_finite(env)) return;  // the row kernels write NaN themselves
  float* carry = a.tile_carry + int64_t(b) * env.tiles * 4;
  float* out = a.inv_z + int64_t(b) * env.L;
  Ctx c;
  if (env.tiles == 1) load_ctx<false>(c, env, 0, sh.tile);
  row_sweeps<1, false>(
      env, c, sh, carry,
      [&](const Ctx& c, float (&v)[1][kE]) {
#pragma unroll
        for (int j = 0; j < kE; ++j) v[0][j] = j < c.n ? 1.f : 0.f;
      },
      [&](const Ctx& c, const float (&)[1][kE], const TileScan<1, false>& ts) {
#pragma unroll
        for (int j = 0; j < kE; ++j)
          if (j < c.n) out[c.s + j] = 1.f / (ts.il[0][j] + ts.gx[0][j]);
      });
}

// ---- key gradient -----------------------------------------------------------------------------

__global__ void __launch_bounds__(kMaxThreads) keygrad_kernel(const Args a) {
  __shared__ Shared<2> sh;
  const int b = blockIdx.x, L = a.L;
  const RowEnv env = make_env(a, b, false);
  const float* Q = a.qc + int64_t(b) * 2 * L;
  const float* C = Q + L;
  if (!row_finite(env)) {
    for (int i = threadIdx.x; i < L; i += blockDim.x) {
      if (a.dscores) a.dscores[int64_t(b) * L + i] = nan_f();
      else a.dk[int64_t(b) * L + i] = nan_f();
    }
    return;
  }
  float* carry = a.tile_carry + int64_t(b) * env.tiles * 4;
  Ctx c;
  if (env.tiles == 1) load_ctx<true>(c, env, 0, sh.tile);
  row_sweeps<2, true>(
      env, c, sh, carry,
      [&](const Ctx& c, float (&v)[2][kE]) {
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          v[0][j] = j < c.n ? 1.f : 0.f;
          v[1][j] = j < c.n ? C[c.s + j] : 0.f;
        }
      },
      [&](const Ctx& c, const float (&v)[2][kE], const TileScan<2, true>& ts) {
#pragma unroll
        for (int j = 0; j < kE; ++j)
          if (j < c.n) {
            const int i = c.s + j;
            const float dkv = -a.inv_tau * (Q[i] - v[1][j] * ts.w[0][j] - ts.w[1][j]);
            if (a.dscores)
              a.dscores[int64_t(b) * L + c.perm[j]] = a.sign * dkv;
            else
              a.dk[int64_t(b) * L + i] = dkv;
          }
      });
}

}  // namespace

// Dynamic shared memory of a row kernel: staged x rows (and the dx row).
size_t row_smem_bytes(const Args& a) {
  const size_t row = size_t(a.L) * dtype_size(a.dtype);
  return row * (size_t(a.stages) * (a.g_smem ? 2 : 1) + (a.dx_smem ? 1 : 0));
}

void launch_norm(const Args& a, cudaStream_t s) { norm_kernel<<<a.B, a.threads, 0, s>>>(a); }

void launch_keygrad(const Args& a, cudaStream_t s) { keygrad_kernel<<<a.B, a.threads, 0, s>>>(a); }

void launch_fwd(const Args& a, cudaStream_t s) {
  const size_t smem = row_smem_bytes(a);
  switch (a.dtype) {
    case DType::f16: return launch_fwd_t<__half>(a, s, smem);
    case DType::bf16: return launch_fwd_t<__nv_bfloat16>(a, s, smem);
    default: return launch_fwd_t<float>(a, s, smem);
  }
}

void launch_bwd(const Args& a, RowKernel kind, cudaStream_t s) {
  const size_t smem = row_smem_bytes(a);
  switch (a.dtype) {
    case DType::f16: return launch_bwd_t<__half>(a, kind, s, smem);
    case DType::bf16: return launch_bwd_t<__nv_bfloat16>(a, kind, s, smem);
    default: return launch_bwd_t<float>(a, kind, s, smem);
  }
}

// Kernel handle of a row kernel, for the occupancy query of configure_rows.
const void* row_kernel_handle(DType dtype, RowKernel kind) {
  switch (dtype) {
    case DType::f16: return row_kernel_handle_t<__half>(kind);
    case DType::bf16: return row_kernel_handle_t<__nv_bfloat16>(kind);
    default: return row_kernel_handle_t<float>(kind);
  }
}

}  // namespace s6kit::cuda_softsort
