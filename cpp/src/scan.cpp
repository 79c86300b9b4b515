// Routes the selective scan to its backend by the device of the inputs.
#include "s6kit/check.h"
#include "s6kit/scan.h"

namespace s6kit {

#ifndef S6KIT_WITH_CUDA
[[noreturn]] static void no_cuda() {
  throw ArgError(
      "selective_scan: argument 'u' is on a CUDA device, but this build of s6kit has no CUDA "
      "backend (it was built without nvcc; reinstall with nvcc on the PATH)");
}
#endif

void scan_fwd(const ScanParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return scan_fwd_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return scan_fwd_cuda(p, stream);
#else
  (void)stream;
  no_cuda();
#endif
}

void scan_bwd(const ScanBwdParams& p, void* stream, int num_threads) {
  if (p.device == Device::cpu) return scan_bwd_cpu(p, num_threads);
#ifdef S6KIT_WITH_CUDA
  return scan_bwd_cuda(p, stream);
#else
  (void)stream;
  no_cuda();
#endif
}

int64_t scan_fwd_workspace_bytes(const ScanParams& p) {
  if (p.device == Device::cpu) return scan_fwd_workspace_bytes_cpu(p);
#ifdef S6KIT_WITH_CUDA
  return scan_fwd_workspace_bytes_cuda(p);
#else
  no_cuda();
#endif
}

int64_t scan_bwd_workspace_bytes(const ScanBwdParams& p) {
  if (p.device == Device::cpu) return scan_bwd_workspace_bytes_cpu(p);
#ifdef S6KIT_WITH_CUDA
  return scan_bwd_workspace_bytes_cuda(p);
#else
  no_cuda();
#endif
}

}  // namespace s6kit
