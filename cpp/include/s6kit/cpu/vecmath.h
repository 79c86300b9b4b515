// Branch-free exp, log1p, softplus and sigmoid that compilers vectorise inside `omp simd` loops.
// float: about 2 ulp over the range the scan uses; double: the C library's functions (the
// float64 path exists for reference-grade tests, not speed).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace s6kit::cpu {

// exp(x) by range reduction x = n ln2 + r, |r| <= ln2 / 2, and a degree-7 polynomial
// (Taylor coefficients, error < 2e-7 relative on the reduced range). Inputs below -87 give
// about 1e-38 instead of a denormal; above 88 they saturate at about 3e38.
inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float t = x * 1.4426950408889634f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest integer (1.5 * 2^23)
  float r = x - n * 0.693145751953125f;             // ln2, high part (exact product)
  r = r - n * 1.4286068203094172e-06f;              // ln2, low part
  float p = 1.9841270e-4f;                          // 1/7!
  p = p * r + 1.3888889e-3f;
  p = p * r + 8.3333333e-3f;
  p = p * r + 4.1666667e-2f;
  p = p * r + 1.6666667e-1f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  const uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}
inline double exp_fast(double x) { return std::exp(x); }

// log1p(y) for y in [0, 1]: 2 atanh(s) with s = y / (2 + y) in [0, 1/3], odd series to s^17.
inline float log1p_unit(float y) {
  const float s = y / (2.0f + y);
  const float s2 = s * s;
  float p = 1.0f / 17;
  p = p * s2 + 1.0f / 15;
  p = p * s2 + 1.0f / 13;
  p = p * s2 + 1.0f / 11;
  p = p * s2 + 1.0f / 9;
  p = p * s2 + 1.0f / 7;
  p = p * s2 + 1.0f / 5;
  p = p * s2 + 1.0f / 3;
  p = p * s2 + 1.0f;
  return 2.0f * s * p;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow, no cancellation.
inline float softplus(float x) {
  const float ax = x < 0 ? -x : x;
  return (x > 0 ? x : 0.0f) + log1p_unit(exp_fast(-ax));
}
inline double softplus(double x) { return (x > 0 ? x : 0.0) + std::log1p(std::exp(-std::fabs(x))); }

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_fast(-x)); }
inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace s6kit::cpu
