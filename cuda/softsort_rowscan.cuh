// The row-scan engine of the CUDA p = 1 SoftSort (DESIGN.md, "Importance scoring and SoftSort";
// the recurrences are spelled out in cpp/src/cpu/softsort_cpu_scan.h).
//
// A block owns one batch element b and a range of channels; it sweeps each channel's row of L
// sorted positions. Thread t of a block of T threads owns kE consecutive positions of a tile of
// T * kE positions. Per tile and thread, the per-position data shared by every channel (decays
// a_i = exp(-(k_{i-1} - k_i) / tau), tie flags, the permutation, 1 / Z) sit in registers (Ctx);
// per channel, each thread scans its kE positions locally, a block-wide scan of the affine maps
// h -> A h + v joins the threads in both directions, and the carries are applied.
//
// Strict sums (over strictly larger / smaller keys, needed by the score gradient) differ from the
// inclusive ones only inside runs of exactly tied keys. A run can span threads: the thread where
// it starts publishes the strict-left sum of the run (and the thread where a run ends, the
// strict-right sum), and the threads inside the run read it from shared memory; lsrc / rsrc,
// found once per tile by integer block scans, say where to read.
//
// Rows longer than a tile are swept twice: left to right for the tile carries of the left sums,
// then right to left with the right sums' carries, producing the results.
#pragma once

#include <climits>

#include "softsort_device.cuh"

namespace s6kit::cuda_softsort {

constexpr int kE = 8;             // positions per thread
constexpr int kMaxThreads = 512;  // threads per block; a tile holds up to kMaxThreads * kE positions

// What every channel of a batch element shares, for one thread and one tile.
struct Ctx {
  int s, n;          // first position, number of valid positions (0 .. kE)
  float m[kE + 1];   // m[j]: decay into position s + j (j = 0 .. kE), 0 at position 0 and past L
                     // (multipliers encoded as in softsort_device.cuh)
  unsigned tie;      // bit j: key(s + j) == key(s + j - 1), both valid (j = 0 .. kE)
  float invz[kE];    // 1 / Z (1 where not loaded)
  int perm[kE];      // perm[s + j] (0 past L)
  bool run_starts;   // a run of tied keys starts among this thread's positions
  bool run_ends;     // one ends among them
  int lsrc, rsrc;    // thread publishing the strict sum of the run through s / s + kE - 1
                     // (-1: the tile carry)

  __device__ bool tied(int j) const { return (tie >> j) & 1u; }
};

struct RowEnv {
  int L, tiles, tile;  // tile = blockDim.x * kE
  float sign, inv_tau;
  const float* t;      // sorted scores of this batch element
  const int64_t* perm;
  const float* invz;   // null: 1
};

template <int N>
struct Shared {
  ScanScratch<N> scan;
  int ints[32];
  float bcast[2 * N];
  float slots[kMaxThreads * 2 * N];  // strict sums published per thread
};

// Loads the tile starting at `start`. With kStrict, also the run plumbing (block-wide: every
// thread must call).
template <bool kStrict>
__device__ void load_ctx(Ctx& c, const RowEnv& env, int start, int* iscratch) {
  const int L = env.L;
  c.s = start + threadIdx.x * kE;
  c.n = min(max(L - c.s, 0), kE);
  float kprev = (c.s >= 1 && c.s - 1 < L) ? env.sign * env.t[c.s - 1] : 0.f;
  c.tie = 0u;
#pragma unroll
  for (int j = 0; j <= kE; ++j) {
    const int i = c.s + j;
    const float ki = i < L ? env.sign * env.t[i] : 0.f;
    const bool valid = i >= 1 && i < L;
    c.m[j] = valid ? mul_from_gap((kprev - ki) * env.inv_tau) : kMulZero;
    if (valid && ki == kprev) c.tie |= 1u << j;
    kprev = ki;
  }
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    const int i = c.s + j;
    c.perm[j] = i < L ? int(env.perm[i]) : 0;
    c.invz[j] = (i < L && env.invz) ? env.invz[i] : 1.f;
  }
  if (kStrict) {
    c.run_starts = false;
    c.run_ends = false;
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      if (j < c.n && !c.tied(j)) c.run_starts = true;
      if (j < c.n && !c.tied(j + 1)) c.run_ends = true;
    }
    c.lsrc = block_scan_int<false>(c.run_starts ? int(threadIdx.x) : -1, -1, iscratch);
    const int r = block_scan_int<true>(c.run_ends ? int(threadIdx.x) : INT_MAX, INT_MAX, iscratch);
    c.rsrc = r == INT_MAX ? -1 : r;
  }
}

// Carries of a tile, per sequence: left sums at the position before it, right sums at the
// position after it (zero at the ends of the row).
template <int N>
struct Carries {
  float il[N], sl[N], ir[N], sr[N];
};

template <int N>
__device__ __forceinline__ Carries<N> zero_carries() {
  Carries<N> c;
#pragma unroll
  for (int k = 0; k < N; ++k) c.il[k] = c.sl[k] = c.ir[k] = c.sr[k] = 0.f;
  return c;
}

// Results of a tile for the thread's positions, per sequence v:
//   il = sum_{i' <= i} K v,   gx = sum_{i' > i} K v,
//   sl = sum over strictly larger keys, sr = over strictly smaller keys (kStrict).
template <int N, bool kStrict>
struct TileScan {
  float il[N][kE], gx[N][kE];
  float sl[kStrict ? N : 1][kE], sr[kStrict ? N : 1][kE];
};

template <int N, bool kStrict>
__device__ void scan_tile(const Ctx& c, const float (&v)[N][kE], const Carries<N>& in,
                          TileScan<N, kStrict>& ts, Shared<N>& sh) {
  // Thread-local scans and the thread's maps: left (IL before -> IL at the last position) and
  // right (IR after -> IR at the first position).
  Affine<N> lm, rm;
  lm.m = c.m[0];
  rm.m = c.m[kE];
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    if (j > 0) lm.m = mul_then(lm.m, c.m[j]);
#pragma unroll
    for (int k = 0; k < N; ++k)
      ts.il[k][j] = j > 0 ? mul_apply(c.m[j], ts.il[k][j - 1], v[k][j]) : v[k][j];
  }
#pragma unroll
  for (int k = 0; k < N; ++k) {
    lm.v[k] = ts.il[k][kE - 1];
    float gl = 0.f;
#pragma unroll
    for (int j = kE - 1; j >= 0; --j) {
      ts.gx[k][j] = gl;
      gl = mul_scale(c.m[j], gl + v[k][j]);
    }
    rm.v[k] = ts.gx[k][0] + v[k][0];
  }
#pragma unroll
  for (int j = 1; j < kE; ++j) rm.m = mul_then(rm.m, c.m[j]);

  block_scan_affine2<N>(lm, rm, sh.scan);

  float cl[N], cr[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    cl[k] = mul_apply(lm.m, in.il[k], lm.v[k]);  // IL at s - 1
    cr[k] = mul_apply(rm.m, in.ir[k], rm.v[k]);  // IR at s + kE
  }
  float P = c.m[0];  // decay from s - 1 to s + j
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    if (j > 0) P = mul_then(P, c.m[j]);
#pragma unroll
    for (int k = 0; k < N; ++k) ts.il[k][j] = mul_apply(P, cl[k], ts.il[k][j]);
  }
  float Q = c.m[kE];  // decay from s + kE to s + j
#pragma unroll
  for (int j = kE - 1; j >= 0; --j) {
#pragma unroll
    for (int k = 0; k < N; ++k) ts.gx[k][j] = mul_apply(Q, cr[k], ts.gx[k][j]);
    Q = mul_then(Q, c.m[j]);
  }

  if constexpr (kStrict) {
    // Publish the strict sums at the last run start and the first run end of this thread
    // (the last / first assignment wins; written without indexing by a run position, which
    // would move the arrays to local memory).
    float* slot = sh.slots + threadIdx.x * 2 * N;
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float lp = 0.f, rp = 0.f;
#pragma unroll
      for (int j = 0; j < kE; ++j)
        if (j < c.n && !c.tied(j)) lp = mul_scale(c.m[j], j > 0 ? ts.il[k][j - 1] : cl[k]);
#pragma unroll
      for (int j = kE - 1; j >= 0; --j)
        if (j < c.n && !c.tied(j + 1)) rp = ts.gx[k][j];
      slot[k] = lp;
      slot[N + k] = rp;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float cur = c.lsrc >= 0 ? sh.slots[c.lsrc * 2 * N + k] : in.sl[k];
#pragma unroll
      for (int j = 0; j < kE; ++j) {
        if (!c.tied(j)) cur = mul_scale(c.m[j], j > 0 ? ts.il[k][j - 1] : cl[k]);
        ts.sl[k][j] = cur;
      }
      cur = c.rsrc >= 0 ? sh.slots[c.rsrc * 2 * N + N + k] : in.sr[k];
#pragma unroll
      for (int j = kE - 1; j >= 0; --j) {
        if (!c.tied(j + 1)) cur = ts.gx[k][j];
        ts.sr[k][j] = cur;
      }
    }
  }
}

// 1 / Z of a single-tile row (Z_i = sum_j K_ij: the scans of a row of ones), computed by the
// block itself instead of the separate pass that longer rows need. Block-wide.
template <int N>
__device__ void normalize_in_block(Ctx& c, Shared<N>& sh) {
  float v[N][kE];
#pragma unroll
  for (int k = 0; k < N; ++k)
#pragma unroll
    for (int j = 0; j < kE; ++j) v[k][j] = k == 0 && j < c.n ? 1.f : 0.f;
  TileScan<N, false> ts;
  scan_tile<N, false>(c, v, zero_carries<N>(), ts, sh);
#pragma unroll
  for (int j = 0; j < kE; ++j) c.invz[j] = j < c.n ? 1.f / (ts.il[0][j] + ts.gx[0][j]) : 1.f;
}

// Runs one row: load_v(c, v) fills the tile's values, emit(c, v, ts) consumes the results.
// `c` holds the single tile's context on entry when env.tiles == 1 (loaded once per block by
// the caller); otherwise it is reloaded per tile. `carry` (global, env.tiles * 2 * N floats for
// this block) keeps the left carries between the sweeps. Block-wide: every thread calls it.
template <int N, bool kStrict, typename LoadV, typename Emit>
__device__ void row_sweeps(const RowEnv& env, Ctx& c, Shared<N>& sh, float* carry, LoadV&& load_v,
                           Emit&& emit) {
  float v[N][kE];
  TileScan<N, kStrict> ts;
  if (env.tiles == 1) {
    load_v(c, v);
    scan_tile<N, kStrict>(c, v, zero_carries<N>(), ts, sh);
    emit(c, v, ts);
    return;
  }
  Carries<N> in = zero_carries<N>();
  for (int k = 0; k < env.tiles; ++k) {  // left to right: carries of the left sums
    const int start = k * env.tile;
    load_ctx<kStrict>(c, env, start, sh.ints);
    if (threadIdx.x == 0)
#pragma unroll
      for (int q = 0; q < N; ++q) {
        carry[(k * 2 + 0) * N + q] = in.il[q];
        carry[(k * 2 + 1) * N + q] = in.sl[q];
      }
    load_v(c, v);
    scan_tile<N, kStrict>(c, v, in, ts, sh);
    if (k + 1 == env.tiles) break;  // only full tiles pass a carry on: it sits at the last slot
    if (threadIdx.x == blockDim.x - 1)
#pragma unroll
      for (int q = 0; q < N; ++q) {
        sh.bcast[q] = ts.il[q][kE - 1];
        if constexpr (kStrict) sh.bcast[N + q] = ts.sl[q][kE - 1];
      }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < N; ++q) {
      in.il[q] = sh.bcast[q];
      in.sl[q] = kStrict ? sh.bcast[N + q] : 0.f;
    }
    __syncthreads();
  }
  Carries<N> right = zero_carries<N>();
  for (int k = env.tiles - 1; k >= 0; --k) {  // right to left: results
    load_ctx<kStrict>(c, env, k * env.tile, sh.ints);
#pragma unroll
    for (int q = 0; q < N; ++q) {
      right.il[q] = carry[(k * 2 + 0) * N + q];
      right.sl[q] = carry[(k * 2 + 1) * N + q];
    }
    load_v(c, v);
    scan_tile<N, kStrict>(c, v, right, ts, sh);
    emit(c, v, ts);
    if (threadIdx.x == 0)
#pragma unroll
      for (int q = 0; q < N; ++q) {
        sh.bcast[q] = v[q][0] + ts.gx[q][0];  // IR at the tile's first position
        if constexpr (kStrict) sh.bcast[N + q] = ts.sr[q][0];
      }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < N; ++q) {
      right.ir[q] = sh.bcast[q];
      right.sr[q] = kStrict ? sh.bcast[N + q] : 0.f;
    }
    __syncthreads();
  }
}

}  // namespace s6kit::cuda_softsort
