// CUDA error checks of the launchers: a failed call becomes a C++ exception naming the step.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace s6kit::cuda_scan {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("s6kit CUDA selective scan: ") + what + " failed: " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

}  // namespace s6kit::cuda_scan
