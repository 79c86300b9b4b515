# CUDA sources of s6kit_core (included by the top-level CMakeLists.txt when nvcc is found).
# The scan: one translation unit per (direction, storage dtype) so that a parallel build compiles
# them side by side. The forward's hold A real or scalar x 2, 4 or 8 states per thread x rows
# 16-byte aligned or not; the backward's A real or scalar x 2, 4 or 8 states, 4 states once more
# with the exchange reduced four states per item, and the adjoint-only pass of the split along L.
# SoftSort: its launchers, auxiliary kernels, banded kernels and per-dtype row scans.
set(S6KIT_CUDA_SOURCES
  cuda/scan_cuda.cu
  cuda/scan_reduce.cu
  cuda/scan_split_combine.cu
  cuda/scan_fwd_f32.cu
  cuda/scan_fwd_f16.cu
  cuda/scan_fwd_bf16.cu
  cuda/scan_bwd_f32.cu
  cuda/scan_bwd_f16.cu
  cuda/scan_bwd_bf16.cu
  cuda/softsort_aux.cu
  cuda/softsort_band.cu
  cuda/softsort_launch.cu
  cuda/softsort_rank.cu
  cuda/softsort_scan.cu
  cuda/softsort_scan_bf16.cu
  cuda/softsort_scan_f16.cu
  cuda/softsort_scan_f32.cu
)
