// SoftSort reordering and importance scoring: entry points shared by the binding and the
// benchmark binaries (see softsort_params.h for the math).
#pragma once

#include "s6kit/softsort_params.h"
#include "s6kit/tensor.h"

namespace s6kit {

struct SoftSortInputs {
  TensorDesc x;              // (batch, dim, L)
  TensorDesc sorted_scores;  // (batch, L), acc type
  TensorDesc perm;           // (batch, L), int64
  double tau = 1.0, p = 1.0;
  bool hard = false, descending = true;
  const char* op = "soft_permute";  // named in error messages ("score_and_permute" with w)
};

// Check every descriptor and fill the parameter structs; throw ArgError naming the argument.
SoftSortParams make_softsort_params(const SoftSortInputs& in, const TensorDesc& out);

struct SoftSortGrads {
  TensorDesc dout, dx;
  OptDesc dscores = nullptr;    // soft_permute
  OptDesc w = nullptr, dw = nullptr;  // score_and_permute
};

SoftSortBwdParams make_softsort_bwd_params(const SoftSortInputs& in, const SoftSortGrads& g);

SoftSortScoreParams make_softsort_score_params(const TensorDesc& x, const TensorDesc& w,
                                               const TensorDesc& scores);

// The ranking of the forward: exactly one of `scores` (batch, L) and `w` (dim,); writes
// sorted_scores and perm. `op` names the operation in error messages.
SoftSortRankParams make_softsort_rank_params(const char* op, const TensorDesc& x, OptDesc scores,
                                             OptDesc w, const TensorDesc& sorted_scores,
                                             const TensorDesc& perm, bool descending);

// Bytes of scratch the forward / backward needs on the params' device (0 is possible).
int64_t softsort_fwd_workspace_bytes(const SoftSortParams& p);
int64_t softsort_bwd_workspace_bytes(const SoftSortBwdParams& p);
int64_t softsort_rank_workspace_bytes(const SoftSortRankParams& p);

// Run on the params' device: `stream` is a cudaStream_t for CUDA (0: the default stream),
// `num_threads` is used on the CPU only.
void softsort_scores(const SoftSortScoreParams& p, void* stream, int num_threads);
void softsort_rank(const SoftSortRankParams& p, void* stream, int num_threads);
void softsort_fwd(const SoftSortParams& p, void* stream, int num_threads);
void softsort_bwd(const SoftSortBwdParams& p, void* stream, int num_threads);

// Backends.
void softsort_scores_cpu(const SoftSortScoreParams& p, int num_threads);
void softsort_rank_cpu(const SoftSortRankParams& p, int num_threads);
void softsort_fwd_cpu(const SoftSortParams& p, int num_threads);
void softsort_bwd_cpu(const SoftSortBwdParams& p, int num_threads);
#ifdef S6KIT_WITH_CUDA
void softsort_scores_cuda(const SoftSortScoreParams& p, void* stream);
void softsort_rank_cuda(const SoftSortRankParams& p, void* stream);
int64_t softsort_rank_workspace_bytes_cuda(const SoftSortRankParams& p);
void softsort_fwd_cuda(const SoftSortParams& p, void* stream);
void softsort_bwd_cuda(const SoftSortBwdParams& p, void* stream);
int64_t softsort_fwd_workspace_bytes_cuda(const SoftSortParams& p);
int64_t softsort_bwd_workspace_bytes_cuda(const SoftSortBwdParams& p);
#endif

}  // namespace s6kit
