// C++ benchmark of the CPU SoftSort (no Python): scores, sort, forward and backward of
// score_and_permute, and the backward of soft_permute.
//
//   softsort_cpu_bench [--shape=batch,L,dim] [--threads=2] [--p=1] [--tau=1] [--reps=10]
//
// float32 tokens, w with scores of unit scale, ascending order (the paper's); the backward's
// incoming gradient is random (not the broadcast gradient of a sum).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include "bench_util.h"
#include "s6kit/softsort.h"

using namespace s6kit;
using namespace s6kit::bench;

int main(int argc, char** argv) {
  const auto shape = parse_shape(flag(argc, argv, "shape", "8,1024,256"));
  if (shape.size() != 3) {
    std::fprintf(stderr, "--shape takes batch,L,dim\n");
    return 2;
  }
  const int64_t B = shape[0], L = shape[1], D = shape[2];
  const int threads = std::stoi(flag(argc, argv, "threads", "2"));
  const double p_exp = std::stod(flag(argc, argv, "p", "1"));
  const double tau = std::stod(flag(argc, argv, "tau", "1"));
  const int reps = std::stoi(flag(argc, argv, "reps", "10"));

  auto x = randn(B * D * L, 1, 0, 1), g = randn(B * D * L, 1, 0, 2);
  auto w = randn(D, 1.0f / std::sqrt(float(D)), 0, 3);
  std::vector<float> scores(B * L), t(B * L), out(B * D * L), dx(B * D * L), ds(B * L), dw(D);
  std::vector<int64_t> perm(B * L);

  const TensorDesc xd = make_desc(x.data(), DType::f32, {B, D, L});
  const SoftSortScoreParams sp = make_softsort_score_params(
      xd, make_desc(w.data(), DType::f32, {D}), make_desc(scores.data(), DType::f32, {B, L}));
  auto sort = [&] {  // ascending, stable
    for (int64_t b = 0; b < B; ++b) {
      int64_t* pb = perm.data() + b * L;
      const float* sb = scores.data() + b * L;
      std::iota(pb, pb + L, 0);
      std::stable_sort(pb, pb + L, [&](int64_t i, int64_t j) { return sb[i] < sb[j]; });
      for (int64_t i = 0; i < L; ++i) t[b * L + i] = sb[pb[i]];
    }
  };
  softsort_scores(sp, nullptr, threads);
  sort();

  SoftSortInputs in;
  in.x = xd;
  in.sorted_scores = make_desc(t.data(), DType::f32, {B, L});
  in.perm = make_desc(perm.data(), DType::i64, {B, L});
  in.tau = tau;
  in.p = p_exp;
  in.descending = false;
  const SoftSortParams fp = make_softsort_params(in, make_desc(out.data(), DType::f32, {B, D, L}));

  const TensorDesc wd = make_desc(w.data(), DType::f32, {D}), dwd = make_desc(dw.data(), DType::f32, {D});
  const TensorDesc dsd = make_desc(ds.data(), DType::f32, {B, L});
  SoftSortGrads gs;  // score_and_permute
  gs.dout = make_desc(g.data(), DType::f32, {B, D, L});
  gs.dx = make_desc(dx.data(), DType::f32, {B, D, L});
  gs.w = &wd;
  gs.dw = &dwd;
  const SoftSortBwdParams bp_score = make_softsort_bwd_params(in, gs);
  SoftSortGrads gp = gs;  // soft_permute
  gp.w = gp.dw = nullptr;
  gp.dscores = &dsd;
  const SoftSortBwdParams bp_perm = make_softsort_bwd_params(in, gp);

  const double t_scores = median_ms([&] { softsort_scores(sp, nullptr, threads); }, 1, reps);
  const double t_sort = median_ms(sort, 1, reps);
  const double t_fwd = median_ms([&] { softsort_fwd(fp, nullptr, threads); }, 1, reps);
  const double t_bwd = median_ms([&] { softsort_bwd(bp_score, nullptr, threads); }, 1, reps);
  const double t_bwd_perm = median_ms([&] { softsort_bwd(bp_perm, nullptr, threads); }, 1, reps);
  const double elems = double(B) * D * L;
  std::printf("softsort_cpu_bench shape=(batch %ld, L %ld, dim %ld) threads=%d p=%g tau=%g float32\n",
              long(B), long(L), long(D), threads, p_exp, tau);
  std::printf("  scores                  %9.3f ms\n", t_scores);
  std::printf("  sort (std::stable_sort) %9.3f ms\n", t_sort);
  std::printf("  forward (reorder)       %9.3f ms  (%.2f ns per token element per thread)\n", t_fwd,
              t_fwd * 1e6 * threads / elems);
  std::printf("  backward score_and_permute %6.3f ms  (%.2f ns per token element per thread)\n",
              t_bwd, t_bwd * 1e6 * threads / elems);
  std::printf("  backward soft_permute   %9.3f ms\n", t_bwd_perm);
  std::printf("  score_and_permute fwd + bwd %5.3f ms\n", t_scores + t_sort + t_fwd + t_bwd);
  return 0;
}
