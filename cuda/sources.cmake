# CUDA sources of the s6kit core, included by CMakeLists.txt when nvcc is found.
list(APPEND S6KIT_CUDA_SOURCES
  cuda/softsort_aux.cu
  cuda/softsort_band.cu
  cuda/softsort_launch.cu
  cuda/softsort_scan.cu
  cuda/softsort_scan_bf16.cu
  cuda/softsort_scan_f16.cu
  cuda/softsort_scan_f32.cu
)
