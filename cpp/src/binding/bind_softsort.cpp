// Binding of the SoftSort reordering and importance scoring: descriptors in, kernels run on the
// caller's buffers.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>

#include <algorithm>

#include "desc.h"
#include "s6kit/softsort.h"

namespace s6kit::bind {
namespace {

constexpr const char* kOp = "soft_permute";

SoftSortInputs inputs(const char* op, py::handle x, py::handle sorted_scores, py::handle perm,
                      double tau, double p, bool hard, bool descending) {
  SoftSortInputs in;
  in.x = to_desc(op, "x", x);
  in.sorted_scores = to_desc(op, "sorted_scores", sorted_scores);
  in.perm = to_desc(op, "perm", perm);
  in.tau = tau;
  in.p = p;
  in.hard = hard;
  in.descending = descending;
  in.op = op;
  return in;
}

// The forward in one call: the ranking (scores from w when given, the stable sort) into
// sorted_scores and perm, then the reordering into out. One workspace serves both (they run one
// after the other on the stream).
void fwd(py::handle x, py::handle scores, py::handle w, py::handle out, py::handle sorted_scores,
         py::handle perm, double tau, double p_exp, bool hard, bool descending,
         const py::function& alloc, uintptr_t stream, int num_threads) {
  const char* op = w.is_none() ? kOp : "score_and_permute";
  const OptionalDesc os(op, "scores", scores), ow(op, "w", w);
  const SoftSortInputs in = inputs(op, x, sorted_scores, perm, tau, p_exp, hard, descending);
  SoftSortRankParams rp =
      make_softsort_rank_params(op, in.x, os.ptr(), ow.ptr(), in.sorted_scores, in.perm, descending);
  SoftSortParams fp = make_softsort_params(in, to_desc(op, "out", out));
  const int64_t bytes = std::max(softsort_rank_workspace_bytes(rp), softsort_fwd_workspace_bytes(fp));
  void* ws = alloc_workspace(op, alloc, bytes);
  rp.workspace = fp.workspace = ws;
  rp.workspace_bytes = fp.workspace_bytes = bytes;
  py::gil_scoped_release release;
  softsort_rank(rp, reinterpret_cast<void*>(stream), num_threads);
  softsort_fwd(fp, reinterpret_cast<void*>(stream), num_threads);
}

void bwd(py::handle x, py::handle sorted_scores, py::handle perm, py::handle dout, py::handle dx,
         py::handle dscores, py::handle w, py::handle dw, double tau, double p_exp, bool hard,
         bool descending, const py::function& alloc, uintptr_t stream, int num_threads) {
  const char* op = w.is_none() ? kOp : "score_and_permute";
  const OptionalDesc ods(op, "dscores", dscores), ow(op, "w", w), odw(op, "dw", dw);
  SoftSortGrads g;
  g.dout = to_desc(op, "dout", dout);
  g.dx = to_desc(op, "dx", dx);
  g.dscores = ods.ptr();
  g.w = ow.ptr();
  g.dw = odw.ptr();
  SoftSortBwdParams p = make_softsort_bwd_params(
      inputs(op, x, sorted_scores, perm, tau, p_exp, hard, descending), g);
  p.workspace_bytes = softsort_bwd_workspace_bytes(p);
  p.workspace = alloc_workspace(op, alloc, p.workspace_bytes);
  py::gil_scoped_release release;
  softsort_bwd(p, reinterpret_cast<void*>(stream), num_threads);
}

}  // namespace

void bind_softsort(py::module_& m) {
  m.def("softsort_fwd", &fwd,
        "SoftSort forward on descriptors: ranking and reordering (see s6kit.ops.softsort)",
        py::arg("x"), py::arg("scores"), py::arg("w"), py::arg("out"), py::arg("sorted_scores"),
        py::arg("perm"), py::arg("tau"), py::arg("p"), py::arg("hard"), py::arg("descending"),
        py::arg("alloc"), py::arg("stream"), py::arg("num_threads"));
  m.def("softsort_bwd", &bwd, "SoftSort reordering backward on descriptors (see s6kit.ops.softsort)",
        py::arg("x"), py::arg("sorted_scores"), py::arg("perm"), py::arg("dout"), py::arg("dx"),
        py::arg("dscores"), py::arg("w"), py::arg("dw"), py::arg("tau"), py::arg("p"),
        py::arg("hard"), py::arg("descending"), py::arg("alloc"), py::arg("stream"), py::arg("num_threads"));
}

}  // namespace s6kit::bind
