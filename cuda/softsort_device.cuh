// Device helpers of the CUDA SoftSort kernels: storage conversion, block-wide scans of affine
// maps (both directions at once), integer block scans, and asynchronous row copies into shared
// memory.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace s6kit::cuda_softsort {

constexpr unsigned kFull = 0xffffffffu;

// ---- storage <-> float ------------------------------------------------------------------------

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float nan_f() { return __int_as_float(0x7fffffff); }

// ---- decay multipliers ------------------------------------------------------------------------
//
// The scans multiply by products A of decays exp(-gap / tau), A in [0, 1]. With dense keys (long
// rows) single decays sit just below 1, where float32 keeps 1 - A only to a multiple of 2^-24:
// at L = 65536 a typical 1 - a is 3e-5, stored to 0.1 %, and since sorted float32 keys have few
// significant bits in their gaps the rounding is biased and adds up along the row (4e-4 of the
// output's scale). So a multiplier is one float m that keeps its relative precision at both ends:
//   sign bit clear: m = B = 1 - A  with A >= 1/2 (near 1: the complement is stored),
//   sign bit set:   m = -A         with A <  1/2 (may be tiny: A itself is stored);
// +0 is the identity (A = 1), -0 is A = 0.

constexpr float kMulIdentity = 0.f;
constexpr float kMulZero = -0.f;

__device__ __forceinline__ bool mul_is_a(float m) { return signbit(m); }

// The multiplier exp(-u) for u = gap / tau >= 0. Below ln 2 the complement -expm1(-u) comes from
// its series (10 terms: relative error below 1e-8 for u < ln 2). Both forms are computed and one is
// selected (neighbouring positions take different ones: branches would diverge).
__device__ __forceinline__ float mul_from_gap(float u) {
  float s = 1.f / 3628800.f;
  s = fmaf(s, -u, 1.f / 362880.f);
  s = fmaf(s, -u, 1.f / 40320.f);
  s = fmaf(s, -u, 1.f / 5040.f);
  s = fmaf(s, -u, 1.f / 720.f);
  s = fmaf(s, -u, 1.f / 120.f);
  s = fmaf(s, -u, 1.f / 24.f);
  s = fmaf(s, -u, 1.f / 6.f);
  s = fmaf(s, -u, 0.5f);
  s = fmaf(s, -u, 1.f);
  const float series = u * s;  // u - u^2/2 + u^3/6 - ...
  const float direct = -__expf(-u);
  if (!(u > 0.f)) return kMulIdentity;  // also u = -0 (keys +0 after -0)
  return u < 0.69314718f ? series : direct;
}

// The product of two multipliers (commutative), branch-free: the complement form 1 - (1 - e)(1 - l)
// when both are complements and it stays at least 1/2, the product of the plain values otherwise
// (below 1/2: one factor is).
__device__ __forceinline__ float mul_then(float e, float l) {
  const float ae = mul_is_a(e) ? -e : 1.f - e;
  const float al = mul_is_a(l) ? -l : 1.f - l;
  const float plain = -(ae * al);
  const float b = fmaf(-e, l, e) + l;
  return !mul_is_a(e) && !mul_is_a(l) && b <= 0.5f ? b : plain;
}

// A as a plain float (rounded once).
__device__ __forceinline__ float mul_value(float m) { return mul_is_a(m) ? -m : 1.f - m; }

// ---- block-wide scans whose multipliers are fixed per tile --------------------------------------
//
// Thread t holds a map h -> A_t h + v_t. A_t (the decays over its positions) is the same for every
// channel of a batch element; v_t differs per channel. So the multipliers of the exclusive
// block-wide scans are worked out once per tile (scan_multipliers) and each channel's scan
// (scan_values) moves values only: one shuffle and one multiply-add per level, no multiplier
// arithmetic. Both directions at once: `left` composes the threads before this one (in thread
// order), `right` the threads after it (in reverse order).
//
// The multipliers are products along the row, so they are formed in the encoded form above
// (mul_then); each is then rounded once to a plain float, which a value meets at most
// kLevels + kWarpLevels + 2 times on its way through a scan, however long the row. The value
// scans then need one fma per level, where applying the encoded form (both of its forms, then a
// select) took four instructions.

constexpr int kLevels = 5;      // of a warp-wide scan
constexpr int kWarpLevels = 4;  // of the scan over the warp totals: blocks of at most 16 warps

// One direction's multipliers, for one thread, as plain decays A (see above).
struct ScanMul {
  float lane_lvl[kLevels];  // warp scan: this lane's segment multiplier before each level (the
                            // zero map where the level has no partner lane: no lane conditions
                            // in the value scans)
  float lane_excl;          // of the lanes before this one in its warp
  float warp_lvl[kWarpLevels];  // scan over the warp totals (lanes < warps), likewise
  float total;              // of every thread before this one: carries a tile's input in
};

// ml / mr: this thread's map multipliers (left / right direction). `mt`: 64 floats of shared
// memory. Block-wide; one barrier.
__device__ inline void scan_multipliers(float ml, float mr, ScanMul& L, ScanMul& R,
                                        float (&mt)[2][32]) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float cl = ml, cr = mr;
#pragma unroll
  for (int k = 0; k < kLevels; ++k) {
    const int d = 1 << k;
    L.lane_lvl[k] = lane >= d ? cl : kMulZero;  // no partner d lanes away: A = 0 adds nothing
    R.lane_lvl[k] = lane + d < 32 ? cr : kMulZero;
    const float el = __shfl_up_sync(kFull, cl, d), er = __shfl_down_sync(kFull, cr, d);
    if (lane >= d) cl = mul_then(el, cl);
    if (lane + d < 32) cr = mul_then(er, cr);
  }
  const float xl = __shfl_up_sync(kFull, cl, 1), xr = __shfl_down_sync(kFull, cr, 1);
  L.lane_excl = lane > 0 ? xl : kMulIdentity;
  R.lane_excl = lane < 31 ? xr : kMulIdentity;
  if (lane == 31) mt[0][wid] = cl;
  if (lane == 0) mt[1][wid] = cr;
  __syncthreads();
  float tl = lane < nw ? mt[0][lane] : kMulIdentity, tr = lane < nw ? mt[1][lane] : kMulIdentity;
#pragma unroll
  for (int k = 0; k < kWarpLevels; ++k) {
    const int d = 1 << k;
    L.warp_lvl[k] = lane >= d ? tl : kMulZero;
    R.warp_lvl[k] = lane + d < 32 ? tr : kMulZero;
    const float el = __shfl_up_sync(kFull, tl, d), er = __shfl_down_sync(kFull, tr, d);
    if (lane >= d) tl = mul_then(el, tl);
    if (lane + d < 32) tr = mul_then(er, tr);
  }
  const float pl = __shfl_sync(kFull, tl, wid > 0 ? wid - 1 : 0);
  const float pr = __shfl_sync(kFull, tr, wid + 1 < nw ? wid + 1 : 0);
  L.total = wid > 0 ? mul_then(pl, L.lane_excl) : L.lane_excl;
  R.total = wid + 1 < nw ? mul_then(pr, R.lane_excl) : R.lane_excl;
  auto to_plain = [](ScanMul& m) {
#pragma unroll
    for (int k = 0; k < kLevels; ++k) m.lane_lvl[k] = mul_value(m.lane_lvl[k]);
#pragma unroll
    for (int k = 0; k < kWarpLevels; ++k) m.warp_lvl[k] = mul_value(m.warp_lvl[k]);
    m.lane_excl = mul_value(m.lane_excl);
    m.total = mul_value(m.total);
  };
  to_plain(L);
  to_plain(R);
}

// Exclusive scans of N values per thread and direction, in place: on return l[k] is
// sum over the threads t' before this one of (A from t' to here) v_t', r[k] the same over the
// threads after it. `vt` (2 x N x 32 floats of shared memory) must not be the buffer of the
// previous call (callers alternate two): then one barrier per call suffices. Block-wide.
template <int N>
__device__ void scan_values(float (&l)[N], float (&r)[N], const ScanMul& L, const ScanMul& R,
                            float (&vt)[2][N][32]) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int k = 0; k < kLevels; ++k) {
    const int d = 1 << k;
#pragma unroll
    for (int q = 0; q < N; ++q) {
      const float el = __shfl_up_sync(kFull, l[q], d), er = __shfl_down_sync(kFull, r[q], d);
      l[q] = fmaf(L.lane_lvl[k], el, l[q]);  // A = 0 where there is no partner
      r[q] = fmaf(R.lane_lvl[k], er, r[q]);
    }
  }
  float xl[N], xr[N];
#pragma unroll
  for (int q = 0; q < N; ++q) {
    if (lane == 31) vt[0][q][wid] = l[q];
    if (lane == 0) vt[1][q][wid] = r[q];
    xl[q] = __shfl_up_sync(kFull, l[q], 1);
    xr[q] = __shfl_down_sync(kFull, r[q], 1);
    if (lane == 0) xl[q] = 0.f;
    if (lane == 31) xr[q] = 0.f;
  }
  __syncthreads();
  if (nw == 1) {
#pragma unroll
    for (int q = 0; q < N; ++q) {
      l[q] = xl[q];
      r[q] = xr[q];
    }
    return;
  }
#pragma unroll
  for (int q = 0; q < N; ++q) {
    l[q] = lane < nw ? vt[0][q][lane] : 0.f;
    r[q] = lane < nw ? vt[1][q][lane] : 0.f;
  }
#pragma unroll
  for (int k = 0; k < kWarpLevels; ++k) {
    const int d = 1 << k;
#pragma unroll
    for (int q = 0; q < N; ++q) {
      const float el = __shfl_up_sync(kFull, l[q], d), er = __shfl_down_sync(kFull, r[q], d);
      l[q] = fmaf(L.warp_lvl[k], el, l[q]);
      r[q] = fmaf(R.warp_lvl[k], er, r[q]);
    }
  }
#pragma unroll
  for (int q = 0; q < N; ++q) {
    const float pl = __shfl_sync(kFull, l[q], wid > 0 ? wid - 1 : 0);
    const float pr = __shfl_sync(kFull, r[q], wid + 1 < nw ? wid + 1 : 0);
    l[q] = fmaf(L.lane_excl, wid > 0 ? pl : 0.f, xl[q]);
    r[q] = fmaf(R.lane_excl, wid + 1 < nw ? pr : 0.f, xr[q]);
  }
}

// Exclusive block-wide max over the threads before this one (kReverse: min over the threads
// after it). `none` is returned where there is no such thread. Synchronises twice.
template <bool kReverse>
__device__ int block_scan_int(int v, int none, int* scratch /* 32 ints */) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  auto op = [](int a, int b) { return kReverse ? min(a, b) : max(a, b); };
  int inc = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int e = kReverse ? __shfl_down_sync(kFull, inc, d) : __shfl_up_sync(kFull, inc, d);
    if (kReverse ? lane + d < 32 : lane >= d) inc = op(inc, e);
  }
  if (lane == (kReverse ? 0 : 31)) scratch[wid] = inc;
  int ex = kReverse ? __shfl_down_sync(kFull, inc, 1) : __shfl_up_sync(kFull, inc, 1);
  if (lane == (kReverse ? 31 : 0)) ex = none;
  __syncthreads();
  for (int w = 0; w < nw; ++w)
    if (kReverse ? w > wid : w < wid) ex = op(ex, scratch[w]);
  __syncthreads();
  return ex;
}

// Sum over the warp (every lane gets it).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(kFull, v, d);
  return v;
}

// Sum of one value per warp of the block, in warp order.
__device__ __forceinline__ float sum_warps(const float* per_warp) {
  float s = 0.f;
  for (int w = 0; w < int(blockDim.x >> 5); ++w) s += per_warp[w];
  return s;
}

// Sum over the block (every thread gets it). Synchronises twice.
__device__ __forceinline__ float block_sum(float v, float* scratch /* 32 floats */) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v += __shfl_xor_sync(kFull, v, d);
  if (lane == 0) scratch[wid] = v;
  __syncthreads();
  float s = 0.f;
  for (int w = 0; w < nw; ++w) s += scratch[w];
  __syncthreads();
  return s;
}

// ---- rows into shared memory ------------------------------------------------------------------

__device__ __forceinline__ void cp_async16(unsigned smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
// Wait until at most n of this thread's committed groups are pending (n in 0..3).
__device__ __forceinline__ void cp_async_wait(int n) {
  switch (n) {
    case 0: asm volatile("cp.async.wait_group 0;\n" ::); break;
    case 1: asm volatile("cp.async.wait_group 1;\n" ::); break;
    case 2: asm volatile("cp.async.wait_group 2;\n" ::); break;
    default: asm volatile("cp.async.wait_group 3;\n" ::); break;
  }
}

// Whether row[0, L) of every row `stride` elements apart from `first` is a whole number of
// 16-byte chunks at 16-byte aligned addresses (copied by cp.async then).
template <typename T>
__device__ __forceinline__ bool rows_in_chunks(const T* first, int64_t stride, int L) {
  return reinterpret_cast<uintptr_t>(first) % 16 == 0 && (stride * sizeof(T)) % 16 == 0 &&
         (int64_t(L) * sizeof(T)) % 16 == 0;
}

// Starts copying row[0, L) into shared memory at `dst` (generic) / `dst_s` (its shared address):
// 16-byte asynchronous copies when `chunks` (rows_in_chunks), plain loads otherwise. The caller
// commits.
template <typename T>
__device__ void row_to_smem(T* dst, unsigned dst_s, const T* src, int L, bool chunks) {
  if (chunks) {
    const int n = static_cast<int>(static_cast<int64_t>(L) * sizeof(T) / 16);
    for (int k = threadIdx.x; k < n; k += blockDim.x)
      cp_async16(dst_s + 16 * k, reinterpret_cast<const char*>(src) + 16 * k);
  } else {
    for (int k = threadIdx.x; k < L; k += blockDim.x) dst[k] = src[k];
  }
}

// ---- E consecutive elements of a thread ---------------------------------------------------------

// v[j] = row[(s + j) * stride] for s + j < L, 0 past the end; 16-byte loads when possible.
// `row` may point to global or shared memory.
template <typename T, int E>
__device__ __forceinline__ void load_run(const T* row, int64_t stride, int s, int L, float (&v)[E]) {
  static_assert((E * sizeof(T)) % 16 == 0, "a run is a whole number of 16-byte chunks");
  const T* p = row + static_cast<int64_t>(s) * stride;
  if (stride == 1 && s + E <= L && reinterpret_cast<uintptr_t>(p) % 16 == 0) {
    constexpr int kChunks = E * sizeof(T) / 16, kPer = 16 / sizeof(T);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const uint4 u = reinterpret_cast<const uint4*>(p)[c];  // global or shared memory
      const T* e = reinterpret_cast<const T*>(&u);
#pragma unroll
      for (int k = 0; k < kPer; ++k) v[c * kPer + k] = to_f(e[k]);
    }
  } else {
#pragma unroll
    for (int j = 0; j < E; ++j) v[j] = s + j < L ? to_f(p[static_cast<int64_t>(j) * stride]) : 0.f;
  }
}

// load_run for rows of the output gradient, which may be a broadcast row (stride 0: the gradient
// of a sum or a mean): then one load.
template <typename T, int E>
__device__ __forceinline__ void load_grad_run(const T* row, int64_t stride, int s, int L,
                                              float (&v)[E]) {
  if (stride == 0) {
    const float v0 = to_f(*row);
#pragma unroll
    for (int j = 0; j < E; ++j) v[j] = s + j < L ? v0 : 0.f;
  } else {
    load_run<T, E>(row, stride, s, L, v);
  }
}

// idx[j] = p[s + j] for s + j < L, `none` past the end; 16-byte loads when possible.
template <int E>
__device__ __forceinline__ void load_indices(const int* p, int s, int L, int none, int (&idx)[E]) {
  static_assert(E % 4 == 0, "a run is a whole number of 16-byte chunks");
  if (s + E <= L && reinterpret_cast<uintptr_t>(p + s) % 16 == 0) {
#pragma unroll
    for (int c = 0; c < E / 4; ++c) {
      const int4 u = reinterpret_cast<const int4*>(p + s)[c];
      idx[4 * c] = u.x;
      idx[4 * c + 1] = u.y;
      idx[4 * c + 2] = u.z;
      idx[4 * c + 3] = u.w;
    }
  } else {
#pragma unroll
    for (int j = 0; j < E; ++j) idx[j] = s + j < L ? p[s + j] : none;
  }
}

// row[s + j] = v[j] for s + j < L; 16-byte stores when possible.
template <typename T, int E>
__device__ __forceinline__ void store_run(T* row, int s, int L, const float (&v)[E]) {
  T* p = row + s;
  if (s + E <= L && reinterpret_cast<uintptr_t>(p) % 16 == 0) {
    constexpr int kChunks = E * sizeof(T) / 16, kPer = 16 / sizeof(T);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      uint4 u;
      T* e = reinterpret_cast<T*>(&u);
#pragma unroll
      for (int k = 0; k < kPer; ++k) e[k] = from_f<T>(v[c * kPer + k]);
      reinterpret_cast<uint4*>(p)[c] = u;
    }
  } else {
#pragma unroll
    for (int j = 0; j < E; ++j)
      if (s + j < L) p[j] = from_f<T>(v[j]);
  }
}

}  // namespace s6kit::cuda_softsort
