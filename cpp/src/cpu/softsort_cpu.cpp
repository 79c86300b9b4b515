// Chooses the CPU SoftSort variant for the processor this runs on.
#include "s6kit/cpu/isa.h"
#include "s6kit/softsort.h"
#include "softsort_cpu_variants.h"

namespace s6kit {

void softsort_scores_cpu(const SoftSortScoreParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::softsort_scores(p, num_threads);
#endif
  cpu::generic::softsort_scores(p, num_threads);
}

void softsort_rank_cpu(const SoftSortRankParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::softsort_rank(p, num_threads);
#endif
  cpu::generic::softsort_rank(p, num_threads);
}

void softsort_fwd_cpu(const SoftSortParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::softsort_fwd(p, num_threads);
#endif
  cpu::generic::softsort_fwd(p, num_threads);
}

void softsort_bwd_cpu(const SoftSortBwdParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::softsort_bwd(p, num_threads);
#endif
  cpu::generic::softsort_bwd(p, num_threads);
}

}  // namespace s6kit
