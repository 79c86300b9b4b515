// CUDA selective scan, backward kernel (see scan_layout.h for the work split).
//
// With g_l = dLoss/dh_l (the same math as the CPU kernel, cpp/src/cpu/scan_cpu_impl.h):
//   g_l     = exp(dt_{l+1} A) g_{l+1} + C_l dy_l        (g_{L-1} starts from d last_state)
//   dB_l   += g_l dt_l u_l,  dC_l += dy_l h_l,  dD += dy_l u_l,  dA += g_l h_{l-1} exp(dt_l A) dt_l
//   d dt_l  = sum_n g_l h_{l-1} exp(dt_l A) A + u_l sum_n g_l B_l
//   du_l    = dt_l sum_n g_l B_l + D dy_l,   d h_0 = exp(dt_0 A) g_0
// with dy = dout * silu(z), dz = dout * (y + D u) * silu'(z), d delta = d dt * sigmoid(delta + bias)
// under softplus.
//
// A block walks its time tiles in reverse. Per tile:
//   * h at the tile start comes from the checkpoints (every 64 steps; a tile shorter than 64 first
//     re-runs the steps from the checkpoint to its start: the "pre-roll");
//   * phase A re-runs the tile forward in sub-chunks of U steps, pushing h at each sub-chunk start
//     on a register stack (with 4 states per thread every other start; the others go to shared
//     memory);
//   * phase B takes the sub-chunks in reverse: it recomputes h_l and exp(dt_l A) of the U steps
//     into registers (and y_l for dz), then sweeps them backwards with the adjoint g.
// The per-step sums over the states are reduced over the R lanes of a row by xor-shuffles; the
// lanes then share the steps, each forming d dt and du of its own and writing them over dt and u in
// shared memory (both are dead by then), and the block writes du, d delta, dz coalesced after the
// tile.
//
// Reductions, all in a fixed order (no atomics: results are bitwise reproducible):
//   * variable dB / dC (sums over the channels of a group): every kExchangeSteps steps the block
//     exchanges its per-thread values through shared memory, sums them over its rows in order and
//     writes one partial per (batch, group, block slot, step, state) to the workspace; a block
//     that handles several row tiles (only when the workspace would be too large otherwise) adds
//     them up in order. reduce_bc_kernel sums the slots;
//   * dA, time-invariant dB / dC, dD, d delta_bias: per (chunk, b, d) partials in the workspace,
//     summed over the chunks and the batch by reduce_rows_kernel.
//
// Split along L (few rows, long sequences; see choose_bwd_split in scan_layout.h): the sequence is
// cut into K chunks of chunk_len steps (a multiple of 64, so of every tile length) and a launch
// runs a range of chunks of every row block as one more grid dimension:
//   BwdPass::chunk_adjoints: chunks 1 .. K - 1, each from the adjoint 0 at its end (d last_state
//     enters in the combine), walk only the adjoint, g <- exp(dt_l A) (g + C_l dy_l), which needs no
//     state h, and store it at the chunk start into adj[c]; and the sum of dt over the chunk into
//     decays[c]: the chunk maps an adjoint G at its end to exp(A S_c) G + adj[c] at its start;
//   (scan_split_combine.cuh turns adj[c] into the true adjoint at the end of chunk c;)
//   BwdPass::chunk_grads: chunks 0 .. K - 1, each the full backward from adj[c], writing its steps'
//     du, d delta, dz and variable dB / dC partials and its own per-row partials; chunk 0 writes
//     d initial_state.
#pragma once

#include "scan_device.cuh"

namespace s6kit::cuda_scan {

enum class BwdPass : int { whole = 0, chunk_adjoints = 1, chunk_grads = 2 };

struct BwdArgs {
  ScanBwdParams p;
  Layout lay;
  int64_t ntiles = 0;     // row tiles per (batch, group)
  int64_t slots = 0;      // blocks per (batch, group)
  int64_t subtiles = 1;   // row tiles per block: tile slot * subtiles + s, s < subtiles
  const float* ckpt = nullptr;  // (batch, dim, ceil(L / 64), N)
  float* part_bc = nullptr;     // (batch * G, slots, L, 2, N): variable dB (plane 0), dC (plane 1)
  // Per-row partials, one set per chunk of a split along L (nchunks = 1: the whole sequence):
  float* part_dA = nullptr;     // (nchunks, batch, dim, N), or (nchunks, batch, dim) for scalar A
  float* part_dBinv = nullptr;  // (nchunks, batch, dim, N) when B is time-invariant
  float* part_dCinv = nullptr;  // (nchunks, batch, dim, N) when C is time-invariant
  float* part_dD = nullptr;     // (nchunks, batch, dim)
  float* part_ddb = nullptr;    // (nchunks, batch, dim)
  // Split along L: this launch runs chunks first_chunk .. first_chunk + run_chunks - 1 of
  // nchunks chunks of chunk_len steps (whole: one chunk, the whole sequence).
  BwdPass pass = BwdPass::whole;
  int64_t chunk_len = 0, nchunks = 1, first_chunk = 0, run_chunks = 1;
  float* adj = nullptr;     // (nchunks, batch, dim, N): chunk adjoints (see above)
  float* decays = nullptr;  // (nchunks, batch, dim): sum of dt over each chunk (entry 0 unused)
  // Rows aligned to the 4-step spans of the staging and the outputs (8 bytes of 16-bit storage,
  // 16 of float32): vector loads of u, delta, z, dout; vector stores of du, ddelta, dz.
  bool vec_in = false;
  bool vec_out = false;
};

// kAdjoints: the instance of BwdPass::chunk_adjoints (a separate one, so that the registers of
// the full backward stay those of its own code). kQuads: the variable dB / dC exchange is reduced
// four states per item (bwd_reduces_quads; an instance of its own, so that the code of one state
// per item, the usual N = 16, stays as fast as without the other).
template <typename in_t, bool kScalarA, int kS, bool kAdjoints, bool kQuads>
__global__ void __launch_bounds__(kMaxThreads, bwd_min_blocks(kS))
    scan_bwd_kernel(const __grid_constant__ BwdArgs args) {
  constexpr int U = bwd_substeps(kS);
  // The states at the sub-chunk starts: every kSkip-th on a register stack of NST entries, the
  // others (kS = 4: a 64-step tile, 8 sub-chunks, registers tight, since the recomputed
  // sub-chunk takes 2 U kS of them) in shared memory, sOdd.
  constexpr int kMaxSub = bwd_max_tile(kS) / U;
  constexpr int kSkip = bwd_stack_skip(kS);
  constexpr int NST = kMaxSub / kSkip;
  constexpr int kX = kExchangeSteps;
  // The transposing lane reduction of the reverse sweep (below) only for rows of exactly kX lanes:
  // the 4-state gradient kernel without quads (N = 16; N = 32 takes the plain one), whose code
  // spilled more with the general form beside it.
  constexpr bool kQuadLanes = kS == 4 && !kQuads && !kAdjoints;
  static_assert(U % kX == 0, "an exchange group must not straddle sub-chunks");
  static_assert(!kQuads || (kS >= 4 && !kAdjoints), "quads: 4 or 8 states, the gradient pass");

  extern __shared__ float4 smem_f4[];
  float* const sm = reinterpret_cast<float*>(smem_f4);
  const ScanBwdParams& p = args.p;
  const Layout& lay = args.lay;

  const int tid = threadIdx.x;
  const int R = lay.R, T = lay.T, rp = lay.rp, sb = lay.sb, nt = lay.nt, npad = lay.npad;
  // The lanes of a row: adjacent, or for scalar A up to N = 16 in the order of row_major_index.
  const bool row_major = kScalarA && kS <= 4 && lay.npad <= 16;  // kS = 8: R <= 2 there
  const int rm = row_major ? row_major_index(tid, lay.log2R) : tid;
  const int row = rm >> lay.log2R, slice = rm & (R - 1);
  auto lane_xor = [&](int off) { return row_major ? slice_xor(off, lay.log2R) : off; };
  // Sizes and indices are below 2^31 (checked by the launcher); offsets are 64-bit.
  const int L = static_cast<int>(p.seqlen);
  const int64_t dim = p.dim;
  const int N = static_cast<int>(p.dstate);
  const bool has_z = p.has_z, has_sig = p.delta_softplus;
  const bool varB = p.variable_B, varC = p.variable_C;
  const int n_ckpt = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;

  float* const sDt = sm + lay.off_dt;  // dt, then d delta (written by lane 0 of the row)
  float* const sU = sm + lay.off_u;    // u, then du
  float* const sDy = sm + lay.off_dy;
  float* const sZf = sm + (has_z ? lay.off_zf : 0);     // dout silu'(z), then dz
  float* const sOdd = sm + (kSkip > 1 ? lay.off_odd : 0);  // [k / kSkip][i][tid]
  float* const sB = sm + lay.off_B;
  float* const sC = sm + lay.off_C;
  float* const sEx = sm + lay.off_ex;
  float* const sInv = sm + (varB && varC ? 0 : lay.off_inv);  // [plane][row][state]
  float* const sRowD = sm + lay.off_rowD;
  float* const sRowBias = sm + lay.off_rowBias;


  // Staging and output work on spans of V = 4 consecutive steps of one row (8- or 16-byte
  // accesses: the four inputs' spans stay within the registers); a thread owns the same spans in
  // both.
  constexpr int V = 4;
  const int spans = T / V, log2spans = lay.log2T - 2;

  const int64_t row_blocks = p.batch * p.n_groups * args.slots;
  const int64_t nblocks = row_blocks * args.run_chunks;
  for (int64_t blk_all = blockIdx.x; blk_all < nblocks; blk_all += gridDim.x) {
    const int chunk = static_cast<int>(args.first_chunk + blk_all / row_blocks);
    const int64_t blk = blk_all % row_blocks;
    const int slot = static_cast<int>(blk % args.slots);
    const int b = static_cast<int>(blk / args.slots / p.n_groups);
    const int g = static_cast<int>(blk / args.slots % p.n_groups);
    // Variable B / C of this (batch, group), staged per tile.
    const in_t* const Bg = static_cast<const in_t*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride;
    const in_t* const Cg = static_cast<const in_t*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride;
    auto load_B_tile = [&](int ls) { load_bc_tile(sB, Bg, p.B_state_stride, ls, L, N, lay, tid); };
    auto load_C_tile = [&](int ls) { load_bc_tile(sC, Cg, p.C_state_stride, ls, L, N, lay, tid); };
    // Row dd of this batch element's per-row input a: 0 u, 1 delta, 2 dout, 3 z.
    auto input_row = [&](int a, int64_t dd) -> const in_t* {
      switch (a) {
        case 0: return static_cast<const in_t*>(p.u) + b * p.u_batch_stride + dd * p.u_dim_stride;
        case 1: return static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + dd * p.delta_dim_stride;
        case 2: return static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride + dd * p.dout_dim_stride;
        default: return static_cast<const in_t*>(p.z) + b * p.z_batch_stride + dd * p.z_dim_stride;
      }
    };

    for (int sub = 0; sub < args.subtiles; ++sub) {
      const int64_t rt = slot * args.subtiles + sub;
      if (rt >= args.ntiles) break;
      const int d0 = static_cast<int>(g * p.dim_per_group + rt * lay.rows);
      const int rows_valid = static_cast<int>(min64(lay.rows, p.dim_per_group - rt * lay.rows));
      const bool valid = row < rows_valid;
      const int d = d0 + row;
      const int64_t rowi = b * dim + d;  // (b, d)
      // (chunk, b, d): the row of the per-chunk partials (recomputed where used: registers).
      auto prow = [&] { return (int64_t(chunk) * p.batch + b) * dim + d; };

      __syncthreads();  // the previous row tile is done with shared memory
      for (int r = tid; r < lay.rows; r += nt) {
        const bool ok = r < rows_valid;
        sRowD[r] = ok && p.has_D ? static_cast<const float*>(p.D)[(d0 + r) * p.D_stride] : 0.f;
        sRowBias[r] = ok && p.has_delta_bias
                          ? static_cast<const float*>(p.delta_bias)[(d0 + r) * p.delta_bias_stride]
                          : 0.f;
      }
      if (!varB)
        load_bc_rows(sB, static_cast<const float*>(p.B), p.B_group_stride, p.B_state_stride, d0,
                     rows_valid, N, lay, tid);
      if (!varC)
        load_bc_rows(sC, static_cast<const float*>(p.C), p.C_group_stride, p.C_state_stride, d0,
                     rows_valid, N, lay, tid);
      if (!(varB && varC))
        for (int e = tid; e < 2 * lay.rows * npad; e += nt) sInv[e] = 0.f;
      const float* const bBase = varB ? sB : sB + row * sb;
      const float* const cBase = varC ? sC : sC + row * sb;
      const int bStep = varB ? sb : 0, cStep = varC ? sb : 0;

      // Per-thread constants and accumulators (states n = slice * kS + i).
      float A2[kS];          // A * log2(e)
      float A2s = 0.f, As = 0.f;  // scalar A
      if constexpr (kScalarA) {
        As = valid ? static_cast<const float*>(p.A)[d * p.A_dim_stride] : 0.f;
        A2s = As * kLog2e;
      } else {
#pragma unroll
        for (int i = 0; i < kS; ++i) {
          const int n = slice * kS + i;
          A2[i] = valid && n < N ? static_cast<const float*>(p.A)[d * p.A_dim_stride + n * p.A_state_stride] * kLog2e : 0.f;
        }
      }
      float gad[kS];  // the adjoint g, carried from step to step
      if (valid && args.pass == BwdPass::chunk_grads) {
        load_global_states<kS>(args.adj + prow() * N, slice, N, gad);
      } else if (valid && p.dlast_state != nullptr && args.pass == BwdPass::whole) {
        load_global_states<kS>(static_cast<const float*>(p.dlast_state) + rowi * N, slice, N, gad);
      } else {
#pragma unroll
        for (int i = 0; i < kS; ++i) gad[i] = 0.f;
      }
      float dA[kS];
#pragma unroll
      for (int i = 0; i < kS; ++i) dA[i] = 0.f;
      float dAs = 0.f, dD_acc = 0.f, ddb_acc = 0.f;  // this lane's steps (summed over the row below)
      __syncthreads();  // sRowD, sRowBias, invariant B / C rows

      // Stages per-row inputs of steps [ls, ls + T). `lite`: only dt and u (the pre-roll).
      // Steps past L get dt = u = dy = 0: they change neither h nor g.
      auto stage_rows = [&](int ls, bool lite) {
        for (int e = tid; e < lay.rows * spans; e += nt) {
          const int r = e >> log2spans, l = (e & (spans - 1)) * V;
          const int gl = ls + l;
          float dt[V], u[V], dy[V], zf[V];
#pragma unroll
          for (int k = 0; k < V; ++k) dt[k] = u[k] = dy[k] = zf[k] = 0.f;
          if (r < rows_valid) {
            const int64_t dd = d0 + r;
            float x[V], dout[V], z[V];
            if constexpr (sizeof(in_t) == 2) {
              // 16-bit storage: the span's four loads are all issued before any is converted, so
              // that the thread waits for them together, not one after another. That cut the
              // backward by 0.5-11 % on an H100; float32 spans (16 bytes each), held together,
              // made it spill and run 2-7 % slower (bench/results/h100_extra/bwd_staging_ab.log).
              SpanBits<in_t, V> q[4];
              q[0] = load_span_bits<in_t, V>(input_row(1, dd), gl, L, args.vec_in);
              q[1] = load_span_bits<in_t, V>(input_row(0, dd), gl, L, args.vec_in);
              if (!lite) {
                q[2] = load_span_bits<in_t, V>(input_row(2, dd), gl, L, args.vec_in);
                if (has_z) q[3] = load_span_bits<in_t, V>(input_row(3, dd), gl, L, args.vec_in);
              }
              span_to_float<in_t, V>(q[0], x);
              span_to_float<in_t, V>(q[1], u);
              if (!lite) {
                span_to_float<in_t, V>(q[2], dout);
                if (has_z) span_to_float<in_t, V>(q[3], z);
              }
            } else {
              load_span<in_t, V>(input_row(1, dd), gl, L, args.vec_in, x);
              load_span<in_t, V>(input_row(0, dd), gl, L, args.vec_in, u);
              if (!lite) {
                load_span<in_t, V>(input_row(2, dd), gl, L, args.vec_in, dout);
                if (has_z) load_span<in_t, V>(input_row(3, dd), gl, L, args.vec_in, z);
              }
            }
#pragma unroll
            for (int k = 0; k < V; ++k) {
              if (gl + k >= L) continue;
              const float xb = x[k] + sRowBias[r];
              dt[k] = has_sig ? softplus(xb) : xb;
              if (!lite) {
                if (has_z) {
                  const float s = sigmoid(z[k]);
                  dy[k] = dout[k] * z[k] * s;
                  zf[k] = dout[k] * s * (1.f + z[k] * (1.f - s));
                } else {
                  dy[k] = dout[k];
                }
              }
            }
          }
#pragma unroll
          for (int k = 0; k < V; ++k) {
            const int kk = (l + k) * rp + r;
            sDt[kk] = dt[k];
            sU[kk] = u[k];
            if (!lite) {
              sDy[kk] = dy[k];
              if (has_z) sZf[kk] = zf[k];
            }
          }
        }
      };

      // The inputs of the tile at ls (the next one walked) into L2 while this one is swept, so that
      // its staging waits on L2 rather than on DRAM: the rows of u, delta, dout (and z), and the
      // variable B / C state rows.
      auto prefetch_tile = [&](int ls) {
        constexpr int es = static_cast<int>(sizeof(in_t));
        const int bytes = static_cast<int>(min64(T, L - ls)) * es;
        const int arrays = has_z ? 4 : 3;
        prefetch_spans_l2(rows_valid * arrays, bytes, [&](int i) {
          return input_row(i / rows_valid, d0 + i % rows_valid) + ls;
        }, tid, nt);
        const int nvar = (varB ? N : 0) + (varC ? N : 0);
        prefetch_spans_l2(nvar, bytes, [&](int i) {
          const bool isB = varB && i < N;
          const int n = isB ? i : i - (varB ? N : 0);
          return (isB ? Bg + n * p.B_state_stride : Cg + n * p.C_state_stride) + ls;
        }, tid, nt);
      };

      // h over steps [jb, je) of the staged tile.
      auto advance = [&](float(&hh)[kS], int jb, int je) {
#pragma unroll 4
        for (int j = jb; j < je; ++j) {
          const float dt = sDt[j * rp + row];
          const float dtu = dt * sU[j * rp + row];
          float bv[kS];
          load_row_states<kS>(bBase + j * bStep, slice, R, bv);
          if constexpr (kScalarA) {
            const float a = fast_exp2(dt * A2s);
#pragma unroll
            for (int i = 0; i < kS; ++i) hh[i] = fmaf(a, hh[i], dtu * bv[i]);
          } else {
#pragma unroll
            for (int i = 0; i < kS; ++i) hh[i] = fmaf(fast_exp2(dt * A2[i]), hh[i], dtu * bv[i]);
          }
        }
      };

      // Reduces the exchanged dB / dC of steps [lb, lb + kX), in a fixed order: variable ones
      // over the block's rows into this block's workspace slot, time-invariant ones over the
      // steps into sInv (each entry updated by one thread).
      auto reduce_exchange = [&](int lb) {
        // This block's partial of variable dB (plane 0) or dC (plane 1) at step l, state n.
        auto part_at = [&](int l, int plane, int n) {
          return args.part_bc +
                 ((((int64_t(b) * p.n_groups + g) * args.slots + slot) * L + l) * 2 + plane) * N +
                 n;
        };
        if constexpr (kQuads) {
          // Four consecutive states per item, as 16-byte reads and stores: at N = 64 the items of
          // one state took a third of the backward's instructions (index arithmetic, and a
          // latency-bound load-add-store of the workspace per state when a block sums several
          // row tiles). The rows are added in the same order: the sums are the same.
          const int nq = npad / 4, log2nq = lay.log2npad - 2;
          for (int it = tid; it < kX * 2 * nq; it += nt) {
            const int n0 = 4 * (it & (nq - 1)), rest = it >> log2nq;
            const int plane = rest & 1, jj = rest >> 1;
            const int l = lb + jj;
            if (n0 >= N || l >= L || !(plane == 0 ? varB : varC)) continue;
            float* const dst = part_at(l, plane, n0);
            // 4 states in range, at a 16-byte aligned address (the workspace's base is the
            // caller's: checked, as store_global_states does)
            const bool whole = (N & 3) == 0 && reinterpret_cast<uintptr_t>(dst) % 16 == 0;
            float4 prev = make_float4(0.f, 0.f, 0.f, 0.f);
            if (sub > 0) {  // this block's earlier row tiles (loaded first: its latency overlaps)
              if (whole) {
                prev = *reinterpret_cast<const float4*>(dst);
              } else {
                prev.x = dst[0];
                prev.y = n0 + 1 < N ? dst[1] : 0.f;
                prev.z = n0 + 2 < N ? dst[2] : 0.f;
                prev.w = n0 + 3 < N ? dst[3] : 0.f;
              }
            }
            const float4* src = reinterpret_cast<const float4*>(
                sEx + (jj * 2 + plane) * lay.ps + state_pos(n0, kS, R));
            float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll 4
            for (int r = 0; r < rows_valid; ++r) {
              const float4 v = src[r * nq];
              sum.x += v.x;
              sum.y += v.y;
              sum.z += v.z;
              sum.w += v.w;
            }
            if (sub > 0) {
              sum.x = prev.x + sum.x;
              sum.y = prev.y + sum.y;
              sum.z = prev.z + sum.z;
              sum.w = prev.w + sum.w;
            }
            if (whole) {
              *reinterpret_cast<float4*>(dst) = sum;
            } else {
              dst[0] = sum.x;
              if (n0 + 1 < N) dst[1] = sum.y;
              if (n0 + 2 < N) dst[2] = sum.z;
              if (n0 + 3 < N) dst[3] = sum.w;
            }
          }
        } else {
          for (int it = tid; it < kX * 2 * npad; it += nt) {  // npad: a power of two
            const int n = it & (npad - 1), rest = it >> lay.log2npad;
            const int plane = rest & 1, jj = rest >> 1;
            const int l = lb + jj;
            if (n >= N || l >= L || !(plane == 0 ? varB : varC)) continue;
            const float* src = sEx + (jj * 2 + plane) * lay.ps + state_pos(n, kS, R);
            float acc = 0.f;
            if (npad == 16) {  // N = 16 (the usual), a stride known here: immediate offsets
#pragma unroll 8
              for (int r = 0; r < rows_valid; ++r) acc += src[r * 16];
            } else {
              for (int r = 0; r < rows_valid; ++r) acc += src[r * npad];
            }
            float* const dst = part_at(l, plane, n);
            *dst = sub == 0 ? acc : *dst + acc;
          }
        }
        if (!(varB && varC)) {
          for (int it = tid; it < 2 * lay.rows * N; it += nt) {
            const int n = it % N, rest = it / N, r = rest % lay.rows, plane = rest / lay.rows;
            if (plane == 0 ? varB : varC) continue;
            const float* src = sEx + plane * lay.ps + r * npad + state_pos(n, kS, R);
            float& acc = sInv[(plane * lay.rows + r) * npad + n];
            float v = acc;
#pragma unroll
            for (int jj = 0; jj < kX; ++jj) v += src[jj * 2 * lay.ps];
            acc = v;
          }
        }
      };

      // The chunk's tiles: [t_begin, t_end), walked in reverse.
      const int t_begin = static_cast<int>(chunk * args.chunk_len / T);
      const int t_end = static_cast<int>(min64((L + T - 1) / T, (chunk + 1) * args.chunk_len / T));
      if constexpr (kAdjoints) {
        // Only the adjoint over the chunk, g <- exp(dt_l A) (g + C_l dy_l), and the sum of dt.
        float dt_sum = 0.f;
        for (int t = t_end - 1; t >= t_begin; --t) {
          const int l0 = t * T;
          __syncthreads();  // every thread is done with the previous tile
          stage_rows(l0, false);
          if (varC) load_C_tile(l0);
          __syncthreads();
          for (int j = static_cast<int>(min64(T, L - l0)) - 1; j >= 0; --j) {
            const float dt = sDt[j * rp + row], dy = sDy[j * rp + row];
            float cv[kS];
            load_row_states<kS>(cBase + j * cStep, slice, R, cv);
            dt_sum += dt;
            if constexpr (kScalarA) {
              const float a = fast_exp2(dt * A2s);
#pragma unroll
              for (int i = 0; i < kS; ++i) gad[i] = a * fmaf(cv[i], dy, gad[i]);
            } else {
#pragma unroll
              for (int i = 0; i < kS; ++i) gad[i] = fast_exp2(dt * A2[i]) * fmaf(cv[i], dy, gad[i]);
            }
          }
        }
        if (valid) {
          store_global_states<kS>(args.adj + prow() * N, slice, N, gad);
          if (slice == 0) args.decays[prow()] = dt_sum;
        }
      } else {
        for (int t = t_end - 1; t >= t_begin; --t) {
          const int l0 = t * T;
          const int Tv = static_cast<int>(min64(T, L - l0));
          const int c = l0 / kScanCheckpointInterval;
          float h[kS];
          if (valid) {
            load_global_states<kS>(args.ckpt + (rowi * n_ckpt + c) * N, slice, N, h);
          } else {
  #pragma unroll
            for (int i = 0; i < kS; ++i) h[i] = 0.f;
          }
          // Pre-roll from the checkpoint to the tile start (tiles shorter than the interval).
          for (int ls = c * kScanCheckpointInterval; ls < l0; ls += T) {
            stage_rows(ls, true);
            if (varB) load_B_tile(ls);
            __syncthreads();
            advance(h, 0, T);
            __syncthreads();
          }
          stage_rows(l0, false);
          if (varB) load_B_tile(l0);
          if (varC) load_C_tile(l0);
          __syncthreads();
          if (t > t_begin) prefetch_tile(l0 - T);

          // Phase A: the states at the starts of sub-chunks 0, kSkip, 2 kSkip, ... onto the stack
          // (its top, st[NST - 1], is the latest), the others into sOdd (each thread reads back
          // only its own entries: no barrier).
          const int nsub = (Tv + U - 1) / U;
          float st[NST][kS];
  #pragma unroll
          for (int s = 0; s < NST; ++s)
  #pragma unroll
            for (int i = 0; i < kS; ++i) st[s][i] = 0.f;
          for (int k = 0; k < nsub; ++k) {
            if (k % kSkip == 0) {
  #pragma unroll
              for (int s = 0; s + 1 < NST; ++s)
  #pragma unroll
                for (int i = 0; i < kS; ++i) st[s][i] = st[s + 1][i];
  #pragma unroll
              for (int i = 0; i < kS; ++i) st[NST - 1][i] = h[i];
            } else {
  #pragma unroll
              for (int i = 0; i < kS; ++i) sOdd[((k / kSkip) * kS + i) * nt + tid] = h[i];
            }
            if (k + 1 < nsub) advance(h, k * U, k * U + U);
          }

          // Phase B: sub-chunks in reverse.
          for (int k = nsub - 1; k >= 0; --k) {
            // Recompute the sub-chunk from the popped start state. Kept per step j (l = k*U + j):
            // the decay a_l = exp(dt_l A) and q_l = a_l h_{l-1}; the sweep gets h_l = q_l + dt u B_l
            // back with one fma. The chain h is dead once the sub-chunk is recomputed.
            float hc[kS];
            if (k % kSkip == 0) {  // pop
  #pragma unroll
              for (int i = 0; i < kS; ++i) hc[i] = st[NST - 1][i];
  #pragma unroll
              for (int s = NST - 1; s > 0; --s)
  #pragma unroll
                for (int i = 0; i < kS; ++i) st[s][i] = st[s - 1][i];
            } else {
  #pragma unroll
              for (int i = 0; i < kS; ++i) hc[i] = sOdd[((k / kSkip) * kS + i) * nt + tid];
            }

            float ad[kScalarA ? 1 : U][kS];  // a_l per state (real A)
            float as[U];                     // a_l (scalar A)
            float qh[U][kS];                 // q_l
            float yv[U];
  #pragma unroll
            for (int j = 0; j < U; ++j) {
              const int l = k * U + j;
              const float dt = sDt[l * rp + row];
              const float dtu = dt * sU[l * rp + row];
              float bv[kS];
              load_row_states<kS>(bBase + l * bStep, slice, R, bv);
              if constexpr (kScalarA) {
                as[j] = fast_exp2(dt * A2s);
  #pragma unroll
                for (int i = 0; i < kS; ++i) qh[j][i] = as[j] * hc[i];
              } else {
                as[j] = 0.f;
  #pragma unroll
                for (int i = 0; i < kS; ++i) {
                  ad[j][i] = fast_exp2(dt * A2[i]);
                  qh[j][i] = ad[j][i] * hc[i];
                }
              }
  #pragma unroll
              for (int i = 0; i < kS; ++i) hc[i] = fmaf(dtu, bv[i], qh[j][i]);
              yv[j] = 0.f;
              if (has_z) {
                float cv[kS];
                load_row_states<kS>(cBase + l * cStep, slice, R, cv);
  #pragma unroll
                for (int i = 0; i < kS; ++i) yv[j] = fmaf(cv[i], hc[i], yv[j]);
              }
            }
            if (has_z) {
              row_allreduce<U>(yv, R, lay.log2R, row_major);
              if (slice == 0) {
  #pragma unroll
                for (int j = 0; j < U; ++j) {
                  const int kk = (k * U + j) * rp + row;
                  sZf[kk] *= fmaf(sRowD[row], sU[kk], yv[j]);  // dz = dout silu'(z) (y + D u)
                }
              }
            }

            // Reverse sweep, in groups of kX steps: the per-step sums over the row, from which
            // lane 0 forms d delta and du over dt and u (every lane of the row has read them by
            // then: __syncwarp orders those reads before the writes); then the block reduces the
            // group's dB / dC.
  #pragma unroll
            for (int j0 = U - kX; j0 >= 0; j0 -= kX) {
              float sums[2 * kX];  // [jj]: sum_n g B;  [kX + jj]: sum_n g a h_prev (times A)
  #pragma unroll
              for (int jj = kX - 1; jj >= 0; --jj) {
                const int j = j0 + jj;
                const int l = k * U + j;
                const float dt = sDt[l * rp + row], u = sU[l * rp + row], dy = sDy[l * rp + row];
                const float dtu = dt * u;
                float bv[kS], cv[kS];
                load_row_states<kS>(bBase + l * bStep, slice, R, bv);
                load_row_states<kS>(cBase + l * cStep, slice, R, cv);
                float sgB = 0.f, sgh = 0.f;
                float dBv[kS], dCv[kS];
  #pragma unroll
                for (int i = 0; i < kS; ++i) {
                  const float gn = fmaf(cv[i], dy, gad[i]);
                  const float gq = gn * qh[j][i];  // g_l a_l h_{l-1}
                  if constexpr (kScalarA) {
                    sgh += gq;  // times A below
                    gad[i] = as[j] * gn;
                  } else {
                    sgh = fmaf(gq, A2[i], sgh);  // A2 = A log2(e): rescaled by ln 2 below
                    dA[i] = fmaf(gq, dt, dA[i]);
                    gad[i] = ad[j][i] * gn;
                  }
                  sgB = fmaf(gn, bv[i], sgB);
                  dBv[i] = gn * dtu;
                  dCv[i] = dy * fmaf(dtu, bv[i], qh[j][i]);  // dy_l h_l
                }
                sums[jj] = sgB;
                sums[kX + jj] = sgh;
                store_row_states<kS>(sEx + (jj * 2) * lay.ps + row * npad, slice, R, dBv);
                store_row_states<kS>(sEx + (jj * 2 + 1) * lay.ps + row * npad, slice, R, dCv);
              }

              // Lane formation of step jj of the group from the row's totals sgB, sgh: d delta and
              // du over dt and u (every lane of the row has read them by then: __syncwarp orders
              // those reads before the writes).
              auto form_step = [&](int jj, float sgB, float sgh) {
                const int l = k * U + j0 + jj;
                if (l >= Tv) return;
                const int kk = l * rp + row;
                const float dt = sDt[kk], u = sU[kk], dy = sDy[kk];
                float sgha;
                if constexpr (kScalarA) {
                  sgha = sgh;
                  dAs = fmaf(sgha, dt, dAs);
                  sgha *= As;
                } else {
                  sgha = sgh * kLn2;
                }
                const float ddt = fmaf(u, sgB, sgha);
                const float du = fmaf(dt, sgB, sRowD[row] * dy);
                dD_acc = fmaf(dy, u, dD_acc);
                const float dd = has_sig ? ddt * sigmoid_from_softplus(dt) : ddt;
                ddb_acc += dd;
                sDt[kk] = dd;
                sU[kk] = du;
              };
              if (kQuadLanes ? R == kX : R >= kX) {
                // A row of kX lanes or more (N >= 8 with 2 states per thread, N >= 64 with 4 and
                // quads; N = 16 alone in the 4-state kernel without them): a transposing
                // reduction. Each of the two lowest butterfly levels sends the half of the sums its
                // partner keeps, which leaves lane `slice` the totals of step slice % kX over its
                // quad of lanes; the levels above add the quads' totals.
                // 6 shuffles at R = 4, 8 at R = 8, 10 at R = 16, against 16, 24 and 32.
                static_assert(kX == 4, "two levels: lanes slice ^ 2, then slice ^ 1");
                const bool hi2 = (slice & 2) != 0, hi1 = (slice & 1) != 0;
                float pair[4];  // steps (hi2 ? 2 : 0) + m, m < 2: sgB at [m], sgh at [2 + m]
#pragma unroll
                for (int m = 0; m < 2; ++m)
#pragma unroll
                  for (int h = 0; h < 2; ++h) {
                    const float lo = sums[h * kX + m], up = sums[h * kX + 2 + m];
                    const float sent = __shfl_xor_sync(kFullMask, hi2 ? lo : up, lane_xor(2));
                    pair[2 * h + m] = (hi2 ? up : lo) + sent;
                  }
                float tot[2];  // step slice % kX: sgB, sgh
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                  const float lo = pair[2 * h], up = pair[2 * h + 1];
                  const float sent = __shfl_xor_sync(kFullMask, hi1 ? lo : up, 1);
                  tot[h] = (hi1 ? up : lo) + sent;
                }
                if constexpr (!kQuadLanes) {
                  for (int off = kX; off < R; off <<= 1) {
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                      tot[h] += __shfl_xor_sync(kFullMask, tot[h], lane_xor(off));
                  }
                }
                __syncwarp();
                if (kQuadLanes || slice < kX) form_step(slice, tot[0], tot[1]);
              } else {
                row_allreduce<2 * kX>(sums, R, lay.log2R, row_major);
                __syncwarp();
                // The R lanes of the row share the group's steps: lane `slice` forms steps
                // slice, slice + R, ... (each lane has every step's sums; a step's sums are
                // selected, not indexed, so that they stay in registers).
                for (int jj = slice; jj < kX; jj += R) {
                  float sgB = sums[0], sgh = sums[kX];
#pragma unroll
                  for (int q = 1; q < kX; ++q) {
                    sgB = jj == q ? sums[q] : sgB;
                    sgh = jj == q ? sums[kX + q] : sgh;
                  }
                  form_step(jj, sgB, sgh);
                }
              }
              __syncthreads();  // the group's dB / dC are in the exchange
              reduce_exchange(l0 + k * U + j0);
              __syncthreads();  // read before the next group overwrites them
            }
          }
          __syncthreads();

          // Outputs of the tile.
          for (int e = tid; e < lay.rows * spans; e += nt) {
            const int r = e >> log2spans, l = (e & (spans - 1)) * V;
            const int gl = l0 + l;
            if (r < rows_valid && gl < L) {
              const int64_t o = (b * dim + d0 + r) * L;
              float v[V];
  #pragma unroll
              for (int k = 0; k < V; ++k) v[k] = sU[(l + k) * rp + r];
              store_span<in_t, V>(static_cast<in_t*>(p.du) + o, gl, L, args.vec_out, v);
  #pragma unroll
              for (int k = 0; k < V; ++k) v[k] = sDt[(l + k) * rp + r];
              store_span<in_t, V>(static_cast<in_t*>(p.ddelta) + o, gl, L, args.vec_out, v);
              if (has_z) {
  #pragma unroll
                for (int k = 0; k < V; ++k) v[k] = sZf[(l + k) * rp + r];
                store_span<in_t, V>(static_cast<in_t*>(p.dz) + o, gl, L, args.vec_out, v);
              }
            }
          }
        }

        // Per-(b, d) partials and d initial_state (sInv is complete: the last exchange ended with
        // a barrier).
        if (!(varB && varC)) {
          for (int it = tid; it < 2 * rows_valid * N; it += nt) {
            const int n = it % N, rest = it / N, r = rest % rows_valid, plane = rest / rows_valid;
            if (plane == 0 ? varB : varC) continue;
            float* const part = plane == 0 ? args.part_dBinv : args.part_dCinv;
            part[((int64_t(chunk) * p.batch + b) * dim + d0 + r) * N + n] =
                sInv[(plane * lay.rows + r) * npad + n];
          }
        }
        float lane_sums[3] = {dD_acc, ddb_acc, dAs};  // in a fixed order: deterministic
        row_allreduce<3>(lane_sums, R, lay.log2R, row_major);
        dD_acc = lane_sums[0];
        ddb_acc = lane_sums[1];
        dAs = lane_sums[2];
        if (valid) {
          if constexpr (!kScalarA) store_global_states<kS>(args.part_dA + prow() * N, slice, N, dA);
          if (p.dinitial_state != nullptr && chunk == 0)
            store_global_states<kS>(static_cast<float*>(p.dinitial_state) + rowi * N, slice, N, gad);
          if (slice == 0) {
            args.part_dD[prow()] = dD_acc;
            args.part_ddb[prow()] = ddb_acc;
            if constexpr (kScalarA) args.part_dA[prow()] = dAs;
          }
        }
      }
    }
  }
}

}  // namespace s6kit::cuda_scan
