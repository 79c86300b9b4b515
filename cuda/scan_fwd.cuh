// CUDA selective scan, forward kernel (see scan_layout.h for the work split).
//
// Per time tile, a block
//   1. writes the outputs of the previous tile and stages the inputs of this one (each thread
//      owns the same (row, step) slots in both, so the two share one phase): dt = softplus(delta
//      + bias) (or delta + bias), u, silu(z), and B / C;
//   2. saves h at the tile start into the checkpoints (every 64 steps) when asked;
//   3. runs the recurrence h = exp(dt A) h + dt u B on its kS states per thread, serially over
//      the tile, with y_l = C_l . h_l summed over the R lanes of the row by xor-shuffles;
//   4. (next tile) writes out = (y + D u) * silu(z) coalesced in the input dtype.
// Steps past L run with dt = u = 0 and B = 0: exp(0) = 1, so they leave h unchanged.
#pragma once

#include "scan_device.cuh"

namespace s6kit::cuda_scan {

struct FwdArgs {
  ScanParams p;
  Layout lay;
  int64_t ntiles = 0;      // row tiles per (batch, group)
  float* ckpt = nullptr;   // (batch, dim, ceil(L / 64), N) or null
  bool write_out = true;   // false: only the checkpoints (the backward's recompute mode)
  bool vec_in = false;     // u, delta, z rows are 16-byte aligned: vector loads
  bool vec_out = false;    // out rows are 16-byte aligned: vector stores
};

template <typename in_t, bool kScalarA, int kS>
__global__ void __launch_bounds__(kMaxThreads, 4) scan_fwd_kernel(const __grid_constant__ FwdArgs args) {
  extern __shared__ float4 smem_f4[];
  float* const sm = reinterpret_cast<float*>(smem_f4);
  const ScanParams& p = args.p;
  const Layout& lay = args.lay;

  const int tid = threadIdx.x;
  const int R = lay.R, T = lay.T, rp = lay.rp, sb = lay.sb, nt = lay.nt;
  const int row = tid >> lay.log2R, slice = tid & (R - 1);
  const int64_t L = p.seqlen, dim = p.dim;
  const int N = static_cast<int>(p.dstate);
  const bool write_out = args.write_out;
  const bool has_z = p.has_z && write_out;
  const int64_t n_ckpt = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;

  float* const sDt = sm + lay.off_dt;
  float* const sU = sm + lay.off_u;
  float* const sGate = sm + (p.has_z ? lay.off_gate : 0);
  float* const sY = sm + lay.off_y;
  float* const sB = sm + lay.off_B;
  float* const sC = sm + lay.off_C;
  float* const sRowD = sm + lay.off_rowD;
  float* const sRowBias = sm + lay.off_rowBias;

  const in_t* const U = static_cast<const in_t*>(p.u);
  const in_t* const Delta = static_cast<const in_t*>(p.delta);
  const in_t* const Z = static_cast<const in_t*>(p.z);
  const float* const Aw = static_cast<const float*>(p.A);
  in_t* const Out = static_cast<in_t*>(p.out);

  // Staging and output work on spans of V consecutive steps of one row (16-byte accesses); a
  // thread owns the same spans in both, so writing tile t - 1 and staging tile t share a phase.
  constexpr int V = kVec<in_t>;
  const int spans = T / V, log2spans = lay.log2T - (V == 8 ? 3 : 2);

  const int64_t nblocks = p.batch * p.n_groups * args.ntiles;
  for (int64_t blk = blockIdx.x; blk < nblocks; blk += gridDim.x) {
    const int64_t rt = blk % args.ntiles, bg = blk / args.ntiles;
    const int64_t b = bg / p.n_groups, g = bg % p.n_groups;
    const int64_t d0 = g * p.dim_per_group + rt * lay.rows;
    const int rows_valid = static_cast<int>(min64(lay.rows, p.dim_per_group - rt * lay.rows));
    const bool valid = row < rows_valid;
    const int64_t d = d0 + row;

    __syncthreads();  // the previous block iteration is done with shared memory
    for (int r = tid; r < lay.rows; r += nt) {
      const bool ok = r < rows_valid;
      sRowD[r] = ok && p.has_D ? static_cast<const float*>(p.D)[(d0 + r) * p.D_stride] : 0.f;
      sRowBias[r] = ok && p.has_delta_bias
                        ? static_cast<const float*>(p.delta_bias)[(d0 + r) * p.delta_bias_stride]
                        : 0.f;
    }
    if (!p.variable_B)
      load_bc_rows(sB, static_cast<const float*>(p.B), p.B_group_stride, p.B_state_stride, d0,
                   rows_valid, N, lay, tid);
    if (!p.variable_C)
      load_bc_rows(sC, static_cast<const float*>(p.C), p.C_group_stride, p.C_state_stride, d0,
                   rows_valid, N, lay, tid);
    const in_t* const Bg = p.variable_B ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride +
                                              g * p.B_group_stride
                                        : nullptr;
    const in_t* const Cg = p.variable_C ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride +
                                              g * p.C_group_stride
                                        : nullptr;
    // Where step j of this thread's row reads B and C.
    const float* const bBase = p.variable_B ? sB : sB + row * sb;
    const float* const cBase = p.variable_C ? sC : sC + row * sb;
    const int bStep = p.variable_B ? sb : 0, cStep = p.variable_C ? sb : 0;

    // Thread state: h and A * log2(e) of states n = slice * kS + i; zero for n >= N and for
    // rows past the group (their dt is zero too, so h stays zero).
    float h[kS], A2[kS];
    float A2s = 0.f;
    if (valid && p.has_initial_state) {
      load_global_states<kS>(static_cast<const float*>(p.initial_state) + (b * dim + d) * N, slice,
                             N, h);
    } else {
#pragma unroll
      for (int i = 0; i < kS; ++i) h[i] = 0.f;
    }
    if constexpr (kScalarA) {
      A2s = valid ? Aw[d * p.A_dim_stride] * kLog2e : 0.f;
    } else {
#pragma unroll
      for (int i = 0; i < kS; ++i) {
        const int n = slice * kS + i;
        A2[i] = valid && n < N ? Aw[d * p.A_dim_stride + n * p.A_state_stride] * kLog2e : 0.f;
      }
    }
    __syncthreads();  // sRowD, sRowBias, invariant B / C rows

    const int64_t ntl = (L + T - 1) / T;
    for (int64_t t = 0; t <= ntl; ++t) {
      const int64_t l0 = t * T;
      // Outputs of tile t - 1 (its y is complete: the block synchronised after its steps).
      if (t > 0 && write_out) {
        const int64_t lp = l0 - T;
        for (int e = tid; e < lay.rows * spans; e += nt) {
          const int r = e >> log2spans, l = (e & (spans - 1)) * V;
          const int64_t gl = lp + l;
          if (r < rows_valid && gl < L) {
            float v[V];
#pragma unroll
            for (int k = 0; k < V; ++k) {
              const int kk = (l + k) * rp + r;
              v[k] = fmaf(sRowD[r], sU[kk], sY[kk]);
              if (has_z) v[k] *= sGate[kk];
            }
            store_span<in_t, V>(Out + (b * dim + d0 + r) * L, gl, L, args.vec_out, v);
          }
        }
      }
      if (t == ntl) break;

      // Stage tile t; steps past L get dt = u = 0 (no change to h).
      for (int e = tid; e < lay.rows * spans; e += nt) {
        const int r = e >> log2spans, l = (e & (spans - 1)) * V;
        const int64_t gl = l0 + l;
        float dt[V], u[V], gate[V];
#pragma unroll
        for (int k = 0; k < V; ++k) dt[k] = u[k] = gate[k] = 0.f;
        if (r < rows_valid) {
          const int64_t dd = d0 + r;
          float x[V], z[V];
          load_span<in_t, V>(U + b * p.u_batch_stride + dd * p.u_dim_stride, gl, L, args.vec_in, u);
          load_span<in_t, V>(Delta + b * p.delta_batch_stride + dd * p.delta_dim_stride, gl, L,
                          args.vec_in, x);
          if (has_z)
            load_span<in_t, V>(Z + b * p.z_batch_stride + dd * p.z_dim_stride, gl, L, args.vec_in, z);
#pragma unroll
          for (int k = 0; k < V; ++k) {
            if (gl + k < L) {
              const float xb = x[k] + sRowBias[r];
              dt[k] = p.delta_softplus ? softplus(xb) : xb;
              if (has_z) gate[k] = z[k] * sigmoid(z[k]);
            }
          }
        }
#pragma unroll
        for (int k = 0; k < V; ++k) {
          const int kk = (l + k) * rp + r;
          sDt[kk] = dt[k];
          sU[kk] = u[k];
          if (has_z) sGate[kk] = gate[k];
        }
      }
      if (p.variable_B) load_bc_tile(sB, Bg, p.B_state_stride, l0, L, N, lay, tid);
      if (p.variable_C) load_bc_tile(sC, Cg, p.C_state_stride, l0, L, N, lay, tid);
      __syncthreads();

      if (args.ckpt != nullptr && valid && l0 % kScanCheckpointInterval == 0)
        store_global_states<kS>(
            args.ckpt + ((b * dim + d) * n_ckpt + l0 / kScanCheckpointInterval) * N, slice, N, h);

      // The recurrence, four steps at a time (one shuffle reduction for the four y's).
      const int steps = static_cast<int>(min64(T, L - l0));
      const int steps4 = (steps + 3) & ~3;
      for (int j0 = 0; j0 < steps4; j0 += 4) {
        float yv[4];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          const int j = j0 + jj;
          const float dt = sDt[j * rp + row];
          const float dtu = dt * sU[j * rp + row];
          float bv[kS], cv[kS];
          load_row_states<kS>(bBase + j * bStep, slice, R, bv);
          load_row_states<kS>(cBase + j * cStep, slice, R, cv);
          float yp = 0.f;
          if constexpr (kScalarA) {
            const float a = fast_exp2(dt * A2s);  // one exp per (b, d, l) and lane
#pragma unroll
            for (int i = 0; i < kS; ++i) {
              h[i] = fmaf(a, h[i], dtu * bv[i]);
              yp = fmaf(cv[i], h[i], yp);
            }
          } else {
#pragma unroll
            for (int i = 0; i < kS; ++i) {
              const float a = fast_exp2(dt * A2[i]);
              h[i] = fmaf(a, h[i], dtu * bv[i]);
              yp = fmaf(cv[i], h[i], yp);
            }
          }
          yv[jj] = yp;
        }
        row_allreduce<4>(yv, R);
        if (slice == 0) {
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) sY[(j0 + jj) * rp + row] = yv[jj];
        }
      }
      __syncthreads();
    }

    if (write_out && valid)
      store_global_states<kS>(static_cast<float*>(p.last_state) + (b * dim + d) * N, slice, N, h);
  }
}

}  // namespace s6kit::cuda_scan
