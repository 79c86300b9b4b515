// The one parameter struct of the selective scan, filled once by make_scan_params (scan_check.cpp)
// and read by every backend (CPU and CUDA), forward and backward.
//
// Recurrence, per batch b, channel d, step l (DESIGN.md; paper eq. 1-2):
//   dt_l  = softplus(delta_l + delta_bias)          (or delta_l + delta_bias without softplus)
//   h_l   = exp(dt_l A) h_{l-1} + dt_l B_l u_l      (h_0 = initial_state, or 0)
//   y_l   = C_l . h_l + D u_l
//   out_l = y_l * silu(z_l)                         (or y_l without z)
#pragma once

#include <cstdint>

#include "s6kit/tensor.h"

namespace s6kit {

struct ScanParams {
  // Sizes.
  int64_t batch = 0, dim = 0, seqlen = 0, dstate = 0;
  int64_t n_groups = 1;   // groups of B/C when variable; channel d reads group d / (dim / n_groups)
  int64_t dim_per_group = 0;

  // Runtime flags (backends turn the hot ones into compile-time switches).
  bool scalar_A = false;    // A has shape (dim,): A_d = A[d] * I, one exp per (b, d, l)
  bool variable_B = true;   // B is (batch, G, N, L); otherwise time-invariant (dim, N)
  bool variable_C = true;
  bool delta_softplus = false;
  bool has_D = false, has_z = false, has_delta_bias = false, has_initial_state = false;

  DType input_type = DType::f32;   // u, delta, z, out, variable B/C
  DType weight_type = DType::f32;  // A, D, delta_bias, time-invariant B/C, states (f64 iff input f64)
  Device device = Device::cpu;
  int device_index = 0;

  // Inputs. Strides are in elements; the L dimension always has stride 1.
  const void* u = nullptr;      int64_t u_batch_stride = 0, u_dim_stride = 0;
  const void* delta = nullptr;  int64_t delta_batch_stride = 0, delta_dim_stride = 0;
  const void* z = nullptr;      int64_t z_batch_stride = 0, z_dim_stride = 0;
  const void* A = nullptr;      int64_t A_dim_stride = 0, A_state_stride = 0;
  // Variable B: (batch, G, N, L) -> batch, group, state strides. Invariant B: (dim, N) -> the
  // "group" stride is the dim stride and the batch stride is unused.
  const void* B = nullptr;      int64_t B_batch_stride = 0, B_group_stride = 0, B_state_stride = 0;
  const void* C = nullptr;      int64_t C_batch_stride = 0, C_group_stride = 0, C_state_stride = 0;
  const void* D = nullptr;      int64_t D_stride = 0;
  const void* delta_bias = nullptr; int64_t delta_bias_stride = 0;
  const void* initial_state = nullptr;  // (batch, dim, N), contiguous

  // Outputs, contiguous, allocated by the caller.
  void* out = nullptr;         // (batch, dim, L), input dtype: y, or y * silu(z) with z
  void* last_state = nullptr;  // (batch, dim, N), weight dtype: h_L

  // States saved for the backward, (batch, dim, n_checkpoints, N) fp32 contiguous, where
  // checkpoint c is h before step c * kScanCheckpointInterval (n_checkpoints = ceil(L / interval)).
  // The forward writes them when non-null; the backward reads them when non-null and otherwise
  // recomputes them.
  void* checkpoints = nullptr;

  // Scratch on the params' device, sized by the backend: scan_fwd_workspace_bytes for the forward
  // (the chunk states of a forward split along L), scan_bwd_workspace_bytes for the backward (its
  // deterministic reductions, and the chunk adjoints of a backward split along L).
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
};

constexpr int64_t kScanCheckpointInterval = 64;

struct ScanBwdParams : ScanParams {
  // Incoming gradients. dout: (batch, dim, L), L stride 1. dlast_state: (batch, dim, N) contiguous,
  // may be null (no gradient flows from the last state).
  const void* dout = nullptr;  int64_t dout_batch_stride = 0, dout_dim_stride = 0;
  const void* dlast_state = nullptr;

  // Gradients, contiguous, allocated by the caller with the shape and dtype of their input:
  // du, ddelta, dz, variable dB/dC in the input dtype; dA, dD, ddelta_bias, invariant dB/dC and
  // dinitial_state in the weight dtype. Null where the input is absent.
  void* du = nullptr;
  void* ddelta = nullptr;
  void* dz = nullptr;
  void* dA = nullptr;
  void* dB = nullptr;
  void* dC = nullptr;
  void* dD = nullptr;
  void* ddelta_bias = nullptr;
  void* dinitial_state = nullptr;
};

}  // namespace s6kit
