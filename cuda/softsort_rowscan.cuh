// The row-scan engine of the CUDA p = 1 SoftSort (DESIGN.md, "Importance scoring and SoftSort";
// the recurrences are spelled out in cpp/src/cpu/softsort_cpu_scan.h).
//
// A block owns one batch element b and a range of channels; it sweeps each channel's row of L
// sorted positions. Thread t of a block of T threads owns kE consecutive positions of a tile of
// T * kE positions. Per tile and thread, everything shared by every channel sits in registers
// (Ctx, loaded once per tile): the decays a_i = exp(-(k_{i-1} - k_i) / tau), their products over
// the thread's positions and the multipliers of the block-wide scans (softsort_device.cuh), tie
// flags, the permutation, 1 / Z. Per channel, each thread scans its kE positions locally, a
// block-wide scan of values joins the threads in both directions, and the carries are applied:
// the multiplier arithmetic is done once per tile, not once per channel.
//
// Precision: decays of dense keys are near 1, where float32 rounds 1 - a to a multiple of 2^-24
// with a bias (softsort_device.cuh). Products that chain along the row (scan multipliers, tile
// carries) are formed from the encoded multipliers; plain floats are multiplied together only
// within one thread's kE positions (a[j] and their products), where a rounding is compounded at
// most kE times, and a scan multiplier is rounded to a plain float once, after its product.
//
// Strict sums (over strictly larger / smaller keys, needed by the score gradient) differ from the
// inclusive ones only inside runs of exactly tied keys. A run can span threads: the thread where
// it starts publishes the strict-left sum of the run (and the thread where a run ends, the
// strict-right sum), and the threads inside the run read it from shared memory; lsrc / rsrc,
// found once per tile by integer block scans, say where to read.
//
// Rows longer than a tile run their tiles in parallel, joined by the tiles' carries
// (softsort_tiles.cuh).
#pragma once

#include <climits>

#include "softsort_device.cuh"
#include "softsort_kernels.h"

namespace s6kit::cuda_softsort {

static_assert(kMaxThreads / 32 <= (1 << kWarpLevels), "the warp totals' scan covers every warp");

// What every channel of a batch element shares, for one thread and one tile.
struct Ctx {
  int s, n;          // first position, number of valid positions (0 .. kE)
  float a[kE + 1];   // a[j]: decay into position s + j from s + j - 1 (0 at position 0, past L)
  ScanMul lmul, rmul;  // the block-wide scans' multipliers, left and right
  int phase;         // which of the two value-scan buffers the next scan uses
  unsigned tie;      // bit j: key(s + j) == key(s + j - 1), both valid (j = 0 .. kE)
  float invz[kE];    // 1 / Z (1 where not loaded)
  int perm[kE];      // perm[s + j] (0 past L)
  bool ties;         // kStrict: two of the tile's keys tie (exactly); block-uniform
  bool warp_ties;    // kStrict: two keys of this warp's positions (and the ones next to them) tie
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

// Shared memory of load_ctx.
struct TileScratch {
  int ints[32];
  float mt[2][32];
};

template <int N>
struct Shared {
  TileScratch tile;
  float vt[2][2][N][32];  // the value scans' warp totals (two buffers, alternating)
  float bcast[2 * N];
  float slots[kMaxThreads * 2 * N];  // strict sums published per thread
};

// Loads the tile starting at `start`. Block-wide: every thread must call.
template <bool kStrict>
__device__ void load_ctx(Ctx& c, const RowEnv& env, int start, TileScratch& scratch) {
  const int L = env.L;
  c.s = start + threadIdx.x * kE;
  c.n = min(max(L - c.s, 0), kE);
  float kprev = (c.s >= 1 && c.s - 1 < L) ? env.sign * env.t[c.s - 1] : 0.f;
  c.tie = 0u;
  float m[kE + 1];  // decay into s + j, encoded (softsort_device.cuh)
#pragma unroll
  for (int j = 0; j <= kE; ++j) {
    const int i = c.s + j;
    const float ki = i < L ? env.sign * env.t[i] : 0.f;
    const bool valid = i >= 1 && i < L;
    m[j] = valid ? mul_from_gap((kprev - ki) * env.inv_tau) : kMulZero;
    if (valid && ki == kprev) c.tie |= 1u << j;
    kprev = ki;
  }
  float ml = m[0], mr = m[kE];  // the thread's maps: s - 1 -> s + kE - 1, s + kE -> s
#pragma unroll
  for (int j = 1; j < kE; ++j) {
    ml = mul_then(ml, m[j]);
    mr = mul_then(mr, m[j]);
  }
#pragma unroll
  for (int j = 0; j <= kE; ++j) c.a[j] = mul_value(m[j]);
  scan_multipliers(ml, mr, c.lmul, c.rmul, scratch.mt);
  c.phase = 0;
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    const int i = c.s + j;
    c.perm[j] = i < L ? int(env.perm[i]) : 0;
    c.invz[j] = (i < L && env.invz) ? env.invz[i] : 1.f;
  }
  if (kStrict) {
    c.warp_ties = __any_sync(kFull, c.tie != 0u);
    c.ties = __syncthreads_or(c.warp_ties);
    c.run_starts = false;
    c.run_ends = false;
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      if (j < c.n && !c.tied(j)) c.run_starts = true;
      if (j < c.n && !c.tied(j + 1)) c.run_ends = true;
    }
    c.lsrc = block_scan_int<false>(c.run_starts ? int(threadIdx.x) : -1, -1, scratch.ints);
    const int r =
        block_scan_int<true>(c.run_ends ? int(threadIdx.x) : INT_MAX, INT_MAX, scratch.ints);
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
//   with kStrict, over strictly larger keys SL and strictly smaller ones SR:
//   w = SR - SL (tau W v for p = 1), sl_last = SL at s + kE - 1, sr_first = SR at s.
template <int N, bool kStrict>
struct TileScan {
  float il[N][kE], gx[N][kE];
  float w[kStrict ? N : 1][kE];
  float sl_last[N], sr_first[N];
};

template <int N, bool kStrict>
__device__ void scan_tile(Ctx& c, const float (&v)[N][kE], const Carries<N>& in,
                          TileScan<N, kStrict>& ts, Shared<N>& sh) {
  // Thread-local sums: inclusive from the left, exclusive from the right.
  float lv[N], rv[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    ts.il[k][0] = v[k][0];
#pragma unroll
    for (int j = 1; j < kE; ++j) ts.il[k][j] = fmaf(c.a[j], ts.il[k][j - 1], v[k][j]);
    ts.gx[k][kE - 1] = 0.f;
#pragma unroll
    for (int j = kE - 2; j >= 0; --j) ts.gx[k][j] = c.a[j + 1] * (ts.gx[k][j + 1] + v[k][j + 1]);
    lv[k] = ts.il[k][kE - 1];    // IL at s + kE - 1 from this thread's positions
    rv[k] = ts.gx[k][0] + v[k][0];  // IR at s from them
  }

  scan_values<N>(lv, rv, c.lmul, c.rmul, sh.vt[c.phase]);
  c.phase ^= 1;

  float cl[N], cr[N];
#pragma unroll
  for (int k = 0; k < N; ++k) {
    cl[k] = fmaf(c.lmul.total, in.il[k], lv[k]);  // IL at s - 1
    cr[k] = fmaf(c.rmul.total, in.ir[k], rv[k]);  // IR at s + kE
    float P = 1.f, Q = 1.f;  // decays from s - 1 to s + j, from s + kE to s + j
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      P *= c.a[j];
      ts.il[k][j] = fmaf(P, cl[k], ts.il[k][j]);
    }
#pragma unroll
    for (int j = kE - 1; j >= 0; --j) {
      Q *= c.a[j + 1];
      ts.gx[k][j] = fmaf(Q, cr[k], ts.gx[k][j]);
    }
  }

  if constexpr (kStrict) {
    // A warp without ties (the usual case) has runs of one position only, so there SR = GX and
    // SL is the exclusive left sum, and no run crosses into or out of it. The sums of runs that
    // do cross threads are published by the threads where they start (and end) and read by the
    // others after a barrier, which a block without ties skips.
    if (c.warp_ties) {
      // The last run start and the first run end of this thread (the last / first assignment
      // wins; written without indexing by a run position, which would move the arrays to local
      // memory).
      float* slot = sh.slots + threadIdx.x * 2 * N;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        float lp = 0.f, rp = 0.f;
#pragma unroll
        for (int j = 0; j < kE; ++j)
          if (j < c.n && !c.tied(j)) lp = c.a[j] * (j > 0 ? ts.il[k][j - 1] : cl[k]);
#pragma unroll
        for (int j = kE - 1; j >= 0; --j)
          if (j < c.n && !c.tied(j + 1)) rp = ts.gx[k][j];
        slot[k] = lp;
        slot[N + k] = rp;
      }
    }
    if (c.ties) __syncthreads();
    if (!c.warp_ties) {
#pragma unroll
      for (int k = 0; k < N; ++k) {
        float sl = 0.f;
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          sl = c.a[j] * (j > 0 ? ts.il[k][j - 1] : cl[k]);
          ts.w[k][j] = ts.gx[k][j] - sl;
        }
        ts.sr_first[k] = ts.gx[k][0];
        ts.sl_last[k] = sl;
      }
      return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) {
      float cur = c.rsrc >= 0 ? sh.slots[c.rsrc * 2 * N + N + k] : in.sr[k];
#pragma unroll
      for (int j = kE - 1; j >= 0; --j) {
        if (!c.tied(j + 1)) cur = ts.gx[k][j];
        ts.w[k][j] = cur;  // SR for now
      }
      ts.sr_first[k] = cur;
      cur = c.lsrc >= 0 ? sh.slots[c.lsrc * 2 * N + k] : in.sl[k];
#pragma unroll
      for (int j = 0; j < kE; ++j) {
        if (!c.tied(j)) cur = c.a[j] * (j > 0 ? ts.il[k][j - 1] : cl[k]);
        ts.w[k][j] -= cur;
      }
      ts.sl_last[k] = cur;
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

// Runs one row of a single tile: load_v(c, v) fills the values, emit(c, v, ts) consumes the
// results; `c` holds the tile's context (loaded once per block by the caller). Block-wide.
template <int N, bool kStrict, typename LoadV, typename Emit>
__device__ void scan_row(Ctx& c, Shared<N>& sh, LoadV&& load_v, Emit&& emit) {
  float v[N][kE];
  TileScan<N, kStrict> ts;
  load_v(c, v);
  scan_tile<N, kStrict>(c, v, zero_carries<N>(), ts, sh);
  emit(c, v, ts);
}

}  // namespace s6kit::cuda_softsort
