// Pieces shared by the CPU SoftSort kernels: the per-batch-element sorted keys and decays, the
// gather of tokens into sorted order, and the weights of the general-p path.
// Included by softsort_cpu_impl.h inside namespace s6kit::cpu::S6KIT_ISA.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "s6kit/cpu/parallel.h"
#include "s6kit/cpu/storage.h"
#include "s6kit/cpu/vecmath.h"
#include "s6kit/softsort_params.h"

namespace s6kit::cpu::S6KIT_ISA {
namespace softsort {

template <typename T>
using Vec = std::vector<T>;

// Channels processed together by the vectorised scans (one lane each).
constexpr int64_t kLanes = 8;

// kLanes values as one vector (GCC / Clang vector extension: AVX registers in the avx2 variant,
// pairs of SSE registers in the generic one). Only inline code passes them around, so the
// calling-convention note of -Wpsabi does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename T>
struct LaneOf;
template <>
struct LaneOf<float> {
  typedef float type __attribute__((vector_size(sizeof(float) * kLanes)));
};
template <>
struct LaneOf<double> {
  typedef double type __attribute__((vector_size(sizeof(double) * kLanes)));
};
template <typename T>
using Lane = typename LaneOf<T>::type;

template <typename T>
inline Lane<T> lane_load(const T* p) {
  Lane<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

template <typename T>
inline void lane_store(T* p, const Lane<T>& v) { std::memcpy(p, &v, sizeof v); }

template <typename acc_t>
inline acc_t nan_value() { return std::numeric_limits<acc_t>::quiet_NaN(); }

// Decay multipliers A in [0, 1] of the p = 1 scans, one value m that keeps the relative precision
// of A at both ends (the CUDA kernels use the same encoding, cuda/softsort_device.cuh):
//   sign bit clear: m = 1 - A with A >= 1/2;   sign bit set: m = -A with A < 1/2.
// Decays of dense keys sit just below 1, where float32 stores 1 - A only to a multiple of 2^-24;
// the gaps of sorted float32 keys have few significant bits, so that rounding is biased and adds
// up along long rows. The complement keeps it exact to the last bit.
template <typename acc_t>
inline acc_t decay_multiplier(acc_t u) {  // exp(-u), u = gap / tau >= 0
  if (!(u > 0)) return acc_t(0);  // also u = -0 (keys +0 after -0): A = 1
  if (u < acc_t(0.69314718055994531)) return acc_t(-std::expm1(-double(u)));
  return acc_t(-std::exp(-double(u)));
}
template <typename acc_t, typename V>
inline V mul_apply(acc_t m, const V& h, const V& v) {  // A h + v
  return std::signbit(m) ? (-m) * h + v : (h - m * h) + v;
}
template <typename acc_t, typename V>
inline V mul_scale(acc_t m, const V& h) {  // A h
  return std::signbit(m) ? (-m) * h : h - m * h;
}
template <typename acc_t>
constexpr acc_t kMulZero = -acc_t(0);  // A = 0

// What every channel of one batch element shares: keys in sorted order (non-increasing), the
// permutation, and for p = 1 the decays a_i = exp(-(k_{i-1} - k_i) / tau) (a_0 = 0, encoded as
// above) and the tie flags k_i == k_{i-1}; 1 / Z_i for both paths; the band [lo_i, hi_i] for
// general p.
template <typename acc_t>
struct RowInfo {
  Vec<acc_t> key, decay, inv_z;
  Vec<uint8_t> tie;
  Vec<int64_t> lo, hi;
  const int64_t* perm = nullptr;
  bool finite = true;  // all scores finite; otherwise every output of the element is NaN
};

template <typename acc_t>
inline acc_t exp_neg(acc_t u) { return exp_fast(-u); }

// Weight of the general-p path at key distance d >= 0: exactly 0 beyond the band radius.
template <typename acc_t>
struct BandWeight {
  acc_t p, inv_tau, radius;
  bool p_is_two;
  // |d|^p
  acc_t power(acc_t d) const { return p_is_two ? d * d : std::pow(d, p); }
  acc_t k(acc_t d) const { return d > radius ? acc_t(0) : exp_neg(power(d) * inv_tau); }
  // K and W / sign: (p / tau) d^(p-1) K, 0 at d = 0 (ties carry no score gradient).
  void kw(acc_t d, acc_t& kv, acc_t& wv) const {
    if (d > radius) {
      kv = wv = 0;
      return;
    }
    const acc_t pw = power(d);
    kv = exp_neg(pw * inv_tau);
    wv = d > 0 ? p * inv_tau * (pw / d) * kv : acc_t(0);
  }
};

template <typename acc_t>
BandWeight<acc_t> band_weight(const SoftSortParams& p) {
  return {acc_t(p.p), acc_t(1.0 / p.tau), acc_t(p.band_radius), p.p == 2.0};
}

// Key distance |k_i - k_j| exactly as the band limits measure it (keys non-increasing).
template <typename acc_t>
inline acc_t key_dist(const acc_t* key, int64_t i, int64_t j) {
  return j <= i ? key[j] - key[i] : key[i] - key[j];
}

// `weights`: also the decays / band and 1 / Z (not needed by the hard forward).
template <typename acc_t>
void fill_row_info(const SoftSortParams& p, int64_t b, bool weights, RowInfo<acc_t>& r) {
  const int64_t L = p.seqlen;
  const acc_t* t = static_cast<const acc_t*>(p.sorted_scores) + b * L;
  const acc_t sign = p.descending ? acc_t(1) : acc_t(-1);
  r.perm = p.perm + b * L;
  r.key.resize(L);
  for (int64_t i = 0; i < L; ++i) r.key[i] = sign * t[i];
  // Sorting puts NaN and infinities at the ends.
  r.finite = L == 0 || (std::isfinite(r.key[0]) && std::isfinite(r.key[L - 1]));
  r.inv_z.assign(L, acc_t(1));
  if (!r.finite || !weights) return;
  const acc_t inv_tau = acc_t(1.0 / p.tau);
  if (p.p_is_one) {
    r.decay.resize(L);
    r.tie.resize(L);
    if (L > 0) {
      r.decay[0] = kMulZero<acc_t>;
      r.tie[0] = 0;
    }
    for (int64_t i = 1; i < L; ++i) {
      r.decay[i] = decay_multiplier((r.key[i - 1] - r.key[i]) * inv_tau);
      r.tie[i] = r.key[i] == r.key[i - 1];
    }
    // Z = left inclusive + right exclusive scans of ones.
    Vec<acc_t> left(L);
    acc_t acc = 0;
    for (int64_t i = 0; i < L; ++i) left[i] = acc = mul_apply(r.decay[i], acc, acc_t(1));
    acc = 0;
    for (int64_t i = L - 1; i >= 0; --i) {
      r.inv_z[i] = acc_t(1) / (left[i] + acc);
      acc = mul_scale(r.decay[i], acc + acc_t(1));
    }
  } else {
    const BandWeight<acc_t> wt = band_weight<acc_t>(p);
    const acc_t* key = r.key.data();
    r.lo.resize(L);
    r.hi.resize(L);
    int64_t lo = 0, hi = 0;
    for (int64_t i = 0; i < L; ++i) {
      while (key_dist(key, i, lo) > wt.radius) ++lo;
      if (hi < i) hi = i;
      while (hi + 1 < L && key_dist(key, i, hi + 1) <= wt.radius) ++hi;
      r.lo[i] = lo;
      r.hi[i] = hi;
      acc_t z = 0;
      for (int64_t j = lo; j <= hi; ++j) z += wt.k(key_dist(key, i, j));
      r.inv_z[i] = acc_t(1) / z;
    }
  }
}

template <typename acc_t>
Vec<RowInfo<acc_t>> all_row_info(const SoftSortParams& p, bool weights, int num_threads) {
  Vec<RowInfo<acc_t>> rows(p.batch);
  const double work = p.p_is_one ? 30.0 * p.seqlen : 30.0 * p.seqlen * p.seqlen;
  parallel_for(p.batch, num_threads, work, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) fill_row_info<acc_t>(p, b, weights, rows[b]);
  });
  return rows;
}

// y[i * kLanes + c] = x[b, d0 + c, perm[i]] for c < nc, 0 for the lanes past the last channel.
template <typename in_t, typename acc_t>
void gather_lanes(const SoftSortParams& p, const int64_t* perm, int64_t b, int64_t d0, int64_t nc,
                  acc_t* y) {
  const int64_t L = p.seqlen;
  const in_t* x = static_cast<const in_t*>(p.x) + b * p.x_batch_stride + d0 * p.x_dim_stride;
  for (int64_t c = nc; c < kLanes; ++c)
    for (int64_t i = 0; i < L; ++i) y[i * kLanes + c] = 0;
  for (int64_t c = 0; c < nc; ++c) {
    const in_t* row = x + c * p.x_dim_stride;
    for (int64_t i = 0; i < L; ++i) y[i * kLanes + c] = load<acc_t>(row[perm[i]]);
  }
}

// Rows (batch, dim, L) contiguous of the input dtype, written from lanes in sorted order.
template <typename in_t, typename acc_t>
void store_lanes(in_t* rows, int64_t L, int64_t nc, const acc_t* v) {
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i = 0; i < L; ++i) rows[c * L + i] = store<in_t>(v[i * kLanes + c]);
}

template <typename in_t>
void fill_nan_rows(in_t* rows, int64_t n) {
  const in_t v = store<in_t>(std::numeric_limits<float>::quiet_NaN());
  std::fill(rows, rows + n, v);
}

}  // namespace softsort
}  // namespace s6kit::cpu::S6KIT_ISA
