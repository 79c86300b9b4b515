// Backward kernels for __half storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_bwd<__half>(const BwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
