// CPU SoftSort: importance scores, forward and backward. Included once per instruction set by
// softsort_cpu_<isa>.cpp with S6KIT_ISA defined; softsort_cpu.cpp picks the variant at run time.
//
// Layout of the work:
//   * per batch element, the keys, decays (p = 1) or band limits (general p) and 1 / Z are
//     computed once and shared by every channel (RowInfo);
//   * p = 1: tasks are (batch element, channel group); a group runs its channels kLanes at a time
//     through vectorised scans; the per-position sums of the score gradient go through per-task
//     partials added in a fixed order, so results do not depend on the thread count;
//   * general p: tokens are gathered into token-major order and tasks are tiles of sorted
//     positions, each running over the band of its positions;
//   * score_and_permute's backward runs a second sweep once the score gradient is known, so
//     dx = K gh + dscores w is rounded to the storage type once.
#pragma once

#ifndef S6KIT_ISA
#error "define S6KIT_ISA before including softsort_cpu_impl.h"
#endif

#include <type_traits>
#include <utility>

#include "s6kit/cpu/parallel.h"
#include "softsort_cpu_band.h"
#include "softsort_cpu_common.h"
#include "softsort_cpu_scan.h"
#include "softsort_cpu_variants.h"

namespace s6kit::cpu::S6KIT_ISA {
namespace softsort {

constexpr int64_t kMaxGroups = 16;  // channel groups per batch element (p = 1 backward)

// Channel groups of the p = 1 path: fixed by the shape alone (deterministic partial sums).
struct Groups {
  int64_t blocks, groups, blocks_per_group;
  explicit Groups(int64_t dim) {
    blocks = (dim + kLanes - 1) / kLanes;
    groups = std::max<int64_t>(1, std::min(blocks, kMaxGroups));
    blocks_per_group = (blocks + groups - 1) / groups;
  }
  int64_t block_begin(int64_t g) const { return std::min(blocks, g * blocks_per_group); }
  int64_t block_end(int64_t g) const { return std::min(blocks, (g + 1) * blocks_per_group); }
};

template <typename in_t, typename acc_t>
void scores_typed(const SoftSortScoreParams& p, int num_threads) {
  const int64_t L = p.seqlen, D = p.dim;
  constexpr int64_t kChunk = 512;
  const int64_t chunks = (L + kChunk - 1) / kChunk;
  const acc_t* w = static_cast<const acc_t*>(p.w);
  parallel_for(p.batch * chunks, num_threads, double(kChunk) * D, [&](int64_t begin, int64_t end) {
    acc_t acc[kChunk];
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / chunks, l0 = (task % chunks) * kChunk;
      const int64_t n = std::min(kChunk, L - l0);
      std::fill(acc, acc + n, acc_t(0));
      for (int64_t d = 0; d < D; ++d) {
        const in_t* x = static_cast<const in_t*>(p.x) + b * p.x_batch_stride + d * p.x_dim_stride + l0;
        const acc_t wd = w[d];
#pragma omp simd
        for (int64_t l = 0; l < n; ++l) acc[l] += wd * load<acc_t>(x[l]);
      }
      std::copy(acc, acc + n, static_cast<acc_t*>(p.scores) + b * L + l0);
    }
  });
}

// Sort keys: unsigned integers ordered as torch.sort(stable=True) orders the scores (NaN above
// +inf, -0.0 equal to +0.0), complemented for a descending sort; with the index as the second
// key, ties keep their order in both directions.
template <typename acc_t>
using KeyBits = std::conditional_t<sizeof(acc_t) == 8, uint64_t, uint32_t>;

template <typename acc_t>
inline acc_t canonical_score(acc_t s) {
  if (std::isnan(s)) return std::numeric_limits<acc_t>::quiet_NaN();
  return s == 0 ? acc_t(0) : s;
}

template <typename acc_t>
inline KeyBits<acc_t> sort_key(acc_t s, bool descending) {
  using U = KeyBits<acc_t>;
  const acc_t c = canonical_score(s);
  U u;
  std::memcpy(&u, &c, sizeof u);
  const U top = U(1) << (8 * sizeof(U) - 1);
  u = (u & top) ? U(~u) : U(u | top);
  return descending ? U(~u) : u;
}

// sorted_scores and perm of every batch element (scores first, from w, when given).
template <typename in_t, typename acc_t>
void rank_typed(const SoftSortRankParams& p, int num_threads) {
  const int64_t B = p.batch, L = p.seqlen;
  if (B * L == 0) return;
  Vec<acc_t> computed;
  const acc_t* scores = static_cast<const acc_t*>(p.scores);
  if (p.with_w) {
    computed.resize(B * L);
    SoftSortScoreParams sp;
    sp.batch = B;
    sp.dim = p.dim;
    sp.seqlen = L;
    sp.x = p.x;
    sp.x_batch_stride = p.x_batch_stride;
    sp.x_dim_stride = p.x_dim_stride;
    sp.w = p.w;
    sp.scores = computed.data();
    scores_typed<in_t, acc_t>(sp, num_threads);
    scores = computed.data();
  }
  using U = KeyBits<acc_t>;
  parallel_for(B, num_threads, 40.0 * L, [&](int64_t begin, int64_t end) {
    Vec<std::pair<U, int64_t>> order(L);
    for (int64_t b = begin; b < end; ++b) {
      const acc_t* s = scores + b * L;
      for (int64_t l = 0; l < L; ++l) order[l] = {sort_key(s[l], p.descending), l};
      std::sort(order.begin(), order.end());
      acc_t* t = static_cast<acc_t*>(p.sorted_scores) + b * L;
      int64_t* perm = p.perm + b * L;
      for (int64_t i = 0; i < L; ++i) {
        perm[i] = order[i].second;
        t[i] = canonical_score(s[order[i].second]);
      }
    }
  });
}

template <typename in_t, typename acc_t>
void hard_fwd(const SoftSortParams& p, const Vec<RowInfo<acc_t>>& rows, int num_threads) {
  const int64_t L = p.seqlen;
  parallel_for(p.batch * p.dim, num_threads, double(L), [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / p.dim, d = row % p.dim;
      in_t* out = static_cast<in_t*>(p.out) + row * L;
      const RowInfo<acc_t>& r = rows[b];
      if (!r.finite) {
        fill_nan_rows(out, L);
        continue;
      }
      const in_t* x = static_cast<const in_t*>(p.x) + b * p.x_batch_stride + d * p.x_dim_stride;
      for (int64_t i = 0; i < L; ++i) out[i] = x[r.perm[i]];
    }
  });
}

template <typename in_t, typename acc_t>
void scan_fwd_all(const SoftSortParams& p, const Vec<RowInfo<acc_t>>& rows, int num_threads) {
  const int64_t L = p.seqlen;
  const int64_t blocks = (p.dim + kLanes - 1) / kLanes;
  parallel_for(p.batch * blocks, num_threads, 8.0 * kLanes * L, [&](int64_t begin, int64_t end) {
    Vec<acc_t> y(L * kLanes), f(L * kLanes);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / blocks, d0 = (task % blocks) * kLanes;
      const int64_t nc = std::min(kLanes, p.dim - d0);
      if (!rows[b].finite) {
        fill_nan_rows(static_cast<in_t*>(p.out) + (b * p.dim + d0) * L, nc * L);
        continue;
      }
      scan_fwd_lanes<in_t>(p, rows[b], b, d0, nc, y.data(), f.data());
    }
  });
}

template <typename in_t, typename acc_t>
void fwd_typed(const SoftSortParams& p, int num_threads) {
  if (p.batch * p.dim * p.seqlen == 0) return;
  const Vec<RowInfo<acc_t>> rows = all_row_info<acc_t>(p, !p.hard, num_threads);
  if (p.hard)
    hard_fwd<in_t>(p, rows, num_threads);
  else if (p.p_is_one)
    scan_fwd_all<in_t>(p, rows, num_threads);
  else
    band_fwd<in_t>(p, rows, num_threads);
}

// p = 1 backward sweep over every (batch element, channel group). kPartials / kPartialsDx fill
// Q, C (batch, L); kDxScore reads dk (batch, L) and fills dw_part (batch, dim).
template <ScanBwdMode kMode, typename in_t, typename acc_t>
void scan_bwd_sweep(const SoftSortBwdParams& p, const Vec<RowInfo<acc_t>>& rows, acc_t* Q,
                    acc_t* C, const acc_t* dk, acc_t* dw_part, int num_threads) {
  const int64_t L = p.seqlen, D = p.dim;
  const Groups grp(D);
  Vec<acc_t> part;
  if (kMode != ScanBwdMode::kDxScore) part.assign(p.batch * grp.groups * 2 * L, acc_t(0));
  parallel_for(p.batch * grp.groups, num_threads, 30.0 * L * kLanes * grp.blocks_per_group,
               [&](int64_t begin, int64_t end) {
    ScanBwdScratch<acc_t> s(L);
    Vec<acc_t> ql, cl;
    if (kMode != ScanBwdMode::kDxScore) {
      ql.resize(L * kLanes);
      cl.resize(L * kLanes);
    }
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / grp.groups, g = task % grp.groups;
      const RowInfo<acc_t>& r = rows[b];
      const int64_t d_begin = grp.block_begin(g) * kLanes;
      const int64_t d_end = std::min(D, grp.block_end(g) * kLanes);
      if (!r.finite) {
        if (kMode != ScanBwdMode::kPartials)
          fill_nan_rows(static_cast<in_t*>(p.dx) + (b * D + d_begin) * L, (d_end - d_begin) * L);
        if (kMode == ScanBwdMode::kDxScore)
          std::fill(dw_part + b * D + d_begin, dw_part + b * D + d_end, nan_value<acc_t>());
        continue;
      }
      std::fill(ql.begin(), ql.end(), acc_t(0));
      std::fill(cl.begin(), cl.end(), acc_t(0));
      for (int64_t d0 = d_begin; d0 < d_end; d0 += kLanes) {
        const int64_t nc = std::min(kLanes, d_end - d0);
        acc_t* dw_row = kMode == ScanBwdMode::kDxScore ? dw_part + b * D + d0 : nullptr;
        if (dw_row) std::fill(dw_row, dw_row + nc, acc_t(0));
        scan_bwd_lanes<kMode, in_t>(p, r, b, d0, nc, s, ql.data(), cl.data(),
                                    dk ? dk + b * L : nullptr, dw_row);
      }
      if (kMode != ScanBwdMode::kDxScore) {
        acc_t* qp = part.data() + (b * grp.groups + g) * 2 * L;
        acc_t* cp = qp + L;
        for (int64_t i = 0; i < L; ++i) {
          acc_t q = 0, c = 0;
          for (int64_t l = 0; l < kLanes; ++l) {
            q += ql[i * kLanes + l];
            c += cl[i * kLanes + l];
          }
          qp[i] = q;
          cp[i] = c;
        }
      }
    }
  });
  if (kMode == ScanBwdMode::kDxScore) return;
  for (int64_t b = 0; b < p.batch; ++b)
    for (int64_t i = 0; i < L; ++i) {
      acc_t q = 0, c = 0;
      for (int64_t g = 0; g < grp.groups; ++g) {
        q += part[(b * grp.groups + g) * 2 * L + i];
        c += part[(b * grp.groups + g) * 2 * L + L + i];
      }
      Q[b * L + i] = q;
      C[b * L + i] = c;
    }
}

// dk_i = dLoss/dk_i = -( Q_i - C_i (W 1)_i - (W C)_i ), per batch element.
template <typename acc_t>
void key_gradient(const SoftSortBwdParams& p, const Vec<RowInfo<acc_t>>& rows, const acc_t* Q,
                  const acc_t* C, acc_t* dk, int num_threads) {
  const int64_t L = p.seqlen;
  const double work = p.p_is_one ? 20.0 * L : 20.0 * L * L;
  parallel_for(p.batch, num_threads, work, [&](int64_t begin, int64_t end) {
    Vec<acc_t> w1(L), wc(L), ones(L, acc_t(1));
    for (int64_t b = begin; b < end; ++b) {
      const RowInfo<acc_t>& r = rows[b];
      acc_t* out = dk + b * L;
      if (!r.finite) {
        std::fill(out, out + L, nan_value<acc_t>());
        continue;
      }
      const acc_t* q = Q + b * L;
      const acc_t* c = C + b * L;
      if (p.p_is_one) {
        strict_diff(r, L, ones.data(), w1.data());
        strict_diff(r, L, c, wc.data());
        const acc_t inv_tau = acc_t(1.0 / p.tau);
        for (int64_t i = 0; i < L; ++i) out[i] = -inv_tau * (q[i] - c[i] * w1[i] - wc[i]);
      } else {
        band_apply_w(p, r, static_cast<const acc_t*>(nullptr), w1.data());
        band_apply_w(p, r, c, wc.data());
        for (int64_t i = 0; i < L; ++i) out[i] = -(q[i] - c[i] * w1[i] - wc[i]);
      }
    }
  });
}

template <typename in_t, typename acc_t>
void bwd_typed(const SoftSortBwdParams& p, int num_threads) {
  const int64_t B = p.batch, L = p.seqlen, D = p.dim;
  const bool with_w = p.with_w;
  if (with_w) std::fill(static_cast<acc_t*>(p.dw), static_cast<acc_t*>(p.dw) + D, acc_t(0));
  if (B * L == 0) return;
  const Vec<RowInfo<acc_t>> rows = all_row_info<acc_t>(p, true, num_threads);
  const acc_t sign = p.descending ? acc_t(1) : acc_t(-1);
  Vec<acc_t> Q(B * L), C(B * L), dk(B * L), dw_part(with_w ? B * D : 0);

  if (p.p_is_one) {
    acc_t* none = nullptr;
    if (with_w)
      scan_bwd_sweep<ScanBwdMode::kPartials, in_t>(p, rows, Q.data(), C.data(), none, none,
                                                   num_threads);
    else
      scan_bwd_sweep<ScanBwdMode::kPartialsDx, in_t>(p, rows, Q.data(), C.data(), none, none,
                                                     num_threads);
    key_gradient(p, rows, Q.data(), C.data(), dk.data(), num_threads);
    if (with_w)
      scan_bwd_sweep<ScanBwdMode::kDxScore, in_t>(p, rows, none, none, dk.data(), dw_part.data(),
                                                  num_threads);
  } else {
    Vec<acc_t> Y, GH, DY;
    to_token_major<in_t>(p, rows, p.x, p.x_batch_stride, p.x_dim_stride, 1, true, false, Y,
                         num_threads);
    to_token_major<in_t>(p, rows, p.dout, p.dout_batch_stride, p.dout_dim_stride,
                         p.dout_seq_stride, false, true, GH, num_threads);
    if (p.hard)
      band_bwd_pass<false>(p, rows, Y, GH, DY, Q.data(), C.data(), num_threads);
    else
      band_bwd_pass<true>(p, rows, Y, GH, DY, Q.data(), C.data(), num_threads);
    key_gradient(p, rows, Q.data(), C.data(), dk.data(), num_threads);
    // dx[b, d, perm[i]] = dy_i (+ dscores_i w_d), dw_part[b, d] = sum_i dscores_i y_i.
    parallel_for(B * D, num_threads, 3.0 * L, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t b = row / D, d = row % D;
        const RowInfo<acc_t>& r = rows[b];
        in_t* dx = static_cast<in_t*>(p.dx) + row * L;
        const acc_t wd = with_w ? static_cast<const acc_t*>(p.w)[d] : acc_t(0);
        acc_t dw = 0;
        for (int64_t i = 0; i < L; ++i) {
          const acc_t dsi = sign * dk[b * L + i];
          // The hard mode's dx is g through the permutation (NaN where the row's scores are not
          // finite); the soft mode's is dy.
          acc_t dyi;
          if (!p.hard)
            dyi = DY[(b * L + i) * D + d];
          else if (r.finite)
            dyi = load<acc_t>(static_cast<const in_t*>(
                p.dout)[b * p.dout_batch_stride + d * p.dout_dim_stride + i * p.dout_seq_stride]);
          else
            dyi = nan_value<acc_t>();
          dx[r.perm[i]] = store<in_t>(with_w ? dyi + dsi * wd : dyi);
          if (with_w) dw += dsi * Y[(b * L + i) * D + d];
        }
        if (with_w) dw_part[row] = dw;
      }
    });
  }

  if (with_w) {
    acc_t* dw = static_cast<acc_t*>(p.dw);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t d = 0; d < D; ++d) dw[d] += dw_part[b * D + d];
  } else {
    acc_t* ds = static_cast<acc_t*>(p.dscores);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t* perm = rows[b].perm;
      for (int64_t i = 0; i < L; ++i) ds[b * L + perm[i]] = sign * dk[b * L + i];
    }
  }
}

}  // namespace softsort

// Entry points of this instruction-set variant (declared in softsort_cpu_variants.h).
#define S6KIT_SOFTSORT_DISPATCH(TYPE, ...)                                                 \
  switch (TYPE) {                                                                          \
    case DType::f32: { using in_t = float; using acc_t = float; __VA_ARGS__; break; }     \
    case DType::f16: { using in_t = f16_t; using acc_t = float; __VA_ARGS__; break; }     \
    case DType::bf16: { using in_t = bf16_t; using acc_t = float; __VA_ARGS__; break; }   \
    case DType::f64: { using in_t = double; using acc_t = double; __VA_ARGS__; break; }   \
    default: break;                                                                        \
  }

void softsort_scores(const SoftSortScoreParams& p, int num_threads) {
  S6KIT_SOFTSORT_DISPATCH(p.input_type, (softsort::scores_typed<in_t, acc_t>(p, num_threads)));
}

void softsort_rank(const SoftSortRankParams& p, int num_threads) {
  S6KIT_SOFTSORT_DISPATCH(p.input_type, (softsort::rank_typed<in_t, acc_t>(p, num_threads)));
}

void softsort_fwd(const SoftSortParams& p, int num_threads) {
  S6KIT_SOFTSORT_DISPATCH(p.input_type, (softsort::fwd_typed<in_t, acc_t>(p, num_threads)));
}

void softsort_bwd(const SoftSortBwdParams& p, int num_threads) {
  S6KIT_SOFTSORT_DISPATCH(p.input_type, (softsort::bwd_typed<in_t, acc_t>(p, num_threads)));
}

#undef S6KIT_SOFTSORT_DISPATCH

}  // namespace s6kit::cpu::S6KIT_ISA
