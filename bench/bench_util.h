// Helpers of the C++ benchmark binaries: random buffers, descriptors, timing, flags.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "s6kit/tensor.h"

namespace s6kit::bench {

inline TensorDesc make_desc(void* data, DType dt, std::vector<int64_t> shape,
                            Device dev = Device::cpu) {
  TensorDesc d;
  d.data = data;
  d.dtype = dt;
  d.ndim = static_cast<int32_t>(shape.size());
  int64_t stride = 1;
  for (int i = d.ndim - 1; i >= 0; --i) {
    d.shape[i] = shape[i];
    d.strides[i] = stride;
    stride *= shape[i];
  }
  d.device = dev;
  return d;
}

inline std::vector<float> randn(int64_t n, float scale, float shift, uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen) * scale + shift;
  return v;
}

inline std::vector<float> uniform(int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

// Median wall time in milliseconds of `reps` calls after `warmup` calls.
template <typename Fn>
double median_ms(Fn&& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    auto t1 = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// --name=value flags.
inline std::string flag(int argc, char** argv, const char* name, const char* dflt) {
  const size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--", 2) == 0 && std::strncmp(argv[i] + 2, name, n) == 0 &&
        argv[i][2 + n] == '=')
      return argv[i] + 3 + n;
  return dflt;
}

// "2,256,1024,16" -> {2, 256, 1024, 16}
inline std::vector<int64_t> parse_shape(const std::string& s) {
  std::vector<int64_t> v;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t next = s.find(',', pos);
    if (next == std::string::npos) next = s.size();
    v.push_back(std::stoll(s.substr(pos, next - pos)));
    pos = next + 1;
  }
  return v;
}

}  // namespace s6kit::bench
