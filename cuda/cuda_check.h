// What every CUDA launcher of s6kit shares: error checks that turn a failed call into a C++
// exception naming the step, a guard that runs the launches on the tensors' device, and the
// kernels' dynamic shared-memory limits.
#pragma once

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

namespace s6kit {

inline void cuda_check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("s6kit: CUDA call ") + what + " failed: " +
                             cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

// Makes `device` current for the scope and restores the caller's current device.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    cuda_check(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != device) cuda_check(cudaSetDevice(device), "cudaSetDevice");
    cur_ = device;
  }
  ~DeviceGuard() {
    if (prev_ != cur_) cudaSetDevice(prev_);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0, cur_ = 0;
};

// Lets `kernel` launch with `bytes` of dynamic shared memory on the current device (its limit must
// be raised whenever static plus dynamic shared memory exceed the default 48 KB); with
// `max_carveout`, also asks for the largest shared-memory carveout. Each setting is a driver call,
// so the grant per device and kernel is remembered and only ever raised.
inline void allow_dynamic_smem(const void* kernel, size_t bytes, bool max_carveout = false) {
  static std::mutex mutex;
  static std::map<std::pair<int, const void*>, size_t> granted;  // absent: nothing set yet
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(device, kernel);
  const auto it = granted.find(key);
  if (it != granted.end() && bytes <= it->second) return;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
             "cudaFuncSetAttribute(MaxDynamicSharedMemorySize)");
  if (max_carveout && it == granted.end())
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                    int(cudaSharedmemCarveoutMaxShared)),
               "cudaFuncSetAttribute(PreferredSharedMemoryCarveout)");
  granted[key] = bytes;
}

}  // namespace s6kit
