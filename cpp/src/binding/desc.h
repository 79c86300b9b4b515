// Python-side descriptors -> TensorDesc. A descriptor is the tuple
//   (data_ptr: int, dtype: int, shape: tuple[int], strides: tuple[int], device: int, index: int)
// built by s6kit._desc from any tensor; None stands for an absent optional tensor.
#pragma once

#include <optional>
#include <string>

#include <pybind11/pybind11.h>

#include "s6kit/check.h"
#include "s6kit/tensor.h"

namespace s6kit::bind {

namespace py = pybind11;

inline TensorDesc to_desc(const char* op, const char* arg, py::handle obj) {
  Checker ck(op);
  if (!py::isinstance<py::tuple>(obj) || py::len(obj) != 6)
    ck.fail(arg, "must be a tensor descriptor (data_ptr, dtype, shape, strides, device, index)");
  py::tuple t = py::reinterpret_borrow<py::tuple>(obj);
  TensorDesc d;
  d.data = reinterpret_cast<void*>(t[0].cast<uintptr_t>());
  const int dtype = t[1].cast<int>();
  ck.require(dtype >= 0 && dtype < kNumDTypes, arg, "has an unsupported dtype code " + std::to_string(dtype));
  d.dtype = static_cast<DType>(dtype);
  py::tuple shape = t[2].cast<py::tuple>(), strides = t[3].cast<py::tuple>();
  ck.require(shape.size() == strides.size(), arg, "has shape and strides of different lengths");
  ck.require(shape.size() <= size_t(kMaxDims), arg,
             "has more than " + std::to_string(kMaxDims) + " dimensions");
  d.ndim = static_cast<int32_t>(shape.size());
  for (int i = 0; i < d.ndim; ++i) {
    d.shape[i] = shape[i].cast<int64_t>();
    d.strides[i] = strides[i].cast<int64_t>();
    ck.require(d.shape[i] >= 0, arg, "has a negative size");
  }
  const int dev = t[4].cast<int>();
  ck.require(dev == 0 || dev == 1, arg, "must be on the CPU or a CUDA device");
  d.device = static_cast<Device>(dev);
  d.device_index = t[5].cast<int>();
  return d;
}

// Scratch from the caller's allocator (its device, its stream), kept alive by the caller; null
// when no bytes are needed.
inline void* alloc_workspace(const char* op, const py::function& alloc, int64_t bytes) {
  if (bytes <= 0) return nullptr;
  return to_desc(op, "workspace", alloc(bytes)).data;
}

// Holds an optional descriptor; ptr() is nullptr when the argument was None.
struct OptionalDesc {
  std::optional<TensorDesc> value;
  OptionalDesc(const char* op, const char* arg, py::handle obj) {
    if (!obj.is_none()) value = to_desc(op, arg, obj);
  }
  OptDesc ptr() const { return value ? &*value : nullptr; }
};

}  // namespace s6kit::bind
