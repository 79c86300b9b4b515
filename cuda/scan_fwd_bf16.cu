// Forward kernels for __nv_bfloat16 storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_fwd<__nv_bfloat16>(const FwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
