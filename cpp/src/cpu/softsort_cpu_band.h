// The general-p SoftSort on the CPU: K and W applied as banded sums. Keys are sorted, so the
// pairs with a nonzero weight form a band [lo_i, hi_i] around the diagonal (RowInfo); weights
// outside it are exactly 0 by definition (BandWeight), so skipping them changes nothing.
// Tokens are first gathered into sorted, token-major order (batch, L, dim) so that the inner
// loops run over contiguous channels; memory stays O(batch L dim).
// Included by softsort_cpu_impl.h inside namespace s6kit::cpu::S6KIT_ISA.
#pragma once

#include "softsort_cpu_common.h"

namespace s6kit::cpu::S6KIT_ISA {
namespace softsort {

constexpr int64_t kBandTile = 16;  // sorted positions per task

// dst[(b L + i) D + d] = src[b, d, i or perm[i]] (scaled by scale[b L + i] when given).
template <typename in_t, typename acc_t>
void to_token_major(const SoftSortParams& p, const Vec<RowInfo<acc_t>>& rows, const void* src,
                    int64_t batch_stride, int64_t dim_stride, int64_t seq_stride, bool permute,
                    bool scale_by_inv_z, Vec<acc_t>& dst, int num_threads) {
  const int64_t L = p.seqlen, D = p.dim;
  dst.resize(p.batch * L * D);
  parallel_for(p.batch * D, num_threads, 2.0 * L, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / D, d = row % D;
      const RowInfo<acc_t>& r = rows[b];
      const in_t* s = static_cast<const in_t*>(src) + b * batch_stride + d * dim_stride;
      acc_t* o = dst.data() + b * L * D + d;
      for (int64_t i = 0; i < L; ++i) {
        const int64_t j = permute ? r.perm[i] : i;
        acc_t v = load<acc_t>(s[j * seq_stride]);
        if (scale_by_inv_z) v *= r.inv_z[i];
        o[i * D] = v;
      }
    }
  });
}

template <typename in_t, typename acc_t>
void band_fwd(const SoftSortParams& p, const Vec<RowInfo<acc_t>>& rows, int num_threads) {
  const int64_t L = p.seqlen, D = p.dim;
  Vec<acc_t> Y;
  to_token_major<in_t>(p, rows, p.x, p.x_batch_stride, p.x_dim_stride, 1, true, false, Y,
                       num_threads);
  const BandWeight<acc_t> wt = band_weight<acc_t>(p);
  const int64_t tiles = (L + kBandTile - 1) / kBandTile;
  parallel_for(p.batch * tiles, num_threads, double(L) * D, [&](int64_t begin, int64_t end) {
    Vec<acc_t> acc(kBandTile * D);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, i0 = (task % tiles) * kBandTile;
      const int64_t n = std::min(kBandTile, L - i0);
      const RowInfo<acc_t>& r = rows[b];
      in_t* out = static_cast<in_t*>(p.out) + b * D * L + i0;
      if (!r.finite) {
        for (int64_t d = 0; d < D; ++d) fill_nan_rows(out + d * L, n);
        continue;
      }
      const acc_t* Yb = Y.data() + b * L * D;
      for (int64_t ii = 0; ii < n; ++ii) {
        const int64_t i = i0 + ii;
        acc_t* a = acc.data() + ii * D;
        std::fill(a, a + D, acc_t(0));
        for (int64_t j = r.lo[i]; j <= r.hi[i]; ++j) {
          const acc_t k = wt.k(key_dist(r.key.data(), i, j));
          const acc_t* yj = Yb + j * D;
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) a[d] += k * yj[d];
        }
      }
      for (int64_t d = 0; d < D; ++d)
        for (int64_t ii = 0; ii < n; ++ii)
          out[d * L + ii] = store<in_t>(acc[ii * D + d] * r.inv_z[i0 + ii]);
    }
  });
}

// First pass of the general-p backward. Per position i (sorted):
//   dy_i = (K gh)_i,  Q_i = sum_d gh_i (W y)_i + y_i (W gh)_i,  C_i = sum_d gh_i (K y)_i / Z_i.
// dy goes to DY (batch, L, dim) when kDy (the hard mode's dx is g itself: it needs no dy); Q and C
// to (batch, L).
template <bool kDy, typename acc_t>
void band_bwd_pass(const SoftSortParams& p, const Vec<RowInfo<acc_t>>& rows, const Vec<acc_t>& Y,
                   const Vec<acc_t>& GH, Vec<acc_t>& DY, acc_t* Q, acc_t* C, int num_threads) {
  const int64_t L = p.seqlen, D = p.dim;
  const BandWeight<acc_t> wt = band_weight<acc_t>(p);
  const int64_t tiles = (L + kBandTile - 1) / kBandTile;
  if (kDy) DY.resize(p.batch * L * D);
  parallel_for(p.batch * tiles, num_threads, 4.0 * L * D, [&](int64_t begin, int64_t end) {
    Vec<acc_t> wy(D), wg(D), ky(D);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles, i0 = (task % tiles) * kBandTile;
      const int64_t n = std::min(kBandTile, L - i0);
      const RowInfo<acc_t>& r = rows[b];
      if (!r.finite) {
        if (kDy)
          std::fill(DY.data() + (b * L + i0) * D, DY.data() + (b * L + i0 + n) * D,
                    nan_value<acc_t>());
        std::fill(Q + b * L + i0, Q + b * L + i0 + n, nan_value<acc_t>());
        std::fill(C + b * L + i0, C + b * L + i0 + n, nan_value<acc_t>());
        continue;
      }
      const acc_t* Yb = Y.data() + b * L * D;
      const acc_t* Gb = GH.data() + b * L * D;
      for (int64_t ii = 0; ii < n; ++ii) {
        const int64_t i = i0 + ii;
        acc_t* dy = kDy ? DY.data() + (b * L + i) * D : nullptr;
        if (kDy) std::fill(dy, dy + D, acc_t(0));
        std::fill(wy.begin(), wy.end(), acc_t(0));
        std::fill(wg.begin(), wg.end(), acc_t(0));
        std::fill(ky.begin(), ky.end(), acc_t(0));
        for (int64_t j = r.lo[i]; j <= r.hi[i]; ++j) {
          acc_t k, w;
          wt.kw(key_dist(r.key.data(), i, j), k, w);
          if (j < i) w = -w;  // sign(k_i - k_j): keys before i are larger
          const acc_t* yj = Yb + j * D;
          const acc_t* gj = Gb + j * D;
          if (kDy) {
#pragma omp simd
            for (int64_t d = 0; d < D; ++d) dy[d] += k * gj[d];
          }
#pragma omp simd
          for (int64_t d = 0; d < D; ++d) {
            ky[d] += k * yj[d];
            wy[d] += w * yj[d];
            wg[d] += w * gj[d];
          }
        }
        const acc_t* yi = Yb + i * D;
        const acc_t* gi = Gb + i * D;
        acc_t q = 0, c = 0;
#pragma omp simd reduction(+ : q, c)
        for (int64_t d = 0; d < D; ++d) {
          q += gi[d] * wy[d] + yi[d] * wg[d];
          c += gi[d] * ky[d];
        }
        Q[b * L + i] = q;
        C[b * L + i] = c * r.inv_z[i];
      }
    }
  });
}

// tau-free W applied to a scalar sequence: out_i = sum_j W_ij v_j (v = null: v = 1).
template <typename acc_t>
void band_apply_w(const SoftSortParams& p, const RowInfo<acc_t>& r, const acc_t* v, acc_t* out) {
  const BandWeight<acc_t> wt = band_weight<acc_t>(p);
  for (int64_t i = 0; i < p.seqlen; ++i) {
    acc_t acc = 0;
    for (int64_t j = r.lo[i]; j <= r.hi[i]; ++j) {
      acc_t k, w;
      wt.kw(key_dist(r.key.data(), i, j), k, w);
      if (j < i) w = -w;
      acc += w * (v ? v[j] : acc_t(1));
    }
    out[i] = acc;
  }
}

}  // namespace softsort
}  // namespace s6kit::cpu::S6KIT_ISA
