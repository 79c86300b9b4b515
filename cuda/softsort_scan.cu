// CUDA kernels of the p = 1 SoftSort: the key gradient of rows of one tile, the carry chain of
// longer rows, and the dispatch of the row kernels (forward, gather, backward sweeps) of
// softsort_scan.cuh and of the tile kernels of softsort_tiles.cuh. The scans themselves live in
// softsort_rowscan.cuh.
//
// Backward, per batch element (cpp/include/s6kit/softsort_params.h has the math):
//   sweep (bwd_kernel): per channel, y = x[perm] and gh = g / Z are scanned; K gh is written to
//     dx in sorted order, and every block adds q_i = gh_i (SR - SL)[y]_i + y_i (SR - SL)[gh]_i
//     and c_i = gh_i out_i over its channels into its slice of `part`;
//   reduce_qc: Q_i, C_i = sums over the slices;
//   keygrad: dk_i = -(Q_i - C_i (SR - SL)[1]_i - (SR - SL)[C]_i) / tau, scattered by the
//     permutation into the scores' gradient ds (token order);
//   narrow_perm (softsort_aux.cu): the inverse permutation;
//   finish_dx (softsort_aux.cu): dx into token order, and for score_and_permute dx += ds w and
//     the partials of dw = sum ds x.
#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {

// Instantiated in softsort_scan_<dtype>.cu.
template <typename T> void launch_fwd_t(const Args& a, cudaStream_t s, size_t smem);
template <typename T> void launch_bwd_t(const Args& a, cudaStream_t s, size_t smem);
template <typename T> const void* row_kernel_handle_t(RowKernel kind);
template <typename T> void launch_tiles_t(const Args& a, TileMode mode, bool apply, cudaStream_t s);
template <typename T> const void* tile_kernel_handle_t(bool bwd, bool apply);

namespace {

// ---- key gradient -----------------------------------------------------------------------------

__global__ void __launch_bounds__(kMaxThreads) keygrad_kernel(const Args a) {
  __shared__ Shared<2> sh;
  const int b = blockIdx.x, L = a.L;
  const RowEnv env = make_env(a, b, false);
  const float* C = a.qc + int64_t(b) * 2 * L + L;
  if (!row_finite(env)) {
    for (int i = threadIdx.x; i < L; i += blockDim.x) {
      if (a.dscores) a.dscores[int64_t(b) * L + i] = nan_f();
      else a.dk[int64_t(b) * L + i] = nan_f();
    }
    return;
  }
  Ctx c;
  load_ctx<true>(c, env, 0, sh.tile);
  scan_row<2, true>(
      c, sh,
      [&](const Ctx& c, float (&v)[2][kE]) {
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          v[0][j] = j < c.n ? 1.f : 0.f;
          v[1][j] = j < c.n ? C[c.s + j] : 0.f;
        }
      },
      [&](const Ctx& c, const float (&v)[2][kE], const TileScan<2, true>& ts) {
        emit_key_gradient(a, b, c, v, ts);
      });
}

// ---- the carries of the tiles of a row (softsort_tiles.cuh) ------------------------------------

// One thread per (row, sequence, direction) of a batch element: along the row, the carry a tile
// receives is the previous tile's response to the carry it received plus its own sums (left to
// right for IL / SL, right to left for IR / SR). `rows`: channels, or 1; `n`: sequences.
__global__ void tile_chain_kernel(const Args a, int rows, int n) {
  const int b = blockIdx.y, t = blockIdx.x * blockDim.x + threadIdx.x, tiles = a.tiles;
  if (t >= rows * n * 2 || !row_finite(make_env(a, b, false))) return;
  const int d = t / (2 * n), q = (t >> 1) % n;
  const bool right = t & 1;
  const float* __restrict__ sums = a.tile_sums + (int64_t(b) * rows + d) * tiles * kTileCarry;
  float* __restrict__ in = a.tile_in + (int64_t(b) * rows + d) * tiles * kTileCarry;
  const float* __restrict__ resp = a.tile_resp + int64_t(b) * tiles * kTileResp;
  const int plain = right ? 2 * n : 0, strict = plain + n, r0 = right ? 3 : 0;  // see kTileResp
  float c = 0.f, cs = 0.f;  // IL and SL (IR and SR) received
  for (int step = 0; step < tiles; ++step) {
    const int k = right ? tiles - 1 - step : step;
    const float* r = resp + k * kTileResp;
    const float* s = sums + k * kTileCarry;
    in[k * kTileCarry + plain + q] = c;
    in[k * kTileCarry + strict + q] = cs;
    cs = fmaf(r[r0 + 1], c, fmaf(r[r0 + 2], cs, s[strict + q]));
    c = fmaf(r[r0], c, s[plain + q]);
  }
}

}  // namespace

// Dynamic shared memory of a row kernel: staged x rows (and g rows; after the sweep's sums), or
// the chunk of dx the unpermute assembles at a time.
size_t row_smem_bytes(const Args& a) {
  if (a.dx_chunk > 0) return size_t(a.dx_chunk) * dtype_size(a.dtype);  // the unpermute
  const size_t row = size_t(a.L) * dtype_size(a.dtype);
  return row * size_t(a.stages) * (a.g_smem ? 2 : 1) + size_t(a.acc_smem);
}

void launch_keygrad(const Args& a, cudaStream_t s) { keygrad_kernel<<<a.B, a.threads, 0, s>>>(a); }

void launch_fwd(const Args& a, cudaStream_t s) {
  const size_t smem = row_smem_bytes(a);
  switch (a.dtype) {
    case DType::f16: return launch_fwd_t<__half>(a, s, smem);
    case DType::bf16: return launch_fwd_t<__nv_bfloat16>(a, s, smem);
    default: return launch_fwd_t<float>(a, s, smem);
  }
}

void launch_bwd(const Args& a, cudaStream_t s) {
  const size_t smem = row_smem_bytes(a);
  switch (a.dtype) {
    case DType::f16: return launch_bwd_t<__half>(a, s, smem);
    case DType::bf16: return launch_bwd_t<__nv_bfloat16>(a, s, smem);
    default: return launch_bwd_t<float>(a, s, smem);
  }
}

void launch_tiles(const Args& a, TileMode mode, cudaStream_t s) {
  const bool channels = tile_mode_channels(mode);
  Args t = a;
  if (!channels) {  // one row per batch element, nothing staged
    t.groups = t.sum_groups = 1;
    t.stages = 0;
    t.g_smem = false;
  }
  auto pass = [&](bool apply) {
    if (!channels) return launch_tiles_t<float>(t, mode, apply, s);
    switch (t.dtype) {
      case DType::f16: return launch_tiles_t<__half>(t, mode, apply, s);
      case DType::bf16: return launch_tiles_t<__nv_bfloat16>(t, mode, apply, s);
      default: return launch_tiles_t<float>(t, mode, apply, s);
    }
  };
  const int rows = channels ? t.D : 1;
  const int n = tile_mode_sequences(mode);
  pass(false);
  tile_chain_kernel<<<dim3((rows * n * 2 + 127) / 128, t.B), 128, 0, s>>>(t, rows, n);
  pass(true);
}

const void* tile_kernel_handle(DType dtype, bool bwd, bool apply) {
  switch (dtype) {
    case DType::f16: return tile_kernel_handle_t<__half>(bwd, apply);
    case DType::bf16: return tile_kernel_handle_t<__nv_bfloat16>(bwd, apply);
    default: return tile_kernel_handle_t<float>(bwd, apply);
  }
}

// Kernel handle of a row kernel, for the occupancy query of configure_rows.
const void* row_kernel_handle(DType dtype, RowKernel kind) {
  switch (dtype) {
    case DType::f16: return row_kernel_handle_t<__half>(kind);
    case DType::bf16: return row_kernel_handle_t<__nv_bfloat16>(kind);
    default: return row_kernel_handle_t<float>(kind);
  }
}

}  // namespace s6kit::cuda_softsort
