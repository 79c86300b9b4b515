// Backward kernels for float storage.
#include "scan_launch_impl.cuh"

namespace s6kit::cuda_scan {
template void launch_bwd<float>(const BwdArgs&, cudaStream_t);
}  // namespace s6kit::cuda_scan
