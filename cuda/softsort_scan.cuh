// CUDA row kernels of the p = 1 SoftSort that depend on the storage type: the forward and the
// backward sweep of rows of one tile (up to kMaxThreads * kE positions; longer rows go through
// softsort_tiles.cuh), and the gather of the tokens into sorted order (the hard mode's forward,
// and the input of the kernels over sorted tokens). Instantiated once per storage type by
// softsort_scan_<dtype>.cu, so the types compile in parallel; softsort_scan.cu has the rest.
#pragma once

#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

// ---- forward ----------------------------------------------------------------------------------

constexpr int kGatherBatch = 4;  // runs of a thread whose indices the gather loads together

// kHard: the gather out_i = x[perm_i] (the hard mode's forward, and the sorted tokens of the
// kernels over them), an instance of its own: its batched index loads in the soft forward's
// instance took registers from it (117 -> 127) and made it 5 % slower.
template <typename T, bool kHard>
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
  pipe.lean = !kHard;  // a row is read before the scan's barrier (the gather has none)
  Ctx c;
  if constexpr (!kHard) {
    load_ctx<false>(c, env, 0, sh.tile);
    normalize_in_block(c, sh);
  }
  pipe.prologue();
  for (int r = 0; r < cr.rows(); ++r) {
    T* orow = out + int64_t(r) * L;
    pipe.with_row(r, [&](const T* src) {
      if constexpr (kHard) {  // out_i = x[perm_i]
        // The indices of kGatherBatch runs are loaded together: a long row's indices come from
        // L2, and with one run at a time a warp waited out each load (bf16 gathers at
        // (2, 65536, 1536) 0.836 -> 0.695 ms and at (4, 16384, 1536) 0.356 -> 0.322 ms, H100).
        const int* perm = a.perm32 + int64_t(b) * L;
        for (int s0 = threadIdx.x * kE; s0 < L; s0 += kGatherBatch * a.tile) {
          int from[kGatherBatch][kE];
#pragma unroll
          for (int q = 0; q < kGatherBatch; ++q)
            load_indices<kE>(perm, s0 + q * a.tile, L, 0, from[q]);
#pragma unroll
          for (int q = 0; q < kGatherBatch; ++q) {
            const int s = s0 + q * a.tile;
            if (s >= L) break;
            float o[kE];
#pragma unroll
            for (int j = 0; j < kE; ++j) o[j] = to_f(src[from[q][j]]);
            store_run<T, kE>(orow, s, L, o);
          }
        }
      } else {
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
    });
  }
}

// ---- backward sweep ---------------------------------------------------------------------------

// How the sweep reads a row of the output gradient g: from its stage in shared memory (rows along
// L, staged with the x rows), as one value (a broadcast row, last-dim stride 0: the gradient of a
// sum or a mean), or from global memory at any stride. A compile-time choice, as is the hard
// mode: the instance with runtime branches for both spilled 100 bytes (ptxas), the soft ones now
// spill 60-92.
enum class GradRows { kStaged, kBroadcast, kStrided };

// Per channel, y = x[perm] and gh = g / Z are scanned: K gh (g itself in the hard mode) is written
// to dx in sorted order, for finish_dx to put back into token order (softsort_aux.cu), and every
// block adds the score-gradient terms q_i = gh_i (SR - SL)[y]_i + y_i (SR - SL)[gh]_i and
// c_i = gh_i out_i over its channels into its slice of `part`.
template <typename T, bool kHard, GradRows kG>
__global__ void __launch_bounds__(kMaxThreads) bwd_kernel(const Args a) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ Shared<2> sh;
  const int b = int(blockIdx.y), L = a.L, D = a.D;
  const ChannelRange cr(D);
  if (cr.rows() <= 0) return;
  T* dx = static_cast<T*>(a.dx) + (int64_t(b) * D + cr.d0) * L;
  const RowEnv env = make_env(a, b, false);  // a single tile: 1 / Z computed here
  if (!row_finite(env)) return fill_rows_nan(dx, cr.rows(), L);

  const T* g = static_cast<const T*>(a.g) + b * a.gb + cr.d0 * a.gd;
  RowPipe<T> pipe(dyn + a.acc_smem, a.stages, L, cr.rows(),
                  static_cast<const T*>(a.x) + b * a.xb + cr.d0 * a.xd, a.xd,
                  kG == GradRows::kStaged ? g : nullptr, a.gd);
  pipe.lean = !kHard;  // rows are read before the scan's barrier (the hard mode's g after it)
  float* part = a.part + (int64_t(b) * gridDim.x + blockIdx.x) * 2 * L;

  // The thread's sums of q and c over the block's rows, in dynamic shared memory (registers are
  // the scans'; static arrays would be sized for the largest block, and short rows run many
  // small blocks per multiprocessor): acc[k * blockDim.x] holds q at the thread's positions 0-3,
  // 4-7 (k = 0, 1) and c likewise (k = 2, 3).
  float4* const acc = reinterpret_cast<float4*>(dyn) + threadIdx.x;
  const int as = int(blockDim.x);
#pragma unroll
  for (int k = 0; k < 4; ++k) acc[k * as] = make_float4(0.f, 0.f, 0.f, 0.f);
  Ctx c;
  load_ctx<true>(c, env, 0, sh.tile);
  normalize_in_block(c, sh);

  pipe.prologue();
  for (int r = 0; r < cr.rows(); ++r) {
    pipe.with_row(r, [&](const T* xs) {
      T* dxrow = dx + int64_t(r) * L;
      // The row's g at the thread's positions.
      auto load_g = [&](const Ctx& c, float (&graw)[kE]) {
        if constexpr (kG == GradRows::kStaged) {
          load_run<T, kE>(xs + L, 1, c.s, L, graw);
        } else if constexpr (kG == GradRows::kBroadcast) {
          // load_grad_run's broadcast branch, written out: through it the hard instance spilled
          // more (ptxas: 28 bytes of spill stores against 16).
          const float g0 = to_f(g[r * a.gd]);
#pragma unroll
          for (int j = 0; j < kE; ++j) graw[j] = j < c.n ? g0 : 0.f;
        } else {
          load_run<T, kE>(g + r * a.gd, a.gl, c.s, L, graw);
        }
      };
      auto load_v = [&](const Ctx& c, float (&v)[2][kE]) {
        float graw[kE];
        load_g(c, graw);
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          v[0][j] = j < c.n ? to_f(xs[c.perm[j]]) : 0.f;
          v[1][j] = graw[j] * c.invz[j];
        }
      };
      auto emit = [&](const Ctx& c, const float (&v)[2][kE], const TileScan<2, true>& ts) {
        {  // first: the scans of gh are dead afterwards (registers)
          float val[kE];
          if constexpr (kHard) {
            load_g(c, val);
          } else {
#pragma unroll
            for (int j = 0; j < kE; ++j) val[j] = ts.il[1][j] + ts.gx[1][j];
          }
          store_run<T, kE>(dxrow, c.s, L, val);
        }
        float q[kE], cc[kE];
        score_terms(c, v, ts, q, cc);
        // The four loads first: the compiler cannot tell the four sums apart (`as` is not known
        // to be non-zero), so load-add-store in turn waited out each load's latency.
        float4 t[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) t[k] = acc[k * as];
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          const float* add = (k < 2 ? q : cc) + 4 * (k & 1);
          t[k].x += add[0];
          t[k].y += add[1];
          t[k].z += add[2];
          t[k].w += add[3];
          acc[k * as] = t[k];
        }
      };
      scan_row<2, true>(c, sh, load_v, emit);
    });
  }
  if (c.n > 0) {
    float sums[2][kE];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float4 t = acc[k * as];
      float* out = sums[k >> 1] + 4 * (k & 1);
      out[0] = t.x;
      out[1] = t.y;
      out[2] = t.z;
      out[3] = t.w;
    }
    store_run<float, kE>(part, c.s, L, sums[0]);
    store_run<float, kE>(part + L, c.s, L, sums[1]);
  }
}

// Launchers and kernel handles, defined for each storage type T by softsort_scan_<dtype>.cu.
template <typename T>
void launch_fwd_t(const Args& a, cudaStream_t s, size_t smem) {
  if (a.hard)
    fwd_kernel<T, true><<<dim3(a.groups, a.B), a.threads, smem, s>>>(a);
  else
    fwd_kernel<T, false><<<dim3(a.groups, a.B), a.threads, smem, s>>>(a);
}

// The sweep's instance for the hard mode and the way g is read.
template <typename T, bool kHard>
const void* bwd_kernel_instance(GradRows m) {
  switch (m) {
    case GradRows::kStaged:
      return reinterpret_cast<const void*>(&bwd_kernel<T, kHard, GradRows::kStaged>);
    case GradRows::kBroadcast:
      return reinterpret_cast<const void*>(&bwd_kernel<T, kHard, GradRows::kBroadcast>);
    default: return reinterpret_cast<const void*>(&bwd_kernel<T, kHard, GradRows::kStrided>);
  }
}

template <typename T>
const void* bwd_kernel_handle_t(bool hard, GradRows m) {
  return hard ? bwd_kernel_instance<T, true>(m) : bwd_kernel_instance<T, false>(m);
}

template <typename T>
void launch_bwd_t(const Args& a, cudaStream_t s, size_t smem) {
  const GradRows m =
      a.g_smem ? GradRows::kStaged : a.gl == 0 ? GradRows::kBroadcast : GradRows::kStrided;
  const void* kernel = bwd_kernel_handle_t<T>(a.hard, m);
  raise_smem_limit(kernel, smem);
  launch_handle(kernel, dim3(a.groups, a.B), a.threads, smem, a, s, "backward sweep launch");
}

template <typename T>
const void* row_kernel_handle_t(RowKernel kind) {
  // The sweep's instances share their launch facts (registers and static shared memory).
  if (kind == RowKernel::kBwd) return bwd_kernel_handle_t<T>(false, GradRows::kStaged);
  return kind == RowKernel::kGather ? reinterpret_cast<const void*>(&fwd_kernel<T, true>)
                                    : reinterpret_cast<const void*>(&fwd_kernel<T, false>);
}

}  // namespace s6kit::cuda_softsort
