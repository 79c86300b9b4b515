// The p = 1 row kernels for float storage (see softsort_scan.cuh and softsort_tiles.cuh).
#include "softsort_scan.cuh"
#include "softsort_tiles.cuh"

namespace s6kit::cuda_softsort {

template void launch_fwd_t<float>(const Args&, cudaStream_t, size_t);
template void launch_bwd_t<float>(const Args&, cudaStream_t, size_t);
template const void* row_kernel_handle_t<float>(RowKernel);
template void launch_tiles_t<float>(const Args&, TileMode, bool, cudaStream_t);
template const void* tile_kernel_handle_t<float>(bool, bool);

}  // namespace s6kit::cuda_softsort
