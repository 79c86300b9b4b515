// s6kit._C: the compiled core. No torch header, no libtorch: tensors arrive as descriptors.
#include <pybind11/pybind11.h>

#include "s6kit/check.h"
#include "s6kit/info.h"

namespace py = pybind11;

namespace s6kit::bind {
void bind_scan(py::module_& m);
void bind_softsort(py::module_& m);
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "s6kit compiled core (torch-free); use the s6kit package, not this module";
  py::register_exception<s6kit::ArgError>(m, "ArgError", PyExc_ValueError);
  m.def("cpu_isa", &s6kit::cpu_isa);
  m.def("cuda_compiled", &s6kit::cuda_compiled);
  m.def("cuda_archs", &s6kit::cuda_archs);
  m.def("cuda_runtime_version", &s6kit::cuda_runtime_version);
  s6kit::bind::bind_scan(m);
  s6kit::bind::bind_softsort(m);
}
