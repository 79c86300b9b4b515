// The instruction-set variants of the CPU SoftSort (softsort_cpu_impl.h compiled once per variant).
#pragma once

#include "s6kit/softsort_params.h"

#define S6KIT_DECLARE_SOFTSORT_VARIANT(ISA)                                  \
  namespace s6kit::cpu::ISA {                                                \
  void softsort_scores(const SoftSortScoreParams& p, int num_threads);       \
  void softsort_rank(const SoftSortRankParams& p, int num_threads);          \
  void softsort_fwd(const SoftSortParams& p, int num_threads);               \
  void softsort_bwd(const SoftSortBwdParams& p, int num_threads);            \
  }

S6KIT_DECLARE_SOFTSORT_VARIANT(generic)
#ifdef S6KIT_CPU_AVX2
S6KIT_DECLARE_SOFTSORT_VARIANT(avx2)
#endif

#undef S6KIT_DECLARE_SOFTSORT_VARIANT
