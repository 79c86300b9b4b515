// Storage types of the CPU kernels and their conversions to the arithmetic type.
// float16 and bfloat16 are stored as raw 16-bit patterns; conversions round to nearest even.
#pragma once

#include <cstdint>
#include <cstring>

namespace s6kit::cpu {

struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };

inline uint32_t float_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }
inline float bits_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }

inline float to_float(bf16_t v) { return bits_float(uint32_t(v.bits) << 16); }

inline bf16_t to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40)};  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}

inline float to_float(f16_t v) {
  const uint32_t sign = uint32_t(v.bits & 0x8000u) << 16;
  uint32_t exp = (v.bits >> 10) & 0x1fu, man = v.bits & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    if (man == 0) return bits_float(sign);
    // Subnormal half: value = man * 2^-24.
    float f = float(man) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}

inline f16_t to_f16(float f) {
  uint32_t u = float_bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  u &= 0x7fffffffu;
  if (u > 0x7f800000u) return {uint16_t(sign | 0x7e00u)};        // NaN
  if (u >= 0x477ff000u) return {uint16_t(sign | 0x7c00u)};       // rounds to inf
  if (u < 0x38800000u) {                                         // subnormal half or zero
    // Add 0.5 so that the float adder rounds the value to a multiple of 2^-24, nearest even.
    float r = bits_float(u) + 0.5f;
    return {uint16_t(sign | (float_bits(r) - float_bits(0.5f)))};
  }
  const uint32_t odd = (u >> 13) & 1u;
  u += 0xc8000fffu + odd;  // rebias exponent (-112 << 23) and round to nearest even
  return {uint16_t(sign | (u >> 13))};
}

template <typename acc_t> inline acc_t load(float v) { return acc_t(v); }
template <typename acc_t> inline acc_t load(double v) { return acc_t(v); }
template <typename acc_t> inline acc_t load(bf16_t v) { return acc_t(to_float(v)); }
template <typename acc_t> inline acc_t load(f16_t v) { return acc_t(to_float(v)); }

template <typename st_t> inline st_t store(float v);
template <> inline float store<float>(float v) { return v; }
template <> inline double store<double>(float v) { return v; }
template <> inline bf16_t store<bf16_t>(float v) { return to_bf16(v); }
template <> inline f16_t store<f16_t>(float v) { return to_f16(v); }
template <typename st_t> inline st_t store(double v) { return store<st_t>(float(v)); }
template <> inline double store<double>(double v) { return v; }

}  // namespace s6kit::cpu
