// CUDA row kernels of the p = 1 SoftSort that depend on the storage type: the forward and the
// backward sweeps of rows of one tile (up to kMaxThreads * kE positions; longer rows go through
// softsort_tiles.cuh), and the gather of the tokens into sorted order (the hard mode's forward,
// and the input of the kernels over sorted tokens). Instantiated once per storage type by
// softsort_scan_<dtype>.cu, so the types compile in parallel; softsort_scan.cu has the rest.
#pragma once

#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

// ---- forward ----------------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kMaxThreads) fwd_kernel(const Args a) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ Shared<1> sh;
  const int b = int(blockIdx.y), L = a.L;
  const ChannelRange cr(a.D);
  if (cr.rows() <= 0) return;
  T* out = static_cast<T*>(a.out) + (int64_t(b) * a.D + cr.d0) * L;
  const RowEnv env = make_env(a, b, false);
  if (!row_finite(env)) return fill_rows_nan(out, cr.rows(), L);
  const T* x = static_cast<const T*>(a.x) + b * a.xb + cr.d0 * a.xd;

  // Single tiles (rows of several tiles go through softsort_tiles.cuh): 1 / Z computed here.
  RowPipe<T> pipe(dyn, a.stages, L, cr.rows(), x, a.xd);
  Ctx c;
  if (!a.hard) {
    load_ctx<false>(c, env, 0, sh.tile);
    normalize_in_block(c, sh);
  }
  pipe.prologue();
  for (int r = 0; r < cr.rows(); ++r) {
    const T* src = pipe.acquire(r);
    T* orow = out + int64_t(r) * L;
    if (a.hard) {  // out_i = x[perm_i]
      const int* perm = a.perm32 + int64_t(b) * L;
      for (int s = threadIdx.x * kE; s < L; s += a.tile) {
        int from[kE];
        load_indices<kE>(perm, s, L, 0, from);
        float o[kE];
#pragma unroll
        for (int j = 0; j < kE; ++j) o[j] = to_f(src[from[j]]);
        store_run<T, kE>(orow, s, L, o);
      }
      continue;
    }
    scan_row<1, false>(
        c, sh,
        [&](const Ctx& c, float (&v)[1][kE]) {
#pragma unroll
          for (int j = 0; j < kE; ++j) v[0][j] = j < c.n ? to_f(src[c.perm[j]]) : 0.f;
        },
        [&](const Ctx& c, const float (&)[1][kE], const TileScan<1, false>& ts) {
          float o[kE];
#pragma unroll
          for (int j = 0; j < kE; ++j) o[j] = (ts.il[0][j] + ts.gx[0][j]) * c.invz[j];
          store_run<T, kE>(orow, c.s, L, o);
        });
  }
}

// ---- backward sweeps --------------------------------------------------------------------------

template <typename T, RowKernel kKind>
__global__ void __launch_bounds__(kMaxThreads) bwd_kernel(const Args a) {
  constexpr bool kScore = kKind == RowKernel::kBwdDxScore;  // second pass of score_and_permute
  constexpr bool kWriteDx = kKind != RowKernel::kBwdPartials;
  constexpr int N = kScore ? 1 : 2;  // sequences scanned: gh only, or y and gh
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ Shared<N> sh;
  __shared__ float dw_warps[2][32];  // kScore: per-warp sums of dw for two rows
  const int b = int(blockIdx.y), L = a.L, D = a.D;
  const ChannelRange cr(D);
  if (cr.rows() <= 0) return;
  T* dx = static_cast<T*>(a.dx) + (int64_t(b) * D + cr.d0) * L;
  const RowEnv env = make_env(a, b, false);  // a single tile: 1 / Z computed here
  if (!row_finite(env)) {
    if (kWriteDx) fill_rows_nan(dx, cr.rows(), L);
    if (kScore)
      for (int d = cr.d0 + threadIdx.x; d < cr.d1; d += blockDim.x) a.dw_part[b * D + d] = nan_f();
    return;
  }

  const T* g = static_cast<const T*>(a.g) + b * a.gb + cr.d0 * a.gd;
  RowPipe<T> pipe(dyn, a.stages, L, cr.rows(),
                  static_cast<const T*>(a.x) + b * a.xb + cr.d0 * a.xd, a.xd,
                  a.g_smem ? g : nullptr, a.gd);
  T* dx_smem = a.dx_smem ? pipe.end() : nullptr;
  float* part = a.part + (int64_t(b) * gridDim.x + blockIdx.x) * 2 * L;
  const float* dk = a.dk + int64_t(b) * L;

  // The thread's sums of q and c over the block's rows (shared memory, not registers: the scans
  // need those).
  __shared__ float qc_acc[kScore ? 1 : 2][kScore ? 1 : kE][kScore ? 1 : kMaxThreads];
  Ctx c;
  float dks[kE];
#pragma unroll
  for (int j = 0; j < kE; ++j) {
    dks[j] = 0.f;
    if (!kScore) qc_acc[0][j][threadIdx.x] = qc_acc[1][j][threadIdx.x] = 0.f;
  }
  load_ctx<!kScore>(c, env, 0, sh.tile);
  normalize_in_block(c, sh);
  if (kScore)
#pragma unroll
    for (int j = 0; j < kE; ++j) dks[j] = j < c.n ? dk[c.s + j] : 0.f;

  pipe.prologue();
  for (int r = 0; r < cr.rows(); ++r) {
    const T* xs = pipe.acquire(r);
    const T* grow = a.g_smem ? xs + L : g + r * a.gd;
    const int64_t gl = a.g_smem ? 1 : a.gl;
    T* dxrow = dx + int64_t(r) * L;
    const float wd = kScore ? a.sign * a.w[cr.d0 + r] : 0.f;
    float dwacc = 0.f;
    float graw[kE], ys[kE];

    auto scatter = [&](const Ctx& c, const float (&val)[kE]) {
#pragma unroll
      for (int j = 0; j < kE; ++j)
        if (j < c.n) {
          if (dx_smem)
            dx_smem[c.perm[j]] = from_f<T>(val[j]);
          else
            dxrow[c.perm[j]] = from_f<T>(val[j]);
        }
    };
    auto load_v = [&](const Ctx& c, float (&v)[N][kE]) {
      load_run<T, kE>(grow, gl, c.s, L, graw);
#pragma unroll
      for (int j = 0; j < kE; ++j) {
        ys[j] = j < c.n ? to_f(xs[c.perm[j]]) : 0.f;
        if (kScore) {
          v[0][j] = graw[j] * c.invz[j];
        } else {
          v[0][j] = ys[j];
          v[N - 1][j] = graw[j] * c.invz[j];
        }
      }
    };
    auto emit = [&](const Ctx& c, const float (&v)[N][kE], const TileScan<N, !kScore>& ts) {
      constexpr int G = N - 1;  // the gh sequence
      float val[kE];
      if constexpr (kScore) {
        if (a.hard) load_run<T, kE>(grow, gl, c.s, L, graw);  // dx: g through the permutation
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          const float ds = a.sign * dks[j];  // dscores at perm_j
          val[j] = (a.hard ? graw[j] : ts.il[G][j] + ts.gx[G][j]) + dks[j] * wd;
          dwacc = fmaf(ds, ys[j], dwacc);
        }
      } else {
        float q[kE], cc[kE];
        score_terms(c, v, ts, q, cc);
        if (a.hard) load_run<T, kE>(grow, gl, c.s, L, graw);
#pragma unroll
        for (int j = 0; j < kE; ++j) val[j] = a.hard ? graw[j] : ts.il[G][j] + ts.gx[G][j];
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          qc_acc[0][j][threadIdx.x] += q[j];
          qc_acc[1][j][threadIdx.x] += cc[j];
        }
      }
      if (kWriteDx) scatter(c, val);
    };
    scan_row<N, !kScore>(c, sh, load_v, emit);

    if (kWriteDx && dx_smem) {
      __syncthreads();
      copy_row(dxrow, dx_smem, L);
    }
    if (kScore) {
      // dw of this row: warp sums now, their sum once the next row's scans have passed a
      // barrier (no barrier of its own).
      const float s = warp_sum(dwacc);
      if ((threadIdx.x & 31) == 0) dw_warps[r & 1][threadIdx.x >> 5] = s;
      if (r > 0 && threadIdx.x == 0) a.dw_part[b * D + cr.d0 + r - 1] = sum_warps(dw_warps[(r - 1) & 1]);
    }
  }
  if (kScore) {
    __syncthreads();
    if (threadIdx.x == 0) {
      const int r = cr.rows() - 1;
      a.dw_part[b * D + cr.d0 + r] = sum_warps(dw_warps[r & 1]);
    }
  }
  if (!kScore && c.n > 0) {
    float qacc[kE], cacc[kE];
#pragma unroll
    for (int j = 0; j < kE; ++j) {
      qacc[j] = qc_acc[0][j][threadIdx.x];
      cacc[j] = qc_acc[1][j][threadIdx.x];
    }
    store_run<float, kE>(part, c.s, L, qacc);
    store_run<float, kE>(part + L, c.s, L, cacc);
  }
}

// Launchers and kernel handles, defined for each storage type T by softsort_scan_<dtype>.cu.
template <typename T>
void launch_fwd_t(const Args& a, cudaStream_t s, size_t smem) {
  fwd_kernel<T><<<dim3(a.groups, a.B), a.threads, smem, s>>>(a);
}

template <typename T>
void launch_bwd_t(const Args& a, RowKernel kind, cudaStream_t s, size_t smem) {
  const dim3 grid(a.groups, a.B);
  switch (kind) {
    case RowKernel::kBwdPartials:
      bwd_kernel<T, RowKernel::kBwdPartials><<<grid, a.threads, smem, s>>>(a);
      break;
    case RowKernel::kBwdPartialsDx:
      bwd_kernel<T, RowKernel::kBwdPartialsDx><<<grid, a.threads, smem, s>>>(a);
      break;
    default:
      bwd_kernel<T, RowKernel::kBwdDxScore><<<grid, a.threads, smem, s>>>(a);
      break;
  }
}

template <typename T>
const void* row_kernel_handle_t(RowKernel kind) {
  switch (kind) {
    case RowKernel::kBwdPartials:
      return reinterpret_cast<const void*>(&bwd_kernel<T, RowKernel::kBwdPartials>);
    case RowKernel::kBwdPartialsDx:
      return reinterpret_cast<const void*>(&bwd_kernel<T, RowKernel::kBwdPartialsDx>);
    case RowKernel::kBwdDxScore:
      return reinterpret_cast<const void*>(&bwd_kernel<T, RowKernel::kBwdDxScore>);
    default:
      return reinterpret_cast<const void*>(&fwd_kernel<T>);
  }
}

}  // namespace s6kit::cuda_softsort
