// Which instruction-set variant of the CPU kernels this processor runs.
#pragma once

namespace s6kit::cpu {

// True when the AVX2 + FMA variants are compiled in (x86-64) and the processor has both.
inline bool use_avx2() {
#ifdef S6KIT_CPU_AVX2
  static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return ok;
#else
  return false;
#endif
}

}  // namespace s6kit::cpu
