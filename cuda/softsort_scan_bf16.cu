// The p = 1 row kernels for __nv_bfloat16 storage (see softsort_scan.cuh).
#include "softsort_scan.cuh"

namespace s6kit::cuda_softsort {

template void launch_fwd_t<__nv_bfloat16>(const Args&, cudaStream_t, size_t);
template void launch_bwd_t<__nv_bfloat16>(const Args&, RowKernel, cudaStream_t, size_t);
template const void* row_kernel_handle_t<__nv_bfloat16>(RowKernel);

}  // namespace s6kit::cuda_softsort
