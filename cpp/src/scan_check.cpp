// Validates the selective scan's descriptors and fills ScanParams / ScanBwdParams.
#include <string>

#include "s6kit/check.h"
#include "s6kit/scan.h"

namespace s6kit {
namespace {

constexpr const char* kOp = "selective_scan";

bool is_float_storage(DType t) {
  return t == DType::f32 || t == DType::f16 || t == DType::bf16 || t == DType::f64;
}

// B or C: variable (batch, G, N, L) or (batch, N, L), or time-invariant (dim, N).
struct BCInfo {
  bool variable;
  int64_t groups, dstate;
  int64_t batch_stride, group_stride, state_stride;
};

BCInfo inspect_bc(const Checker& ck, const TensorDesc& t, const char* arg, int64_t batch,
                  int64_t dim, int64_t seqlen, DType input_type, DType weight_type) {
  BCInfo info{};
  if (t.ndim == 4 || t.ndim == 3) {
    info.variable = true;
    const bool grouped = t.ndim == 4;
    info.groups = grouped ? t.shape[1] : 1;
    info.dstate = t.shape[grouped ? 2 : 1];
    const int64_t l = t.shape[t.ndim - 1];
    if (t.shape[0] != batch || l != seqlen)
      ck.fail(arg, std::string("must have shape ") +
                       (grouped ? "(batch, groups, N, L)" : "(batch, N, L)") + " with batch = " +
                       std::to_string(batch) + " and L = " + std::to_string(seqlen) + ", got " +
                       t.shape_str());
    ck.require(info.groups >= 1, arg, "must have at least one group");
    ck.dtype(t, arg, input_type, " (the dtype of 'u', as B/C vary with the input)");
    ck.unit_last_stride(t, arg);
    info.batch_stride = t.strides[0];
    info.group_stride = grouped ? t.strides[1] : 0;
    info.state_stride = t.strides[grouped ? 2 : 1];
  } else if (t.ndim == 2) {
    info.variable = false;
    info.groups = 1;
    info.dstate = t.shape[1];
    if (t.shape[0] != dim)
      ck.fail(arg, "as a time-invariant matrix must have shape (dim, N) with dim = " +
                       std::to_string(dim) + ", got " + t.shape_str());
    ck.dtype(t, arg, weight_type, " (time-invariant B/C are weights)");
    info.batch_stride = 0;
    info.group_stride = t.strides[0];
    info.state_stride = t.strides[1];
  } else {
    ck.fail(arg, "must have shape (batch, groups, N, L), (batch, N, L) or (dim, N), got " +
                     t.shape_str());
  }
  ck.require(info.dstate >= 1, arg, "must have a state size N >= 1");
  return info;
}

void check_vector(const Checker& ck, OptDesc t, const char* arg, int64_t dim, const TensorDesc& u,
                  DType weight_type) {
  if (!t) return;
  ck.shape(*t, arg, {dim}, "(dim,)");
  ck.dtype(*t, arg, weight_type);
  ck.same_device(*t, arg, u, "u");
  ck.data(*t, arg);
}

void check_state(const Checker& ck, const TensorDesc& t, const char* arg, int64_t batch,
                 int64_t dim, int64_t dstate, const TensorDesc& u, DType weight_type) {
  ck.shape(t, arg, {batch, dim, dstate}, "(batch, dim, N)");
  ck.dtype(t, arg, weight_type);
  ck.contiguous(t, arg);
  ck.same_device(t, arg, u, "u");
  ck.data(t, arg);
}

void check_like_u(const Checker& ck, const TensorDesc& t, const char* arg, const TensorDesc& u) {
  ck.shape(t, arg, {u.shape[0], u.shape[1], u.shape[2]}, "(batch, dim, L)");
  ck.dtype(t, arg, u.dtype, " (the dtype of 'u')");
  ck.unit_last_stride(t, arg);
  ck.same_device(t, arg, u, "u");
  ck.data(t, arg);
}

// Gradient buffers are written densely: same shape as their input, contiguous.
void check_grad(const Checker& ck, const TensorDesc& g, const char* arg, const TensorDesc& like,
                const TensorDesc& u) {
  ck.require(g.ndim == like.ndim, arg, "must have the shape of its input " + like.shape_str());
  for (int i = 0; i < g.ndim; ++i)
    ck.require(g.shape[i] == like.shape[i], arg,
               "must have the shape of its input " + like.shape_str() + ", got " + g.shape_str());
  ck.dtype(g, arg, like.dtype, " (the dtype of its input)");
  ck.contiguous(g, arg);
  ck.same_device(g, arg, u, "u");
  ck.data(g, arg);
}

void check_opt_grad(const Checker& ck, OptDesc g, OptDesc like, const char* arg,
                    const TensorDesc& u) {
  if (!like) return;
  ck.require(g != nullptr, arg, "is required because its input is present");
  check_grad(ck, *g, arg, *like, u);
}

// Checks the inputs and fills everything in ScanParams but the outputs.
ScanParams check_inputs(const Checker& ck, const ScanInputs& in) {
  const TensorDesc& u = in.u;
  ck.ndim(u, "u", 3);
  ck.require(is_float_storage(u.dtype), "u", "must be float32, float16, bfloat16 or float64");
  ck.unit_last_stride(u, "u");
  ck.data(u, "u");
  for (int i = 0; i < 3; ++i) ck.require(u.shape[i] >= 0, "u", "has a negative size");

  ScanParams p;
  p.batch = u.shape[0];
  p.dim = u.shape[1];
  p.seqlen = u.shape[2];
  p.input_type = u.dtype;
  p.weight_type = u.dtype == DType::f64 ? DType::f64 : DType::f32;
  p.device = u.device;
  p.device_index = u.device_index;

  check_like_u(ck, in.delta, "delta", u);

  // A: (dim, N) or (dim,) scalar form.
  const TensorDesc& A = in.A;
  ck.dtype(A, "A", p.weight_type,
           p.weight_type == DType::f64 ? " (float64 inputs take float64 weights)"
                                       : " (weights stay float32 for 16/32-bit inputs)");
  ck.same_device(A, "A", u, "u");
  ck.data(A, "A");
  if (A.ndim == 1) {
    ck.require(A.shape[0] == p.dim, "A",
               "in the scalar form must have shape (dim,) = (" + std::to_string(p.dim) +
                   ",), got " + A.shape_str());
    p.scalar_A = true;
    p.A_dim_stride = A.strides[0];
  } else if (A.ndim == 2) {
    ck.require(A.shape[0] == p.dim, "A",
               "must have shape (dim, N) with dim = " + std::to_string(p.dim) + ", got " +
                   A.shape_str());
    p.scalar_A = false;
    p.A_dim_stride = A.strides[0];
    p.A_state_stride = A.strides[1];
  } else {
    ck.fail("A", "must have shape (dim, N) or (dim,), got " + A.shape_str());
  }

  for (const char* arg : {"B", "C"}) {
    const TensorDesc& t = arg[0] == 'B' ? in.B : in.C;
    ck.same_device(t, arg, u, "u");
    ck.data(t, arg);
  }
  BCInfo b = inspect_bc(ck, in.B, "B", p.batch, p.dim, p.seqlen, p.input_type, p.weight_type);
  BCInfo c = inspect_bc(ck, in.C, "C", p.batch, p.dim, p.seqlen, p.input_type, p.weight_type);
  if (b.dstate != c.dstate)
    ck.fail("C", "must have the state size N = " + std::to_string(b.dstate) + " of 'B', got " +
                     std::to_string(c.dstate));
  p.dstate = b.dstate;
  if (!p.scalar_A && A.shape[1] != p.dstate)
    ck.fail("A", "must have N = " + std::to_string(p.dstate) + " columns (the state size of B/C), got " +
                     A.shape_str());
  if (b.variable && c.variable && b.groups != c.groups)
    ck.fail("C", "must have the number of groups of 'B' (" + std::to_string(b.groups) + "), got " +
                     std::to_string(c.groups));
  p.n_groups = b.variable ? b.groups : (c.variable ? c.groups : 1);
  if (p.dim % p.n_groups != 0)
    ck.fail(b.variable ? "B" : "C", "has " + std::to_string(p.n_groups) +
                                        " groups, which must divide dim = " + std::to_string(p.dim));
  p.dim_per_group = p.dim / p.n_groups;
  p.variable_B = b.variable;
  p.variable_C = c.variable;
  p.B = in.B.data;
  p.B_batch_stride = b.batch_stride;
  p.B_group_stride = b.group_stride;
  p.B_state_stride = b.state_stride;
  p.C = in.C.data;
  p.C_batch_stride = c.batch_stride;
  p.C_group_stride = c.group_stride;
  p.C_state_stride = c.state_stride;

  check_vector(ck, in.D, "D", p.dim, u, p.weight_type);
  check_vector(ck, in.delta_bias, "delta_bias", p.dim, u, p.weight_type);
  if (in.z) check_like_u(ck, *in.z, "z", u);
  if (in.initial_state)
    check_state(ck, *in.initial_state, "initial_state", p.batch, p.dim, p.dstate, u,
                p.weight_type);

  p.delta_softplus = in.delta_softplus;
  p.has_D = in.D != nullptr;
  p.has_z = in.z != nullptr;
  p.has_delta_bias = in.delta_bias != nullptr;
  p.has_initial_state = in.initial_state != nullptr;

  p.u = u.data;
  p.u_batch_stride = u.strides[0];
  p.u_dim_stride = u.strides[1];
  p.delta = in.delta.data;
  p.delta_batch_stride = in.delta.strides[0];
  p.delta_dim_stride = in.delta.strides[1];
  if (in.z) {
    p.z = in.z->data;
    p.z_batch_stride = in.z->strides[0];
    p.z_dim_stride = in.z->strides[1];
  }
  p.A = A.data;
  if (in.D) {
    p.D = in.D->data;
    p.D_stride = in.D->strides[0];
  }
  if (in.delta_bias) {
    p.delta_bias = in.delta_bias->data;
    p.delta_bias_stride = in.delta_bias->strides[0];
  }
  if (in.initial_state) p.initial_state = in.initial_state->data;
  if (in.checkpoints) {
    const int64_t n_ckpt = (p.seqlen + kScanCheckpointInterval - 1) / kScanCheckpointInterval;
    ck.shape(*in.checkpoints, "checkpoints", {p.batch, p.dim, n_ckpt, p.dstate},
             "(batch, dim, ceil(L / 64), N)");
    ck.dtype(*in.checkpoints, "checkpoints", p.weight_type);
    ck.contiguous(*in.checkpoints, "checkpoints");
    ck.same_device(*in.checkpoints, "checkpoints", u, "u");
    ck.data(*in.checkpoints, "checkpoints");
    p.checkpoints = in.checkpoints->data;
  }
  return p;
}

}  // namespace

ScanParams make_scan_params(const ScanInputs& in, const TensorDesc& out,
                            const TensorDesc& last_state) {
  Checker ck(kOp);
  ScanParams p = check_inputs(ck, in);
  ck.shape(out, "out", {p.batch, p.dim, p.seqlen}, "(batch, dim, L)");
  ck.dtype(out, "out", p.input_type, " (the dtype of 'u')");
  ck.contiguous(out, "out");
  ck.same_device(out, "out", in.u, "u");
  ck.data(out, "out");
  check_state(ck, last_state, "last_state", p.batch, p.dim, p.dstate, in.u, p.weight_type);
  p.out = out.data;
  p.last_state = last_state.data;
  return p;
}

ScanBwdParams make_scan_bwd_params(const ScanInputs& in, const ScanGrads& g) {
  Checker ck(kOp);
  ScanBwdParams p;
  static_cast<ScanParams&>(p) = check_inputs(ck, in);
  check_like_u(ck, g.dout, "dout", in.u);
  p.dout = g.dout.data;
  p.dout_batch_stride = g.dout.strides[0];
  p.dout_dim_stride = g.dout.strides[1];
  if (g.dlast_state) {
    check_state(ck, *g.dlast_state, "dlast_state", p.batch, p.dim, p.dstate, in.u, p.weight_type);
    p.dlast_state = g.dlast_state->data;
  }

  check_grad(ck, g.du, "du", in.u, in.u);
  check_grad(ck, g.ddelta, "ddelta", in.delta, in.u);
  check_grad(ck, g.dA, "dA", in.A, in.u);
  check_grad(ck, g.dB, "dB", in.B, in.u);
  check_grad(ck, g.dC, "dC", in.C, in.u);
  check_opt_grad(ck, g.dD, in.D, "dD", in.u);
  check_opt_grad(ck, g.dz, in.z, "dz", in.u);
  check_opt_grad(ck, g.ddelta_bias, in.delta_bias, "ddelta_bias", in.u);
  check_opt_grad(ck, g.dinitial_state, in.initial_state, "dinitial_state", in.u);
  p.du = g.du.data;
  p.ddelta = g.ddelta.data;
  p.dA = g.dA.data;
  p.dB = g.dB.data;
  p.dC = g.dC.data;
  p.dD = in.D ? g.dD->data : nullptr;
  p.dz = in.z ? g.dz->data : nullptr;
  p.ddelta_bias = in.delta_bias ? g.ddelta_bias->data : nullptr;
  p.dinitial_state = in.initial_state ? g.dinitial_state->data : nullptr;
  return p;
}

}  // namespace s6kit
