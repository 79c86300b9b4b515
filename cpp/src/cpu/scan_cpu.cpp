// Chooses the CPU scan variant for the processor this runs on.
#include "s6kit/cpu/isa.h"
#include "s6kit/scan.h"
#include "scan_cpu_variants.h"

namespace s6kit {

void scan_fwd_cpu(const ScanParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::scan_fwd(p, num_threads);
#endif
  cpu::generic::scan_fwd(p, num_threads);
}

void scan_bwd_cpu(const ScanBwdParams& p, int num_threads) {
#ifdef S6KIT_CPU_AVX2
  if (cpu::use_avx2()) return cpu::avx2::scan_bwd(p, num_threads);
#endif
  cpu::generic::scan_bwd(p, num_threads);
}

// CPU scratch is internal.
int64_t scan_fwd_workspace_bytes_cpu(const ScanParams&) { return 0; }
int64_t scan_bwd_workspace_bytes_cpu(const ScanBwdParams&) { return 0; }

const char* cpu_isa() { return cpu::use_avx2() ? "avx2+fma" : "generic"; }

}  // namespace s6kit
