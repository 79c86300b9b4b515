// The tensor descriptor: how arrays cross from any framework into s6kit's kernels.
//
// A descriptor names memory that the caller owns: data pointer, element type, shape and
// strides (in elements), and the device it lives on. No framework header is involved, so the
// same kernels serve PyTorch (through the pybind11 binding), the C++ benchmark binaries and any
// other caller.
#pragma once

#include <cstdint>
#include <string>

namespace s6kit {

// Floating-point storage types, then integer index types (permutations); the codes match
// s6kit/_core.py.
enum class DType : int32_t { f32 = 0, f16 = 1, bf16 = 2, f64 = 3, i32 = 4, i64 = 5 };
constexpr int32_t kNumDTypes = 6;
enum class Device : int32_t { cpu = 0, cuda = 1 };

constexpr int kMaxDims = 6;

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
  }
  return "unknown";
}

inline int dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f16: return 2;
    case DType::bf16: return 2;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::i64: return 8;
  }
  return 0;
}

inline bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}

struct TensorDesc {
  void* data = nullptr;
  DType dtype = DType::f32;
  int32_t ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // in elements
  Device device = Device::cpu;
  int32_t device_index = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
  int64_t size(int i) const { return shape[i < 0 ? i + ndim : i]; }
  int64_t stride(int i) const { return strides[i < 0 ? i + ndim : i]; }

  std::string shape_str() const {
    std::string s = "(";
    for (int i = 0; i < ndim; ++i) {
      if (i) s += ", ";
      s += std::to_string(shape[i]);
    }
    if (ndim == 1) s += ",";
    return s + ")";
  }
};

// Optional descriptors are passed as pointers: nullptr means "absent".
using OptDesc = const TensorDesc*;

}  // namespace s6kit
