// CUDA selective scan, backward kernel (see scan_bwd_layout.h for the work split and the shared
// memory).
//
// With g_l = dLoss/dh_l (the same math as the CPU kernel, cpp/src/cpu/scan_cpu_impl.h):
//   g_l     = exp(dt_{l+1} A) g_{l+1} + C_l dy_l        (g_{L-1} starts from d last_state)
//   dB_l   += g_l dt_l u_l,  dC_l += dy_l h_l,  dD += dy_l u_l,  dA += g_l h_{l-1} exp(dt_l A) dt_l
//   d dt_l  = sum_n g_l h_{l-1} exp(dt_l A) A + u_l sum_n g_l B_l
//   du_l    = dt_l sum_n g_l B_l + D dy_l,   d h_0 = exp(dt_0 A) g_0
// with dy = dout * silu(z), dz = dout * (y + D u) * silu'(z), d delta = d dt * sigmoid(delta + bias)
// under softplus.
//
// A block walks the checkpoint intervals (64 steps) of its rows in reverse. Per interval:
//   * the forward pass: from the checkpoint, h is advanced through the interval's tiles (only
//     delta, u and B staged) and h at every sub-chunk start (U steps) goes onto a stack in
//     shared memory;
//   * the backward pass, tiles in reverse, sub-chunks in reverse: the sub-chunk is recomputed
//     from its stacked start into registers (the decays exp(dt A), q_l = exp(dt_l A) h_{l-1},
//     and each lane's part of y_l for dz), then swept backwards with the adjoint g in groups of
//     kX steps. Per group each lane leaves its partial sums over its states (g B, g q A) in
//     shared memory, and its dB / dC terms in the exchange; after a barrier the block sums the
//     dB / dC terms over its rows into its workspace slot and forms du, d delta, dz of the
//     group's (row, step)s; after the tile they are written out coalesced.
// The tile's raw inputs are copied asynchronously while the block works on the previous tile.
//
// Reductions, all in a fixed order (no atomics: results are bitwise reproducible):
//   * variable dB / dC (sums over the channels of a group): one partial per (batch, group, block
//     slot, step, state) in the workspace; a block that handles several row tiles (only when the
//     workspace would be too large otherwise) adds them up in order. reduce_bc_kernel sums the
//     slots;
//   * dA, time-invariant dB / dC, dD, d delta_bias: per (b, d) partials in the workspace, summed
//     over the batch by reduce_rows_kernel.
#pragma once

#include "scan_bwd_layout.h"
#include "scan_device.cuh"

namespace s6kit::cuda_scan {

struct BwdArgs {
  ScanBwdParams p;
  BwdLayout lay;
  int64_t ntiles = 0;     // row tiles per (batch, group)
  int64_t slots = 0;      // blocks per (batch, group)
  int64_t subtiles = 1;   // row tiles per block: tile slot * subtiles + s, s < subtiles
  const float* ckpt = nullptr;  // (batch, dim, ceil(L / 64), N)
  float* part_bc = nullptr;     // (batch * G, slots, L, 2, N): variable dB (plane 0), dC (plane 1)
  float* part_dA = nullptr;     // (batch, dim, N), or (batch, dim) for scalar A
  float* part_dBinv = nullptr;  // (batch, dim, N) when B is time-invariant
  float* part_dCinv = nullptr;  // (batch, dim, N) when C is time-invariant
  float* part_dD = nullptr;     // (batch, dim)
  float* part_ddb = nullptr;    // (batch, dim)
  bool vec_in = false;          // u, delta, z, dout rows are 16-byte aligned: 16-byte copies
  bool vec_bc = false;          // variable B / C state rows are 16-byte aligned: likewise
  bool vec_out = false;         // du, ddelta, dz rows are 16-byte aligned: vector stores
};

template <typename in_t, bool kScalarA, int kS>
__global__ void __launch_bounds__(kBwdMaxThreads, 3) scan_bwd_kernel(const __grid_constant__ BwdArgs args) {
  constexpr int U = bwd_substeps(kS);
  constexpr int kX = kBwdExSteps;
  constexpr int V = kVec<in_t>;
  constexpr int es = static_cast<int>(sizeof(in_t));
  static_assert(U % kX == 0, "an exchange group must not straddle sub-chunks");

  extern __shared__ float4 smem_f4[];
  unsigned char* const sm = reinterpret_cast<unsigned char*>(smem_f4);
  const ScanBwdParams& p = args.p;
  const BwdLayout& lay = args.lay;

  const int tid = threadIdx.x;
  const int R = lay.R, T = lay.T, rows = lay.rows, nt = lay.nt, sb = lay.sb;
  const int cpr = lay.cpr, log2cpr = lay.log2cpr, log2rows = lay.log2rows;
  const int row = tid >> lay.log2R, slice = tid & (R - 1);
  // Sizes and indices are below 2^31 (checked by the launcher); offsets are 64-bit.
  const int L = static_cast<int>(p.seqlen);
  const int64_t dim = p.dim;
  const int N = static_cast<int>(p.dstate);
  const bool has_z = p.has_z, has_sig = p.delta_softplus;
  const bool varB = p.variable_B, varC = p.variable_C;
  const int n_ckpt = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;

  unsigned char* const raw = sm + lay.off_raw;
  float4* const sRowF = reinterpret_cast<float4*>(sm + lay.off_rowf);  // [T][rows]
  float2* const sRowG = reinterpret_cast<float2*>(sm + lay.off_rowg);  // [T][rows]
  float* const sB = reinterpret_cast<float*>(sm + lay.off_B);
  float* const sC = reinterpret_cast<float*>(sm + lay.off_C);
  float* const sStack = reinterpret_cast<float*>(sm + lay.off_stack);  // [kStack][nt][kS]
  float* const sEx = reinterpret_cast<float*>(sm + (varB || varC ? lay.off_ex : 0));
  float* const sSums = reinterpret_cast<float*>(sm + lay.off_sums);    // [2][kX][nt]
  float* const sY = reinterpret_cast<float*>(sm + (has_z ? lay.off_ysum : 0));  // [U][nt]
  float* const sAcc = reinterpret_cast<float*>(sm + lay.off_acc);      // [3][nt]
  float* const sRowD = reinterpret_cast<float*>(sm + lay.off_rowD);
  float* const sRowBias = reinterpret_cast<float*>(sm + lay.off_rowBias);
  float* const sRowA = reinterpret_cast<float*>(sm + lay.off_rowA);

  const int nB = varB ? N : 0, nC = varC ? N : 0;
  const int n_row_arrays = has_z ? 4 : 3;
  const int nint = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;

  const int64_t nblocks = p.batch * p.n_groups * args.slots;
  for (int64_t blk = blockIdx.x; blk < nblocks; blk += gridDim.x) {
    const int slot = static_cast<int>(blk % args.slots);
    const int b = static_cast<int>(blk / args.slots / p.n_groups);
    const int g = static_cast<int>(blk / args.slots % p.n_groups);
    const in_t* const Bg = varB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride : nullptr;
    const in_t* const Cg = varC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride : nullptr;
    float* const part_bc_slot =
        varB || varC ? args.part_bc + (int64_t(b) * p.n_groups + g) * args.slots * L * 2 * N + int64_t(slot) * L * 2 * N
                     : nullptr;

    for (int sub = 0; sub < args.subtiles; ++sub) {
      const int64_t rt = slot * args.subtiles + sub;
      if (rt >= args.ntiles) break;
      const int d0 = static_cast<int>(g * p.dim_per_group + rt * rows);
      const int rows_valid = static_cast<int>(min64(rows, p.dim_per_group - rt * rows));
      const bool valid = row < rows_valid;
      const int d = d0 + row;
      const int64_t rowi = b * dim + d;  // (b, d)

      // Starts the copies of the raw inputs of steps [ls, ls + T) (`lite`: u, delta and B only,
      // for the forward pass). 16-byte chunks, consecutive threads along a row.
      auto stage = [&](int ls, bool lite) {
        const int row_arrays = lite ? 2 : n_row_arrays;
        const int row_items = row_arrays * rows;
        const int total = (row_items + nB + (lite ? 0 : nC)) << log2cpr;
        for (int e = tid; e < total; e += nt) {
          const int c = e & (cpr - 1), idx = e >> log2cpr;
          const in_t* src;
          unsigned char* dst;
          bool vec;
          if (idx < row_items) {
            const int arr = idx >> log2rows, r = idx & (rows - 1);
            if (r >= rows_valid) continue;
            const int64_t dd = d0 + r;
            // Arrays in order u, delta, dout, z.
            if (arr == 0) {
              src = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + dd * p.u_dim_stride;
              dst = raw + lay.raw_u;
            } else if (arr == 1) {
              src = static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + dd * p.delta_dim_stride;
              dst = raw + lay.raw_delta;
            } else if (arr == 2) {
              src = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride + dd * p.dout_dim_stride;
              dst = raw + lay.raw_dout;
            } else {
              src = static_cast<const in_t*>(p.z) + b * p.z_batch_stride + dd * p.z_dim_stride;
              dst = raw + lay.raw_z;
            }
            dst += r * lay.rowp + c * 16;
            vec = args.vec_in;
          } else {
            const int k = idx - row_items;
            if (k < nB) {
              src = Bg + k * p.B_state_stride;
              dst = raw + lay.raw_B + k * lay.bcp + c * 16;
            } else {
              src = Cg + (k - nB) * p.C_state_stride;
              dst = raw + lay.raw_C + (k - nB) * lay.bcp + c * 16;
            }
            vec = args.vec_bc;
          }
          const int gl = ls + c * V;
          const int nvalid = L - gl >= V ? V : (L - gl > 0 ? L - gl : 0);
          if (vec) {
            cp_async16(dst, src + (nvalid > 0 ? gl : 0), nvalid * es);
          } else {
            in_t el[V];
#pragma unroll
            for (int k = 0; k < V; ++k) el[k] = k < nvalid ? src[gl + k] : from_float<in_t>(0.f);
            uint4 q;
            memcpy(&q, el, sizeof(q));
            *reinterpret_cast<uint4*>(dst) = q;
          }
        }
        cp_async_commit();
      };

      // Converts the raw tile of steps [ls, ls + T): rowf = (dt, dt u, dy, u) and rowg =
      // (dout silu'(z), sigmoid(delta + bias)) per (row, step), B / C as floats. `lite`: dt,
      // dt u and B only. Steps past L and rows past the group get zeros.
      auto convert = [&](int ls, bool lite) {
        for (int e = tid; e < rows * cpr; e += nt) {
          const int r = e & (rows - 1), c = e >> log2rows;
          float dt[V], dtu[V], dy[V], uu[V], zf[V], sg[V];
#pragma unroll
          for (int k = 0; k < V; ++k) dt[k] = dtu[k] = dy[k] = uu[k] = zf[k] = sg[k] = 0.f;
          if (r < rows_valid) {
            float x[V];
            raw16_to_float<in_t>(raw + lay.raw_u + r * lay.rowp + c * 16, uu);
            raw16_to_float<in_t>(raw + lay.raw_delta + r * lay.rowp + c * 16, x);
            const float bias = sRowBias[r];
#pragma unroll
            for (int k = 0; k < V; ++k) {
              if (ls + c * V + k < L) {
                const float xb = x[k] + bias;
                if (has_sig)
                  softplus_and_sigmoid(xb, dt[k], sg[k]);
                else
                  dt[k] = xb;
              }
              dtu[k] = dt[k] * uu[k];
            }
            if (!lite) {
              float dout[V];
              raw16_to_float<in_t>(raw + lay.raw_dout + r * lay.rowp + c * 16, dout);
              if (has_z) {
                float z[V];
                raw16_to_float<in_t>(raw + lay.raw_z + r * lay.rowp + c * 16, z);
#pragma unroll
                for (int k = 0; k < V; ++k) {
                  const float s = sigmoid(z[k]);
                  dy[k] = dout[k] * z[k] * s;
                  zf[k] = dout[k] * s * (1.f + z[k] * (1.f - s));
                }
              } else {
#pragma unroll
                for (int k = 0; k < V; ++k) dy[k] = dout[k];
              }
            }
          }
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const int kk = (c * V + k) * rows + r;
            sRowF[kk] = make_float4(dt[k], dtu[k], dy[k], uu[k]);
            if (!lite) sRowG[kk] = make_float2(zf[k], sg[k]);
          }
        }
        const int nvar = (varB ? 1 : 0) + (!lite && varC ? 1 : 0);
        const int nq = lay.nq;
        for (int e = tid; e < nvar * nq * T; e += nt) {
          const int l = e & (T - 1), rest = e >> lay.log2T;
          const int q = rest % nq;
          const bool isB = varB && rest < nq;
          const unsigned char* const src = raw + (isB ? lay.raw_B : lay.raw_C) + l * es;
          float* const dst = (isB ? sB : sC) + l * sb + state_pos(4 * q, kS, R);
          const bool in_l = ls + l < L;
          float v[4];
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            const int n = 4 * q + k;
            v[k] = n < N && in_l ? raw_to_float<in_t>(src + n * lay.bcp) : 0.f;
          }
          *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
        }
      };

      __syncthreads();  // the previous row tile is done with shared memory
      for (int r = tid; r < rows; r += nt) {
        const bool ok = r < rows_valid;
        sRowD[r] = ok && p.has_D ? static_cast<const float*>(p.D)[(d0 + r) * p.D_stride] : 0.f;
        sRowBias[r] = ok && p.has_delta_bias
                          ? static_cast<const float*>(p.delta_bias)[(d0 + r) * p.delta_bias_stride]
                          : 0.f;
        sRowA[r] = ok && kScalarA ? static_cast<const float*>(p.A)[(d0 + r) * p.A_dim_stride] : 0.f;
      }
      if (!varB)
        load_bc_rows(sB, static_cast<const float*>(p.B), p.B_group_stride, p.B_state_stride, d0,
                     rows_valid, N, lay, tid);
      if (!varC)
        load_bc_rows(sC, static_cast<const float*>(p.C), p.C_group_stride, p.C_state_stride, d0,
                     rows_valid, N, lay, tid);
      const float* const bBase = varB ? sB : sB + row * sb;
      const float* const cBase = varC ? sC : sC + row * sb;
      const int bStep = varB ? sb : 0, cStep = varC ? sb : 0;

      // Per-thread constants and accumulators (states n = slice * kS + i).
      float A2[kS];  // A * log2(e)
      float A2s = 0.f;
      if constexpr (kScalarA) {
        A2s = valid ? static_cast<const float*>(p.A)[d * p.A_dim_stride] * kLog2e : 0.f;
      }
#pragma unroll
      for (int i = 0; i < kS; ++i) {
        const int n = slice * kS + i;
        A2[i] = !kScalarA && valid && n < N
                    ? static_cast<const float*>(p.A)[d * p.A_dim_stride + n * p.A_state_stride] * kLog2e
                    : 0.f;
      }
      float gad[kS];  // the adjoint g, carried from step to step
      if (valid && p.dlast_state != nullptr) {
        load_global_states<kS>(static_cast<const float*>(p.dlast_state) + rowi * N, slice, N, gad);
      } else {
#pragma unroll
        for (int i = 0; i < kS; ++i) gad[i] = 0.f;
      }
      float dA[kS], dBinv[kS], dCinv[kS];
#pragma unroll
      for (int i = 0; i < kS; ++i) dA[i] = dBinv[i] = dCinv[i] = 0.f;
      // Per-thread sums of the (row, step) items this thread finishes: always of row
      // tid % rows (items e = tid + k nt, nt a multiple of rows).
      float acc_dD = 0.f, acc_ddb = 0.f, acc_dAs = 0.f;

      // The units of work, in order: per interval (last first), the forward pass's tiles
      // (first to last, those before the interval's last sub-chunk), then its tiles in reverse.
      struct Unit {
        int c, q;  // interval, tile within it (c < 0: none)
        bool lite;
      };
      auto nsub_of = [&](int c) {
        const int i0 = c * kScanCheckpointInterval;
        return (imin(L - i0, kScanCheckpointInterval) + U - 1) / U;
      };
      auto lite_tiles = [&](int c) { return ((nsub_of(c) - 1) * U + T - 1) / T; };
      auto full_tiles = [&](int c) {
        const int i0 = c * kScanCheckpointInterval;
        return (imin(L - i0, kScanCheckpointInterval) + T - 1) / T;
      };
      auto first_of = [&](int c) -> Unit {
        if (c < 0) return {-1, 0, false};
        return lite_tiles(c) > 0 ? Unit{c, 0, true} : Unit{c, full_tiles(c) - 1, false};
      };
      auto next_of = [&](Unit u) -> Unit {
        if (u.lite) return u.q + 1 < lite_tiles(u.c) ? Unit{u.c, u.q + 1, true} : Unit{u.c, full_tiles(u.c) - 1, false};
        return u.q > 0 ? Unit{u.c, u.q - 1, false} : first_of(u.c - 1);
      };
      auto start_of = [&](Unit u) { return u.c * kScanCheckpointInterval + u.q * T; };

      float h[kS];  // the forward pass's state
      Unit u = first_of(nint - 1);
      stage(start_of(u), u.lite);
      while (u.c >= 0) {
        const int ls = start_of(u);
        const int i0 = u.c * kScanCheckpointInterval;
        const int nsub = nsub_of(u.c);
        cp_async_wait_all();
        // The unit's raw inputs are in place; every thread is done with the previous unit.
        __syncthreads();
        convert(ls, u.lite);
        __syncthreads();  // converted; the raw buffer is free for the next unit
        const Unit nx = next_of(u);
        if (nx.c >= 0) stage(start_of(nx), nx.lite);

        const bool first_of_interval = u.lite ? u.q == 0 : lite_tiles(u.c) == 0;
        if (first_of_interval) {
          if (valid) {
            load_global_states<kS>(args.ckpt + (rowi * n_ckpt + u.c) * N, slice, N, h);
          } else {
#pragma unroll
            for (int i = 0; i < kS; ++i) h[i] = 0.f;
          }
          store_row_states<kS>(sStack + tid * kS, 0, 1, h);  // sub-chunk 0 starts there
        }

        if (u.lite) {
          // Forward pass: h at the start of each following sub-chunk onto the stack.
          for (int k = 0; k < T / U; ++k) {
            const int s = (ls - i0) / U + k;
            if (s + 1 >= nsub) break;
#pragma unroll 4
            for (int j = k * U; j < k * U + U; ++j) {
              const float4 f = sRowF[j * rows + row];
              float bv[kS];
              load_row_states<kS>(bBase + j * bStep, slice, R, bv);
              if constexpr (kScalarA) {
                const float a = fast_exp2(f.x * A2s);
#pragma unroll
                for (int i = 0; i < kS; ++i) h[i] = fmaf(a, h[i], f.y * bv[i]);
              } else {
#pragma unroll
                for (int i = 0; i < kS; ++i) h[i] = fmaf(fast_exp2(f.x * A2[i]), h[i], f.y * bv[i]);
              }
            }
            store_row_states<kS>(sStack + ((s + 1) * nt + tid) * kS, 0, 1, h);
          }
          u = nx;
          continue;
        }

        // Backward pass over the tile's sub-chunks, last first.
        for (int k = T / U - 1; k >= 0; --k) {
          const int s = (ls - i0) / U + k;
          if (s >= nsub) continue;
          const int jb = k * U;  // first step of the sub-chunk in the tile

          // Recompute: decays, q_l = exp(dt_l A) h_{l-1}, and this lane's part of y_l.
          float hc[kS];
          load_row_states<kS>(sStack + (s * nt + tid) * kS, 0, 1, hc);
          float ad[kScalarA ? 1 : U][kS];  // exp(dt_l A) per state (real A)
          float as[U];                     // exp(dt_l A) (scalar A)
          float qh[U][kS];
#pragma unroll
          for (int j = 0; j < U; ++j) {
            const float4 f = sRowF[(jb + j) * rows + row];
            float bv[kS];
            load_row_states<kS>(bBase + (jb + j) * bStep, slice, R, bv);
            if constexpr (kScalarA) {
              as[j] = fast_exp2(f.x * A2s);
#pragma unroll
              for (int i = 0; i < kS; ++i) qh[j][i] = as[j] * hc[i];
            } else {
              as[j] = 0.f;
#pragma unroll
              for (int i = 0; i < kS; ++i) {
                ad[j][i] = fast_exp2(f.x * A2[i]);
                qh[j][i] = ad[j][i] * hc[i];
              }
            }
#pragma unroll
            for (int i = 0; i < kS; ++i) hc[i] = fmaf(f.y, bv[i], qh[j][i]);
            if (has_z) {
              float cv[kS];
              load_row_states<kS>(cBase + (jb + j) * cStep, slice, R, cv);
              float yp = 0.f;
#pragma unroll
              for (int i = 0; i < kS; ++i) yp = fmaf(cv[i], hc[i], yp);
              sY[j * nt + tid] = yp;
            }
          }

          // Reverse sweep in groups of kX steps.
#pragma unroll
          for (int j0 = U - kX; j0 >= 0; j0 -= kX) {
#pragma unroll
            for (int jj = kX - 1; jj >= 0; --jj) {
              const int j = j0 + jj;
              const float4 f = sRowF[(jb + j) * rows + row];  // dt, dt u, dy, u
              float bv[kS], cv[kS];
              load_row_states<kS>(bBase + (jb + j) * bStep, slice, R, bv);
              load_row_states<kS>(cBase + (jb + j) * cStep, slice, R, cv);
              float sgB = 0.f, sgh = 0.f;
              float dBv[kS], dCv[kS];
#pragma unroll
              for (int i = 0; i < kS; ++i) {
                const float gn = fmaf(cv[i], f.z, gad[i]);
                const float gq = gn * qh[j][i];  // g_l exp(dt_l A) h_{l-1}
                if constexpr (kScalarA) {
                  sgh += gq;  // times A in the post-pass
                  gad[i] = as[j] * gn;
                } else {
                  sgh = fmaf(gq, A2[i], sgh);  // A2 = A log2(e): rescaled by ln 2 in the post-pass
                  dA[i] = fmaf(gq, f.x, dA[i]);
                  gad[i] = ad[j][i] * gn;
                }
                sgB = fmaf(gn, bv[i], sgB);
                const float hl = fmaf(f.y, bv[i], qh[j][i]);  // h_l
                dBv[i] = gn * f.y;
                dCv[i] = f.z * hl;
                if (!varB) dBinv[i] += dBv[i];
                if (!varC) dCinv[i] += dCv[i];
              }
              sSums[jj * nt + tid] = sgB;
              sSums[(kX + jj) * nt + tid] = sgh;
              if (varB) store_row_states<kS>(sEx + (jj * 2) * lay.ps + row * lay.exr, slice, R, dBv);
              if (varC) store_row_states<kS>(sEx + (jj * 2 + 1) * lay.ps + row * lay.exr, slice, R, dCv);
            }
            __syncthreads();  // the group's partial sums and dB / dC terms are in place

            const int jl0 = jb + j0;  // first step of the group in the tile
            // dB / dC of the group summed over the block's rows: item (step, plane, state quad)
            // in exP parts of rows_per_part rows each (adjacent lanes), combined by shuffles.
            if (varB || varC) {
              const int items = kX * 2 * lay.nq, P = lay.exP, rpp = rows / P;
              for (int base = 0; base < items * P; base += nt) {
                const int e = base + tid;
                const int part = e & (P - 1), it = e >> lay.log2exP;
                const int qd = it % lay.nq, rest = it / lay.nq, plane = rest & 1, jj = rest >> 1;
                const bool active = e < items * P && (plane == 0 ? varB : varC);
                float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
                if (active) {
                  const float* src = sEx + (jj * 2 + plane) * lay.ps + state_pos(4 * qd, kS, R);
                  const int r1 = imin((part + 1) * rpp, rows_valid);
                  for (int r = part * rpp; r < r1; ++r) {
                    const float4 v = *reinterpret_cast<const float4*>(src + r * lay.exr);
                    acc.x += v.x;
                    acc.y += v.y;
                    acc.z += v.z;
                    acc.w += v.w;
                  }
                }
                for (int off = 1; off < P; off <<= 1) {
                  acc.x += __shfl_xor_sync(kFullMask, acc.x, off);
                  acc.y += __shfl_xor_sync(kFullMask, acc.y, off);
                  acc.z += __shfl_xor_sync(kFullMask, acc.z, off);
                  acc.w += __shfl_xor_sync(kFullMask, acc.w, off);
                }
                const int l = ls + jl0 + jj;
                if (active && part == 0 && l < L) {
                  float* dst = part_bc_slot + (int64_t(l) * 2 + plane) * N + 4 * qd;
                  const float v[4] = {acc.x, acc.y, acc.z, acc.w};
#pragma unroll
                  for (int q = 0; q < 4; ++q)
                    if (4 * qd + q < N) dst[q] = sub == 0 ? v[q] : dst[q] + v[q];
                }
              }
            }

            // du, d delta, dz of the group's (row, step)s, over rowf.
            for (int e = tid; e < rows * kX; e += nt) {
              const int r = e & (rows - 1), jj = e >> log2rows;
              const int jl = jl0 + jj;
              if (r >= rows_valid || ls + jl >= L) continue;
              float sgB = 0.f, sgh = 0.f, y = 0.f;
              const float* const s0 = sSums + jj * nt + r * R;
              const float* const s1 = sSums + (kX + jj) * nt + r * R;
              const float* const sy = sY + (j0 + jj) * nt + r * R;
              for (int q = 0; q < R; ++q) {
                sgB += s0[q];
                sgh += s1[q];
                if (has_z) y += sy[q];
              }
              const float4 f = sRowF[jl * rows + r];  // dt, dt u, dy, u
              const float2 gz = sRowG[jl * rows + r];  // dout silu'(z), sigmoid(delta + bias)
              const float Dr = sRowD[r];
              float sgha;
              if constexpr (kScalarA) {
                acc_dAs = fmaf(sgh, f.x, acc_dAs);
                sgha = sgh * sRowA[r];
              } else {
                sgha = sgh * kLn2;
              }
              const float ddt = fmaf(f.w, sgB, sgha);
              const float du = fmaf(f.x, sgB, Dr * f.z);
              const float dd = has_sig ? ddt * gz.y : ddt;
              const float dz = has_z ? gz.x * fmaf(Dr, f.w, y) : 0.f;
              acc_dD = fmaf(f.z, f.w, acc_dD);
              acc_ddb += dd;
              sRowF[jl * rows + r] = make_float4(du, dd, dz, 0.f);
            }
            __syncthreads();  // the group's sums and exchange are read
          }
        }

        // Outputs of the tile: du, d delta, dz from rowf.
        for (int e = tid; e < rows * cpr; e += nt) {
          const int r = e & (rows - 1), c = e >> log2rows;
          const int gl = ls + c * V;
          if (r >= rows_valid || gl >= L) continue;
          const int64_t o = (b * dim + d0 + r) * L;
          float vu[V], vd[V], vz[V];
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const float4 f = sRowF[(c * V + k) * rows + r];
            vu[k] = f.x;
            vd[k] = f.y;
            vz[k] = f.z;
          }
          store_span<in_t, V>(static_cast<in_t*>(p.du) + o, gl, L, args.vec_out, vu);
          store_span<in_t, V>(static_cast<in_t*>(p.ddelta) + o, gl, L, args.vec_out, vd);
          if (has_z) store_span<in_t, V>(static_cast<in_t*>(p.dz) + o, gl, L, args.vec_out, vz);
        }
        u = nx;
      }

      // Per-(b, d) partials and d initial_state.
      sAcc[tid] = acc_dD;
      sAcc[nt + tid] = acc_ddb;
      sAcc[2 * nt + tid] = acc_dAs;
      __syncthreads();
      for (int r = tid; r < rows_valid; r += nt) {
        float sD = 0.f, sdb = 0.f, sA = 0.f;
        for (int k = r; k < nt; k += rows) {
          sD += sAcc[k];
          sdb += sAcc[nt + k];
          sA += sAcc[2 * nt + k];
        }
        const int64_t ri = b * dim + d0 + r;
        args.part_dD[ri] = sD;
        args.part_ddb[ri] = sdb;
        if constexpr (kScalarA) args.part_dA[ri] = sA;
      }
      if (valid) {
        if constexpr (!kScalarA) store_global_states<kS>(args.part_dA + rowi * N, slice, N, dA);
        if (!varB) store_global_states<kS>(args.part_dBinv + rowi * N, slice, N, dBinv);
        if (!varC) store_global_states<kS>(args.part_dCinv + rowi * N, slice, N, dCinv);
        if (p.dinitial_state != nullptr)
          store_global_states<kS>(static_cast<float*>(p.dinitial_state) + rowi * N, slice, N, gad);
      }
    }
  }
}

}  // namespace s6kit::cuda_scan
