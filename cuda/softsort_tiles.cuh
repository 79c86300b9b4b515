// CUDA kernels of the p = 1 SoftSort for rows longer than one tile: the tiles of a row run in
// parallel (grid: tiles x channel groups x batch). Instantiated per storage type by
// softsort_scan_<dtype>.cu; the chain kernel is in softsort_scan.cu.
//
// A tile's scans (softsort_rowscan.cuh) are linear in its values and in the carries it receives
// from its neighbours: IL and SL at the position before it, IR and SR at the position after it.
// So a row takes three passes:
//   tile_sums:  per tile and channel, the sums a tile passes on (IL, SL at its last position,
//               IR, SR at its first) with zero carries; per tile, once for every channel, their
//               response to the carries.
//   tile_chain: per channel, along the row, the carries each tile receives:
//               carry_out = response x carry_in + sums.
//   tile_apply: per tile and channel, the scans with those carries, and the results.
// The tile's context (decays, scan multipliers, ties, 1 / Z) is loaded once per block for all of
// its channels.
//
// What is scanned (TileMode):
//   kNorm:    per batch element, ones: Z, written as 1 / Z (inv_z);
//   kFwd:     per channel, the sorted tokens y (gathered beforehand by the hard-mode row kernel
//             into `out`), overwritten there with the result (each thread reads its own positions
//             before writing them);
//   kBwd:     per channel, y and gh = g / Z with the strict sums; the results are K gh (dybuf)
//             and the per-position sums over the block's channels of q and c (part), as the band
//             kernels of general p produce them;
//   kKeygrad: per batch element, ones and C with the strict sums: the key gradient dk (or
//             dscores), as keygrad_kernel computes it for rows of one tile.
#pragma once

#include <climits>
#include <type_traits>

#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

template <TileMode M>
struct TileSeq {
  static constexpr bool kChannels = M == TileMode::kFwd || M == TileMode::kBwd;  // else one row
  static constexpr bool kStrict = M == TileMode::kBwd || M == TileMode::kKeygrad;
  static constexpr int N = kStrict ? 2 : 1;  // sequences
};

// The tile's values of row d (zero past L).
template <typename T, TileMode M>
__device__ __forceinline__ void tile_values(const Args& a, const T* y, const Ctx& c, int b, int d,
                                            float (*v)[kE] /* TileSeq<M>::N rows */) {
  if constexpr (M == TileMode::kNorm || M == TileMode::kKeygrad) {
#pragma unroll
    for (int j = 0; j < kE; ++j) v[0][j] = j < c.n ? 1.f : 0.f;
  } else {
    load_run<T, kE>(y, 1, c.s, a.L, v[0]);
  }
  if constexpr (M == TileMode::kBwd) {
    const T* g = static_cast<const T*>(a.g) + b * a.gb + d * a.gd;
    load_run<T, kE>(g, a.gl, c.s, a.L, v[1]);
#pragma unroll
    for (int j = 0; j < kE; ++j) v[1][j] *= c.invz[j];
  }
  if constexpr (M == TileMode::kKeygrad)  // C of qc
    load_run<float, kE>(a.qc + int64_t(b) * 2 * a.L + a.L, 1, c.s, a.L, v[1]);
}

template <int N>
__device__ __forceinline__ void move_values(float (&v)[N][kE], const float (&next)[N][kE]) {
#pragma unroll
  for (int q = 0; q < N; ++q)
#pragma unroll
    for (int j = 0; j < kE; ++j) v[q][j] = next[q][j];
}

// Rows of the block: its channels, or the single row of a batch element.
template <TileMode M>
__device__ __forceinline__ ChannelRange tile_rows(const Args& a) {
  return ChannelRange(TileSeq<M>::kChannels ? a.D : 1, int(blockIdx.y), int(gridDim.y));
}

// Sums a tile passes on, with zero carries: IL at its last position e and IR at its first
// position s0 are sums of the values weighted by K(e, i) and K(s0, i); SL at e leaves out the run
// of keys tied with e, SR at s0 the run tied with s0. So tile_sums needs no scan per row: the
// weights come from one scan of two unit vectors per tile, and each row's sums are dot products.
template <typename T, TileMode Mode>
__global__ void __launch_bounds__(kMaxThreads) tile_sums_kernel(const Args a) {
  constexpr int N = TileSeq<Mode>::N;
  constexpr bool kStrict = TileSeq<Mode>::kStrict;
  constexpr int D = TileSeq<Mode>::kChannels ? -1 : 1;  // rows per batch element (-1: a.D)
  constexpr int M = (kStrict ? 4 : 2) * N;  // sums per channel: IL, (SL,) IR, (SR) per sequence
  __shared__ Shared<2> sh;
  __shared__ float red[2][M][kMaxThreads / 32];  // per-warp sums, two buffers (by channel)
  __shared__ int runs[2];  // the last run start and the first run end of the tile
  const int k = int(blockIdx.x), b = int(blockIdx.z);
  const int lane = int(threadIdx.x) & 31, wid = int(threadIdx.x) >> 5, nw = int(blockDim.x) >> 5;
  const ChannelRange cr = tile_rows<Mode>(a);
  const int rows = D < 0 ? a.D : D;
  const RowEnv env = make_env(a, b, Mode == TileMode::kBwd);
  if (!row_finite(env)) return;  // tile_apply and the kernels after it write the NaNs
  if (threadIdx.x == 0) {
    runs[0] = -1;
    runs[1] = INT_MAX;
  }
  Ctx c;
  load_ctx<false>(c, env, k * env.tile, sh.tile);  // (its barriers order the lines above)
  const bool last = threadIdx.x == blockDim.x - 1, first = threadIdx.x == 0;

  // Weights: wl[j] = K(e, i), wr[j] = K(s0, i) at the thread's positions i = c.s + j.
  float wl[kE], wr[kE];
  {
    float v[2][kE];
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      v[0][j] = last && j == kE - 1 ? 1.f : 0.f;
      v[1][j] = first && j == 0 ? 1.f : 0.f;
    }
    TileScan<2, false> ts;
    scan_tile<2, false>(c, v, zero_carries<2>(), ts, sh);
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      wl[j] = ts.il[0][j] + ts.gx[0][j];
      wr[j] = ts.il[1][j] + ts.gx[1][j];
    }
  }
  int rs = -1, re = INT_MAX;  // run starts and ends among the thread's positions
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    if (j < c.n && !c.tied(j)) rs = c.s + j;
    if (j < c.n && !c.tied(j + 1)) re = min(re, c.s + j);
  }
  if (kStrict || blockIdx.y == 0) {
    rs = __reduce_max_sync(kFull, rs);
    re = __reduce_min_sync(kFull, re);
    if (lane == 0) {
      atomicMax(&runs[0], rs);
      atomicMin(&runs[1], re);
    }
    __syncthreads();
    rs = runs[0];
    re = runs[1];
  }
  if (blockIdx.y == 0) {  // the responses to the carries (see kTileResp)
    float* r = a.tile_resp + (int64_t(b) * env.tiles + k) * kTileResp;
    if (first) {  // IL at e from IL at s0 - 1: K(e, s0 - 1) = a_{s0} K(e, s0)
      r[0] = c.a[0] * wl[0];
      r[1] = rs >= 0 ? r[0] : 0.f;  // SL at e: from IL when a run starts in the tile, else SL
      r[2] = rs >= 0 ? 0.f : 1.f;
    }
    if (last) {  // IR at s0 from IR at e + 1: K(s0, e + 1) = K(s0, e) a_{e + 1}
      r[3] = wr[kE - 1] * c.a[kE];
      r[4] = re < INT_MAX ? r[3] : 0.f;
      r[5] = re < INT_MAX ? 0.f : 1.f;
    }
  }

  const T* y = static_cast<const T*>(a.ybuf) + (int64_t(b) * rows + cr.d0) * a.L;
  float v[N][kE], next[N][kE];
  if (cr.rows() > 0) tile_values<T, Mode>(a, y, c, b, cr.d0, v);
  for (int d = cr.d0; d < cr.d1; ++d, y += a.L) {
    if (d + 1 < cr.d1) tile_values<T, Mode>(a, y + a.L, c, b, d + 1, next);  // in flight meanwhile
    float sum[M];
#pragma unroll
    for (int q = 0; q < N; ++q) {
      float il = 0.f, ir = 0.f, sl = 0.f, sr = 0.f;
#pragma unroll
      for (int j = 0; j < kE; ++j) {
        il = fmaf(wl[j], v[q][j], il);
        ir = fmaf(wr[j], v[q][j], ir);
        if (kStrict) {
          sl = c.s + j < rs ? fmaf(wl[j], v[q][j], sl) : sl;
          sr = c.s + j > re ? fmaf(wr[j], v[q][j], sr) : sr;
        }
      }
      sum[q] = il;
      sum[(kStrict ? 2 : 1) * N + q] = ir;
      if (kStrict) {
        sum[N + q] = sl;
        sum[3 * N + q] = sr;
      }
    }
    const int buf = (d - cr.d0) & 1;
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float w = warp_sum(sum[m]);
      if (lane == 0) red[buf][m][wid] = w;
    }
    __syncthreads();  // (the buffer is written again two channels on, after another barrier)
    if (threadIdx.x < M) {
      const int m = int(threadIdx.x);
      float total = 0.f;
      for (int w = 0; w < nw; ++w) total += red[buf][m][w];
      // Layout of kTileCarry: IL, SL, IR, SR per sequence (SL, SR zero without strict sums).
      float* out = a.tile_sums + ((int64_t(b) * rows + d) * env.tiles + k) * kTileCarry;
      if (kStrict) {
        out[m] = total;
      } else {
        const int q = m % N, kind = m / N;  // 0: IL, 1: IR
        out[(kind == 0 ? 0 : 2 * N) + q] = total;
        out[(kind == 0 ? N : 3 * N) + q] = 0.f;
      }
    }
    move_values<N>(v, next);
  }
}

template <typename T, TileMode Mode>
__global__ void __launch_bounds__(kMaxThreads) tile_apply_kernel(const Args a) {
  constexpr int N = TileSeq<Mode>::N;
  constexpr bool kStrict = TileSeq<Mode>::kStrict;
  constexpr bool kBwd = Mode == TileMode::kBwd;
  // Rows scanned together: the forward's one sequence per row leaves the scans' shuffle chains
  // idle between dependent steps, so it takes two rows (channels) per scan.
  constexpr int P = Mode == TileMode::kFwd ? 2 : 1;
  constexpr int NP = N * P;
  __shared__ Shared<NP> sh;
  // Backward: the thread's sums of q and c over the block's channels (shared memory, not
  // registers: the scans need those).
  __shared__ float qc_acc[kBwd ? 2 : 1][kBwd ? kE : 1][kBwd ? kMaxThreads : 1];
  const int k = int(blockIdx.x), b = int(blockIdx.z), L = a.L;
  const ChannelRange cr = tile_rows<Mode>(a);
  const int rows = TileSeq<Mode>::kChannels ? a.D : 1;
  const RowEnv env = make_env(a, b, Mode == TileMode::kFwd || kBwd);
  Ctx c;
  c.s = k * env.tile + int(threadIdx.x) * kE;
  if (!row_finite(env)) {  // the NaN policy (kNorm and kBwd: the kernels after them write NaNs)
    float o[kE];
#pragma unroll
    for (int j = 0; j < kE; ++j) o[j] = nan_f();
    if constexpr (Mode == TileMode::kFwd)
      for (int d = cr.d0; d < cr.d1; ++d)
        store_run<T, kE>(static_cast<T*>(a.out) + (int64_t(b) * a.D + d) * L, c.s, L, o);
    if constexpr (Mode == TileMode::kKeygrad)
      for (int j = 0; j < kE; ++j)
        if (c.s + j < L) (a.dscores ? a.dscores : a.dk)[int64_t(b) * L + c.s + j] = nan_f();
    return;
  }
  load_ctx<kStrict>(c, env, k * env.tile, sh.tile);
  if constexpr (kBwd)
#pragma unroll
    for (int j = 0; j < kE; ++j) qc_acc[0][j][threadIdx.x] = qc_acc[1][j][threadIdx.x] = 0.f;
  const T* y = static_cast<const T*>(a.ybuf) + (int64_t(b) * rows + cr.d0) * L;
  // The values of rows d .. d + P - 1 (zero past the block's rows).
  auto load = [&](int d, float (&dst)[NP][kE]) {
#pragma unroll
    for (int p = 0; p < P; ++p) {
      if (d + p < cr.d1) {
        tile_values<T, Mode>(a, y + int64_t(d + p - cr.d0) * L, c, b, d + p, &dst[p * N]);
      } else {
#pragma unroll
        for (int q = p * N; q < p * N + N; ++q)
#pragma unroll
          for (int j = 0; j < kE; ++j) dst[q][j] = 0.f;
      }
    }
  };
  float v[NP][kE], next[NP][kE];
  if (cr.rows() > 0) load(cr.d0, v);
  for (int d = cr.d0; d < cr.d1; d += P) {
    if (d + P < cr.d1) load(d + P, next);  // in flight meanwhile
    Carries<NP> in = zero_carries<NP>();
#pragma unroll
    for (int p = 0; p < P; ++p) {
      if (d + p >= cr.d1) continue;
      const float* cin = a.tile_in + ((int64_t(b) * rows + d + p) * env.tiles + k) * kTileCarry;
#pragma unroll
      for (int q = 0; q < N; ++q) {
        in.il[p * N + q] = cin[q];
        in.sl[p * N + q] = cin[N + q];
        in.ir[p * N + q] = cin[2 * N + q];
        in.sr[p * N + q] = cin[3 * N + q];
      }
    }
    TileScan<NP, kStrict> ts;
    scan_tile<NP, kStrict>(c, v, in, ts, sh);
    const int64_t row = (int64_t(b) * rows + d) * L;
    if constexpr (Mode == TileMode::kNorm) {
      float o[kE];
#pragma unroll
      for (int j = 0; j < kE; ++j) o[j] = 1.f / (ts.il[0][j] + ts.gx[0][j]);
      store_run<float, kE>(a.inv_z + row, c.s, L, o);
    } else if constexpr (Mode == TileMode::kFwd) {
#pragma unroll
      for (int p = 0; p < P; ++p) {
        if (d + p >= cr.d1) continue;
        float o[kE];
#pragma unroll
        for (int j = 0; j < kE; ++j) o[j] = (ts.il[p][j] + ts.gx[p][j]) * c.invz[j];
        store_run<T, kE>(static_cast<T*>(a.out) + row + int64_t(p) * L, c.s, L, o);
      }
    } else if constexpr (Mode == TileMode::kKeygrad) {
      emit_key_gradient(a, b, c, v, ts);
    } else {
      float q[kE], cc[kE];
      score_terms(c, v, ts, q, cc);
#pragma unroll
      for (int j = 0; j < kE; ++j) {
        qc_acc[0][j][threadIdx.x] += q[j];
        qc_acc[1][j][threadIdx.x] += cc[j];
      }
      if (!a.hard) {  // the hard mode's dx is g through the permutation (unpermute reads g)
        float dy[kE];
#pragma unroll
        for (int j = 0; j < kE; ++j) dy[j] = ts.il[1][j] + ts.gx[1][j];
        store_run<float, kE>(a.dybuf + row, c.s, L, dy);
      }
    }
    move_values<NP>(v, next);
  }
  if constexpr (kBwd) {
    float* part = a.part + (int64_t(b) * gridDim.y + blockIdx.y) * 2 * L;
    float qs[kE], cs[kE];
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      qs[j] = qc_acc[0][j][threadIdx.x];
      cs[j] = qc_acc[1][j][threadIdx.x];
    }
    store_run<float, kE>(part, c.s, L, qs);
    store_run<float, kE>(part + L, c.s, L, cs);
  }
}

// The launchers: kFwd and kBwd per storage type; kNorm and kKeygrad read no tokens and are
// instantiated for float only.
template <typename T>
void launch_tiles_t(const Args& a, TileMode mode, bool apply, cudaStream_t s) {
  const dim3 grid(a.tiles, a.groups, a.B);
  if constexpr (std::is_same_v<T, float>) {
    if (mode == TileMode::kNorm) {
      if (apply) tile_apply_kernel<float, TileMode::kNorm><<<grid, a.threads, 0, s>>>(a);
      else tile_sums_kernel<float, TileMode::kNorm><<<grid, a.threads, 0, s>>>(a);
      return;
    }
    if (mode == TileMode::kKeygrad) {
      if (apply) tile_apply_kernel<float, TileMode::kKeygrad><<<grid, a.threads, 0, s>>>(a);
      else tile_sums_kernel<float, TileMode::kKeygrad><<<grid, a.threads, 0, s>>>(a);
      return;
    }
  }
  switch (mode) {
    case TileMode::kFwd:
      if (apply) tile_apply_kernel<T, TileMode::kFwd><<<grid, a.threads, 0, s>>>(a);
      else tile_sums_kernel<T, TileMode::kFwd><<<grid, a.threads, 0, s>>>(a);
      break;
    default:
      if (apply) tile_apply_kernel<T, TileMode::kBwd><<<grid, a.threads, 0, s>>>(a);
      else tile_sums_kernel<T, TileMode::kBwd><<<grid, a.threads, 0, s>>>(a);
      break;
  }
}

// The apply kernel of a direction (the heavier of the two), for the occupancy query.
template <typename T>
const void* tile_kernel_handle_t(bool bwd) {
  return bwd ? reinterpret_cast<const void*>(&tile_apply_kernel<T, TileMode::kBwd>)
             : reinterpret_cast<const void*>(&tile_apply_kernel<T, TileMode::kFwd>);
}

}  // namespace s6kit::cuda_softsort
