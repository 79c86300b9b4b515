// Binding of the selective scan: descriptors in, kernels run on the caller's buffers.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>

#include "desc.h"
#include "s6kit/scan.h"

namespace s6kit::bind {
namespace {

constexpr const char* kOp = "selective_scan";

ScanInputs scan_inputs(py::handle u, py::handle delta, py::handle A, py::handle B, py::handle C,
                       const OptionalDesc& D, const OptionalDesc& z,
                       const OptionalDesc& delta_bias, const OptionalDesc& initial_state,
                       const OptionalDesc& checkpoints, bool delta_softplus) {
  ScanInputs in;
  in.u = to_desc(kOp, "u", u);
  in.delta = to_desc(kOp, "delta", delta);
  in.A = to_desc(kOp, "A", A);
  in.B = to_desc(kOp, "B", B);
  in.C = to_desc(kOp, "C", C);
  in.D = D.ptr();
  in.z = z.ptr();
  in.delta_bias = delta_bias.ptr();
  in.initial_state = initial_state.ptr();
  in.checkpoints = checkpoints.ptr();
  in.delta_softplus = delta_softplus;
  return in;
}

void set_workspace(ScanParams& p, int64_t bytes, const py::function& alloc) {
  p.workspace_bytes = bytes;
  p.workspace = alloc_workspace(kOp, alloc, bytes);
}

void fwd(py::handle u, py::handle delta, py::handle A, py::handle B, py::handle C, py::handle D,
         py::handle z, py::handle delta_bias, py::handle initial_state, py::handle out,
         py::handle last_state, py::handle checkpoints, bool delta_softplus, const py::function& alloc,
         uintptr_t stream, int num_threads) {
  const OptionalDesc oD(kOp, "D", D), oz(kOp, "z", z), odb(kOp, "delta_bias", delta_bias),
      oh0(kOp, "initial_state", initial_state), ock(kOp, "checkpoints", checkpoints);
  const ScanInputs in = scan_inputs(u, delta, A, B, C, oD, oz, odb, oh0, ock, delta_softplus);
  ScanParams p = make_scan_params(in, to_desc(kOp, "out", out), to_desc(kOp, "last_state", last_state));
  set_workspace(p, scan_fwd_workspace_bytes(p), alloc);
  py::gil_scoped_release release;
  scan_fwd(p, reinterpret_cast<void*>(stream), num_threads);
}

void bwd(py::handle u, py::handle delta, py::handle A, py::handle B, py::handle C, py::handle D,
         py::handle z, py::handle delta_bias, py::handle initial_state, py::handle checkpoints, py::handle dout,
         py::handle dlast_state, py::handle du, py::handle ddelta, py::handle dA, py::handle dB,
         py::handle dC, py::handle dD, py::handle dz, py::handle ddelta_bias,
         py::handle dinitial_state, bool delta_softplus, const py::function& alloc,
         uintptr_t stream, int num_threads) {
  const OptionalDesc oD(kOp, "D", D), oz(kOp, "z", z), odb(kOp, "delta_bias", delta_bias),
      oh0(kOp, "initial_state", initial_state), odlast(kOp, "dlast_state", dlast_state),
      odD(kOp, "dD", dD), odz(kOp, "dz", dz), oddb(kOp, "ddelta_bias", ddelta_bias),
      odh0(kOp, "dinitial_state", dinitial_state), ock(kOp, "checkpoints", checkpoints);
  const ScanInputs in = scan_inputs(u, delta, A, B, C, oD, oz, odb, oh0, ock, delta_softplus);
  ScanGrads g;
  g.dout = to_desc(kOp, "dout", dout);
  g.dlast_state = odlast.ptr();
  g.du = to_desc(kOp, "du", du);
  g.ddelta = to_desc(kOp, "ddelta", ddelta);
  g.dA = to_desc(kOp, "dA", dA);
  g.dB = to_desc(kOp, "dB", dB);
  g.dC = to_desc(kOp, "dC", dC);
  g.dD = odD.ptr();
  g.dz = odz.ptr();
  g.ddelta_bias = oddb.ptr();
  g.dinitial_state = odh0.ptr();
  ScanBwdParams p = make_scan_bwd_params(in, g);
  set_workspace(p, scan_bwd_workspace_bytes(p), alloc);
  py::gil_scoped_release release;
  scan_bwd(p, reinterpret_cast<void*>(stream), num_threads);
}

}  // namespace

void bind_scan(py::module_& m) {
  m.attr("SCAN_CHECKPOINT_INTERVAL") = kScanCheckpointInterval;
  m.def("scan_fwd", &fwd, "Selective scan forward on descriptors (see s6kit.ops.scan)",
        py::arg("u"), py::arg("delta"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("delta_bias"), py::arg("initial_state"), py::arg("out"),
        py::arg("last_state"), py::arg("checkpoints"), py::arg("delta_softplus"), py::arg("alloc"),
        py::arg("stream"), py::arg("num_threads"));
  m.def("scan_bwd", &bwd, "Selective scan backward on descriptors (see s6kit.ops.scan)",
        py::arg("u"), py::arg("delta"), py::arg("A"), py::arg("B"), py::arg("C"), py::arg("D"),
        py::arg("z"), py::arg("delta_bias"), py::arg("initial_state"), py::arg("checkpoints"),
        py::arg("dout"),
        py::arg("dlast_state"), py::arg("du"), py::arg("ddelta"), py::arg("dA"), py::arg("dB"),
        py::arg("dC"), py::arg("dD"), py::arg("dz"), py::arg("ddelta_bias"),
        py::arg("dinitial_state"), py::arg("delta_softplus"), py::arg("alloc"),
        py::arg("stream"), py::arg("num_threads"));
}

}  // namespace s6kit::bind
