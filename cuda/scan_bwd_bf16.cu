// Backward kernels for __nv_bfloat16 storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_bwd<__nv_bfloat16>(const BwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
