// CPU selective scan, forward and backward. Included once per instruction set by
// scan_cpu_<isa>.cpp with S6KIT_ISA defined; scan_cpu.cpp picks the variant at run time.
//
// Layout of the work:
//   * rows (b, d) are independent; threads take contiguous ranges of rows;
//   * inside a row the state h (N values) is updated step by step, vectorised over N;
//   * variable B and C are first transposed to (batch, G, L, N) in the arithmetic type, so the
//     inner loop reads N contiguous values per step;
//   * per-step scalar work (softplus, silu, D) runs in separate loops over L that vectorise.
// The backward recomputes the forward inside chunks of kChunk steps from checkpoints of h taken
// every kChunk steps (saved by the forward when the caller hands in a buffer, else recomputed),
// so it keeps O(L / kChunk * N + kChunk * N) values per row, not O(L * N).
// Reductions over rows (dA, dD, d_delta_bias, dB, dC) go through per-task partial sums that are
// added in a fixed order: results do not depend on the thread count.
#pragma once

#ifndef S6KIT_ISA
#error "define S6KIT_ISA before including scan_cpu_impl.h"
#endif

#include <algorithm>
#include <cstdint>
#include <vector>

#include "s6kit/cpu/parallel.h"
#include "s6kit/cpu/storage.h"
#include "s6kit/cpu/vecmath.h"
#include "s6kit/scan_params.h"
#include "scan_cpu_variants.h"

namespace s6kit::cpu::S6KIT_ISA {

constexpr int64_t kChunk = kScanCheckpointInterval;  // backward recompute chunk (steps)
constexpr int64_t kMaxBlocksPerGroup = 8;  // row blocks per (b, g) for the dB / dC partials

template <typename T>
using Vec = std::vector<T>;

// Reads B or C for one group as (L, N) in the arithmetic type: transposed copy for variable
// B/C, the (dim, N) row broadcast over L (step stride 0) for time-invariant ones.
template <typename in_t, typename acc_t>
void transpose_bc(const ScanParams& p, const void* src, int64_t batch_stride,
                  int64_t group_stride, int64_t state_stride, acc_t* dst, int64_t b, int64_t g) {
  const in_t* base = static_cast<const in_t*>(src) + b * batch_stride + g * group_stride;
  const int64_t N = p.dstate, L = p.seqlen;
  for (int64_t n = 0; n < N; ++n) {
    const in_t* row = base + n * state_stride;
    for (int64_t l = 0; l < L; ++l) dst[l * N + n] = load<acc_t>(row[l]);
  }
}

// Per-row inputs expanded over L in the arithmetic type.
template <typename acc_t>
struct RowScratch {
  Vec<acc_t> dt, dtu, u, zs, y, A, Binv, Cinv;
  explicit RowScratch(int64_t L, int64_t N)
      : dt(L), dtu(L), u(L), zs(L), y(L), A(N), Binv(N), Cinv(N) {}
};

template <typename in_t, typename w_t, typename acc_t>
void load_row(const ScanParams& p, int64_t b, int64_t d, RowScratch<acc_t>& s) {
  const int64_t L = p.seqlen;
  const in_t* u = static_cast<const in_t*>(p.u) + b * p.u_batch_stride + d * p.u_dim_stride;
  const in_t* delta =
      static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + d * p.delta_dim_stride;
  const acc_t bias =
      p.has_delta_bias ? load<acc_t>(static_cast<const w_t*>(p.delta_bias)[d * p.delta_bias_stride])
                       : acc_t(0);
  for (int64_t l = 0; l < L; ++l) s.u[l] = load<acc_t>(u[l]);
  if (p.delta_softplus) {
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) s.dt[l] = softplus(load<acc_t>(delta[l]) + bias);
  } else {
    for (int64_t l = 0; l < L; ++l) s.dt[l] = load<acc_t>(delta[l]) + bias;
  }
#pragma omp simd
  for (int64_t l = 0; l < L; ++l) s.dtu[l] = s.dt[l] * s.u[l];

  const w_t* A = static_cast<const w_t*>(p.A) + d * p.A_dim_stride;
  if (p.scalar_A) {
    s.A[0] = load<acc_t>(A[0]);
  } else {
    for (int64_t n = 0; n < p.dstate; ++n) s.A[n] = load<acc_t>(A[n * p.A_state_stride]);
  }
  if (!p.variable_B) {
    const w_t* B = static_cast<const w_t*>(p.B) + d * p.B_group_stride;
    for (int64_t n = 0; n < p.dstate; ++n) s.Binv[n] = load<acc_t>(B[n * p.B_state_stride]);
  }
  if (!p.variable_C) {
    const w_t* C = static_cast<const w_t*>(p.C) + d * p.C_group_stride;
    for (int64_t n = 0; n < p.dstate; ++n) s.Cinv[n] = load<acc_t>(C[n * p.C_state_stride]);
  }
}

// Decays exp(dt_l A) of `count` consecutive steps into a[count][NA] (NA = 1 for scalar A).
// Kept apart from the recurrence so that the exps vectorise as one long independent loop.
template <bool kScalarA, typename acc_t>
inline void decays(const acc_t* __restrict dt, const acc_t* __restrict A, int64_t count,
                   int64_t N, acc_t* __restrict a) {
  if (kScalarA || N == 1) {  // one decay per step: vectorised over the steps
    const acc_t A0 = A[0];
#pragma omp simd
    for (int64_t i = 0; i < count; ++i) a[i] = exp_fast(dt[i] * A0);
  } else {
    for (int64_t i = 0; i < count; ++i) {
      const acc_t dti = dt[i];
      acc_t* __restrict ai = a + i * N;
#pragma omp simd
      for (int64_t n = 0; n < N; ++n) ai[n] = exp_fast(dti * A[n]);
    }
  }
}

// One step of the recurrence for all N states, h = a h + dt u B_l; returns C_l . h.
template <bool kScalarA, typename acc_t>
inline acc_t step(acc_t* __restrict h, const acc_t* __restrict a, const acc_t* __restrict Bl,
                  const acc_t* __restrict Cl, acc_t dtu, int64_t N) {
  acc_t y = 0;
  if constexpr (kScalarA) {
    const acc_t a0 = a[0];
#pragma omp simd reduction(+ : y)
    for (int64_t n = 0; n < N; ++n) {
      h[n] = a0 * h[n] + dtu * Bl[n];
      y += Cl[n] * h[n];
    }
  } else {
#pragma omp simd reduction(+ : y)
    for (int64_t n = 0; n < N; ++n) {
      h[n] = a[n] * h[n] + dtu * Bl[n];
      y += Cl[n] * h[n];
    }
  }
  return y;
}

// Runs steps [l0, l1) of a row from state h; y[l] receives C_l . h_l. The decays land in `a`
// (kChunk x NA) and, when `H` is given, the states h_l in H (kChunk x N).
template <bool kScalarA, typename acc_t>
inline void run_chunk(acc_t* __restrict h, const acc_t* A, const acc_t* dt, const acc_t* dtu,
                      const acc_t* B, int64_t B_step, const acc_t* C, int64_t C_step, int64_t l0,
                      int64_t l1, int64_t N, acc_t* __restrict a, acc_t* __restrict H,
                      acc_t* __restrict y) {
  const int64_t NA = kScalarA ? 1 : N;
  decays<kScalarA>(dt + l0, A, l1 - l0, N, a);
  for (int64_t l = l0; l < l1; ++l) {
    const acc_t yl = step<kScalarA>(h, a + (l - l0) * NA, B + l * B_step, C + l * C_step, dtu[l], N);
    if (y) y[l] = yl;
    if (H) std::copy(h, h + N, H + (l - l0) * N);
  }
}

// Where step l of a row reads B and C: transposed (L, N) buffers or the invariant row.
template <typename acc_t>
struct BCView {
  const acc_t* B;
  int64_t B_step;
  const acc_t* C;
  int64_t C_step;
};

template <typename acc_t>
BCView<acc_t> bc_view(const ScanParams& p, const Vec<acc_t>& Bt, const Vec<acc_t>& Ct,
                      const RowScratch<acc_t>& s, int64_t b, int64_t d) {
  const int64_t g = d / p.dim_per_group, LN = p.seqlen * p.dstate;
  BCView<acc_t> v;
  if (p.variable_B) {
    v.B = Bt.data() + (b * p.n_groups + g) * LN;
    v.B_step = p.dstate;
  } else {
    v.B = s.Binv.data();
    v.B_step = 0;
  }
  if (p.variable_C) {
    v.C = Ct.data() + (b * p.n_groups + g) * LN;
    v.C_step = p.dstate;
  } else {
    v.C = s.Cinv.data();
    v.C_step = 0;
  }
  return v;
}

template <typename in_t, typename w_t, typename acc_t>
void transpose_all_bc(const ScanParams& p, Vec<acc_t>& Bt, Vec<acc_t>& Ct, int num_threads) {
  const int64_t LN = p.seqlen * p.dstate, groups = p.batch * p.n_groups;
  if (p.variable_B) Bt.resize(groups * LN);
  if (p.variable_C) Ct.resize(groups * LN);
  parallel_for(groups, num_threads, double(LN) * 2, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / p.n_groups, g = i % p.n_groups;
      if (p.variable_B)
        transpose_bc<in_t>(p, p.B, p.B_batch_stride, p.B_group_stride, p.B_state_stride,
                                Bt.data() + i * LN, b, g);
      if (p.variable_C)
        transpose_bc<in_t>(p, p.C, p.C_batch_stride, p.C_group_stride, p.C_state_stride,
                                Ct.data() + i * LN, b, g);
    }
  });
}

template <typename acc_t>
inline acc_t silu(acc_t z) { return z * sigmoid(z); }

// ---------------------------------------------------------------------------------------------
// Forward

template <bool kScalarA, typename in_t, typename w_t, typename acc_t>
void fwd_rows(const ScanParams& p, const Vec<acc_t>& Bt, const Vec<acc_t>& Ct, int64_t begin,
              int64_t end) {
  const int64_t L = p.seqlen, N = p.dstate;
  const int64_t n_chunks = (L + kChunk - 1) / kChunk;
  RowScratch<acc_t> s(L, N);
  Vec<acc_t> h(N), a(kChunk * (kScalarA ? 1 : N));
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / p.dim, d = row % p.dim;
    load_row<in_t, w_t>(p, b, d, s);
    const BCView<acc_t> v = bc_view(p, Bt, Ct, s, b, d);
    if (p.has_initial_state) {
      const w_t* h0 = static_cast<const w_t*>(p.initial_state) + row * N;
      for (int64_t n = 0; n < N; ++n) h[n] = load<acc_t>(h0[n]);
    } else {
      std::fill(h.begin(), h.end(), acc_t(0));
    }
    w_t* ckpt = p.checkpoints ? static_cast<w_t*>(p.checkpoints) + row * n_chunks * N : nullptr;
    for (int64_t c = 0; c < n_chunks; ++c) {
      if (ckpt)
        for (int64_t n = 0; n < N; ++n) ckpt[c * N + n] = store<w_t>(h[n]);
      run_chunk<kScalarA>(h.data(), s.A.data(), s.dt.data(), s.dtu.data(), v.B, v.B_step, v.C,
                          v.C_step, c * kChunk, std::min(L, (c + 1) * kChunk), N, a.data(),
                          static_cast<acc_t*>(nullptr), s.y.data());
    }

    const acc_t D = p.has_D ? load<acc_t>(static_cast<const w_t*>(p.D)[d * p.D_stride]) : acc_t(0);
#pragma omp simd
    for (int64_t l = 0; l < L; ++l) s.y[l] += D * s.u[l];
    if (p.has_z) {
      const in_t* z = static_cast<const in_t*>(p.z) + b * p.z_batch_stride + d * p.z_dim_stride;
      for (int64_t l = 0; l < L; ++l) s.zs[l] = load<acc_t>(z[l]);
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) s.y[l] *= silu(s.zs[l]);
    }
    in_t* out = static_cast<in_t*>(p.out) + row * L;
    for (int64_t l = 0; l < L; ++l) out[l] = store<in_t>(s.y[l]);
    w_t* last = static_cast<w_t*>(p.last_state) + row * N;
    for (int64_t n = 0; n < N; ++n) last[n] = store<w_t>(h[n]);
  }
}

template <typename in_t, typename w_t, typename acc_t>
void scan_fwd_typed(const ScanParams& p, int num_threads) {
  Vec<acc_t> Bt, Ct;
  transpose_all_bc<in_t, w_t>(p, Bt, Ct, num_threads);
  const double work = double(p.seqlen) * (p.scalar_A ? 4 : 20) * p.dstate;
  parallel_for(p.batch * p.dim, num_threads, work, [&](int64_t begin, int64_t end) {
    if (p.scalar_A)
      fwd_rows<true, in_t, w_t, acc_t>(p, Bt, Ct, begin, end);
    else
      fwd_rows<false, in_t, w_t, acc_t>(p, Bt, Ct, begin, end);
  });
}

// ---------------------------------------------------------------------------------------------
// Backward
//
// With g_l = dLoss/dh_l (through the recurrence and the output):
//   g_l      = exp(dt_{l+1} A) g_{l+1} + C_l dy_l,      g_L also receives d last_state
//   dB_l    += g_l dt_l u_l,       dC_l += dy_l h_l,     dD += dy_l u_l
//   dA      += g_l h_{l-1} exp(dt_l A) dt_l
//   d dt_l   = sum_n g_l h_{l-1} exp(dt_l A) A + u_l sum_n g_l B_l
//   du_l     = dt_l sum_n g_l B_l + D dy_l
//   d h_0    = exp(dt_1 A) g_1
// where dy = dout * silu(z) and dz = dout * y * silu'(z) when z is present.

// Per-task partial sums, laid out so that adding them in a fixed order is deterministic.
template <typename acc_t>
struct BwdPartials {
  int64_t blocks_per_group = 1, rows_per_block = 1;
  Vec<acc_t> dBt, dCt;        // (batch, G, blocks, L, N): variable B/C
  Vec<acc_t> dA, dBinv, dCinv;  // (batch, dim, N or 1)
  Vec<acc_t> dD, ddb;         // (batch, dim)
};

template <bool kScalarA, typename in_t, typename w_t, typename acc_t>
void bwd_task(const ScanBwdParams& p, const Vec<acc_t>& Bt, const Vec<acc_t>& Ct,
              BwdPartials<acc_t>& part, int64_t task, RowScratch<acc_t>& s, Vec<acc_t>& work) {
  const int64_t L = p.seqlen, N = p.dstate, NA = kScalarA ? 1 : N;
  const int64_t G = p.n_groups, blocks = part.blocks_per_group;
  const int64_t b = task / (G * blocks), g = (task / blocks) % G, blk = task % blocks;
  const int64_t d_begin = g * p.dim_per_group + blk * part.rows_per_block;
  const int64_t d_end = std::min(d_begin + part.rows_per_block, (g + 1) * p.dim_per_group);
  const int64_t n_chunks = (L + kChunk - 1) / kChunk;

  // Work buffers: checkpoints, chunk states and decays, the running gradient, row gradients.
  acc_t* ckpt = work.data();                   // (n_chunks, N): h before each chunk
  acc_t* H = ckpt + n_chunks * N;              // (kChunk, N): h_l inside the chunk
  acc_t* Adec = H + kChunk * N;                // (kChunk, NA): exp(dt_l A)
  acc_t* gvec = Adec + kChunk * NA;            // (N): exp(dt_{l+1} A) g_{l+1}
  acc_t* h = gvec + N;                         // (N)
  acc_t* dA = h + N;                           // (N)
  acc_t* dBrow = dA + N;                       // (N) invariant B
  acc_t* dCrow = dBrow + N;                    // (N) invariant C
  acc_t* ddt = dCrow + N;                      // (L)
  acc_t* dy = ddt + L;                         // (L)

  acc_t* dBt = p.variable_B ? part.dBt.data() + task * L * N : nullptr;
  acc_t* dCt = p.variable_C ? part.dCt.data() + task * L * N : nullptr;
  if (dBt) std::fill(dBt, dBt + L * N, acc_t(0));
  if (dCt) std::fill(dCt, dCt + L * N, acc_t(0));

  for (int64_t d = d_begin; d < d_end; ++d) {
    const int64_t row = b * p.dim + d;
    load_row<in_t, w_t>(p, b, d, s);
    const BCView<acc_t> v = bc_view(p, Bt, Ct, s, b, d);
    const acc_t D = p.has_D ? load<acc_t>(static_cast<const w_t*>(p.D)[d * p.D_stride]) : acc_t(0);
    const in_t* dout =
        static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride + d * p.dout_dim_stride;
    for (int64_t l = 0; l < L; ++l) dy[l] = load<acc_t>(dout[l]);
    if (p.has_z) {
      const in_t* z = static_cast<const in_t*>(p.z) + b * p.z_batch_stride + d * p.z_dim_stride;
      for (int64_t l = 0; l < L; ++l) s.zs[l] = load<acc_t>(z[l]);
    }

    // States before each chunk: saved by the forward, or recomputed here.
    if (p.checkpoints) {
      const w_t* saved = static_cast<const w_t*>(p.checkpoints) + row * n_chunks * N;
      for (int64_t i = 0; i < n_chunks * N; ++i) ckpt[i] = load<acc_t>(saved[i]);
    } else {
      if (p.has_initial_state) {
        const w_t* h0 = static_cast<const w_t*>(p.initial_state) + row * N;
        for (int64_t n = 0; n < N; ++n) h[n] = load<acc_t>(h0[n]);
      } else {
        std::fill(h, h + N, acc_t(0));
      }
      for (int64_t c = 0; c < n_chunks; ++c) {
        std::copy(h, h + N, ckpt + c * N);
        run_chunk<kScalarA>(h, s.A.data(), s.dt.data(), s.dtu.data(), v.B, v.B_step, v.C,
                            v.C_step, c * kChunk, std::min(L, (c + 1) * kChunk), N, Adec,
                            static_cast<acc_t*>(nullptr), static_cast<acc_t*>(nullptr));
      }
    }

    if (p.dlast_state) {
      const w_t* gl = static_cast<const w_t*>(p.dlast_state) + row * N;
      for (int64_t n = 0; n < N; ++n) gvec[n] = load<acc_t>(gl[n]);
    } else {
      std::fill(gvec, gvec + N, acc_t(0));
    }
    std::fill(dA, dA + N, acc_t(0));
    std::fill(dBrow, dBrow + N, acc_t(0));
    std::fill(dCrow, dCrow + N, acc_t(0));
    acc_t dD = 0;

    for (int64_t c = n_chunks - 1; c >= 0; --c) {
      const int64_t l0 = c * kChunk, l1 = std::min(L, l0 + kChunk);
      // Recompute h_l and exp(dt_l A) inside the chunk; finish y_l for dz.
      std::copy(ckpt + c * N, ckpt + (c + 1) * N, h);
      run_chunk<kScalarA>(h, s.A.data(), s.dt.data(), s.dtu.data(), v.B, v.B_step, v.C, v.C_step,
                          l0, l1, N, Adec, H, s.y.data());
      if (p.has_z) {
#pragma omp simd
        for (int64_t l = l0; l < l1; ++l) {
          const acc_t zl = s.zs[l], sg = sigmoid(zl);
          const acc_t y_full = s.y[l] + D * s.u[l];
          s.y[l] = dy[l] * y_full * sg * (1 + zl * (1 - sg));  // dz
          dy[l] = dy[l] * zl * sg;                              // d(y) through the gate
        }
      }
      // Reverse sweep.
      for (int64_t l = l1 - 1; l >= l0; --l) {
        const acc_t* Bl = v.B + l * v.B_step;
        const acc_t* Cl = v.C + l * v.C_step;
        const acc_t* hl = H + (l - l0) * N;
        const acc_t* hprev = l > l0 ? H + (l - l0 - 1) * N : ckpt + c * N;
        const acc_t* a = Adec + (l - l0) * NA;
        const acc_t dyl = dy[l], dt = s.dt[l], dtu = s.dtu[l];
        acc_t sum_gB = 0, sum_gha = 0;
        if constexpr (kScalarA) {
          const acc_t a0 = a[0];
#pragma omp simd reduction(+ : sum_gB, sum_gha)
          for (int64_t n = 0; n < N; ++n) {
            const acc_t gn = gvec[n] + Cl[n] * dyl;
            sum_gB += gn * Bl[n];
            sum_gha += gn * hprev[n];
            gvec[n] = a0 * gn;
            if (dBt) dBt[l * N + n] += gn * dtu; else dBrow[n] += gn * dtu;
            if (dCt) dCt[l * N + n] += dyl * hl[n]; else dCrow[n] += dyl * hl[n];
          }
          sum_gha *= a0;
          dA[0] += sum_gha * dt;
          sum_gha *= s.A[0];
        } else {
#pragma omp simd reduction(+ : sum_gB, sum_gha)
          for (int64_t n = 0; n < N; ++n) {
            const acc_t gn = gvec[n] + Cl[n] * dyl;
            const acc_t gha = gn * hprev[n] * a[n];
            sum_gB += gn * Bl[n];
            sum_gha += gha * s.A[n];
            dA[n] += gha * dt;
            gvec[n] = a[n] * gn;
            if (dBt) dBt[l * N + n] += gn * dtu; else dBrow[n] += gn * dtu;
            if (dCt) dCt[l * N + n] += dyl * hl[n]; else dCrow[n] += dyl * hl[n];
          }
        }
        ddt[l] = sum_gha + s.u[l] * sum_gB;
        s.dtu[l] = dt * sum_gB + D * dyl;  // du_l (dtu of step l is no longer needed)
        dD += dyl * s.u[l];
      }
    }

    // Row outputs.
    in_t* du = static_cast<in_t*>(p.du) + row * L;
    in_t* ddelta = static_cast<in_t*>(p.ddelta) + row * L;
    for (int64_t l = 0; l < L; ++l) du[l] = store<in_t>(s.dtu[l]);
    const in_t* delta =
        static_cast<const in_t*>(p.delta) + b * p.delta_batch_stride + d * p.delta_dim_stride;
    const acc_t bias =
        p.has_delta_bias
            ? load<acc_t>(static_cast<const w_t*>(p.delta_bias)[d * p.delta_bias_stride])
            : acc_t(0);
    acc_t ddb = 0;
    if (p.delta_softplus) {
      for (int64_t l = 0; l < L; ++l) s.u[l] = load<acc_t>(delta[l]) + bias;
#pragma omp simd reduction(+ : ddb)
      for (int64_t l = 0; l < L; ++l) {
        ddt[l] *= sigmoid(s.u[l]);
        ddb += ddt[l];
      }
    } else {
      for (int64_t l = 0; l < L; ++l) ddb += ddt[l];
    }
    for (int64_t l = 0; l < L; ++l) ddelta[l] = store<in_t>(ddt[l]);
    if (p.has_z) {
      in_t* dz = static_cast<in_t*>(p.dz) + row * L;
      for (int64_t l = 0; l < L; ++l) dz[l] = store<in_t>(s.y[l]);
    }
    if (p.dinitial_state) {
      w_t* dh0 = static_cast<w_t*>(p.dinitial_state) + row * N;
      for (int64_t n = 0; n < N; ++n) dh0[n] = store<w_t>(gvec[n]);
    }
    std::copy(dA, dA + NA, part.dA.data() + row * NA);
    if (!p.variable_B) std::copy(dBrow, dBrow + N, part.dBinv.data() + row * N);
    if (!p.variable_C) std::copy(dCrow, dCrow + N, part.dCinv.data() + row * N);
    part.dD[row] = dD;
    part.ddb[row] = ddb;
  }
}

// Sums (batch, dim, K) partials over the batch in order into a (dim, K) weight gradient.
template <typename w_t, typename acc_t>
void reduce_over_batch(const ScanParams& p, const Vec<acc_t>& part, int64_t K, void* dst,
                       int64_t dst_dim_stride, int64_t dst_k_stride) {
  w_t* out = static_cast<w_t*>(dst);
  for (int64_t d = 0; d < p.dim; ++d)
    for (int64_t k = 0; k < K; ++k) {
      acc_t acc = 0;
      for (int64_t b = 0; b < p.batch; ++b) acc += part[(b * p.dim + d) * K + k];
      out[d * dst_dim_stride + k * dst_k_stride] = store<w_t>(acc);
    }
}

// Sums the row-block partials of variable dB/dC in order and writes (batch, G, N, L).
template <typename in_t, typename acc_t>
void reduce_bc(const ScanParams& p, const Vec<acc_t>& part, int64_t blocks, void* dst,
               int num_threads) {
  const int64_t L = p.seqlen, N = p.dstate, groups = p.batch * p.n_groups;
  in_t* out = static_cast<in_t*>(dst);
  parallel_for(groups, num_threads, double(L * N * blocks), [&](int64_t begin, int64_t end) {
    Vec<acc_t> acc(L * N);
    for (int64_t i = begin; i < end; ++i) {
      const acc_t* src = part.data() + i * blocks * L * N;
      std::copy(src, src + L * N, acc.begin());
      for (int64_t k = 1; k < blocks; ++k)
        for (int64_t j = 0; j < L * N; ++j) acc[j] += src[k * L * N + j];
      in_t* o = out + i * N * L;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t l = 0; l < L; ++l) o[n * L + l] = store<in_t>(acc[l * N + n]);
    }
  });
}

template <typename in_t, typename w_t, typename acc_t>
void scan_bwd_typed(const ScanBwdParams& p, int num_threads) {
  const int64_t L = p.seqlen, N = p.dstate, NA = p.scalar_A ? 1 : N, G = p.n_groups;
  const int64_t rows = p.batch * p.dim;
  Vec<acc_t> Bt, Ct;
  transpose_all_bc<in_t, w_t>(p, Bt, Ct, num_threads);

  BwdPartials<acc_t> part;
  part.blocks_per_group = std::min<int64_t>(kMaxBlocksPerGroup, std::max<int64_t>(1, p.dim_per_group));
  part.rows_per_block = (p.dim_per_group + part.blocks_per_group - 1) / part.blocks_per_group;
  const int64_t tasks = p.batch * G * part.blocks_per_group;
  if (p.variable_B) part.dBt.resize(tasks * L * N);
  if (p.variable_C) part.dCt.resize(tasks * L * N);
  part.dA.resize(rows * NA);
  if (!p.variable_B) part.dBinv.resize(rows * N);
  if (!p.variable_C) part.dCinv.resize(rows * N);
  part.dD.resize(rows);
  part.ddb.resize(rows);

  const int64_t n_chunks = (L + kChunk - 1) / kChunk;
  const int64_t work_len = n_chunks * N + kChunk * N + kChunk * NA + 5 * N + 2 * L;
  const double work = double(L) * N * 60 * part.rows_per_block;
  parallel_for(tasks, num_threads, work, [&](int64_t begin, int64_t end) {
    RowScratch<acc_t> s(L, N);
    Vec<acc_t> buf(work_len);
    for (int64_t t = begin; t < end; ++t) {
      if (p.scalar_A)
        bwd_task<true, in_t, w_t, acc_t>(p, Bt, Ct, part, t, s, buf);
      else
        bwd_task<false, in_t, w_t, acc_t>(p, Bt, Ct, part, t, s, buf);
    }
  });

  // Fixed-order reductions.
  reduce_over_batch<w_t>(p, part.dA, NA, p.dA, NA, 1);
  if (!p.variable_B) reduce_over_batch<w_t>(p, part.dBinv, N, p.dB, N, 1);
  if (!p.variable_C) reduce_over_batch<w_t>(p, part.dCinv, N, p.dC, N, 1);
  if (p.dD) reduce_over_batch<w_t>(p, part.dD, 1, p.dD, 1, 0);
  if (p.ddelta_bias) reduce_over_batch<w_t>(p, part.ddb, 1, p.ddelta_bias, 1, 0);
  if (p.variable_B) reduce_bc<in_t>(p, part.dBt, part.blocks_per_group, p.dB, num_threads);
  if (p.variable_C) reduce_bc<in_t>(p, part.dCt, part.blocks_per_group, p.dC, num_threads);
}

// Entry points of this instruction-set variant (declared in scan_cpu_variants.h).
#define S6KIT_DISPATCH_STORAGE(TYPE, ...)                                   \
  switch (TYPE) {                                                           \
    case DType::f32: { using in_t = float; using w_t = float; using acc_t = float; __VA_ARGS__; break; } \
    case DType::f16: { using in_t = f16_t; using w_t = float; using acc_t = float; __VA_ARGS__; break; } \
    case DType::bf16: { using in_t = bf16_t; using w_t = float; using acc_t = float; __VA_ARGS__; break; } \
    case DType::f64: { using in_t = double; using w_t = double; using acc_t = double; __VA_ARGS__; break; } \
    default: break; /* integer dtypes never pass the scan's checks */       \
  }

void scan_fwd(const ScanParams& p, int num_threads) {
  S6KIT_DISPATCH_STORAGE(p.input_type, (scan_fwd_typed<in_t, w_t, acc_t>(p, num_threads)));
}

void scan_bwd(const ScanBwdParams& p, int num_threads) {
  S6KIT_DISPATCH_STORAGE(p.input_type, (scan_bwd_typed<in_t, w_t, acc_t>(p, num_threads)));
}

#undef S6KIT_DISPATCH_STORAGE

}  // namespace s6kit::cpu::S6KIT_ISA
