// CUDA selective scan, forward kernel (see scan_fwd_layout.h for the work split and the shared
// memory). Per time tile t a block
//   1. waits for the tile's raw inputs (copied asynchronously while it worked on tile t - 1) and
//      starts the copies of tile t + 1 into the other raw buffer;
//   2. converts the tile: dt = softplus(delta + bias) (or delta + bias) and dt u per (row, step),
//      exp(dt A) instead of dt for scalar A, and B / C as floats in state order;
//   3. saves h at the tile start into the checkpoints (every 64 steps) when asked;
//   4. runs the recurrence h = exp(dt A) h + dt u B on its kS states per thread, serially over
//      the tile, and stores each lane's partial y = C . h of every four steps;
//   5. writes out = (y + D u) * silu(z), y summed over the R lanes of the row in a fixed order.
// Steps past L run with dt = u = 0 and B = 0: exp(0) = 1, so they leave h unchanged.
//
// Split along L (few rows, long sequences; see choose_fwd in scan_fwd_layout.h): the sequence is cut
// into K chunks of chunk_len steps (a multiple of 64, so of every tile length) and a launch runs
// a range of chunks of every row block as one more grid dimension:
//   FwdPass::chunk_states: chunks 0 .. K - 2. Chunk 0 starts from initial_state and writes its
//     outputs and checkpoints as usual; chunks c >= 1 start from h = 0 and form no outputs. Each
//     stores its final state into states[c] and (c >= 1) its decay into decays[c]: the sum of dt
//     over the chunk, or for scalar A the product of exp(dt A), so that the chunk maps a state h
//     at its start to exp(A S) h + states[c] (or P h + states[c]) at its end;
//   (scan_split_combine.cuh turns states[c] into the true state at the end of chunk c;)
//   FwdPass::chunk_outputs: chunks 1 .. K - 1, each from the true state at the end of chunk
//     c - 1, writing outputs, checkpoints and (last chunk) last_state.
#pragma once

#include "scan_device.cuh"
#include "scan_fwd_layout.h"

namespace s6kit::cuda_scan {

enum class FwdPass : int { whole = 0, chunk_states = 1, chunk_outputs = 2 };

struct FwdArgs {
  ScanParams p;
  FwdLayout lay;
  int64_t ntiles = 0;      // row tiles per (batch, group)
  float* ckpt = nullptr;   // (batch, dim, ceil(L / 64), N) or null
  bool write_out = true;   // false: only the checkpoints (the backward's recompute mode)
  // Split along L: this launch runs chunks first_chunk .. first_chunk + run_chunks - 1 of
  // nchunks chunks of chunk_len steps (whole: one chunk, the whole sequence).
  FwdPass pass = FwdPass::whole;
  int64_t chunk_len = 0, nchunks = 1, first_chunk = 0, run_chunks = 1;
  float* states = nullptr;  // (nchunks - 1, batch, dim, N): chunk end states (see above)
  float* decays = nullptr;  // (nchunks - 1, batch, dim): chunk decays (entry 0 unused)
  bool vec_in = false;     // u, delta, z rows are 16-byte aligned: asynchronous 16-byte copies
  bool vec_bc = false;     // variable B / C state rows are 16-byte aligned: likewise
  bool vec_out = false;    // out rows are 16-byte aligned: vector stores
  // The alignment in bytes (16, 8, 4 or less) of those rows, read by the kernel instance for rows
  // aligned to less (kAligned false): it copies 16-byte chunks asynchronously in pieces of the
  // alignment (from 4 bytes up; element loads below) and stores 8-byte halves of out's spans.
  int in_align = 1, bc_align = 1, out_align = 1;
};

// One step of the recurrence h = exp(dt A) h + dt u B on the thread's kS states, from
// dd = (dt, dt u) (for scalar A (exp(dt A), dt u)) and the thread's states of B and C; returns the
// lane's partial y = C . h when kY. kDecay: `decay` accumulates dt (for scalar A: multiplies
// exp(dt A)) over the steps.
template <bool kScalarA, int kS, bool kY, bool kDecay>
__device__ __forceinline__ float fwd_step(float (&h)[kS], const float (&A2)[kS], float& decay,
                                          float2 dd, const float (&bv)[kS], const float (&cv)[kS]) {
  if constexpr (kDecay) decay = kScalarA ? decay * dd.x : decay + dd.x;
  float yp = 0.f;
#pragma unroll
  for (int i = 0; i < kS; ++i) {
    const float a = kScalarA ? dd.x : fast_exp2(dd.x * A2[i]);
    h[i] = fmaf(a, h[i], dd.y * bv[i]);
    if constexpr (kY) yp = fmaf(cv[i], h[i], yp);
  }
  return yp;
}

// The operands of four consecutive steps from j0 on: (dt, dt u) and the thread's states of B and C.
template <int kS>
struct StepOperands {
  float2 dd[4];
  float b[4][kS];
  float c[4][kS];
};

// The recurrence over one tile of T steps (T a multiple of 8); each lane stores its partial y of
// every four steps into yp_out (rows * Rp float4s apart) when kY (see fwd_step for the rest).
// For scalar A with 4 states per thread the shared-memory reads of the next four steps are issued
// before the arithmetic of these four (software pipelining over two operand sets): with no
// exponentials per state, a warp would otherwise wait out the reads' latency at every group.
// Measured on an H100 at (8, 1536, 2048, 16) bf16 (bench/results/h100_extra/
// fwd_pipelining_ab.log): scalar A 0.365 -> 0.343 ms; real A, whose exponentials per state fill
// that wait, 0.353 -> 0.367 ms (more instructions), so it reads each step's operands just before
// using them, as do 2 states (64 registers) and 8 (no room for a second operand set).
template <bool kScalarA, int kS, bool kY, bool kDecay>
__device__ __forceinline__ void fwd_recurrence(float (&h)[kS], const float (&A2)[kS], float& decay,
                                               const float2* dtu_row, int rows, const float* bBase,
                                               int bStep, const float* cBase, int cStep, int slice,
                                               int R, float4* yp_out, int yp_stride, int T) {
  auto load = [&](int j, float2& dd, float (&bv)[kS], float (&cv)[kS]) {
    dd = dtu_row[j * rows];
    load_row_states<kS>(bBase + j * bStep, slice, R, bv);
    if constexpr (kY) load_row_states<kS>(cBase + j * cStep, slice, R, cv);
  };
  auto store = [&](int j4, const float (&yv)[4]) {
    if constexpr (kY) yp_out[j4 * yp_stride] = make_float4(yv[0], yv[1], yv[2], yv[3]);
  };
  if constexpr (kScalarA && kS == 4) {
    auto load4 = [&](StepOperands<kS>& o, int j0) {
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) load(j0 + jj, o.dd[jj], o.b[jj], o.c[jj]);
    };
    auto steps4 = [&](const StepOperands<kS>& o, int j4) {
      float yv[4];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
        yv[jj] = fwd_step<kScalarA, kS, kY, kDecay>(h, A2, decay, o.dd[jj], o.b[jj], o.c[jj]);
      store(j4, yv);
    };
    StepOperands<kS> even, odd;
    load4(even, 0);
#pragma unroll 1
    for (int j8 = 0; j8 < T / 8; ++j8) {
      load4(odd, 8 * j8 + 4);
      steps4(even, 2 * j8);
      load4(even, 8 * j8 + 8 < T ? 8 * j8 + 8 : T - 4);  // the last group again at the end
      steps4(odd, 2 * j8 + 1);
    }
  } else {
#pragma unroll 2
    for (int j4 = 0; j4 < T / 4; ++j4) {
      float yv[4];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        float2 dd;
        float bv[kS], cv[kS];
        load(4 * j4 + jj, dd, bv, cv);
        yv[jj] = fwd_step<kScalarA, kS, kY, kDecay>(h, A2, decay, dd, bv, cv);
      }
      store(j4, yv);
    }
  }
}

// kAligned: the rows of u, delta, z, variable B / C and out start on 16-byte boundaries (the usual
// case), or on boundaries too coarse for pieces of more than one element (fwd_copies_pieces).
// Rows aligned to 8 bytes (or 4, in 16-bit storage) run in an instance of their own: with their
// staging in pieces and their 8-byte stores in the one instance, the compiler unrolled the
// recurrence differently and the forward of aligned rows ran 1-5 % slower on an H100.
template <typename in_t, bool kScalarA, int kS, bool kAligned>
__global__ void __launch_bounds__(kFwdMaxThreads, fwd_min_blocks(kS)) scan_fwd_kernel(const __grid_constant__ FwdArgs args) {
  extern __shared__ float4 smem_f4[];
  unsigned char* const sm = reinterpret_cast<unsigned char*>(smem_f4);
  const ScanParams& p = args.p;
  const FwdLayout& lay = args.lay;
  constexpr int V = kVec<in_t>;  // elements per 16-byte chunk
  constexpr int es = static_cast<int>(sizeof(in_t));

  // Copies held per thread (see held_src); none with 2 states per thread, whose 64 registers
  // it made spill.
  constexpr int kHeldCopies = kS == 2 ? 0 : 4;
  const int tid = threadIdx.x;
  const int R = lay.R, T = lay.T, rows = lay.rows, nt = lay.nt, sb = lay.sb, Rp = lay.Rp;
  const int cpr = lay.cpr, log2cpr = lay.log2cpr, log2rows = lay.log2rows;
  const int rm = row_major_index(tid, lay.log2R);  // the lanes of a row: see row_major_index
  const int row = rm >> lay.log2R, slice = rm & (R - 1);
  const int64_t L = p.seqlen, dim = p.dim;
  const int N = static_cast<int>(p.dstate);
  const bool varB = p.variable_B, varC = p.variable_C;
  const int64_t n_ckpt = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;

  float2* const sDtu = reinterpret_cast<float2*>(sm + lay.off_dtu);
  float* const sB = reinterpret_cast<float*>(sm + lay.off_B);
  float* const sC = reinterpret_cast<float*>(sm + lay.off_C);
  float4* const sYp = reinterpret_cast<float4*>(sm + lay.off_yp);
  float* const sRowD = reinterpret_cast<float*>(sm + lay.off_rowD);
  float* const sRowBias = reinterpret_cast<float*>(sm + lay.off_rowBias);
  float* const sRowA = reinterpret_cast<float*>(sm + lay.off_rowA);
  const in_t** const sSrc = reinterpret_cast<const in_t**>(sm + lay.off_src);
  int* const sDst = reinterpret_cast<int*>(sm + lay.off_dst);

  const in_t* const U = static_cast<const in_t*>(p.u);
  const in_t* const Delta = static_cast<const in_t*>(p.delta);
  const in_t* const Z = static_cast<const in_t*>(p.z);
  const float* const Aw = static_cast<const float*>(p.A);
  in_t* const Out = static_cast<in_t*>(p.out);

  const int nB = varB ? N : 0, nC = varC ? N : 0;
  const int64_t ntl = (L + T - 1) / T;
  const int64_t chunk_tiles = args.chunk_len / T;

  const int64_t nrowblocks = p.batch * p.n_groups * args.ntiles;
  const int64_t nblocks = nrowblocks * args.run_chunks;
  for (int64_t blk = blockIdx.x; blk < nblocks; blk += gridDim.x) {
    const int64_t chunk = args.first_chunk + blk / nrowblocks;
    // A chunk of the chunk_states pass past the first starts from zero and forms no outputs.
    const bool local = args.pass == FwdPass::chunk_states && chunk > 0;
    const bool write_out = args.write_out && !local;
    const bool load_z = p.has_z && write_out;
    const int n_row_arrays = load_z ? 3 : 2;
    float* const ckpt = local ? nullptr : args.ckpt;
    const int64_t t_begin = chunk * chunk_tiles, t_end = min64(ntl, t_begin + chunk_tiles);
    const int64_t rt = blk % args.ntiles, bg = (blk % nrowblocks) / args.ntiles;
    const int64_t b = bg / p.n_groups, g = bg % p.n_groups;
    const int64_t d0 = g * p.dim_per_group + rt * rows;
    const int rows_valid = static_cast<int>(min64(rows, p.dim_per_group - rt * rows));
    const bool valid = row < rows_valid;
    const int64_t d = d0 + row;
    const in_t* const Bg = varB ? static_cast<const in_t*>(p.B) + b * p.B_batch_stride + g * p.B_group_stride : nullptr;
    const in_t* const Cg = varC ? static_cast<const in_t*>(p.C) + b * p.C_batch_stride + g * p.C_group_stride : nullptr;

    // This thread's first kHeldCopies copies of every tile (the same rows and chunks in each),
    // looked up in the copy table once per row block: source advanced to its chunk (null: none)
    // and destination offset.
    const in_t* held_src[kHeldCopies > 0 ? kHeldCopies : 1];
    int held_dst[kHeldCopies > 0 ? kHeldCopies : 1];

    // Starts the copies of the raw inputs of steps [l0, l0 + T) into raw buffer `buf`: 16-byte
    // chunks, consecutive threads along a row (coalesced), each row's source and destination read
    // from the block's copy table (sSrc, sDst; null source: a row past the group).
    auto stage = [&](int64_t l0, int buf) {
      unsigned char* const raw = sm + lay.off_raw[buf];
      const int row_items = n_row_arrays * rows;
      const int total = (row_items + nB + nC) << log2cpr;
      if (l0 + T <= L && args.vec_in && args.vec_bc) {  // the common case: whole 16-byte chunks
#pragma unroll
        for (int k = 0; k < kHeldCopies; ++k)
          if (held_src[k] != nullptr) cp_async16(raw + held_dst[k], held_src[k] + l0);
        for (int e = tid + kHeldCopies * nt; e < total; e += nt) {
          const int c = e & (cpr - 1), idx = e >> log2cpr;
          const in_t* const src = sSrc[idx];
          if (src != nullptr) cp_async16(raw + sDst[idx] + c * 16, src + l0 + c * V);
        }
        cp_async_commit();
        return;
      }
      for (int e = tid; e < total; e += nt) {
        const int c = e & (cpr - 1), idx = e >> log2cpr;
        const in_t* const src = sSrc[idx];
        if (src == nullptr) continue;
        unsigned char* const dst = raw + sDst[idx] + c * 16;
        const int64_t gl = l0 + c * V;
        const int nvalid = static_cast<int>(min64(V, L - gl > 0 ? L - gl : 0));
        auto copy_elements = [&] {
          in_t el[V];
#pragma unroll
          for (int k = 0; k < V; ++k) el[k] = k < nvalid ? src[gl + k] : from_float<in_t>(0.f);
          uint4 q;
          memcpy(&q, el, sizeof(q));
          *reinterpret_cast<uint4*>(dst) = q;
        };
        if constexpr (kAligned) {
          if (idx < row_items ? args.vec_in : args.vec_bc)
            cp_async16(dst, src + (nvalid > 0 ? gl : 0), nvalid * es);
          else
            copy_elements();
        } else {
          const int align = idx < row_items ? args.in_align : args.bc_align;
          if (align >= 4)
            cp_async_chunk(dst, src + (nvalid > 0 ? gl : 0), nvalid * es, align);
          else
            copy_elements();
        }
      }
      cp_async_commit();
    };

    // Converts raw buffer `buf` (steps [l0, l0 + T)) into sDtu and the variable B / C rows.
    auto convert = [&](int64_t l0, int buf) {
      const unsigned char* const raw = sm + lay.off_raw[buf];
      for (int e = tid; e < rows * cpr; e += nt) {
        const int r = e & (rows - 1), c = e >> log2rows;
        float first[V], dtu[V];
        if (r < rows_valid) {
          float uu[V], x[V];
          raw16_to_float<in_t>(raw + lay.raw_u + r * lay.rowp + c * 16, uu);
          raw16_to_float<in_t>(raw + lay.raw_delta + r * lay.rowp + c * 16, x);
          const float bias = sRowBias[r];
          const int64_t left = L - (l0 + c * V);  // steps of the chunk inside the sequence
          const int nvalid = static_cast<int>(left < V ? (left > 0 ? left : 0) : V);
          float dt[V];
#pragma unroll
          for (int k = 0; k < V; ++k) dt[k] = x[k] + bias;
          if (p.delta_softplus) {
#pragma unroll
            for (int k = 0; k < V; ++k) dt[k] = softplus(dt[k]);
          }
#pragma unroll
          for (int k = 0; k < V; ++k) {
            if (k >= nvalid) dt[k] = 0.f;
            dtu[k] = dt[k] * uu[k];
            first[k] = kScalarA ? fast_exp2(dt[k] * sRowA[r]) : dt[k];
          }
        } else {
#pragma unroll
          for (int k = 0; k < V; ++k) {
            first[k] = kScalarA ? 1.f : 0.f;
            dtu[k] = 0.f;
          }
        }
#pragma unroll
        for (int k = 0; k < V; ++k) sDtu[(c * V + k) * rows + r] = make_float2(first[k], dtu[k]);
      }
      // Variable B / C: an item is V consecutive steps of one state row (one 16-byte word of the
      // raw buffer, zero past L), written to the steps' rows at the state's position. Items run
      // over npad states per array (a power of two; the padding states n >= N stay zero from the
      // block start), so that a warp's lanes write different states of the same steps.
      const int kbits = lay.log2npad + (varB && varC ? 1 : 0);
      const int nitems = (varB || varC) ? cpr << kbits : 0;
      for (int e = tid; e < nitems; e += nt) {
        const int k = e & ((1 << kbits) - 1), c = e >> kbits;
        const int n = k & (lay.npad - 1);
        if (n >= N) continue;
        const bool isB = varB && (k >> lay.log2npad) == 0;
        float v[V];
        raw16_to_float<in_t>(raw + (isB ? lay.raw_B : lay.raw_C) + n * lay.bcp + c * 16, v);
        float* const dst = (isB ? sB : sC) + (c * V) * sb + state_pos(n, kS, R);
#pragma unroll
        for (int j = 0; j < V; ++j) dst[j * sb] = v[j];
      }
    };

    // Writes out = (y + D u) * silu(z) of steps [l0, l0 + T) from sYp and raw buffer `buf`.
    auto output = [&](int64_t l0, int buf) {
      const unsigned char* const raw = sm + lay.off_raw[buf];
      for (int e = tid; e < rows * cpr; e += nt) {
        const int r = e & (rows - 1), c = e >> log2rows;
        const int64_t gl = l0 + c * V;
        if (r >= rows_valid || gl >= L) continue;
        float v[V];
#pragma unroll
        for (int gg = 0; gg < V / 4; ++gg) {
          const float4* src = sYp + ((c * (V / 4) + gg) * rows + r) * Rp;
          float4 acc = src[0];
          for (int s = 1; s < R; ++s) {
            const float4 q = src[s];
            acc.x += q.x;
            acc.y += q.y;
            acc.z += q.z;
            acc.w += q.w;
          }
          v[4 * gg] = acc.x;
          v[4 * gg + 1] = acc.y;
          v[4 * gg + 2] = acc.z;
          v[4 * gg + 3] = acc.w;
        }
        float uu[V];
        raw16_to_float<in_t>(raw + lay.raw_u + r * lay.rowp + c * 16, uu);
        const float Dr = sRowD[r];
#pragma unroll
        for (int k = 0; k < V; ++k) v[k] = fmaf(Dr, uu[k], v[k]);
        if (load_z) {
          float z[V];
          raw16_to_float<in_t>(raw + lay.raw_z + r * lay.rowp + c * 16, z);
#pragma unroll
          for (int k = 0; k < V; ++k) v[k] *= z[k] * sigmoid(z[k]);
        }
        if constexpr (kAligned)
          store_span<in_t, V, true>(Out + (b * dim + d0 + r) * L, gl, L, args.vec_out, v);
        else
          store_span<in_t, V, true>(Out + (b * dim + d0 + r) * L, gl, L, args.out_align, v);
      }
    };

    __syncthreads();  // the previous block iteration is done with shared memory
    // The copy table: rows u, delta (and z) of each channel, then the variable B / C states.
    {
      const int row_items = n_row_arrays * rows;
      for (int idx = tid; idx < row_items + nB + nC; idx += nt) {
        const in_t* src = nullptr;
        int dst;
        if (idx < row_items) {
          const int arr = idx >> log2rows, r = idx & (rows - 1);
          const int64_t dd = d0 + r;
          if (arr == 0) {
            src = U + b * p.u_batch_stride + dd * p.u_dim_stride;
            dst = lay.raw_u;
          } else if (arr == 1) {
            src = Delta + b * p.delta_batch_stride + dd * p.delta_dim_stride;
            dst = lay.raw_delta;
          } else {
            src = Z + b * p.z_batch_stride + dd * p.z_dim_stride;
            dst = lay.raw_z;
          }
          if (r >= rows_valid) src = nullptr;
          dst += r * lay.rowp;
        } else if (idx - row_items < nB) {
          const int k = idx - row_items;
          src = Bg + k * p.B_state_stride;
          dst = lay.raw_B + k * lay.bcp;
        } else {
          const int k = idx - row_items - nB;
          src = Cg + k * p.C_state_stride;
          dst = lay.raw_C + k * lay.bcp;
        }
        sSrc[idx] = src;
        sDst[idx] = dst;
      }
    }
    // Padding states of variable B / C rows (N < npad) stay zero: the conversion skips them.
    if (N < lay.npad)
      for (int e = tid; e < T * sb; e += nt) {
        if (varB) sB[e] = 0.f;
        if (varC) sC[e] = 0.f;
      }
    __syncthreads();
    {  // this thread's held copies (see held_src)
      const int total = (n_row_arrays * rows + nB + nC) << log2cpr;
#pragma unroll
      for (int k = 0; k < kHeldCopies; ++k) {
        const int e = tid + k * nt, c = e & (cpr - 1), idx = e >> log2cpr;
        const in_t* const src = e < total ? sSrc[idx] : nullptr;
        held_src[k] = src != nullptr ? src + c * V : nullptr;
        held_dst[k] = e < total ? sDst[idx] + c * 16 : 0;
      }
    }
    stage(t_begin * T, 0);
    for (int r = tid; r < rows; r += nt) {
      const bool ok = r < rows_valid;
      sRowD[r] = ok && p.has_D ? static_cast<const float*>(p.D)[(d0 + r) * p.D_stride] : 0.f;
      sRowBias[r] = ok && p.has_delta_bias
                        ? static_cast<const float*>(p.delta_bias)[(d0 + r) * p.delta_bias_stride]
                        : 0.f;
      sRowA[r] = ok && kScalarA ? Aw[(d0 + r) * p.A_dim_stride] * kLog2e : 0.f;
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

    // Thread state: h and A * log2(e) of states n = slice * kS + i; zero for n >= N and for rows
    // past the group (their dt is zero too, so h stays zero).
    float h[kS], A2[kS];
    if (valid && args.pass == FwdPass::chunk_outputs) {
      load_global_states<kS>(args.states + ((chunk - 1) * p.batch * dim + b * dim + d) * N, slice, N, h);
    } else if (valid && p.has_initial_state && chunk == 0) {
      load_global_states<kS>(static_cast<const float*>(p.initial_state) + (b * dim + d) * N, slice, N, h);
    } else {
#pragma unroll
      for (int i = 0; i < kS; ++i) h[i] = 0.f;
    }
#pragma unroll
    for (int i = 0; i < kS; ++i) {
      const int n = slice * kS + i;
      A2[i] = !kScalarA && valid && n < N ? Aw[d * p.A_dim_stride + n * p.A_state_stride] * kLog2e : 0.f;
    }

    float decay = kScalarA ? 1.f : 0.f;  // of a local chunk (see fwd_recurrence)
    for (int64_t t = t_begin; t < t_end; ++t) {
      const int64_t l0 = t * T;
      const int buf = static_cast<int>((t - t_begin) & 1);
      cp_async_wait_all();
      // The tile's raw inputs are in place; every thread is done with tile t - 1 (its outputs
      // read raw buffer buf ^ 1, now free for tile t + 1).
      __syncthreads();
      if (t + 1 < t_end) stage(l0 + T, buf ^ 1);
      convert(l0, buf);
      __syncthreads();

      if (ckpt != nullptr && valid && l0 % kScanCheckpointInterval == 0)
        store_global_states<kS, true>(
            ckpt + ((b * dim + d) * n_ckpt + l0 / kScanCheckpointInterval) * N, slice, N, h);

      // The recurrence; each lane keeps its partial y of four steps at a time.
      const float2* const dtu_row = sDtu + row;
      float4* const yp_out = sYp + row * Rp + slice;
      if (local)
        fwd_recurrence<kScalarA, kS, false, true>(h, A2, decay, dtu_row, rows, bBase, bStep, cBase,
                                                  cStep, slice, R, yp_out, rows * Rp, T);
      else
        fwd_recurrence<kScalarA, kS, true, false>(h, A2, decay, dtu_row, rows, bBase, bStep, cBase,
                                                  cStep, slice, R, yp_out, rows * Rp, T);
      if (write_out) {
        __syncthreads();  // every lane's partial y of the tile is in sYp
        output(l0, buf);
      }
    }

    if (valid && args.pass == FwdPass::chunk_states) {
      const int64_t at = chunk * p.batch * dim + b * dim + d;
      store_global_states<kS, true>(args.states + at * N, slice, N, h);
      if (local && slice == 0) args.decays[at] = decay;
    } else if (args.write_out && valid && chunk == args.nchunks - 1) {
      store_global_states<kS, true>(static_cast<float*>(p.last_state) + (b * dim + d) * N, slice,
                                    N, h);
    }
  }
}

}  // namespace s6kit::cuda_scan
