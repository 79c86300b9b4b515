// The selective scan's entry points, shared by the binding and the benchmark binaries.
#pragma once

#include "s6kit/scan_params.h"
#include "s6kit/tensor.h"

namespace s6kit {

struct ScanInputs {
  TensorDesc u, delta, A, B, C;
  OptDesc D = nullptr, z = nullptr, delta_bias = nullptr, initial_state = nullptr;
  // (batch, dim, ceil(L / kScanCheckpointInterval), N) in the weight dtype: written by the
  // forward, read by the backward (see ScanParams::checkpoints). Optional.
  OptDesc checkpoints = nullptr;
  bool delta_softplus = false;
};

// Checks every descriptor (shape, dtype, strides, device) and fills the parameter struct.
// Throws ArgError naming the argument on bad input.
ScanParams make_scan_params(const ScanInputs& in, const TensorDesc& out,
                            const TensorDesc& last_state);

struct ScanGrads {
  TensorDesc dout;
  OptDesc dlast_state = nullptr;
  TensorDesc du, ddelta, dA, dB, dC;
  OptDesc dD = nullptr, dz = nullptr, ddelta_bias = nullptr, dinitial_state = nullptr;
};

ScanBwdParams make_scan_bwd_params(const ScanInputs& in, const ScanGrads& g);

// Bytes of scratch the forward / backward needs on the params' device (0 is possible).
int64_t scan_fwd_workspace_bytes(const ScanParams& p);
int64_t scan_bwd_workspace_bytes(const ScanBwdParams& p);

// Run on the params' device. `stream` is a cudaStream_t for CUDA (0: the default stream) and
// ignored on the CPU; `num_threads` is used on the CPU only.
void scan_fwd(const ScanParams& p, void* stream, int num_threads);
void scan_bwd(const ScanBwdParams& p, void* stream, int num_threads);

// Backends.
void scan_fwd_cpu(const ScanParams& p, int num_threads);
void scan_bwd_cpu(const ScanBwdParams& p, int num_threads);
int64_t scan_fwd_workspace_bytes_cpu(const ScanParams& p);
int64_t scan_bwd_workspace_bytes_cpu(const ScanBwdParams& p);
#ifdef S6KIT_WITH_CUDA
void scan_fwd_cuda(const ScanParams& p, void* stream);
void scan_bwd_cuda(const ScanBwdParams& p, void* stream);
int64_t scan_fwd_workspace_bytes_cuda(const ScanParams& p);
int64_t scan_bwd_workspace_bytes_cuda(const ScanBwdParams& p);
#endif

}  // namespace s6kit
