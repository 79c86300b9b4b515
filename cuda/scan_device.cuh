// Device helpers of the CUDA selective scan: storage conversions, the scalar math of the scan
// (the same formulas as the CPU kernels, cpp/src/cpu/scan_cpu_impl.h), shared-memory state rows
// and per-row warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cassert>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "scan_layout.h"

namespace s6kit::cuda_scan {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullMask = 0xffffffffu;

__host__ __device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// 2^x on the special-function unit (one MUFU.EX2; inputs are dt * A * log2(e) <= 0 in practice).
__device__ __forceinline__ float fast_exp2(float x) {
#ifdef __CUDA_ARCH__
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
#else
  return exp2f(x);  // host compilation (the emulation test of tests/cuda_emulation)
#endif
}

__device__ __forceinline__ float sigmoid(float x) { return __fdividef(1.f, 1.f + __expf(-x)); }

// log(1 + t) for t in [0, 1]: 2 atanh(s) with s = t / (2 + t) <= 1/3, summed as its odd series
// 2 s (1 + s^2/3 + s^4/5 + ... + s^12/13) (truncation below 2e-8 relative). One division and six
// fmas: several times cheaper than the library's log1pf, to about 4e-7 relative in float32.
__device__ __forceinline__ float log1p_unit(float t) {
  const float s = __fdividef(t, 2.f + t), z = s * s;
  float q = 1.f / 13.f;
  q = fmaf(q, z, 1.f / 11.f);
  q = fmaf(q, z, 1.f / 9.f);
  q = fmaf(q, z, 1.f / 7.f);
  q = fmaf(q, z, 1.f / 5.f);
  q = fmaf(q, z, 1.f / 3.f);
  q = fmaf(q, z, 1.f);
  return 2.f * s * q;
}

// softplus(x) = log(1 + e^x) = max(x, 0) + log(1 + e^-|x|), branch-free (NaN stays NaN).
__device__ __forceinline__ float softplus(float x) {
  return fmaxf(x, 0.f) + log1p_unit(__expf(-fabsf(x)));
}

// sigmoid(x), the derivative of softplus, from dt = softplus(x): e^-dt = 1 / (1 + e^x), so
// sigmoid(x) = 1 - e^-dt; below dt = 1/16 (x below about -2.7) as the series of 1 - e^-dt to dt^4
// (truncation below 2e-7 relative), which keeps the precision of small dt that 1 - e^-dt loses.
__device__ __forceinline__ float sigmoid_from_softplus(float dt) {
  const float series = dt * fmaf(dt, fmaf(dt, fmaf(dt, -1.f / 24.f, 1.f / 6.f), -0.5f), 1.f);
  return dt < 0.0625f ? series : 1.f - __expf(-dt);
}

// Elements of one 16-byte vector of storage type in_t (8 for 16-bit types, 4 for float32).
template <typename in_t>
constexpr int kVec = 16 / int(sizeof(in_t));

// Raw vector of V elements of in_t (8 or 16 bytes).
template <typename in_t, int V>
using SpanBits = typename std::conditional<V * sizeof(in_t) == 16, uint4, uint2>::type;

// The bits of elements [gl, gl + V) of a row (pointer to its element 0); zero past L. One
// vector load when `vec` (the row start and its stride are 16-byte aligned: the launcher checks)
// and the span lies inside the row, element loads otherwise.
template <typename in_t, int V>
__device__ __forceinline__ SpanBits<in_t, V> load_span_bits(const in_t* row, int64_t gl, int64_t L,
                                                            bool vec) {
  static_assert(V * sizeof(in_t) == 8 || V * sizeof(in_t) == 16, "8- or 16-byte spans");
  if (vec && gl + V <= L) return *reinterpret_cast<const SpanBits<in_t, V>*>(row + gl);
  in_t e[V];
#pragma unroll
  for (int k = 0; k < V; ++k) e[k] = gl + k < L ? row[gl + k] : from_float<in_t>(0.f);
  SpanBits<in_t, V> q;
  memcpy(&q, e, sizeof(q));
  return q;
}

template <typename in_t, int V>
__device__ __forceinline__ void span_to_float(const SpanBits<in_t, V>& q, float (&v)[V]) {
  in_t e[V];
  memcpy(e, &q, sizeof(q));
#pragma unroll
  for (int k = 0; k < V; ++k) v[k] = to_float(e[k]);
}

// The elements [gl, gl + V) of a row as floats, each converted as it is loaded (the same span as
// load_span_bits; kept apart so that the float32 backward, which loads this way, compiles as it
// did: see stage_rows in scan_bwd.cuh).
template <typename in_t, int V>
__device__ __forceinline__ void load_span(const in_t* row, int64_t gl, int64_t L, bool vec, float (&v)[V]) {
  static_assert(V * sizeof(in_t) == 8 || V * sizeof(in_t) == 16, "8- or 16-byte spans");
  if (vec && gl + V <= L) {
    const SpanBits<in_t, V> q = *reinterpret_cast<const SpanBits<in_t, V>*>(row + gl);
    in_t e[V];
    memcpy(e, &q, sizeof(q));
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = to_float(e[k]);
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k) v[k] = gl + k < L ? to_float(row[gl + k]) : 0.f;
  }
}

// The bits of two elements of a 16-bit storage type in one 32-bit word (the first in the low half).
template <typename in_t>
__device__ __forceinline__ uint32_t pack_pair(float first, float second) {
  static_assert(sizeof(in_t) == 2, "16-bit storage");
  const in_t lo = from_float<in_t>(first), hi = from_float<in_t>(second);
  uint16_t l, h;
  memcpy(&l, &lo, 2);
  memcpy(&h, &hi, 2);
  return uint32_t(l) | (uint32_t(h) << 16);
}

// One 8- or 16-byte global store of W 32-bit words at `dst` (aligned to 4 W bytes), written as
// PTX (see store_span). `dst` is a generic pointer to global memory, whose generic address is its
// global address on CUDA GPUs. No "memory" clobber: no kernel reads these outputs back, and the
// barriers and asynchronous copies around them are ordered asm statements themselves.
template <int W>
__device__ __forceinline__ void store_words(void* dst, const uint32_t (&w)[W]) {
  static_assert(W == 2 || W == 4, "8 or 16 bytes");
#ifdef __CUDA_ARCH__
  if constexpr (W == 4)
    asm volatile("st.global.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"l"(dst), "r"(w[0]), "r"(w[1]),
                 "r"(w[2]), "r"(w[3]));
  else
    asm volatile("st.global.v2.b32 [%0], {%1, %2};\n" ::"l"(dst), "r"(w[0]), "r"(w[1]));
#else
  assert(reinterpret_cast<uintptr_t>(dst) % sizeof(w) == 0);
  memcpy(dst, w, sizeof(w));
#endif
}

// The V elements of a span as the 32-bit words of their storage type (float32: the bits of each;
// 16-bit types: two per word).
template <typename in_t, int V>
__device__ __forceinline__ void span_words(const float (&v)[V],
                                           uint32_t (&w)[V * int(sizeof(in_t)) / 4]) {
  if constexpr (sizeof(in_t) == 4) {
    memcpy(w, v, sizeof(w));
  } else {
#pragma unroll
    for (int k = 0; k < V / 2; ++k) w[k] = pack_pair<in_t>(v[2 * k], v[2 * k + 1]);
  }
}

// Stores elements [gl, min(gl + V, L)) of a row, as one vector store when `vec` (an overload
// below takes the row's alignment instead). kPtx: the vector goes through PTX. Written in C++, the
// compiler merged it with the element-wise branch into 4-byte (float32: element) stores, one
// memory request each across a warp's rows, in every forward and in the backward's 16-bit stores;
// through PTX the forward's bf16 time at (8, 1536, 2048, 16) went from 0.352 to 0.288 ms on an
// H100, its float32 time from 0.426 to 0.414 ms (bench/results/h100_extra/store_span_ab.log). The
// backward's float32 stores, which the compiler keeps at 16 bytes, stay in C++: through PTX its
// 2-state kernel ran 1.5-2.5 % slower.
template <typename in_t, int V, bool kPtx = sizeof(in_t) == 2>
__device__ __forceinline__ void store_span(in_t* row, int64_t gl, int64_t L, bool vec, const float (&v)[V]) {
  static_assert(V * sizeof(in_t) == 8 || V * sizeof(in_t) == 16, "8- or 16-byte spans");
  if (vec && gl + V <= L) {
    if constexpr (kPtx) {
      uint32_t w[V * int(sizeof(in_t)) / 4];
      span_words<in_t, V>(v, w);
      store_words(row + gl, w);
    } else {
      in_t e[V];
#pragma unroll
      for (int k = 0; k < V; ++k) e[k] = from_float<in_t>(v[k]);
      SpanBits<in_t, V> q;
      memcpy(&q, e, sizeof(q));
      *reinterpret_cast<SpanBits<in_t, V>*>(row + gl) = q;
    }
  } else {
#pragma unroll
    for (int k = 0; k < V; ++k)
      if (gl + k < L) row[gl + k] = from_float<in_t>(v[k]);
  }
}

// The same for a row whose start is aligned to `align` bytes: one vector store when that covers
// the span, two 8-byte stores (through PTX) when a 16-byte span has 8-byte alignment, element
// stores below.
template <typename in_t, int V, bool kPtx>
__device__ __forceinline__ void store_span(in_t* row, int64_t gl, int64_t L, int align,
                                           const float (&v)[V]) {
  constexpr int kBytes = V * int(sizeof(in_t));
  if constexpr (kPtx && kBytes == 16) {
    if (align == 8 && gl + V <= L) {
      uint32_t w[4];
      span_words<in_t, V>(v, w);
      const uint32_t lo[2] = {w[0], w[1]}, hi[2] = {w[2], w[3]};
      store_words<2>(row + gl, lo);
      store_words<2>(row + gl + V / 2, hi);
      return;
    }
  }
  store_span<in_t, V, kPtx>(row, gl, L, align >= kBytes, v);
}

// The kS states of thread `slice` from a shared-memory row laid out by state_pos: one 8- or
// 16-byte read for kS = 2, 4, two 16-byte reads for kS = 8.
template <int kS>
__device__ __forceinline__ void load_row_states(const float* row, int slice, int R, float (&v)[kS]) {
  static_assert(kS == 2 || kS == 4 || kS == 8, "2, 4 or 8 states per thread");
  if constexpr (kS == 2) {
    const float2 q = *reinterpret_cast<const float2*>(row + 2 * slice);
    v[0] = q.x;
    v[1] = q.y;
  } else {
#pragma unroll
    for (int h = 0; h < kS / 4; ++h) {
      const float4 q = *reinterpret_cast<const float4*>(row + (h * R + slice) * 4);
      v[4 * h] = q.x;
      v[4 * h + 1] = q.y;
      v[4 * h + 2] = q.z;
      v[4 * h + 3] = q.w;
    }
  }
}

// One 8- or 16-byte shared-memory store of W floats at `dst` (aligned to 4 W bytes), written as
// PTX: the backward's float4 stores of its dB / dC exchange came out of the compiler as 4-byte
// stores with 4-way bank conflicts (84 M of the kernel's 264 M shared-memory wavefronts at
// (8, 1536, 2048, 16) bf16). Through PTX that backward went from 1.70 to 1.51 ms on an H100
// (bench/results/h100_extra/store_row_states_ab.log).
template <int W>
__device__ __forceinline__ void store_shared_floats(float* dst, const float (&v)[W]) {
  static_assert(W == 2 || W == 4, "8 or 16 bytes");
#ifdef __CUDA_ARCH__
  const unsigned a = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  if constexpr (W == 4)
    asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(a), "f"(v[0]), "f"(v[1]),
                 "f"(v[2]), "f"(v[3])
                 : "memory");
  else
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(a), "f"(v[0]), "f"(v[1]) : "memory");
#else
  assert(reinterpret_cast<uintptr_t>(dst) % sizeof(v) == 0);
  memcpy(dst, v, sizeof(v));
#endif
}

template <int kS>
__device__ __forceinline__ void store_row_states(float* row, int slice, int R, const float (&v)[kS]) {
  static_assert(kS == 2 || kS == 4 || kS == 8, "2, 4 or 8 states per thread");
  if constexpr (kS == 2) {
    store_shared_floats<2>(row + 2 * slice, v);
  } else {
#pragma unroll
    for (int h = 0; h < kS / 4; ++h) {
      const float q[4] = {v[4 * h], v[4 * h + 1], v[4 * h + 2], v[4 * h + 3]};
      store_shared_floats<4>(row + (h * R + slice) * 4, q);
    }
  }
}

// States n = slice * kS + i (< N) of one (b, d) row of a contiguous (..., N) float array; zero
// for n >= N. (Once per block or checkpoint: element accesses.)
template <int kS>
__device__ __forceinline__ void load_global_states(const float* row, int slice, int N, float (&v)[kS]) {
  const int n0 = slice * kS;
#pragma unroll
  for (int i = 0; i < kS; ++i) v[i] = n0 + i < N ? row[n0 + i] : 0.f;
}

// Stores the thread's states n = slice * kS + i < N into row[n]. kVec: 16 bytes at a time (through
// PTX, store_words) where all kS exist and the address allows, as the forward's checkpoints and
// states do: its 4-byte stores came to 4 memory requests per 16 bytes across a warp's rows, and
// 16-byte ones made the forward 1-5 % faster on an H100 (the `states` columns of
// bench/results/h100_extra/store_span_ab.log). The backward's few stores of states keep the plain
// code, whose registers it was tuned with.
template <int kS, bool kVec = false>
__device__ __forceinline__ void store_global_states(float* row, int slice, int N, const float (&v)[kS]) {
  const int n0 = slice * kS;
  if constexpr (kVec && kS % 4 == 0) {
    if (n0 + kS <= N && reinterpret_cast<uintptr_t>(row + n0) % 16 == 0) {
#pragma unroll
      for (int q = 0; q < kS / 4; ++q) {
        uint32_t w[4];
        memcpy(w, &v[4 * q], sizeof(w));
        store_words<4>(row + n0 + 4 * q, w);
      }
      return;
    }
  }
#pragma unroll
  for (int i = 0; i < kS; ++i)
    if (n0 + i < N) row[n0 + i] = v[i];
}

// Asynchronous 16-byte copy global -> shared (cp.async, cached in L2 only) of the first
// `src_bytes` (0..16) bytes of src; the rest of the 16 destination bytes are zero-filled. Both
// addresses 16-byte aligned. Completion: cp_async_commit, then cp_async_wait_all in the issuing
// thread, then a barrier for the other threads. (The host build of tests/cuda_emulation copies
// at once.)
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src, int src_bytes) {
#ifdef __CUDA_ARCH__
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes)
               : "memory");
#else
  memcpy(smem_dst, gmem_src, static_cast<size_t>(src_bytes));
  memset(static_cast<char*>(smem_dst) + src_bytes, 0, static_cast<size_t>(16 - src_bytes));
#endif
}

// The same for a whole 16-byte chunk.
__device__ __forceinline__ void cp_async16(void* smem_dst, const void* gmem_src) {
#ifdef __CUDA_ARCH__
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(gmem_src) : "memory");
#else
  memcpy(smem_dst, gmem_src, 16);
#endif
}

// A 16-byte chunk of shared memory from a source aligned to `align` bytes (4, 8 or 16), of which
// the first src_bytes are copied and the rest zero-filled: one asynchronous copy per `align`
// bytes (cp.async copies 4, 8 or 16 bytes; the 16-byte form bypasses L1, the smaller ones go
// through it). Pieces past src_bytes read nothing; they are given the chunk's start, an address
// inside the source.
template <int P>
__device__ __forceinline__ void cp_async_pieces(void* smem_dst, const void* gmem_src,
                                                int src_bytes) {
#ifdef __CUDA_ARCH__
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  const char* const src = static_cast<const char*>(gmem_src);
#pragma unroll
  for (int k = 0; k < 16 / P; ++k) {
    const int n = min(max(src_bytes - P * k, 0), P);
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst + P * k),
                 "l"(n > 0 ? src + P * k : src), "n"(P), "r"(n)
                 : "memory");
  }
#else
  assert(reinterpret_cast<uintptr_t>(gmem_src) % P == 0);
  memcpy(smem_dst, gmem_src, static_cast<size_t>(src_bytes));
  memset(static_cast<char*>(smem_dst) + src_bytes, 0, static_cast<size_t>(16 - src_bytes));
#endif
}
__device__ __forceinline__ void cp_async_chunk(void* smem_dst, const void* gmem_src, int src_bytes,
                                               int align) {
  if (align >= 16) cp_async16(smem_dst, gmem_src, src_bytes);
  else if (align == 8) cp_async_pieces<8>(smem_dst, gmem_src, src_bytes);
  else cp_async_pieces<4>(smem_dst, gmem_src, src_bytes);
}

// A hint to bring the 128-byte line holding p into L2 (no register, nothing to wait for).
__device__ __forceinline__ void prefetch_l2(const void* p) {
#ifdef __CUDA_ARCH__
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

// Prefetches bytes [0, bytes) of each of `count` spans (span i at base(i)) into L2, the work spread
// over the block's threads.
template <typename Base>
__device__ __forceinline__ void prefetch_spans_l2(int count, int bytes, Base&& base, int tid, int nt) {
  const int lines = (bytes + 127) / 128 + 1;  // the last byte too (a span need not be aligned)
  for (int e = tid; e < count * lines; e += nt) {
    const int i = e / lines, k = e % lines;
    const int off = k * 128 < bytes ? k * 128 : bytes - 1;
    prefetch_l2(reinterpret_cast<const char*>(base(i)) + off);
  }
}

__device__ __forceinline__ void cp_async_commit() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void cp_async_wait_all() {
#ifdef __CUDA_ARCH__
  asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// Storage element -> float from raw bytes of shared memory.
template <typename in_t>
__device__ __forceinline__ float raw_to_float(const unsigned char* p) {
  return to_float(*reinterpret_cast<const in_t*>(p));
}

// V = 16 / sizeof(in_t) elements of one 16-byte word of raw shared memory, as floats.
template <typename in_t>
__device__ __forceinline__ void raw16_to_float(const unsigned char* p, float (&v)[kVec<in_t>]) {
  const uint4 q = *reinterpret_cast<const uint4*>(p);
  in_t e[kVec<in_t>];
  memcpy(e, &q, sizeof(q));
#pragma unroll
  for (int k = 0; k < kVec<in_t>; ++k) v[k] = to_float(e[k]);
}

// The lanes of a row, where a kernel orders them for shared memory's paired reads (the forward;
// the backward for scalar A). A thread's place in the row-major order of (row, slice),
// row * R + slice, is its index with bits 1 and log2 R swapped where a row has 4, 8 or 16 lanes (a
// warp then holds two rows or more): lanes n and n ^ 1 are two slices of one row, lanes n and
// n ^ 2 one slice of two rows. Shared memory returns a warp's read at twice the width (a 16-byte
// read in two wavefronts, not four) where every such pair of lanes reads one address: the states
// of B and C, which each slice reads for every row of the warp (pairs n, n ^ 2), and a row's
// per-step values (pairs n, n ^ 1). With the slices of a row in adjacent lanes only the latter
// held. Measured on an H100 (bench/results/h100_extra/fwd_lane_order_ab.log; outputs bitwise
// identical): bf16 forward -2.1 % to -9.5 % at the anchor shapes (-5.2 % at (8, 1536, 2048, 16)),
// scalar A -15 %; float32 -5.5 % to +0.6 %. In the backward, whose lanes also exchange sums by
// shuffles (slice_xor), scalar A gained 2-3 % at N = 16 and lost 1-5 % at N = 32 and 64, real A
// ranged from -1.3 % to +4.7 %, so there only scalar A up to N = 16 takes it
// (bwd_lane_order_ab.log).
__device__ __forceinline__ int row_major_index(int tid, int log2R) {
  if (log2R < 2 || log2R > 4) return tid;
  const int x = ((tid >> 1) ^ (tid >> log2R)) & 1;
  return tid ^ ((x << 1) | (x << log2R));
}
// The lane xor that flips slice bit `off` (a power of two below R) in that order.
__device__ __forceinline__ int slice_xor(int off, int log2R) {
  return off == 2 && log2R >= 2 && log2R <= 4 ? 1 << log2R : off;
}

// Sums each of v[0..K) over the R lanes of a row (R = 1 << log2R <= 32): adjacent lanes, or in
// the order of row_major_index (row_major). Every lane of the row ends with the same sums: IEEE
// addition is commutative, so both partners of each butterfly step compute the identical value,
// and the levels pair the same slices in the same order whatever the lanes' order.
template <int K>
__device__ __forceinline__ void row_allreduce(float (&v)[K], int R, int log2R, bool row_major) {
#pragma unroll
  for (int off = 16; off >= 1; off >>= 1) {
    if (off < R) {
      const int lanes = row_major ? slice_xor(off, log2R) : off;
#pragma unroll
      for (int k = 0; k < K; ++k) v[k] += __shfl_xor_sync(kFullMask, v[k], lanes);
    }
  }
}

// Stages the B or C tile of one (batch, group), steps [l0, l0 + T), as sX[l * sb + state_pos(n)]
// in float32; states n >= N and steps l >= L read as zero. Each thread loads four states of one
// step (four loads, each coalesced along L across the warp) and writes them as one float4.
template <typename in_t>
__device__ __forceinline__ void load_bc_tile(float* sX, const in_t* src, int64_t state_stride,
                                             int64_t l0, int64_t L, int N, const Layout& lay,
                                             int tid) {
  const int T = lay.T;
  const int groups = lay.npad / 4;
  for (int e = tid; e < groups * T; e += lay.nt) {
    const int l = e & (T - 1), q = e >> lay.log2T;
    const int64_t gl = l0 + l;
    float v[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int n = 4 * q + k;
      v[k] = (n < N && gl < L) ? to_float(src[n * state_stride + gl]) : 0.f;
    }
    *reinterpret_cast<float4*>(sX + l * lay.sb + state_pos(4 * q, lay.kS, lay.R)) =
        make_float4(v[0], v[1], v[2], v[3]);
  }
}

// Stages time-invariant B or C (dim, N) rows d0 .. d0 + rows_valid as sX[r * sb + state_pos(n)].
template <typename Lay>
__device__ __forceinline__ void load_bc_rows(float* sX, const float* W, int64_t dim_stride,
                                             int64_t state_stride, int64_t d0, int rows_valid,
                                             int N, const Lay& lay, int tid) {
  for (int e = tid; e < lay.rows * lay.npad; e += lay.nt) {
    const int r = e / lay.npad, n = e % lay.npad;
    sX[r * lay.sb + state_pos(n, lay.kS, lay.R)] =
        (r < rows_valid && n < N) ? W[(d0 + r) * dim_stride + n * state_stride] : 0.f;
  }
}

}  // namespace s6kit::cuda_scan
