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
// its series (10 terms: relative error below 1e-8 for u < ln 2).
__device__ __forceinline__ float mul_from_gap(float u) {
  if (!(u > 0.f)) return kMulIdentity;  // also u = -0 (keys +0 after -0)
  if (u < 0.69314718f) {
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
    return u * s;  // u - u^2/2 + u^3/6 - ...
  }
  return -__expf(-u);
}

// A h + v.
__device__ __forceinline__ float mul_apply(float m, float h, float v) {
  return mul_is_a(m) ? fmaf(-m, h, v) : fmaf(-m, h, h) + v;
}

// A h.
__device__ __forceinline__ float mul_scale(float m, float h) {
  return mul_is_a(m) ? -m * h : fmaf(-m, h, h);
}

// The product of two multipliers (commutative).
__device__ __forceinline__ float mul_then(float e, float l) {
  if (!mul_is_a(e) && !mul_is_a(l)) {
    const float b = fmaf(-e, l, e) + l;  // 1 - (1 - e)(1 - l)
    if (b <= 0.5f) return b;
    return -((1.f - e) * (1.f - l));
  }
  const float ae = mul_is_a(e) ? -e : 1.f - e;
  const float al = mul_is_a(l) ? -l : 1.f - l;
  return -(ae * al);  // below 1/2: one factor is
}

// ---- affine maps h -> A h + v (N values sharing one multiplier) ---------------------------------

template <int N>
struct Affine {
  float m;  // the multiplier A, encoded as above
  float v[N];
};

template <int N>
__device__ __forceinline__ Affine<N> affine_identity() {
  Affine<N> r;
  r.m = kMulIdentity;
#pragma unroll
  for (int k = 0; k < N; ++k) r.v[k] = 0.f;
  return r;
}

// `later` applied after `earlier`.
template <int N>
__device__ __forceinline__ Affine<N> affine_then(const Affine<N>& earlier, const Affine<N>& later) {
  Affine<N> r;
  r.m = mul_then(earlier.m, later.m);
#pragma unroll
  for (int k = 0; k < N; ++k) r.v[k] = mul_apply(later.m, earlier.v[k], later.v[k]);
  return r;
}

template <int N>
__device__ __forceinline__ Affine<N> shfl_affine(const Affine<N>& a, int src) {
  Affine<N> r;
  r.m = __shfl_sync(kFull, a.m, src);
#pragma unroll
  for (int k = 0; k < N; ++k) r.v[k] = __shfl_sync(kFull, a.v[k], src);
  return r;
}

// Inclusive warp scan in lane order (kReverse: from lane 31 down).
template <int N, bool kReverse>
__device__ __forceinline__ void warp_scan_affine(Affine<N>& m, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    Affine<N> e;
    e.m = kReverse ? __shfl_down_sync(kFull, m.m, d) : __shfl_up_sync(kFull, m.m, d);
#pragma unroll
    for (int k = 0; k < N; ++k)
      e.v[k] = kReverse ? __shfl_down_sync(kFull, m.v[k], d) : __shfl_up_sync(kFull, m.v[k], d);
    const bool has = kReverse ? lane + d < 32 : lane >= d;
    if (has) m = affine_then(e, m);
  }
}

// Scratch of block_scan_affine2: 64 maps.
template <int N>
struct ScanScratch {
  Affine<N> tot[2][32];
};

// Exclusive block-wide scans of per-thread maps: `left` over the threads before this one (in
// thread order), `right` over the threads after it (in reverse order). On return each holds the
// composition of the maps before / after this thread (identity for the first / last thread).
// All threads of the block must call it; it synchronises the block twice.
template <int N>
__device__ void block_scan_affine2(Affine<N>& left, Affine<N>& right, ScanScratch<N>& sc) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  Affine<N> li = left, ri = right;
  warp_scan_affine<N, false>(li, lane);
  warp_scan_affine<N, true>(ri, lane);
  if (lane == 31) sc.tot[0][wid] = li;
  if (lane == 0) sc.tot[1][wid] = ri;
  Affine<N> le = shfl_affine(li, lane > 0 ? lane - 1 : 0);
  Affine<N> re = shfl_affine(ri, lane < 31 ? lane + 1 : 31);
  if (lane == 0) le = affine_identity<N>();
  if (lane == 31) re = affine_identity<N>();
  __syncthreads();
  if (nw > 1) {
    Affine<N> tl = lane < nw ? sc.tot[0][lane] : affine_identity<N>();
    Affine<N> tr = lane < nw ? sc.tot[1][lane] : affine_identity<N>();
    warp_scan_affine<N, false>(tl, lane);
    warp_scan_affine<N, true>(tr, lane);
    Affine<N> pl = shfl_affine(tl, wid > 0 ? wid - 1 : 0);
    Affine<N> pr = shfl_affine(tr, wid + 1 < nw ? wid + 1 : 0);
    if (wid == 0) pl = affine_identity<N>();
    if (wid + 1 >= nw) pr = affine_identity<N>();
    le = affine_then(pl, le);
    re = affine_then(pr, re);
  }
  left = le;
  right = re;
  __syncthreads();  // the scratch may be reused right away
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

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
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

// Starts copying row[0, L) into dst: 16-byte asynchronous copies when both are 16-byte aligned
// and the row is a whole number of 16-byte chunks, plain loads otherwise. The caller commits.
template <typename T>
__device__ void row_to_smem(T* dst, const T* src, int L) {
  const bool vec = (reinterpret_cast<uintptr_t>(src) % 16 == 0) &&
                   ((static_cast<int64_t>(L) * sizeof(T)) % 16 == 0);
  if (vec) {
    const int chunks = static_cast<int>(static_cast<int64_t>(L) * sizeof(T) / 16);
    for (int k = threadIdx.x; k < chunks; k += blockDim.x)
      cp_async16(reinterpret_cast<char*>(dst) + 16 * k, reinterpret_cast<const char*>(src) + 16 * k);
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
