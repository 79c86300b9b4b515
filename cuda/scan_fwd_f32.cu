// Forward kernels for float storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_fwd<float>(const FwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
