// Routes the SoftSort ops to their backend by the device of the tokens.
#include "s6kit/check.h"
#include "s6kit/softsort.h"

namespace s6kit {

#ifndef S6KIT_WITH_CUDA
[[noreturn]] static void no_cuda(const char* op) {
  throw ArgError(std::string(op) +
                 ": argument 'x' is on a CUDA device, but this build of s6kit has no CUDA backend "
                 "(it was built without nvcc; reinstall with nvcc on the PATH)");
}
#endif

void softsort_scores(const SoftSortScoreParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return softsort_scores_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return softsort_scores_cuda(p, stream);
#else
  (void)stream;
  no_cuda("score_and_permute");
#endif
}

void softsort_rank(const SoftSortRankParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return softsort_rank_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return softsort_rank_cuda(p, stream);
#else
  (void)stream;
  no_cuda("soft_permute");
#endif
}

void softsort_fwd(const SoftSortParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return softsort_fwd_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return softsort_fwd_cuda(p, stream);
#else
  (void)stream;
  no_cuda("soft_permute");
#endif
}

void softsort_bwd(const SoftSortBwdParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return softsort_bwd_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return softsort_bwd_cuda(p, stream);
#else
  (void)stream;
  no_cuda("soft_permute");
#endif
}

int64_t softsort_fwd_workspace_bytes(const SoftSortParams& p) {
  if (p.device == Device::cpu) return 0;  // CPU scratch is internal
#ifdef S6KIT_WITH_CUDA
  return softsort_fwd_workspace_bytes_cuda(p);
#else
  no_cuda("soft_permute");
#endif
}

int64_t softsort_rank_workspace_bytes(const SoftSortRankParams& p) {
  if (p.device == Device::cpu) return 0;
#ifdef S6KIT_WITH_CUDA
  return softsort_rank_workspace_bytes_cuda(p);
#else
  no_cuda("soft_permute");
#endif
}

int64_t softsort_bwd_workspace_bytes(const SoftSortBwdParams& p) {
  if (p.device == Device::cpu) return 0;
#ifdef S6KIT_WITH_CUDA
  return softsort_bwd_workspace_bytes_cuda(p);
#else
  no_cuda("soft_permute");
#endif
}

}  // namespace s6kit
