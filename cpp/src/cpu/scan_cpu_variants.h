// The instruction-set variants of the CPU scan (scan_cpu_impl.h compiled once per variant).
#pragma once

#include "s6kit/scan_params.h"

#define S6KIT_DECLARE_SCAN_VARIANT(ISA)                              \
  namespace s6kit::cpu::ISA {                                        \
  void scan_fwd(const ScanParams& p, int num_threads);               \
  void scan_bwd(const ScanBwdParams& p, int num_threads);            \
  }

S6KIT_DECLARE_SCAN_VARIANT(generic)
#ifdef S6KIT_CPU_AVX2
S6KIT_DECLARE_SCAN_VARIANT(avx2)
#endif

#undef S6KIT_DECLARE_SCAN_VARIANT
