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
//   kBwd:     per channel, y and gh = g / Z with the strict sums; the results are K gh and the
//             per-position sums over the block's channels of q and c (part), as the band kernels
//             of general p produce them. K gh goes to dybuf in float32 for the unpermute, or
//             (a.dy_in_dx) in the storage type over y in dx, for finish_dx (in the hard mode g
//             itself, whose permutation is dx);
//   kKeygrad: per batch element, ones and C with the strict sums: the key gradient dk (or
//             dscores), as keygrad_kernel computes it for rows of one tile.
#pragma once

#include <climits>
#include <type_traits>

#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

template <TileMode M>
struct TileSeq {
  static constexpr bool kChannels = tile_mode_channels(M);  // else one row per batch element
  static constexpr int N = tile_mode_sequences(M);
  static constexpr bool kStrict = N == 2;  // the second sequence comes with the strict sums
};

// Values of a row without tokens (kNorm: ones; kKeygrad: ones and C), zero past L.
__device__ __forceinline__ void batch_values(const Args& a, int b, const Ctx& c, TileMode mode,
                                             float (*v)[kE]) {
#pragma unroll
  for (int j = 0; j < kE; ++j) v[0][j] = j < c.n ? 1.f : 0.f;
  if (mode == TileMode::kKeygrad)  // C of qc
    load_run<float, kE>(a.qc + int64_t(b) * 2 * a.L + a.L, 1, c.s, a.L, v[1]);
}

// The channel rows of a block's tile (kFwd, kBwd): y, and in the backward g when it runs along
// L, staged in shared memory a.stages - 1 rows ahead (RowPipe over the tile's positions).
template <typename T, TileMode M>
struct TileRows {
  RowPipe<T> pipe;
  int k0, n;  // first position of the tile, positions in it
  const T* g;  // g of the first row at the tile's first position, when read from global memory
  int64_t gl, gd;

  const T* stage = nullptr;  // the stage of the row last read

  // lean: see RowPipe::acquire.
  __device__ TileRows(void* smem, const Args& a, int b, int k, const ChannelRange& cr, bool lean)
      : pipe(smem, a.stages, min(a.tile, a.L - k * a.tile), cr.rows(),
             static_cast<const T*>(a.ybuf) + (int64_t(b) * a.D + cr.d0) * a.L + int64_t(k) * a.tile,
             a.L,
             a.g_smem ? static_cast<const T*>(a.g) + b * a.gb + cr.d0 * a.gd + int64_t(k) * a.tile
                      : nullptr,
             a.gd),
        k0(k * a.tile), n(min(a.tile, a.L - k * a.tile)),
        g(static_cast<const T*>(a.g) + b * a.gb + cr.d0 * a.gd + int64_t(k) * a.tile * a.gl),
        gl(a.gl), gd(a.gd) {
    pipe.lean = lean;
    pipe.prologue();
  }

  // The values of the block's row r (its rows in order). Block-wide.
  __device__ void values(int r, const Ctx& c, float (*v)[kE]) {
    pipe.acquire(r);
    stage = pipe.current();  // shared-memory loads (the tile kernels always stage their rows)
    load_run<T, kE>(stage, 1, c.s - k0, n, v[0]);
    if constexpr (M == TileMode::kBwd) {  // gh = g / Z
      raw_g(r, c, v[1]);
#pragma unroll
      for (int j = 0; j < kE; ++j) v[1][j] *= c.invz[j];
    }
  }

  // g of the block's row r at the thread's positions (after values(r, ...)).
  __device__ void raw_g(int r, const Ctx& c, float (&out)[kE]) const {
    if (pipe.g)
      load_run<T, kE>(stage + n, 1, c.s - k0, n, out);
    else
      load_grad_run<T, kE>(g + r * gd, gl, c.s - k0, n, out);
  }
};

// Rows per batch element (its channels, or one), and the block's share of them.
template <TileMode M>
__device__ __forceinline__ int tile_row_count(const Args& a) {
  return TileSeq<M>::kChannels ? a.D : 1;
}
template <TileMode M>
__device__ __forceinline__ ChannelRange tile_rows(const Args& a) {
  return ChannelRange(tile_row_count<M>(a), int(blockIdx.y), int(gridDim.y));
}

// Sums a tile passes on, with zero carries: IL at its last position e and IR at its first
// position s0 are sums of the values weighted by K(e, i) and K(s0, i); SL at e leaves out the run
// of keys tied with e, SR at s0 the run tied with s0. So tile_sums needs no scan per row: the
// weights come from one scan of two unit vectors per tile, and each row's sums are dot products.
template <typename T, TileMode Mode>
__global__ void __launch_bounds__(kTileThreads) tile_sums_kernel(const Args a) {
  constexpr int N = TileSeq<Mode>::N;
  constexpr bool kStrict = TileSeq<Mode>::kStrict;
  constexpr int M = (kStrict ? 4 : 2) * N;  // sums per channel: IL, (SL,) IR, (SR) per sequence
  extern __shared__ __align__(16) unsigned char dyn[];  // TileRows' stages
  __shared__ Shared<2> sh;
  __shared__ float red[2][M][kTileThreads / 32];  // per-warp sums, two buffers (by channel)
  __shared__ int runs[2];  // the last run start and the first run end of the tile
  const int k = int(blockIdx.x), b = int(blockIdx.z);
  const int lane = int(threadIdx.x) & 31, wid = int(threadIdx.x) >> 5, nw = int(blockDim.x) >> 5;
  const ChannelRange cr = tile_rows<Mode>(a);
  const int rows = tile_row_count<Mode>(a);
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

  // Not lean: with one row less in flight the forward's sums ran 8 % slower (H100).
  TileRows<T, Mode> tile_rows_of_block(dyn, a, b, k, cr, false);
  for (int d = cr.d0; d < cr.d1; ++d) {
    float v[N][kE];
    if constexpr (TileSeq<Mode>::kChannels)
      tile_rows_of_block.values(d - cr.d0, c, v);
    else
      batch_values(a, b, c, Mode, v);
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
  }
}

template <typename T, TileMode Mode>
__global__ void __launch_bounds__(kTileThreads) tile_apply_kernel(const Args a) {
  constexpr int N = TileSeq<Mode>::N;
  constexpr bool kStrict = TileSeq<Mode>::kStrict;
  constexpr bool kBwd = Mode == TileMode::kBwd;
  // Rows scanned together: the forward's one sequence per row leaves the scans' shuffle chains
  // idle between dependent steps, so it takes two rows (channels) per scan.
  constexpr int P = Mode == TileMode::kFwd ? 2 : 1;
  constexpr int NP = N * P;
  extern __shared__ __align__(16) unsigned char dyn[];  // TileRows' stages
  __shared__ Shared<NP> sh;
  // Backward: the thread's sums of q and c over the block's channels (shared memory, not
  // registers: the scans need those).
  __shared__ float qc_acc[kBwd ? 2 : 1][kBwd ? kE : 1][kBwd ? kTileThreads : 1];
  const int k = int(blockIdx.x), b = int(blockIdx.z), L = a.L;
  const ChannelRange cr = tile_rows<Mode>(a);
  const int rows = tile_row_count<Mode>(a);
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
  // One row per scan is read before the scan's barrier (but for the hard mode's g, after it).
  TileRows<T, Mode> tile_rows_of_block(dyn, a, b, k, cr, P == 1 && !a.hard);
  for (int d = cr.d0; d < cr.d1; d += P) {
    float v[NP][kE];  // rows d .. d + P - 1 (zero past the block's rows)
#pragma unroll
    for (int p = 0; p < P; ++p) {
      if constexpr (!TileSeq<Mode>::kChannels) {
        batch_values(a, b, c, Mode, &v[p * N]);
      } else if (d + p < cr.d1) {
        tile_rows_of_block.values(d + p - cr.d0, c, &v[p * N]);
      } else {
#pragma unroll
        for (int q = p * N; q < p * N + N; ++q)
#pragma unroll
          for (int j = 0; j < kE; ++j) v[q][j] = 0.f;
      }
    }
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
      // The hard mode's dx is g through the permutation (read by the unpermute, or written here
      // for finish_dx).
      float dy[kE];
      if (a.hard) {
        if (a.dy_in_dx) tile_rows_of_block.raw_g(d - cr.d0, c, dy);
      } else {
#pragma unroll
        for (int j = 0; j < kE; ++j) dy[j] = ts.il[1][j] + ts.gx[1][j];
      }
      // Over y in dx: this block alone reads these positions of this row, and it has read them
      // (staged) before.
      if (a.dy_in_dx)
        store_run<T, kE>(static_cast<T*>(a.ybuf) + row, c.s, L, dy);
      else if (!a.hard)
        store_run<float, kE>(a.dybuf + row, c.s, L, dy);
    }
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
  const dim3 grid(a.tiles, apply ? a.groups : a.sum_groups, a.B);
  const size_t smem = tile_smem_bytes(a);
  if constexpr (std::is_same_v<T, float>) {
    if (mode == TileMode::kNorm) {
      if (apply) tile_apply_kernel<float, TileMode::kNorm><<<grid, a.threads, smem, s>>>(a);
      else tile_sums_kernel<float, TileMode::kNorm><<<grid, a.threads, smem, s>>>(a);
      return;
    }
    if (mode == TileMode::kKeygrad) {
      if (apply) tile_apply_kernel<float, TileMode::kKeygrad><<<grid, a.threads, smem, s>>>(a);
      else tile_sums_kernel<float, TileMode::kKeygrad><<<grid, a.threads, smem, s>>>(a);
      return;
    }
  }
  switch (mode) {
    case TileMode::kFwd:
      if (apply) tile_apply_kernel<T, TileMode::kFwd><<<grid, a.threads, smem, s>>>(a);
      else tile_sums_kernel<T, TileMode::kFwd><<<grid, a.threads, smem, s>>>(a);
      break;
    default:
      if (apply) tile_apply_kernel<T, TileMode::kBwd><<<grid, a.threads, smem, s>>>(a);
      else tile_sums_kernel<T, TileMode::kBwd><<<grid, a.threads, smem, s>>>(a);
      break;
  }
}

// The kernels of a direction, for the occupancy query.
template <typename T>
const void* tile_kernel_handle_t(bool bwd, bool apply) {
  if (bwd)
    return apply ? reinterpret_cast<const void*>(&tile_apply_kernel<T, TileMode::kBwd>)
                 : reinterpret_cast<const void*>(&tile_sums_kernel<T, TileMode::kBwd>);
  return apply ? reinterpret_cast<const void*>(&tile_apply_kernel<T, TileMode::kFwd>)
               : reinterpret_cast<const void*>(&tile_sums_kernel<T, TileMode::kFwd>);
}

}  // namespace s6kit::cuda_softsort
