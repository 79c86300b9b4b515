// The p = 1 SoftSort on the CPU: K and W applied through one-sided scans along the sorted order,
// O(L) per channel, vectorised over kLanes channels (DESIGN.md, "Importance scoring and
// SoftSort").
//
// With a_i = exp(-(k_{i-1} - k_i) / tau) (keys k non-increasing; multipliers encoded as in
// softsort_cpu_common.h):
//   IL_i = a_i IL_{i-1} + v_i                 sum over j <= i of K_ij v_j
//   IR_i = a_{i+1} IR_{i+1} + v_i             sum over j >= i
//   (K v)_i = IL_i + a_{i+1} IR_{i+1}
//   SL_i = SL_{i-1} if k_i == k_{i-1}, else a_i IL_{i-1}     sum over j with k_j > k_i
//   SR_i = SR_{i+1} if k_i == k_{i+1}, else a_{i+1} IR_{i+1}  sum over j with k_j < k_i
//   tau (W v)_i = SR_i - SL_i                 (exact ties contribute nothing)
// Included by softsort_cpu_impl.h inside namespace s6kit::cpu::S6KIT_ISA.
#pragma once

#include "softsort_cpu_common.h"

namespace s6kit::cpu::S6KIT_ISA {
namespace softsort {

// out_i = SR_i - SL_i of one scalar sequence v (length L).
template <typename acc_t>
void strict_diff(const RowInfo<acc_t>& r, int64_t L, const acc_t* v, acc_t* out) {
  const acc_t* a = r.decay.data();
  acc_t il = 0, sl = 0;
  for (int64_t i = 0; i < L; ++i) {
    if (!r.tie[i]) sl = mul_scale(a[i], il);
    il = mul_apply(a[i], il, v[i]);
    out[i] = -sl;
  }
  acc_t ir = 0, sr = 0;
  for (int64_t i = L - 1; i >= 0; --i) {
    const acc_t an = i + 1 < L ? a[i + 1] : kMulZero<acc_t>;
    const bool tn = i + 1 < L && r.tie[i + 1];
    if (!tn) sr = mul_scale(an, ir);
    ir = mul_apply(an, ir, v[i]);
    out[i] += sr;
  }
}

// Forward of kLanes channels d0 .. d0 + nc: out = K y / Z, written in sorted order.
template <typename in_t, typename acc_t>
void scan_fwd_lanes(const SoftSortParams& p, const RowInfo<acc_t>& r, int64_t b, int64_t d0,
                    int64_t nc, acc_t* y, acc_t* f) {
  constexpr int64_t V = kLanes;
  const int64_t L = p.seqlen;
  gather_lanes<in_t>(p, r.perm, b, d0, nc, y);
  const acc_t* a = r.decay.data();
  Lane<acc_t> acc = {};
  for (int64_t i = 0; i < L; ++i) {
    acc = mul_apply(a[i], acc, lane_load(y + i * V));
    lane_store(f + i * V, acc);
  }
  Lane<acc_t> g = {};
  for (int64_t i = L - 1; i >= 0; --i) {
    lane_store(f + i * V, (lane_load(f + i * V) + g) * r.inv_z[i]);
    g = mul_scale(a[i], g + lane_load(y + i * V));
  }
  store_lanes<in_t>(static_cast<in_t*>(p.out) + (b * p.dim + d0) * L, L, nc, f);
}

// What one backward sweep over a channel block produces.
enum class ScanBwdMode {
  kPartials,    // only the per-position sums Q_i, C_i (score_and_permute, first pass)
  kPartialsDx,  // Q_i, C_i and dx (soft_permute)
  kDxScore,     // dx = K gh (unpermuted) + dscores * w and dw (score_and_permute, second pass)
};

template <typename acc_t>
struct ScanBwdScratch {
  Vec<acc_t> y, gh, ily, sly, ilg, slg;
  explicit ScanBwdScratch(int64_t L)
      : y(L * kLanes), gh(L * kLanes), ily(L * kLanes), sly(L * kLanes), ilg(L * kLanes),
        slg(L * kLanes) {}
};

// One channel block d0 .. d0 + nc of the backward. q_lanes / c_lanes (L x kLanes) accumulate
//   q_i = gh_i (SR - SL)[y]_i + y_i (SR - SL)[gh]_i   and   c_i = gh_i out_i;
// dk (kDxScore) holds dLoss/dk of this element in sorted order; dw_row[c] receives
// sum_i dscores_i y_i for channel d0 + c.
template <ScanBwdMode kMode, typename in_t, typename acc_t>
void scan_bwd_lanes(const SoftSortBwdParams& p, const RowInfo<acc_t>& r, int64_t b, int64_t d0,
                    int64_t nc, ScanBwdScratch<acc_t>& s, acc_t* q_lanes, acc_t* c_lanes,
                    const acc_t* dk, acc_t* dw_row) {
  constexpr int64_t V = kLanes;
  constexpr bool kScores = kMode != ScanBwdMode::kDxScore;
  const int64_t L = p.seqlen;
  const acc_t* a = r.decay.data();
  acc_t* y = s.y.data();
  acc_t* gh = s.gh.data();
  gather_lanes<in_t>(p, r.perm, b, d0, nc, y);
  {
    const in_t* g = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride;
    for (int64_t c = nc; c < V; ++c)
      for (int64_t i = 0; i < L; ++i) gh[i * V + c] = 0;
    for (int64_t c = 0; c < nc; ++c) {
      const in_t* row = g + (d0 + c) * p.dout_dim_stride;
      for (int64_t i = 0; i < L; ++i)
        gh[i * V + c] = load<acc_t>(row[i * p.dout_seq_stride]) * r.inv_z[i];
    }
  }

  // Left sweep: inclusive and strict sums of y and gh.
  {
    Lane<acc_t> ily = {}, sly = {}, ilg = {}, slg = {};
    for (int64_t i = 0; i < L; ++i) {
      const acc_t ai = a[i];
      if (kScores) {
        if (!r.tie[i]) {
          sly = mul_scale(ai, ily);
          slg = mul_scale(ai, ilg);
        }
        ily = mul_apply(ai, ily, lane_load(y + i * V));
        lane_store(s.sly.data() + i * V, sly);
        lane_store(s.slg.data() + i * V, slg);
        lane_store(s.ily.data() + i * V, ily);
      }
      ilg = mul_apply(ai, ilg, lane_load(gh + i * V));
      lane_store(s.ilg.data() + i * V, ilg);
    }
  }

  // Right sweep, with the results at every position.
  Lane<acc_t> iry = {}, sry = {}, irg = {}, srg = {};
  const acc_t sign = p.descending ? acc_t(1) : acc_t(-1);
  in_t* dx = static_cast<in_t*>(p.dx) + (b * p.dim + d0) * L;
  const acc_t* w = kMode == ScanBwdMode::kDxScore ? static_cast<const acc_t*>(p.w) + d0 : nullptr;
  for (int64_t i = L - 1; i >= 0; --i) {
    const acc_t an = i + 1 < L ? a[i + 1] : kMulZero<acc_t>;
    const bool tn = i + 1 < L && r.tie[i + 1];
    const Lane<acc_t> yi = lane_load(y + i * V), gi = lane_load(gh + i * V);
    const Lane<acc_t> ry = mul_scale(an, iry), rg = mul_scale(an, irg);  // sums over j > i
    acc_t dy[V];
    lane_store(dy, lane_load(s.ilg.data() + i * V) + rg);
    irg = rg + gi;
    if (kScores) {
      if (!tn) {
        sry = ry;
        srg = rg;
      }
      const Lane<acc_t> out = (lane_load(s.ily.data() + i * V) + ry) * r.inv_z[i];
      iry = ry + yi;
      lane_store(q_lanes + i * V, lane_load(q_lanes + i * V) +
                                      gi * (sry - lane_load(s.sly.data() + i * V)) +
                                      yi * (srg - lane_load(s.slg.data() + i * V)));
      lane_store(c_lanes + i * V, lane_load(c_lanes + i * V) + gi * out);
    }
    if (kMode != ScanBwdMode::kPartials && p.hard) {  // dx is the adjoint of the permutation
      const in_t* g = static_cast<const in_t*>(p.dout) + b * p.dout_batch_stride +
                      d0 * p.dout_dim_stride + i * p.dout_seq_stride;
      for (int64_t c = 0; c < nc; ++c) dy[c] = load<acc_t>(g[c * p.dout_dim_stride]);
    }
    in_t* dxi = dx + r.perm[i];
    if (kMode == ScanBwdMode::kDxScore) {
      const acc_t dsi = sign * dk[i];
      for (int64_t c = 0; c < nc; ++c) {
        dxi[c * L] = store<in_t>(dy[c] + dsi * w[c]);
        dw_row[c] += dsi * y[i * V + c];
      }
    } else if (kMode == ScanBwdMode::kPartialsDx) {
      for (int64_t c = 0; c < nc; ++c) dxi[c * L] = store<in_t>(dy[c]);
    }
  }
}

}  // namespace softsort
}  // namespace s6kit::cpu::S6KIT_ISA
