// Binding of the SoftSort reordering and importance scoring: descriptors in, kernels run on the
// caller's buffers.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>

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
  return in;
}

// Scratch from the caller's allocator (its device, its stream), kept alive by the caller.
void* workspace(const char* op, const py::function& alloc, int64_t bytes) {
  if (bytes <= 0) return nullptr;
  return to_desc(op, "workspace", alloc(bytes)).data;
}

void scores(py::handle x, py::handle w, py::handle s, uintptr_t stream, int num_threads) {
  const char* op = "score_and_permute";
  const SoftSortScoreParams p =
      make_softsort_score_params(to_desc(op, "x", x), to_desc(op, "w", w), to_desc(op, "scores", s));
  py::gil_scoped_release release;
  softsort_scores(p, reinterpret_cast<void*>(stream), num_threads);
}

void fwd(py::handle x, py::handle sorted_scores, py::handle perm, py::handle out, double tau,
         double p_exp, bool hard, bool descending, const py::function& alloc, uintptr_t stream,
         int num_threads) {
  SoftSortParams p = make_softsort_params(
      inputs(kOp, x, sorted_scores, perm, tau, p_exp, hard, descending), to_desc(kOp, "out", out));
  p.workspace_bytes = softsort_fwd_workspace_bytes(p);
  p.workspace = workspace(kOp, alloc, p.workspace_bytes);
  py::gil_scoped_release release;
  softsort_fwd(p, reinterpret_cast<void*>(stream), num_threads);
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
  p.workspace = workspace(op, alloc, p.workspace_bytes);
  py::gil_scoped_release release;
  softsort_bwd(p, reinterpret_cast<void*>(stream), num_threads);
}

}  // namespace

void bind_softsort(py::module_& m) {
  m.def("softsort_scores", &scores, "Importance scores s = x . w on descriptors (see s6kit.ops.softsort)",
        py::arg("x"), py::arg("w"), py::arg("scores"), py::arg("stream"), py::arg("num_threads"));
  m.def("softsort_fwd", &fwd, "SoftSort reordering forward on descriptors (see s6kit.ops.softsort)",
        py::arg("x"), py::arg("sorted_scores"), py::arg("perm"), py::arg("out"), py::arg("tau"),
        py::arg("p"), py::arg("hard"), py::arg("descending"), py::arg("alloc"), py::arg("stream"),
        py::arg("num_threads"));
  m.def("softsort_bwd", &bwd, "SoftSort reordering backward on descriptors (see s6kit.ops.softsort)",
        py::arg("x"), py::arg("sorted_scores"), py::arg("perm"), py::arg("dout"), py::arg("dx"),
        py::arg("dscores"), py::arg("w"), py::arg("dw"), py::arg("tau"), py::arg("p"),
        py::arg("hard"), py::arg("descending"), py::arg("alloc"), py::arg("stream"), py::arg("num_threads"));
}

}  // namespace s6kit::bind
