// The parameter structs of the SoftSort reordering, filled by softsort_check.cpp and read by every
// backend (CPU and CUDA).
//
// Math (DESIGN.md, "Importance scoring and SoftSort"; paper eq. 14 and Algorithm 1 of D.2).
// Per batch element b, with the stable sort of the scores
//     t_i = s_perm(i),  keys k_i = +t_i (descending) or -t_i (ascending), so k is non-increasing,
//     K_ij = exp(-|k_i - k_j|^p / tau)   (symmetric, K_ii = 1),   Z_i = sum_j K_ij,
//     y_j  = x[b, :, perm(j)]            (the tokens in sorted order),
//     out[b, :, i] = sum_j K_ij y_j / Z_i             (P[i, perm(j)] = K_ij / Z_i).
// hard: out[b, :, i] = y_i (P replaced by the permutation matrix P_hard in the forward, with P's
// gradient flowing to the scores: straight-through). As in the reference
// (P_hard - P).detach() + P, the scores' gradient is the soft one and the tokens' gradient is the
// adjoint of the permutation, dx[b, :, perm(i)] = g_i.
//
// Backward, with g_i = dLoss/dout[b, :, i], gh_i = g_i / Z_i and c_i = <gh_i, out_i>:
//     dx[b, :, perm(j)] = sum_i K_ij gh_i,
//     W_ij = (p / tau) |k_i - k_j|^(p-1) sign(k_i - k_j) K_ij   (antisymmetric; 0 for ties),
//     dk_i = -( <gh_i, (W y)_i> + <y_i, (W gh)_i> - c_i (W 1)_i - (W c)_i ),
//     dscores[b, perm(i)] = dk_i * (+1 descending, -1 ascending).
// For p = 1, K and W act through one-sided scans along the sorted order (O(L) per channel):
// W = (S_right - S_left) / tau, where S_left / S_right sum over strictly larger / smaller keys.
//
// Weights of the general-p path are exactly 0 where |k_i - k_j| > band_radius, the distance at
// which |d|^p / tau exceeds kSoftSortCutF32 (float) or kSoftSortCutF64 (double): beyond it the
// weight is below 1e-34 (1e-304) of the diagonal's, and tiles made only of such pairs are skipped.
#pragma once

#include <cstdint>

#include "s6kit/tensor.h"

namespace s6kit {

constexpr double kSoftSortCutF32 = 80.0;
constexpr double kSoftSortCutF64 = 700.0;

struct SoftSortParams {
  int64_t batch = 0, dim = 0, seqlen = 0;
  double tau = 1.0, p = 1.0;
  double band_radius = 0.0;  // general p: weights vanish beyond this key distance
  bool p_is_one = true;      // the O(L D) scan path
  bool hard = false;
  bool descending = true;

  DType input_type = DType::f32;  // x, out, dout, dx
  DType acc_type = DType::f32;    // sorted scores, dscores, w, dw: float64 iff input float64
  Device device = Device::cpu;
  int device_index = 0;

  // Tokens (batch, dim, L), stride 1 along L.
  const void* x = nullptr;  int64_t x_batch_stride = 0, x_dim_stride = 0;
  // Sorted scores t (batch, L) in the acc type and the stable argsort perm (batch, L) int64 (as
  // torch.sort returns it),
  // both contiguous: t_i = scores[b, perm[b, i]].
  const void* sorted_scores = nullptr;
  const int64_t* perm = nullptr;
  // Forward output (batch, dim, L), contiguous, input dtype: in sorted order.
  void* out = nullptr;

  // Scratch on the params' device (softsort_workspace_bytes).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};

struct SoftSortBwdParams : SoftSortParams {
  // Incoming gradient (batch, dim, L), any strides.
  const void* dout = nullptr;
  int64_t dout_batch_stride = 0, dout_dim_stride = 0, dout_seq_stride = 0;
  // Gradient of the tokens (batch, dim, L), contiguous, input dtype. The CUDA backward uses it as
  // scratch before it writes dx (the tokens and K g / Z in sorted order), so dx must not overlap
  // x or dout.
  void* dx = nullptr;
  // soft_permute: gradient of the scores (batch, L), contiguous, acc type (w and dw null).
  void* dscores = nullptr;
  // score_and_permute (scores = x . w, with_w): w (dim,) and dw (dim,), contiguous, acc type;
  // dx then also receives dscores[b, l] * w.
  bool with_w = false;
  const void* w = nullptr;
  void* dw = nullptr;
};

// The ranking that precedes the forward: the scores (given, or s = <w, x_l> from the tokens)
// sorted stably along L into the sorted scores t and the permutation perm of SoftSortParams.
// Order as torch.sort(stable=True): NaN above +inf, -0.0 equal to +0.0 (t holds +0.0 for both
// and NaN for every NaN).
struct SoftSortRankParams {
  int64_t batch = 0, dim = 0, seqlen = 0;
  bool descending = true;
  DType input_type = DType::f32;  // x
  DType acc_type = DType::f32;    // scores, w, sorted_scores
  Device device = Device::cpu;
  int device_index = 0;
  const void* x = nullptr;  int64_t x_batch_stride = 0, x_dim_stride = 0;
  bool with_w = false;           // scores from the tokens and w, else given
  const void* w = nullptr;       // (dim,), contiguous
  const void* scores = nullptr;  // (batch, L), contiguous
  void* sorted_scores = nullptr;  // (batch, L), contiguous
  int64_t* perm = nullptr;        // (batch, L), contiguous
  void* workspace = nullptr;      // softsort_rank_workspace_bytes
  int64_t workspace_bytes = 0;
};

// Importance scores s[b, l] = sum_d w[d] x[b, d, l] (paper eq. 14 with w = S_Delta^T K).
struct SoftSortScoreParams {
  int64_t batch = 0, dim = 0, seqlen = 0;
  DType input_type = DType::f32;  // x
  DType acc_type = DType::f32;    // w, scores
  Device device = Device::cpu;
  int device_index = 0;
  const void* x = nullptr;  int64_t x_batch_stride = 0, x_dim_stride = 0;
  const void* w = nullptr;  // (dim,), contiguous
  void* scores = nullptr;   // (batch, L), contiguous
};

}  // namespace s6kit
