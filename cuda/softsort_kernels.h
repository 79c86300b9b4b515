// Launch arguments and launchers of the CUDA SoftSort kernels (host and device see this header;
// softsort_launch.cu fills the arguments, lays out the workspace and calls the launchers).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "s6kit/tensor.h"

namespace s6kit::cuda_softsort {

constexpr int kE = 8;             // positions per thread of the row and tile kernels
constexpr int kMaxThreads = 512;  // threads per block; a row kernel's tile is up to kMaxThreads * kE
constexpr int kMaxStages = 4;     // rows staged in shared memory (cp_async_wait: up to 3 in flight)

// p = 1 rows of several tiles (softsort_tiles.cuh). Floats per (batch element, channel, tile) in
// tile_sums and tile_in: IL, SL, IR, SR of each of up to two sequences.
constexpr int kTileCarry = 8;
// Floats per (batch element, tile) in tile_resp: the responses of IL and SL at the tile's last
// position to (IL, SL) at the one before it, and of IR and SR at its first position to (IR, SR)
// at the one after it:
//   il_last  = r[0] il
//   sl_last  = r[1] il + r[2] sl
//   ir_first = r[3] ir
//   sr_first = r[4] ir + r[5] sr
constexpr int kTileResp = 8;

struct Args {
  int B = 0, D = 0, L = 0;
  DType dtype = DType::f32;  // x, out, g, dx
  float sign = 1.f;          // +1 descending, -1 ascending: keys = sign * sorted scores
  float tau = 1.f, inv_tau = 1.f, p = 1.f;
  float radius = 0.f;        // general p: weights vanish beyond this key distance
  bool hard = false;

  // Row kernels (p = 1 scans, gathers): block size, tiling and the channel split.
  int threads = 32, tile = 256, tiles = 1;
  int groups = 1;      // channel groups per batch element: grid (groups, B)
  int sum_groups = 1;  // tile kernels: channel groups of the tile sums' grid (the apply's: groups)
  int stages = 0;      // x rows staged in shared memory per block (0: gathered from global)
  bool g_smem = false;   // backward: the g rows staged with the x rows
  int acc_smem = 0;      // backward sweep: bytes of its sums of q and c, before the staged rows
  int dx_chunk = 0;      // unpermute: dx positions assembled in shared memory at a time
  int finish_rows = 1;   // finish_dx: rows of a block

  const void* x = nullptr;  int64_t xb = 0, xd = 0;
  const float* t = nullptr;        // sorted scores (B, L)
  const int64_t* perm = nullptr;   // (B, L)
  int* perm32 = nullptr;           // perm as int32 (workspace), for the gather and the unpermute,
                                   // which read it once per row
  void* out = nullptr;             // (B, D, L) contiguous, or the sorted-token scratch

  const void* g = nullptr;  int64_t gb = 0, gd = 0, gl = 0;
  void* dx = nullptr;              // (B, D, L) contiguous
  float* dscores = nullptr;        // soft_permute: (B, L)
  const float* w = nullptr;        // score_and_permute: (D,)
  float* dw = nullptr;             // (D,)

  // Workspace.
  float* inv_z = nullptr;       // (B, L)
  float* part = nullptr;        // (B, parts, 2, L): per channel group sums q_i, c_i
  int parts = 1;                // channel groups writing `part`
  float* qc = nullptr;          // (B, 2, L): Q_i, C_i
  float* dk = nullptr;          // (B, L): dLoss / dkey in sorted order (score_and_permute on
                                //   rows of one tile: dLoss / dscores in token order)
  int* inv_perm = nullptr;      // (B, L): the sorted position of each token (for finish_dx)
  bool dy_in_dx = false;        // p = 1 rows of several tiles: the apply pass writes K g / Z (g in
                                //   the hard mode) in the storage type over the sorted tokens in
                                //   dx, for finish_dx, instead of dybuf for the unpermute
  float* dw_part = nullptr;     // (B, D)
  // p = 1 rows of several tiles, tiles in parallel (softsort_tiles.cuh):
  float* tile_sums = nullptr;   // (B, D, tiles, kTileCarry): the sums each tile passes on
  float* tile_in = nullptr;     // (B, D, tiles, kTileCarry): the carries each tile receives
  float* tile_resp = nullptr;   // (B, tiles, kTileResp): their response to the carries
  void* ybuf = nullptr;         // tokens in sorted order (B, D, L), x dtype
  float* dybuf = nullptr;       // backward: K (g / Z) in sorted order (B, D, L)
};

// The ranking (softsort_rank.cu): scores sorted per batch element into t and perm.
struct RankArgs {
  int B = 0, D = 0, L = 0;
  DType dtype = DType::f32;  // x
  bool descending = true;
  bool with_w = false;        // scores = <w, x_l>, else given
  const void* x = nullptr;  int64_t xb = 0, xd = 0;
  const float* w = nullptr;
  const float* scores = nullptr;  // (B, L)
  float* t = nullptr;             // (B, L)
  int64_t* perm = nullptr;        // (B, L)
};

int64_t rank_workspace_bytes(int B, int L, bool with_w);
void launch_rank(const RankArgs& a, void* workspace, cudaStream_t s);

enum class RowKernel { kFwd, kBwd, kGather, kUnpermute };

// Fills threads / tile / tiles / groups / stages / g_smem / acc_smem / dx_chunk of `a` for `kind` on
// the current device (deterministic: the workspace size follows from it).
void configure_rows(Args& a, RowKernel kind);

// Dynamic shared memory of a row kernel (softsort_scan.cu).
size_t row_smem_bytes(const Args& a);

// p = 1.
void launch_fwd(const Args& a, cudaStream_t s);                // out (or the gather with hard)
void launch_bwd(const Args& a, cudaStream_t s);                // the sweep: sorted dx, part
void launch_keygrad(const Args& a, cudaStream_t s);            // dk or dscores from qc (1 tile)
void launch_reduce_qc(const Args& a, cudaStream_t s);          // part -> qc
void launch_reduce_dw(const Args& a, cudaStream_t s);          // dw_part -> dw
// p = 1 (rows of one tile, or dy_in_dx): dx from sorted order into token order through inv_perm,
// and with w the score term dx += ds w and dw_part, from the scores' gradient ds (token order, in
// dk). One block of finish_dx_threads(L) threads per finish_dx_rows rows of a batch element (the
// rows in shared memory).
constexpr int kFinishThreads = 1024;
int finish_dx_threads(int L);
// Rows of a block (a.finish_rows): 8 where they take at most 8 KB of shared memory (short rows,
// whose blocks are small), 4 where they take at most 32 KB, else 1.
int finish_dx_rows(const Args& a);
size_t finish_dx_smem_bytes(const Args& a);
const void* finish_dx_kernel_handle(const Args& a, bool with_w);  // for a.finish_rows
void launch_narrow_perm(const Args& a, cudaStream_t s);        // perm -> perm32 and / or inv_perm
void launch_scores(const void* x, int64_t xb, int64_t xd, const float* w, float* scores, int B,
                   int D, int L, DType dtype, cudaStream_t s);

// p = 1, rows of several tiles (softsort_tiles.cuh): configure_tiles sets the tiling and the
// channel groups (and parts) of the grid (tiles, groups, B); launch_tiles runs the tile sums, the
// chain and the apply pass of one mode.
enum class TileMode {
  kNorm,     // inv_z
  kFwd,      // out, from the sorted tokens gathered into it
  kBwd,      // dybuf and part, from the sorted tokens in ybuf
  kKeygrad,  // dk or dscores from qc
};
// Whether a mode scans every channel of a block (else one row per batch element), and how many
// sequences it scans (two with the strict sums of the score gradient).
constexpr bool tile_mode_channels(TileMode m) { return m == TileMode::kFwd || m == TileMode::kBwd; }
constexpr int tile_mode_sequences(TileMode m) {
  return m == TileMode::kBwd || m == TileMode::kKeygrad ? 2 : 1;
}
constexpr int kTileThreads = 128;  // threads of a tile kernel's block (kE positions each)
void configure_tiles(Args& a, bool bwd);
inline size_t tile_smem_bytes(const Args& a) {  // the staged rows (y, g) of the tile kernels
  return size_t(a.stages) * (a.g_smem ? 2 : 1) * size_t(a.tile) * dtype_size(a.dtype);
}
void launch_tiles(const Args& a, TileMode mode, cudaStream_t s);

// General p (banded sums over sorted tokens in ybuf).
void launch_band_norm(const Args& a, cudaStream_t s);          // inv_z
void launch_band_fwd(const Args& a, cudaStream_t s);           // out from ybuf
void launch_band_bwd(const Args& a, cudaStream_t s);           // dybuf, part
void launch_band_keygrad(const Args& a, cudaStream_t s);       // dk or dscores from qc
void launch_unpermute(const Args& a, cudaStream_t s);          // dx (+ dk w, dw_part) from dybuf

// Launches `kernel` (a kernel taking one Args, as a *_kernel_handle returns it); the launchers of
// kernels with one instance per dtype (and flag) go through it instead of switching again.
// Raises `kernel`'s limit of dynamic shared memory on the current device to `dyn` where it is
// lower (cached per device and kernel).
void raise_smem_limit(const void* kernel, size_t dyn);

inline void launch_handle(const void* kernel, dim3 grid, int threads, size_t smem, const Args& a,
                          cudaStream_t s, const char* what) {
  Args arg = a;
  void* params[] = {&arg};
  cuda_check(cudaLaunchKernel(kernel, grid, dim3(unsigned(threads)), params, smem, s), what);
}

}  // namespace s6kit::cuda_softsort
