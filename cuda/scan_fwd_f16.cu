// Forward kernels for __half storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_fwd<__half>(const FwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
