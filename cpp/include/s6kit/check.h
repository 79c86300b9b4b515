// Argument checks shared by every op. Each failure throws s6kit::ArgError, which the binding
// turns into a Python ValueError; the message names the op, the argument and what was expected.
#pragma once

#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>

#include "s6kit/tensor.h"

namespace s6kit {

struct ArgError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

class Checker {
 public:
  explicit Checker(const char* op) : op_(op) {}

  [[noreturn]] void fail(const std::string& arg, const std::string& what) const {
    throw ArgError(std::string(op_) + ": argument '" + arg + "' " + what);
  }

  void require(bool ok, const std::string& arg, const std::string& what) const {
    if (!ok) fail(arg, what);
  }

  void ndim(const TensorDesc& t, const char* arg, int nd) const {
    if (t.ndim != nd)
      fail(arg, "must have " + std::to_string(nd) + " dimensions, got shape " + t.shape_str());
  }

  // Shape must equal `want` exactly; `names` spells the expected shape for the message.
  void shape(const TensorDesc& t, const char* arg, std::initializer_list<int64_t> want,
             const char* names) const {
    bool ok = t.ndim == static_cast<int>(want.size());
    int i = 0;
    for (int64_t w : want) {
      if (ok && t.shape[i] != w) ok = false;
      ++i;
    }
    if (!ok) {
      std::ostringstream s;
      s << "must have shape " << names << " = (";
      i = 0;
      for (int64_t w : want) s << (i++ ? ", " : "") << w;
      s << (want.size() == 1 ? ",)" : ")") << ", got " << t.shape_str();
      fail(arg, s.str());
    }
  }

  void dtype(const TensorDesc& t, const char* arg, DType want, const char* why = "") const {
    if (t.dtype != want)
      fail(arg, std::string("must be ") + dtype_name(want) + why + ", got " + dtype_name(t.dtype));
  }

  void same_device(const TensorDesc& t, const char* arg, const TensorDesc& ref,
                   const char* ref_arg) const {
    if (t.device != ref.device || t.device_index != ref.device_index)
      fail(arg, std::string("must be on the same device as '") + ref_arg + "'");
  }

  // The kernels read the last dimension as a contiguous run.
  void unit_last_stride(const TensorDesc& t, const char* arg) const {
    if (t.ndim > 0 && t.shape[t.ndim - 1] > 1 && t.strides[t.ndim - 1] != 1)
      fail(arg, "must have stride 1 in its last dimension (call .contiguous())");
  }

  // Every dimension contiguous (row-major).
  void contiguous(const TensorDesc& t, const char* arg) const {
    if (t.numel() == 0) return;  // nothing is addressed
    int64_t expect = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      if (t.shape[i] != 1 && t.strides[i] != expect) fail(arg, "must be contiguous");
      expect *= t.shape[i];
    }
  }

  void data(const TensorDesc& t, const char* arg) const {
    if (t.numel() > 0 && t.data == nullptr) fail(arg, "has a null data pointer");
  }

 private:
  const char* op_;
};

}  // namespace s6kit
