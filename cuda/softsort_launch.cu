// CUDA entry points of the SoftSort ops: launch configuration, workspace layout and the order of
// the kernels (see softsort_scan.cu and softsort_band.cu for what each computes).
#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>

#include "cuda_check.h"
#include "s6kit/softsort.h"
#include "softsort_kernels.h"

namespace s6kit {
namespace cuda_softsort {

// Defined next to the kernels.
const void* row_kernel_handle(DType dtype, RowKernel kind);
const void* unpermute_kernel_handle(DType dtype);
const void* tile_kernel_handle(DType dtype, bool bwd, bool apply);
int band_channel_tiles(int D);

namespace {

int current_device() {
  int dev = 0;
  cuda_check(cudaGetDevice(&dev), "cudaGetDevice");
  return dev;
}

std::mutex& cache_mutex() {
  static std::mutex m;
  return m;
}

constexpr size_t kSmemBudget = 200 * 1024;

// Launch facts of the current device, queried once per device / kernel / shape and cached: a
// launch then costs no driver queries beyond the launch itself.
struct KernelFacts {
  int sms = 1;           // multiprocessors
  size_t smem_limit = 0;  // dynamic shared memory a block may use, after the kernel's static part
};

KernelFacts kernel_facts(const void* kernel) {
  static std::map<std::pair<int, const void*>, KernelFacts> cache;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(cache_mutex());
  auto it = cache.find({dev, kernel});
  if (it != cache.end()) return it->second;
  int sms = 0, optin = 0;
  cuda_check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev),
             "cudaDeviceGetAttribute");
  cuda_check(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
        "cudaDeviceGetAttribute");
  cudaFuncAttributes attr{};
  cuda_check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
  const size_t limit = std::min(size_t(optin), kSmemBudget);
  KernelFacts f;
  f.sms = std::max(sms, 1);
  f.smem_limit = limit > attr.sharedSizeBytes + 1024 ? limit - attr.sharedSizeBytes - 1024 : 0;
  cache[{dev, kernel}] = f;
  return f;
}

// Blocks of `kernel` per multiprocessor with `threads` threads and `dyn` bytes of dynamic shared
// memory; raises the kernel's dynamic shared memory limit to `dyn` first when needed.
int blocks_per_sm(const void* kernel, int threads, size_t dyn) {
  raise_smem_limit(kernel, dyn);
  static std::map<std::tuple<int, const void*, int, size_t>, int> occupancy;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(cache_mutex());
  auto key = std::make_tuple(dev, kernel, threads, dyn);
  auto it = occupancy.find(key);
  if (it != occupancy.end()) return it->second;
  int n = 0;
  cuda_check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, threads, dyn),
        "cudaOccupancyMaxActiveBlocksPerMultiprocessor");
  occupancy[key] = std::max(n, 1);
  return occupancy[key];
}

// Bump allocator over the caller's workspace (256-byte aligned pieces).
class Carve {
 public:
  explicit Carve(void* base) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    const int64_t at = used_;
    used_ += (count * int64_t(sizeof(T)) + 255) / 256 * 256;
    return base_ ? reinterpret_cast<T*>(base_ + at) : nullptr;
  }
  int64_t used() const { return used_; }

 private:
  char* base_;
  int64_t used_ = 0;
};

Args base_args(const SoftSortParams& p) {
  Args a;
  a.B = int(p.batch);
  a.D = int(p.dim);
  a.L = int(p.seqlen);
  a.dtype = p.input_type;
  a.sign = p.descending ? 1.f : -1.f;
  a.tau = float(p.tau);
  a.inv_tau = float(1.0 / p.tau);
  a.p = float(p.p);
  a.radius = float(p.band_radius);
  a.hard = p.hard;
  a.x = p.x;
  a.xb = p.x_batch_stride;
  a.xd = p.x_dim_stride;
  a.t = static_cast<const float*>(p.sorted_scores);
  a.perm = p.perm;
  return a;
}

// Rows of p = 1 longer than one block's tile go through the tile kernels (softsort_tiles.cuh).
bool several_tiles(int64_t L) { return L > int64_t(kMaxThreads) * kE; }

// Whether finish_dx can hold a row of `a` in shared memory (its one-row instance: launch_finish_dx
// takes more rows a block only where they need at most 32 KB).
bool finish_dx_fits(Args a, bool with_w) {
  a.finish_rows = 1;
  const void* kernel = finish_dx_kernel_handle(a, with_w);
  return finish_dx_smem_bytes(a) <= kernel_facts(kernel).smem_limit;
}

// The tile kernels' buffers.
void carve_tiles(Args& t, Carve& carve) {
  const int64_t n = int64_t(t.B) * std::max(t.D, 1) * t.tiles * kTileCarry;  // (kNorm: one row)
  t.tile_sums = carve.take<float>(n);
  t.tile_in = carve.take<float>(n);
  t.tile_resp = carve.take<float>(int64_t(t.B) * t.tiles * kTileResp);
}

// The forward's workspace; `ws` null only measures it.
struct FwdPlan {
  Args a;      // the row kernels (the gather, when the tile kernels follow)
  Args tiles;  // p = 1 rows of several tiles
  bool tiled = false;
  int64_t bytes = 0;
};

FwdPlan plan_fwd(const SoftSortParams& p, void* ws) {
  FwdPlan f;
  f.a = base_args(p);
  Args& a = f.a;
  Carve carve(ws);
  f.tiled = !p.hard && p.p_is_one && several_tiles(p.seqlen);
  const RowKernel kind = p.hard || !p.p_is_one || f.tiled ? RowKernel::kGather : RowKernel::kFwd;
  configure_rows(a, kind);
  if (kind == RowKernel::kGather) a.perm32 = carve.take<int>(int64_t(a.B) * a.L);
  if (!p.hard) {
    if (!p.p_is_one) a.ybuf = carve.take<char>(int64_t(a.B) * a.D * a.L * dtype_size(a.dtype));
    a.inv_z = carve.take<float>(int64_t(a.B) * a.L);
  }
  if (f.tiled) {
    f.tiles = a;
    configure_tiles(f.tiles, false);
    carve_tiles(f.tiles, carve);
  }
  f.bytes = carve.used();
  return f;
}

struct BwdPlan {
  Args a;               // common arguments and buffers
  Args sweep;           // p = 1 single tiles: the sweep
  Args gather;          // sorted tokens: their gather
  Args tiles;           // p = 1 rows of several tiles
  bool sorted = false;  // tokens gathered into sorted order (general p, p = 1 several tiles)
  int64_t bytes = 0;
};

BwdPlan plan_bwd(const SoftSortBwdParams& p, void* ws) {
  BwdPlan f;
  Args& a = f.a;
  a = base_args(p);
  a.hard = p.hard;
  a.g = p.dout;
  a.gb = p.dout_batch_stride;
  a.gd = p.dout_dim_stride;
  a.gl = p.dout_seq_stride;
  a.dx = p.dx;
  a.w = p.with_w ? static_cast<const float*>(p.w) : nullptr;
  a.dw = p.with_w ? static_cast<float*>(p.dw) : nullptr;
  a.dscores = p.with_w ? nullptr : static_cast<float*>(p.dscores);
  Carve carve(ws);
  const int64_t BL = int64_t(a.B) * a.L;
  f.sorted = !p.p_is_one || several_tiles(p.seqlen);
  if (!f.sorted) {
    f.sweep = a;
    configure_rows(f.sweep, RowKernel::kBwd);
    f.sweep.parts = f.sweep.groups;
    a.threads = f.sweep.threads;
    a.tile = f.sweep.tile;
    a.tiles = f.sweep.tiles;
    a.parts = f.sweep.parts;
    a.inv_perm = carve.take<int>(BL);  // for finish_dx
  } else {
    f.gather = a;
    configure_rows(f.gather, RowKernel::kGather);
    if (p.p_is_one) {
      f.tiles = a;
      configure_tiles(f.tiles, true);
      carve_tiles(f.tiles, carve);
      a.parts = f.tiles.parts;
      a.dy_in_dx = finish_dx_fits(a, p.with_w);
    } else {
      a.parts = band_channel_tiles(a.D);
    }
    // The sorted tokens sit in dx. With dy_in_dx the apply pass replaces them there by K g / Z
    // (in the storage type), which finish_dx puts into token order; otherwise K g / Z goes to
    // dybuf in float32 (the p = 1 hard mode's dx is g through the permutation instead), and the
    // unpermute reads a row's tokens before it writes the row (softsort_band.cu).
    a.ybuf = p.dx;
    if (a.dy_in_dx)
      a.inv_perm = carve.take<int>(BL);
    else if (!(p.p_is_one && p.hard))
      a.dybuf = carve.take<float>(int64_t(a.B) * a.D * a.L);
    a.perm32 = carve.take<int>(BL);
  }
  a.inv_z = carve.take<float>(BL);
  a.part = carve.take<float>(BL * a.parts * 2);
  a.qc = carve.take<float>(BL * 2);
  a.dk = carve.take<float>(BL);
  a.dw_part = carve.take<float>(int64_t(a.B) * a.D);
  for (Args* k : {&f.sweep, &f.gather, &f.tiles}) {
    k->inv_z = a.inv_z;
    k->part = a.part;
    k->qc = a.qc;
    k->dk = a.dk;
    k->dw_part = a.dw_part;
    k->ybuf = a.ybuf;
    k->dybuf = a.dybuf;
    k->perm32 = a.perm32;
    k->inv_perm = a.inv_perm;
    k->dy_in_dx = a.dy_in_dx;
  }
  f.bytes = carve.used();
  return f;
}

void sync_check(const char* what) { cuda_check(cudaGetLastError(), what); }

// finish_dx (softsort_aux.cu) on a (ceil(D / rows), B) grid, a block per `rows` rows, the rows in
// dynamic shared memory (its limit raised first where they need it; cached per device).
void launch_finish_dx(Args a, bool with_w, cudaStream_t s) {
  a.finish_rows = finish_dx_rows(a);
  const void* kernel = finish_dx_kernel_handle(a, with_w);
  const int threads = finish_dx_threads(a.L);
  const size_t smem = finish_dx_smem_bytes(a);
  blocks_per_sm(kernel, threads, smem);
  const dim3 grid(unsigned((a.D + a.finish_rows - 1) / a.finish_rows), unsigned(a.B));
  launch_handle(kernel, grid, threads, smem, a, s, "finish_dx launch");
}

}  // namespace

void raise_smem_limit(const void* kernel, size_t dyn) {
  static std::map<std::pair<int, const void*>, size_t> granted;
  const int dev = current_device();
  std::lock_guard<std::mutex> lock(cache_mutex());
  size_t& g = granted[{dev, kernel}];
  if (dyn > g) {
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(dyn)),
               "cudaFuncSetAttribute");
    g = dyn;
  }
}

void configure_tiles(Args& a, bool bwd) {
  // Tiles of kTileThreads = 128 threads x kE positions: forward + backward of score_and_permute
  // in bf16 at (4, 16384, 1536) and (2, 65536, 1536) took 3.28 / 6.50 ms, against 3.39 / 6.59 ms
  // with 256 threads and 3.38 / 6.64 ms with 512 (H100).
  a.threads = kTileThreads;
  a.tile = a.threads * kE;
  a.tiles = (a.L + a.tile - 1) / a.tile;
  a.stages = kMaxStages;
  a.g_smem = bwd && a.gl == 1;  // a broadcast or strided g is read directly
  a.dx_chunk = 0;
  // One wave of blocks of each kernel over the tiles of the batch, each block a range of channels:
  // the sums kernel holds more blocks per multiprocessor than the apply kernel (fewer registers),
  // so it gets a grid of its own.
  auto one_wave = [&](bool apply) {
    const void* kernel = tile_kernel_handle(a.dtype, bwd, apply);
    const int slots =
        blocks_per_sm(kernel, a.threads, tile_smem_bytes(a)) * kernel_facts(kernel).sms;
    return std::max(1, std::min(std::max(a.D, 1), slots / std::max(a.B * a.tiles, 1)));
  };
  a.sum_groups = one_wave(false);
  a.groups = one_wave(true);
  a.parts = a.groups;
}

void configure_rows(Args& a, RowKernel kind) {
  const int L = std::max(a.L, 1);
  const int need = (L + kE - 1) / kE;
  a.threads = std::min(kMaxThreads, std::max(32, (need + 31) / 32 * 32));
  a.tile = a.threads * kE;
  a.tiles = (L + a.tile - 1) / a.tile;

  const void* kernel = kind == RowKernel::kUnpermute ? unpermute_kernel_handle(a.dtype)
                                                     : row_kernel_handle(a.dtype, kind);
  const KernelFacts facts = kernel_facts(kernel);
  const bool sweep = kind == RowKernel::kBwd;
  a.acc_smem = sweep ? 4 * 16 * a.threads : 0;  // four float4 per thread (bwd_kernel)
  const size_t room = facts.smem_limit - size_t(a.acc_smem);
  const size_t row = size_t(L) * dtype_size(a.dtype);
  const int fit = int(std::min<size_t>(room / row, 16));  // rows that fit
  a.dx_chunk = 0;
  // Shared memory goes to the unpermute's dx row (the scatter target), or first to one staged x
  // row (the gather source), then to the g rows of the sweep (when g runs along L; a broadcast
  // gradient, stride 0, is read directly), then to more stages.
  if (kind == RowKernel::kUnpermute) {  // rows longer than shared memory go in chunks
    a.stages = 0;
    a.g_smem = false;
    const int most = int(room / dtype_size(a.dtype)) / kE * kE;
    a.dx_chunk = fit >= 1 ? L : std::max(kE, most);
  } else {
    a.g_smem = sweep && a.gl == 1 && fit >= 2;
    a.stages = std::min(kMaxStages, fit / (a.g_smem ? 2 : 1));
  }
  const size_t dyn = row_smem_bytes(a);
  const int slots = blocks_per_sm(kernel, a.threads, dyn) * facts.sms;
  // One wave of blocks split evenly over the batch, each block a range of channels. The partial
  // sums of the backward sweep take 8 bytes per position and block: with at least 16 / (bytes
  // per token element) channels per block they stay within half the size of the tokens.
  a.groups = std::max(1, std::min(std::max(a.D, 1), slots / std::max(a.B, 1)));
  if (sweep) {
    const int min_channels = std::max(1, 16 / int(dtype_size(a.dtype)));
    a.groups = std::max(1, std::min(a.groups, a.D / min_channels));
  }
}

}  // namespace cuda_softsort

using cuda_softsort::Args;

int64_t softsort_fwd_workspace_bytes_cuda(const SoftSortParams& p) {
  if (p.batch * p.dim * p.seqlen == 0) return 0;
  DeviceGuard guard(p.device_index);
  return cuda_softsort::plan_fwd(p, nullptr).bytes;
}

int64_t softsort_bwd_workspace_bytes_cuda(const SoftSortBwdParams& p) {
  if (p.batch * p.seqlen == 0) return 0;
  DeviceGuard guard(p.device_index);
  return cuda_softsort::plan_bwd(p, nullptr).bytes;
}

int64_t softsort_rank_workspace_bytes_cuda(const SoftSortRankParams& p) {
  if (p.batch * p.seqlen == 0) return 0;
  DeviceGuard guard(p.device_index);
  return cuda_softsort::rank_workspace_bytes(int(p.batch), int(p.seqlen), p.with_w);
}

void softsort_rank_cuda(const SoftSortRankParams& p, void* stream) {
  using namespace cuda_softsort;
  if (p.batch * p.seqlen == 0) return;
  DeviceGuard guard(p.device_index);
  RankArgs a;
  a.B = int(p.batch);
  a.D = int(p.dim);
  a.L = int(p.seqlen);
  a.dtype = p.input_type;
  a.descending = p.descending;
  a.with_w = p.with_w;
  a.x = p.x;
  a.xb = p.x_batch_stride;
  a.xd = p.x_dim_stride;
  a.w = static_cast<const float*>(p.w);
  a.scores = static_cast<const float*>(p.scores);
  a.t = static_cast<float*>(p.sorted_scores);
  a.perm = p.perm;
  launch_rank(a, p.workspace, static_cast<cudaStream_t>(stream));
  sync_check("soft_permute ranking");
}

void softsort_scores_cuda(const SoftSortScoreParams& p, void* stream) {
  if (p.batch * p.seqlen == 0) return;
  DeviceGuard guard(p.device_index);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  cuda_softsort::launch_scores(p.x, p.x_batch_stride, p.x_dim_stride,
                               static_cast<const float*>(p.w), static_cast<float*>(p.scores),
                               int(p.batch), int(p.dim), int(p.seqlen), p.input_type, s);
  cuda_softsort::sync_check("score_and_permute scores");
}

void softsort_fwd_cuda(const SoftSortParams& p, void* stream) {
  using namespace cuda_softsort;
  if (p.batch * p.dim * p.seqlen == 0) return;
  DeviceGuard guard(p.device_index);
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  FwdPlan f = plan_fwd(p, p.workspace);
  Args& a = f.a;
  if (a.perm32) launch_narrow_perm(a, s);  // for the gather
  if (p.hard) {
    a.out = p.out;
    launch_fwd(a, s);
  } else if (f.tiled) {  // the sorted tokens gathered into out, then replaced by the result
    launch_tiles(f.tiles, TileMode::kNorm, s);
    Args gather = a;
    gather.hard = true;
    gather.out = p.out;
    launch_fwd(gather, s);
    f.tiles.out = p.out;
    f.tiles.ybuf = p.out;
    launch_tiles(f.tiles, TileMode::kFwd, s);
  } else if (p.p_is_one) {
    a.out = p.out;
    launch_fwd(a, s);  // single tiles normalise in the row kernel
  } else {
    Args gather = a;
    gather.hard = true;
    gather.out = a.ybuf;
    launch_fwd(gather, s);
    launch_band_norm(a, s);
    a.out = p.out;
    launch_band_fwd(a, s);
  }
  sync_check("soft_permute forward");
}

void softsort_bwd_cuda(const SoftSortBwdParams& p, void* stream) {
  using namespace cuda_softsort;
  const cudaStream_t s = static_cast<cudaStream_t>(stream);
  DeviceGuard guard(p.device_index);
  if (p.batch * p.seqlen == 0) {
    if (p.with_w && p.dim > 0)
      cuda_check(cudaMemsetAsync(p.dw, 0, size_t(p.dim) * sizeof(float), s), "cudaMemsetAsync");
    return;
  }
  BwdPlan f = plan_bwd(p, p.workspace);
  Args& a = f.a;
  const bool no_channels = p.dim == 0;
  if (no_channels)  // nothing moves: Q = C = 0
    cuda_check(cudaMemsetAsync(a.qc, 0, size_t(a.B) * 2 * a.L * sizeof(float), s),
               "cudaMemsetAsync");
  if (!f.sorted) {  // p = 1, single tiles (they normalise in the row kernels)
    if (!no_channels) {
      launch_bwd(f.sweep, s);
      launch_reduce_qc(a, s);
    }
    Args kg = a;
    if (p.with_w) kg.dscores = a.dk;  // ds in token order, for the score term
    launch_keygrad(kg, s);
    if (!no_channels) {
      launch_narrow_perm(a, s);  // inv_perm only
      launch_finish_dx(a, p.with_w, s);
      if (p.with_w) launch_reduce_dw(a, s);
    }
  } else {  // over sorted tokens: scans of tiles (p = 1) or banded sums (general p)
    launch_narrow_perm(a, s);  // for the gather, the unpermute or finish_dx
    if (!no_channels) {
      Args gather = f.gather;
      gather.hard = true;
      gather.out = a.ybuf;
      launch_fwd(gather, s);
    }
    if (p.p_is_one) launch_tiles(f.tiles, TileMode::kNorm, s);
    else launch_band_norm(a, s);
    if (!no_channels) {
      if (p.p_is_one) launch_tiles(f.tiles, TileMode::kBwd, s);
      else launch_band_bwd(a, s);
      launch_reduce_qc(a, s);
    }
    if (p.p_is_one) {
      Args kg = f.tiles;
      if (a.dy_in_dx && p.with_w) kg.dscores = a.dk;  // ds in token order, for finish_dx
      launch_tiles(kg, TileMode::kKeygrad, s);
    } else {
      launch_band_keygrad(a, s);
    }
    if (!no_channels) {
      if (a.dy_in_dx) {
        launch_finish_dx(a, p.with_w, s);
      } else {
        Args un = a;
        configure_rows(un, RowKernel::kUnpermute);
        launch_unpermute(un, s);
      }
      if (p.with_w) launch_reduce_dw(a, s);
    }
  }
  sync_check("soft_permute backward");
}

}  // namespace s6kit
