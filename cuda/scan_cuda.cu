// Entry points of the CUDA selective scan (declared in s6kit/scan.h): argument limits of this
// backend, the workspace plans, empty shapes, and the kernel sequences on the caller's stream.
// All memory is the caller's: outputs, checkpoints and the forward's and backward's workspaces.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "cuda_check.h"
#include "s6kit/check.h"
#include "s6kit/scan.h"
#include "scan_launch.h"

namespace s6kit {
namespace {

using namespace cuda_scan;

// The variable dB / dC partials may take at most this much workspace; above it a block sums
// several row tiles itself (fewer, longer blocks) instead of writing one partial per row tile.
// (Overridable at compile time so that tests can exercise that path on small shapes.)
#ifndef S6KIT_CUDA_MAX_PARTIAL_BYTES
#define S6KIT_CUDA_MAX_PARTIAL_BYTES (int64_t(1) << 30)
#endif
constexpr int64_t kMaxPartialBytes = S6KIT_CUDA_MAX_PARTIAL_BYTES;
constexpr int64_t kAlign = 256;

int64_t align_up(int64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

void check_supported(const ScanParams& p) {
  if (p.input_type == DType::f64)
    throw ArgError(
        "selective_scan: argument 'u' is float64 on a CUDA device; float64 is supported on the CPU "
        "only (use float32, float16 or bfloat16 on CUDA, or move the inputs to the CPU)");
  if (p.dstate > kMaxDstate)
    throw ArgError("selective_scan: argument 'B' has state size N = " + std::to_string(p.dstate) +
                   "; the CUDA kernels support N <= " + std::to_string(kMaxDstate));
  // The kernels index batch, channel and step with 32-bit integers (offsets are 64-bit).
  constexpr int64_t kMaxIndex = int64_t(1) << 31;
  if (p.batch >= kMaxIndex || p.dim >= kMaxIndex || p.seqlen >= kMaxIndex - 1024)
    throw ArgError("selective_scan: argument 'u' has shape (" + std::to_string(p.batch) + ", " +
                   std::to_string(p.dim) + ", " + std::to_string(p.seqlen) +
                   "); the CUDA kernels need batch, dim and L below 2^31");
}

template <typename Fn>
void dispatch_storage(DType t, Fn&& fn) {
  switch (t) {
    case DType::f32: fn(float{}); break;
    case DType::f16: fn(__half{}); break;
    case DType::bf16: fn(__nv_bfloat16{}); break;
    default: throw std::runtime_error("s6kit CUDA selective scan: unsupported storage dtype");
  }
}

int64_t row_tiles(const ScanParams& p, const Layout& lay) { return ceil_div(p.dim_per_group, lay.rows); }

// The alignment (in bytes, a power of two up to 16) that every row start of a tensor keeps: that
// of its base, and of its strides in bytes (strides of dimensions of size 1 are unused).
int alignment(const void* ptr, std::initializer_list<std::pair<int64_t, int64_t>> size_stride,
              const ScanParams& p) {
  if (ptr == nullptr) return 16;
  int a = 16;
  auto keep = [&a](uint64_t bytes) {
    while (a > 1 && bytes % uint64_t(a) != 0) a /= 2;
  };
  keep(reinterpret_cast<uintptr_t>(ptr));
  for (const auto& [size, stride] : size_stride)
    if (size != 1) keep(uint64_t(stride) * dtype_size(p.input_type));
  return a;
}

// The alignment of every row of a (batch, dim, L) tensor.
int rows_alignment(const void* ptr, int64_t batch_stride, int64_t dim_stride, const ScanParams& p) {
  return alignment(ptr, {{p.batch, batch_stride}, {p.dim, dim_stride}}, p);
}

// The alignment of every state row of a variable B or C (batch, G, N, L).
int bc_rows_alignment(const void* ptr, int64_t batch_stride, int64_t group_stride,
                      int64_t state_stride, const ScanParams& p) {
  return alignment(
      ptr, {{p.batch, batch_stride}, {p.n_groups, group_stride}, {p.dstate, state_stride}}, p);
}

// The alignment of the rows of u, delta and z.
int scan_inputs_alignment(const ScanParams& p) {
  return std::min({rows_alignment(p.u, p.u_batch_stride, p.u_dim_stride, p),
                   rows_alignment(p.delta, p.delta_batch_stride, p.delta_dim_stride, p),
                   rows_alignment(p.z, p.z_batch_stride, p.z_dim_stride, p)});
}

// Outputs are contiguous (batch, dim, L): their alignment follows from L.
int outputs_alignment(std::initializer_list<const void*> ptrs, const ScanParams& p) {
  int a = 16;
  for (const void* ptr : ptrs) a = std::min(a, rows_alignment(ptr, p.dim * p.seqlen, p.seqlen, p));
  return a;
}

// The fields both splits' middle passes read: A, and the (b, d, n) walk over the chunks.
ChunkCombine chunk_combine(const ScanParams& p, int64_t nchunks, float* carry, const float* decays) {
  ChunkCombine c;
  c.carry = carry;
  c.decays = decays;
  c.A = static_cast<const float*>(p.A);
  c.A_dim_stride = p.A_dim_stride;
  c.A_state_stride = p.A_state_stride;
  c.scalar_A = p.scalar_A;
  c.rows = p.batch * p.dim;
  c.dim = p.dim;
  c.N = p.dstate;
  c.nchunks = nchunks;
  return c;
}

}  // namespace

namespace cuda_scan {

FwdArgs make_fwd_args(const ScanParams& p, float* ckpt, bool write_out, int kS, int T) {
  return make_fwd_args(p, choose_fwd_layout(p, kS, T), ckpt, write_out);
}

FwdArgs make_fwd_args(const ScanParams& p, const FwdLayout& lay, float* ckpt, bool write_out) {
  FwdArgs a;
  a.p = p;
  a.lay = lay;
  a.ntiles = ceil_div(p.dim_per_group, a.lay.rows);
  a.ckpt = ckpt;
  a.write_out = write_out;
  a.in_align = scan_inputs_alignment(p);
  a.bc_align = 16;
  if (p.variable_B)
    a.bc_align = bc_rows_alignment(p.B, p.B_batch_stride, p.B_group_stride, p.B_state_stride, p);
  if (p.variable_C)
    a.bc_align = std::min(a.bc_align, bc_rows_alignment(p.C, p.C_batch_stride, p.C_group_stride,
                                                        p.C_state_stride, p));
  a.out_align = outputs_alignment({p.out}, p);
  a.vec_in = a.in_align == 16;
  a.vec_bc = a.bc_align == 16;
  a.vec_out = a.out_align == 16;
  a.chunk_len = split_along_L(p.seqlen, 1, a.lay.T).chunk_len;  // one chunk: no split
  return a;
}

FwdPlan plan_fwd(const ScanParams& p, int64_t forced_chunks) {
  FwdPlan pl;
  const FwdChoice c = choose_fwd(p, forced_chunks);
  pl.lay = c.lay;
  pl.split = c.split;
  if (pl.split.nchunks > 1) {
    const int64_t entries = (pl.split.nchunks - 1) * p.batch * p.dim;
    pl.off_states = 0;
    pl.off_decays = align_up(entries * p.dstate * 4);
    pl.bytes = pl.off_decays + align_up(entries * 4);
  }
  return pl;
}

void run_fwd(const ScanParams& p, const FwdPlan& pl, cudaStream_t s) {
  FwdArgs a = make_fwd_args(p, pl.lay, static_cast<float*>(p.checkpoints), true);
  auto launch = [&] {
    dispatch_storage(p.input_type, [&](auto tag) { launch_fwd<decltype(tag)>(a, s); });
  };
  if (pl.split.nchunks == 1) return launch();
  if (p.workspace_bytes < pl.bytes || p.workspace == nullptr)
    throw ArgError("selective_scan: the forward's workspace has " + std::to_string(p.workspace_bytes) +
                   " bytes, it needs " + std::to_string(pl.bytes) + " (scan_fwd_workspace_bytes)");
  char* const ws = static_cast<char*>(p.workspace);
  a.chunk_len = pl.split.chunk_len;
  a.nchunks = pl.split.nchunks;
  a.states = reinterpret_cast<float*>(ws + pl.off_states);
  a.decays = reinterpret_cast<float*>(ws + pl.off_decays);
  // Chunks 0 .. K - 2 from zero (chunk 0 from initial_state, with its outputs), their end states
  // made true in chunk order, then chunks 1 .. K - 1 from those with their outputs.
  a.pass = FwdPass::chunk_states;
  a.first_chunk = 0;
  a.run_chunks = a.nchunks - 1;
  launch();
  launch_fwd_combine(chunk_combine(p, a.nchunks, a.states, a.decays), s);
  a.pass = FwdPass::chunk_outputs;
  a.first_chunk = 1;
  launch();
}

BwdPlan plan_bwd(const ScanBwdParams& p, int64_t forced_chunks, int forced_kS) {
  BwdPlan pl;
  const int64_t rows = p.batch * p.dim, N = p.dstate, L = p.seqlen;
  const int64_t groups = p.batch * p.n_groups;
  // The layout, the row tiles per block (the variable dB / dC partials are capped) and the split.
  auto plan_grid = [&](int kS) {
    pl.lay = choose_layout(p, kS);
    pl.ntiles = row_tiles(p, pl.lay);
    if (p.variable_B || p.variable_C) {
      const int64_t slot_bytes = groups * L * 2 * N * 4;
      const int64_t max_slots = slot_bytes > 0 ? std::max<int64_t>(1, kMaxPartialBytes / slot_bytes) : pl.ntiles;
      pl.subtiles = ceil_div(pl.ntiles, std::max<int64_t>(1, max_slots));
      pl.slots = ceil_div(pl.ntiles, pl.subtiles);
    } else {
      pl.subtiles = 1;
      pl.slots = pl.ntiles;
    }
    pl.split = choose_bwd_split(p, pl.lay, groups * pl.slots, forced_chunks);
  };
  const int forced = forced_kS != 0 ? forced_kS : S6KIT_CUDA_BWD_STATES;
  plan_grid(forced);
  if (forced == 0 && pl.lay.kS == 4 &&
      bwd_prefers_two_states(p, pl.lay, groups * pl.slots, pl.split))
    plan_grid(2);
  const int64_t K = pl.split.nchunks;
  int64_t off = 0;
  auto take = [&off](int64_t bytes) {
    const int64_t at = off;
    off = align_up(off + bytes);
    return at;
  };
  if (p.checkpoints == nullptr)
    pl.off_ckpt = take(rows * ceil_div(L, kScanCheckpointInterval) * N * 4);
  // The variable dB / dC partials are disjoint in L: the chunks share them.
  if (p.variable_B || p.variable_C) pl.off_bc = take(groups * pl.slots * L * 2 * N * 4);
  // Per-row partials: one set per chunk.
  pl.off_dA = take(K * rows * (p.scalar_A ? 1 : N) * 4);
  if (!p.variable_B) pl.off_dBinv = take(K * rows * N * 4);
  if (!p.variable_C) pl.off_dCinv = take(K * rows * N * 4);
  pl.off_dD = take(K * rows * 4);
  pl.off_ddb = take(K * rows * 4);
  if (K > 1) {
    pl.off_adj = take(K * rows * N * 4);
    pl.off_decays = take(K * rows * 4);
  }
  pl.bytes = off;
  return pl;
}

void run_bwd(const ScanBwdParams& p, const BwdPlan& pl, cudaStream_t s) {
  if (p.workspace_bytes < pl.bytes || (pl.bytes > 0 && p.workspace == nullptr))
    throw ArgError("selective_scan: the backward's workspace has " + std::to_string(p.workspace_bytes) +
                   " bytes, it needs " + std::to_string(pl.bytes) + " (scan_bwd_workspace_bytes)");
  char* const ws = static_cast<char*>(p.workspace);
  auto at = [ws](int64_t off) { return off < 0 ? nullptr : reinterpret_cast<float*>(ws + off); };

  const float* ckpt = static_cast<const float*>(p.checkpoints);
  if (ckpt == nullptr) {  // no states saved by the forward: recompute them into the workspace
    const FwdArgs f = make_fwd_args(p, at(pl.off_ckpt), false);
    dispatch_storage(p.input_type, [&](auto tag) { launch_fwd<decltype(tag)>(f, s); });
    ckpt = at(pl.off_ckpt);
  }

  BwdArgs a;
  a.p = p;
  a.lay = pl.lay;
  a.ntiles = pl.ntiles;
  a.slots = pl.slots;
  a.subtiles = pl.subtiles;
  a.ckpt = ckpt;
  a.part_bc = at(pl.off_bc);
  a.part_dA = at(pl.off_dA);
  a.part_dBinv = at(pl.off_dBinv);
  a.part_dCinv = at(pl.off_dCinv);
  a.part_dD = at(pl.off_dD);
  a.part_ddb = at(pl.off_ddb);
  // The backward's spans are 4 steps: 8 bytes of 16-bit storage, 16 of float32.
  const int span_bytes = 4 * static_cast<int>(dtype_size(p.input_type));
  a.vec_in = std::min(scan_inputs_alignment(p),
                      rows_alignment(p.dout, p.dout_batch_stride, p.dout_dim_stride, p)) >=
             span_bytes;
  a.vec_out = outputs_alignment({p.du, p.ddelta, p.dz}, p) >= span_bytes;
  a.chunk_len = pl.split.chunk_len;
  a.nchunks = pl.split.nchunks;
  auto launch = [&] {
    dispatch_storage(p.input_type, [&](auto tag) { launch_bwd<decltype(tag)>(a, s); });
  };
  if (a.nchunks == 1) {
    launch();
  } else {
    // Chunks 1 .. K - 1: adjoints at their starts from 0 at their ends; made true in reverse
    // chunk order (from d last_state); then every chunk's gradients from those.
    a.adj = at(pl.off_adj);
    a.decays = at(pl.off_decays);
    a.pass = BwdPass::chunk_adjoints;
    a.first_chunk = 1;
    a.run_chunks = a.nchunks - 1;
    launch();
    ChunkCombine c = chunk_combine(p, a.nchunks, a.adj, a.decays);
    c.dlast = static_cast<const float*>(p.dlast_state);
    launch_bwd_combine(c, s);
    a.pass = BwdPass::chunk_grads;
    a.first_chunk = 0;
    a.run_chunks = a.nchunks;
    launch();
  }

  // The per-row partials of every chunk and batch entry, summed in order.
  const int64_t N = p.dstate;
  RowReduction jobs[kMaxRowJobs];
  int njobs = 0;
  jobs[njobs++] = {a.part_dA, static_cast<float*>(p.dA), p.dim * (p.scalar_A ? 1 : N)};
  if (!p.variable_B) jobs[njobs++] = {a.part_dBinv, static_cast<float*>(p.dB), p.dim * N};
  if (!p.variable_C) jobs[njobs++] = {a.part_dCinv, static_cast<float*>(p.dC), p.dim * N};
  if (p.dD != nullptr) jobs[njobs++] = {a.part_dD, static_cast<float*>(p.dD), p.dim};
  if (p.ddelta_bias != nullptr) jobs[njobs++] = {a.part_ddb, static_cast<float*>(p.ddelta_bias), p.dim};
  launch_reduce_rows(jobs, njobs, p.batch * a.nchunks, s);
  if (p.variable_B || p.variable_C) {
    BcReduction r;
    r.part = a.part_bc;
    r.dB = p.variable_B ? p.dB : nullptr;
    r.dC = p.variable_C ? p.dC : nullptr;
    r.groups = p.batch * p.n_groups;
    r.slots = pl.slots;
    r.L = static_cast<int>(p.seqlen);
    r.N = static_cast<int>(N);
    launch_reduce_bc(p.input_type, r, s);
  }
}

}  // namespace cuda_scan

namespace {

bool empty_scan(const ScanParams& p) { return p.batch * p.dim == 0 || p.seqlen == 0; }

void zero(void* ptr, int64_t bytes, cudaStream_t s) {
  if (ptr != nullptr && bytes > 0) cuda_check(cudaMemsetAsync(ptr, 0, bytes, s), "cudaMemsetAsync");
}

// Gradients of an empty scan: all zero, except d initial_state = d last_state when L = 0.
void bwd_empty(const ScanBwdParams& p, cudaStream_t s) {
  const int64_t es = dtype_size(p.input_type);
  const int64_t rows = p.batch * p.dim, L = p.seqlen, N = p.dstate;
  zero(p.du, rows * L * es, s);
  zero(p.ddelta, rows * L * es, s);
  zero(p.dz, rows * L * es, s);
  zero(p.dA, p.dim * (p.scalar_A ? 1 : N) * 4, s);
  zero(p.dB, p.variable_B ? p.batch * p.n_groups * N * L * es : p.dim * N * 4, s);
  zero(p.dC, p.variable_C ? p.batch * p.n_groups * N * L * es : p.dim * N * 4, s);
  zero(p.dD, p.dim * 4, s);
  zero(p.ddelta_bias, p.dim * 4, s);
  if (p.dinitial_state != nullptr) {
    if (p.dlast_state != nullptr)
      cuda_check(cudaMemcpyAsync(p.dinitial_state, p.dlast_state, rows * N * 4,
                                 cudaMemcpyDeviceToDevice, s),
                 "cudaMemcpyAsync");
    else
      zero(p.dinitial_state, rows * N * 4, s);
  }
}

}  // namespace

void scan_fwd_cuda(const ScanParams& p, void* stream) {
  check_supported(p);
  DeviceGuard guard(p.device_index);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (p.batch * p.dim == 0) return;
  if (p.seqlen == 0) {
    const int64_t bytes = p.batch * p.dim * p.dstate * 4;
    if (p.has_initial_state)
      cuda_check(cudaMemcpyAsync(p.last_state, p.initial_state, bytes, cudaMemcpyDeviceToDevice, s),
                 "cudaMemcpyAsync");
    else
      zero(p.last_state, bytes, s);
    return;
  }
  run_fwd(p, plan_fwd(p), s);
}

int64_t scan_fwd_workspace_bytes_cuda(const ScanParams& p) {
  check_supported(p);
  if (empty_scan(p)) return 0;
  return plan_fwd(p).bytes;
}

int64_t scan_bwd_workspace_bytes_cuda(const ScanBwdParams& p) {
  check_supported(p);
  if (empty_scan(p)) return 0;
  return plan_bwd(p).bytes;
}

void scan_bwd_cuda(const ScanBwdParams& p, void* stream) {
  check_supported(p);
  DeviceGuard guard(p.device_index);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (empty_scan(p)) return bwd_empty(p, s);
  run_bwd(p, plan_bwd(p), s);
}

}  // namespace s6kit
