// Validates the SoftSort descriptors and fills SoftSortParams / SoftSortBwdParams /
// SoftSortScoreParams.
#include <cmath>
#include <limits>
#include <string>

#include "s6kit/check.h"
#include "s6kit/softsort.h"

namespace s6kit {
namespace {

constexpr const char* kScoreOp = "score_and_permute";

DType acc_type_of(DType input) { return input == DType::f64 ? DType::f64 : DType::f32; }

// x: (batch, dim, L) floating point, stride 1 along L; float64 only on the CPU.
void check_tokens(const Checker& ck, const TensorDesc& x, const char* arg) {
  ck.ndim(x, arg, 3);
  ck.require(is_floating(x.dtype), arg,
             std::string("must be float32, float16, bfloat16 or float64, got ") +
                 dtype_name(x.dtype));
  if (x.device == Device::cuda && x.dtype == DType::f64)
    ck.fail(arg, "is float64 on a CUDA device: float64 runs on the CPU only");
  ck.unit_last_stride(x, arg);
  ck.data(x, arg);
  ck.require(x.shape[2] <= std::numeric_limits<int32_t>::max(), arg,
             "has more than 2^31 - 1 tokens (L)");
  if (x.device == Device::cuda)
    ck.require(x.shape[0] <= 65535 && x.shape[1] <= std::numeric_limits<int32_t>::max(), arg,
               "has more than 65535 batch elements (a CUDA grid dimension) or 2^31 - 1 channels, got " +
                   x.shape_str());
}

void check_dense(const Checker& ck, const TensorDesc& t, const char* arg,
                 std::initializer_list<int64_t> shape, const char* names, DType dtype,
                 const char* why, const TensorDesc& ref, const char* ref_arg) {
  ck.shape(t, arg, shape, names);
  ck.dtype(t, arg, dtype, why);
  if (t.numel() > 0) ck.contiguous(t, arg);  // empty tensors have arbitrary strides
  ck.same_device(t, arg, ref, ref_arg);
  ck.data(t, arg);
}

// The token fields every SoftSort parameter struct shares, from x (batch, dim, L).
template <typename Params>
void set_tokens(Params& p, const TensorDesc& x) {
  p.batch = x.shape[0];
  p.dim = x.shape[1];
  p.seqlen = x.shape[2];
  p.input_type = x.dtype;
  p.acc_type = acc_type_of(x.dtype);
  p.device = x.device;
  p.device_index = x.device_index;
  p.x = x.data;
  p.x_batch_stride = x.strides[0];
  p.x_dim_stride = x.strides[1];
}

const char* scores_dtype_reason(DType acc) {
  return acc == DType::f64 ? " (float64 tokens take float64 scores)" : " (scores are sorted in float32)";
}

void check_hyper(const Checker& ck, double tau, double p) {
  if (!(tau > 0) || !std::isfinite(tau))
    ck.fail("tau", "must be a finite number > 0, got " + std::to_string(tau));
  if (!(p > 0) || !std::isfinite(p))
    ck.fail("p", "must be a finite number > 0, got " + std::to_string(p));
}

SoftSortParams check_inputs(const Checker& ck, const SoftSortInputs& in) {
  const TensorDesc& x = in.x;
  check_tokens(ck, x, "x");
  check_hyper(ck, in.tau, in.p);

  SoftSortParams p;
  set_tokens(p, x);
  p.tau = in.tau;
  p.p = in.p;
  p.p_is_one = in.p == 1.0;
  const double cut = x.dtype == DType::f64 ? kSoftSortCutF64 : kSoftSortCutF32;
  p.band_radius = std::pow(cut * in.tau, 1.0 / in.p);
  p.hard = in.hard;
  p.descending = in.descending;

  const char* why = scores_dtype_reason(p.acc_type);
  check_dense(ck, in.sorted_scores, "sorted_scores", {p.batch, p.seqlen}, "(batch, L)",
              p.acc_type, why, x, "x");
  check_dense(ck, in.perm, "perm", {p.batch, p.seqlen}, "(batch, L)", DType::i64,
              " (the stable argsort of the scores)", x, "x");
  p.sorted_scores = in.sorted_scores.data;
  p.perm = static_cast<const int64_t*>(in.perm.data);
  return p;
}

}  // namespace

SoftSortParams make_softsort_params(const SoftSortInputs& in, const TensorDesc& out) {
  Checker ck(in.op);
  SoftSortParams p = check_inputs(ck, in);
  check_dense(ck, out, "out", {p.batch, p.dim, p.seqlen}, "(batch, dim, L)", p.input_type,
              " (the dtype of 'x')", in.x, "x");
  p.out = out.data;
  return p;
}

SoftSortBwdParams make_softsort_bwd_params(const SoftSortInputs& in, const SoftSortGrads& g) {
  Checker ck(in.op);
  SoftSortBwdParams p;
  static_cast<SoftSortParams&>(p) = check_inputs(ck, in);

  ck.shape(g.dout, "dout", {p.batch, p.dim, p.seqlen}, "(batch, dim, L)");
  ck.dtype(g.dout, "dout", p.input_type, " (the dtype of 'x')");
  ck.same_device(g.dout, "dout", in.x, "x");
  ck.data(g.dout, "dout");
  p.dout = g.dout.data;
  p.dout_batch_stride = g.dout.strides[0];
  p.dout_dim_stride = g.dout.strides[1];
  p.dout_seq_stride = g.dout.strides[2];

  check_dense(ck, g.dx, "dx", {p.batch, p.dim, p.seqlen}, "(batch, dim, L)", p.input_type,
              " (the dtype of 'x')", in.x, "x");
  p.dx = g.dx.data;

  if (g.w) {
    ck.require(g.dw != nullptr, "dw", "is required with 'w'");
    ck.require(g.dscores == nullptr, "dscores", "must be absent with 'w' (scores are internal)");
    check_dense(ck, *g.w, "w", {p.dim}, "(dim,)", p.acc_type, " (the scoring weights)", in.x,
                "x");
    check_dense(ck, *g.dw, "dw", {p.dim}, "(dim,)", p.acc_type, " (the dtype of 'w')", in.x,
                "x");
    p.with_w = true;
    p.w = g.w->data;
    p.dw = g.dw->data;
  } else {
    ck.require(g.dscores != nullptr, "dscores", "is required without 'w'");
    check_dense(ck, *g.dscores, "dscores", {p.batch, p.seqlen}, "(batch, L)", p.acc_type,
                " (the dtype of 'sorted_scores')", in.x, "x");
    p.dscores = g.dscores->data;
  }
  return p;
}

SoftSortScoreParams make_softsort_score_params(const TensorDesc& x, const TensorDesc& w,
                                               const TensorDesc& scores) {
  Checker ck(kScoreOp);
  check_tokens(ck, x, "x");
  SoftSortScoreParams p;
  set_tokens(p, x);
  check_dense(ck, w, "w", {p.dim}, "(dim,)", p.acc_type, " (the scoring weights)", x, "x");
  check_dense(ck, scores, "scores", {p.batch, p.seqlen}, "(batch, L)", p.acc_type,
              " (scores are accumulated in float32, float64 for float64 tokens)", x, "x");
  p.w = w.data;
  p.scores = scores.data;
  return p;
}

SoftSortRankParams make_softsort_rank_params(const char* op, const TensorDesc& x, OptDesc scores,
                                             OptDesc w, const TensorDesc& sorted_scores,
                                             const TensorDesc& perm, bool descending) {
  Checker ck(op);
  check_tokens(ck, x, "x");
  SoftSortRankParams p;
  set_tokens(p, x);
  p.descending = descending;
  const char* why = scores_dtype_reason(p.acc_type);
  if ((scores == nullptr) == (w == nullptr))
    ck.fail("scores", "or 'w': exactly one of them must be given");
  if (w) {
    check_dense(ck, *w, "w", {p.dim}, "(dim,)", p.acc_type, " (the scoring weights)", x, "x");
    p.with_w = true;
    p.w = w->data;
  } else {
    check_dense(ck, *scores, "scores", {p.batch, p.seqlen}, "(batch, L)", p.acc_type, why, x,
                "x");
    p.scores = scores->data;
  }
  check_dense(ck, sorted_scores, "sorted_scores", {p.batch, p.seqlen}, "(batch, L)", p.acc_type,
              why, x, "x");
  check_dense(ck, perm, "perm", {p.batch, p.seqlen}, "(batch, L)", DType::i64,
              " (the stable argsort of the scores)", x, "x");
  if (x.device == Device::cuda)
    ck.require(p.batch * p.seqlen < (int64_t(1) << 31), "x",
               "has more than 2^31 - 1 tokens in all (batch * L) on CUDA, got " + x.shape_str());
  p.sorted_scores = sorted_scores.data;
  p.perm = static_cast<int64_t*>(perm.data);
  return p;
}

}  // namespace s6kit
