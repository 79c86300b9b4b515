// CUDA kernels of the general-p SoftSort: banded sums over the tokens in sorted order.
//
// Keys are sorted, so for position i the weights K_ij = exp(-|k_i - k_j|^p / tau) are nonzero on
// a contiguous band of j; the weight is defined as exactly 0 beyond the band radius (see
// s6kit/softsort_params.h), and tiles made only of such pairs are never visited, which changes
// nothing. Tokens are first gathered into sorted order (the hard-mode gather of
// softsort_scan.cu writes ybuf), so every tile load is contiguous.
//
//   band_norm:    1 / Z_i, one warp per position
//   band_fwd:     out = K y / Z, tiles of 64 channels x 64 positions over 32-wide key tiles
//   band_bwd:     K gh (to dybuf), and per channel tile the sums q_i, c_i of the score gradient
//   band_keygrad: dk_i = -(Q_i - C_i (W 1)_i - (W C)_i), one warp per position
//   unpermute:    dx[perm_i] = K gh + dscores w (score_and_permute), dw partials; also the
//                 p = 1 backward of rows of several tiles
#include "softsort_rows.cuh"

namespace s6kit::cuda_softsort {
namespace {

constexpr int kTileC = 64, kTileI = 64, kTileK = 32, kPad = 4;

struct Band {
  const float* t;
  float sign, p, inv_tau, radius;
  int L;
  __device__ float key(int i) const { return sign * t[i]; }
  // |k_i - k_j| as the band limits measure it (keys non-increasing).
  __device__ float dist(int i, int j) const { return j <= i ? key(j) - key(i) : key(i) - key(j); }
  __device__ float power(float d) const { return p == 2.f ? d * d : __powf(d, p); }
  __device__ float k(float d) const { return d > radius ? 0.f : __expf(-power(d) * inv_tau); }
  // K and the signless W = (p / tau) d^(p-1) K (0 at d = 0).
  __device__ void kw(float d, float& kv, float& wv) const {
    if (d > radius) {
      kv = wv = 0.f;
      return;
    }
    const float pw = power(d);
    kv = __expf(-pw * inv_tau);
    wv = d > 0.f ? p * inv_tau * (pw / d) * kv : 0.f;
  }
  // First j <= i with a nonzero weight, last j >= i with one.
  __device__ int lo(int i) const {
    int a = 0, b = i;  // dist(i, j) decreases as j rises to i
    while (a < b) {
      const int m = (a + b) >> 1;
      if (dist(i, m) > radius) a = m + 1; else b = m;
    }
    return a;
  }
  __device__ int hi(int i) const {
    int a = i, b = L - 1;
    while (a < b) {
      const int m = (a + b + 1) >> 1;
      if (dist(i, m) > radius) b = m - 1; else a = m;
    }
    return a;
  }
  __device__ bool finite() const { return isfinite(t[0]) && isfinite(t[L - 1]); }
};

__device__ __forceinline__ Band make_band(const Args& a, int b) {
  return Band{a.t + int64_t(b) * a.L, a.sign, a.p, a.inv_tau, a.radius, a.L};
}

// ---- 1 / Z and the key gradient: one warp per position --------------------------------------

__global__ void band_norm_kernel(const Args a) {
  const int b = blockIdx.y, lane = threadIdx.x & 31;
  const int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const Band band = make_band(a, b);
  if (i >= a.L || !band.finite()) return;
  float z = 0.f;
  for (int j = band.lo(i) + lane, end = band.hi(i); j <= end; j += 32) z += band.k(band.dist(i, j));
  z = warp_sum(z);
  if (lane == 0) a.inv_z[int64_t(b) * a.L + i] = 1.f / z;
}

__global__ void band_keygrad_kernel(const Args a) {
  const int b = blockIdx.y, lane = threadIdx.x & 31;
  const int i = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  const int L = a.L;
  if (i >= L) return;
  const Band band = make_band(a, b);
  const float* Q = a.qc + int64_t(b) * 2 * L;
  const float* C = Q + L;
  float dkv = nan_f();
  if (band.finite()) {
    float w1 = 0.f, wc = 0.f;
    for (int j = band.lo(i) + lane, end = band.hi(i); j <= end; j += 32) {
      float kv, wv;
      band.kw(band.dist(i, j), kv, wv);
      if (j < i) wv = -wv;  // sign(k_i - k_j): keys before i are larger
      w1 += wv;
      wc = fmaf(wv, C[j], wc);
    }
    w1 = warp_sum(w1);
    wc = warp_sum(wc);
    dkv = -(Q[i] - C[i] * w1 - wc);
  }
  if (lane == 0) {
    if (a.dscores)
      a.dscores[int64_t(b) * L + a.perm[int64_t(b) * L + i]] = a.sign * dkv;
    else
      a.dk[int64_t(b) * L + i] = dkv;
  }
}

// ---- tiles of 64 channels x 64 positions ------------------------------------------------------

// Loads rows [c0, c0 + kTileC) x keys [k0, k0 + kTileK) of a (B, D, L) tensor as dst[k][c]
// (zero outside), scaled by scale[k] when given.
template <typename T>
__device__ void load_tile(float (*dst)[kTileC + kPad], const T* src, int64_t dstride,
                          int64_t lstride, int c0, int k0, int D, int L, const float* scale) {
  for (int e = threadIdx.x; e < kTileC * kTileK; e += blockDim.x) {
    const int c = e / kTileK, kk = e % kTileK;
    const int d = c0 + c, k = k0 + kk;
    float v = 0.f;
    if (d < D && k < L) {
      v = to_f(src[d * dstride + k * lstride]);
      if (scale) v *= scale[k];
    }
    dst[kk][c] = v;
  }
}

// Keys of positions [start, start + n) into dst (0 past L).
__device__ void load_keys(float* dst, const Band& band, int start, int n) {
  for (int e = threadIdx.x; e < n; e += blockDim.x) dst[e] = start + e < band.L ? band.key(start + e) : 0.f;
}

// |k_i - k_j| from staged keys, the same arithmetic as Band::dist.
__device__ __forceinline__ float staged_dist(float ki, float kj, int i, int j) {
  return j <= i ? kj - ki : ki - kj;
}

// Which key tiles a position tile [i0, i1] touches: [lo(i0), hi(i1)].
__device__ void key_range(const Band& band, int i0, int i1, int& klo, int& khi, int* sh) {
  if (threadIdx.x == 0) {
    sh[0] = band.lo(i0);
    sh[1] = band.hi(i1);
  }
  __syncthreads();
  klo = sh[0];
  khi = sh[1];
}

template <typename T>
__global__ void __launch_bounds__(256) band_fwd_kernel(const Args a) {
  __shared__ __align__(16) float ys[kTileK][kTileC + kPad];
  __shared__ __align__(16) float ks[kTileK][kTileI + kPad];
  __shared__ int range[2];
  const int b = blockIdx.z, c0 = blockIdx.y * kTileC, i0 = blockIdx.x * kTileI;
  const int L = a.L, D = a.D;
  const int ci = (threadIdx.x % 16) * 4, ii = (threadIdx.x / 16) * 4;
  T* out = static_cast<T*>(a.out) + int64_t(b) * D * L;
  const Band band = make_band(a, b);
  if (!band.finite()) {
    for (int e = threadIdx.x; e < kTileC * kTileI; e += blockDim.x) {
      const int d = c0 + e / kTileI, i = i0 + e % kTileI;
      if (d < D && i < L) out[int64_t(d) * L + i] = from_f<T>(nan_f());
    }
    return;
  }
  const T* y = static_cast<const T*>(a.ybuf) + int64_t(b) * D * L;
  __shared__ float key_i[kTileI], key_k[kTileK];
  int klo, khi;
  load_keys(key_i, band, i0, kTileI);
  key_range(band, i0, min(i0 + kTileI, L) - 1, klo, khi, range);
  float acc[4][4] = {};
  for (int k0 = klo; k0 <= khi; k0 += kTileK) {
    load_tile<T>(ys, y, L, 1, c0, k0, D, L, nullptr);
    load_keys(key_k, band, k0, kTileK);
    __syncthreads();
    for (int e = threadIdx.x; e < kTileK * kTileI; e += blockDim.x) {
      const int kk = e / kTileI, il = e % kTileI, i = i0 + il, k = k0 + kk;
      ks[kk][il] = (i < L && k < L) ? band.k(staged_dist(key_i[il], key_k[kk], i, k)) : 0.f;
    }
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < kTileK; ++kk) {
      const float4 yv = *reinterpret_cast<const float4*>(&ys[kk][ci]);
      const float4 kv = *reinterpret_cast<const float4*>(&ks[kk][ii]);
      const float yy[4] = {yv.x, yv.y, yv.z, yv.w}, kx[4] = {kv.x, kv.y, kv.z, kv.w};
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[p][q] = fmaf(yy[p], kx[q], acc[p][q]);
    }
    __syncthreads();
  }
  const float* iz = a.inv_z + int64_t(b) * L;
#pragma unroll
  for (int p = 0; p < 4; ++p)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int d = c0 + ci + p, i = i0 + ii + q;
      if (d < D && i < L) out[int64_t(d) * L + i] = from_f<T>(acc[p][q] * iz[i]);
    }
}

template <typename T>
__global__ void __launch_bounds__(256) band_bwd_kernel(const Args a) {
  __shared__ __align__(16) float ys[kTileK][kTileC + kPad];
  __shared__ __align__(16) float gs[kTileK][kTileC + kPad];
  __shared__ __align__(16) float ks[kTileK][kTileI + kPad];
  __shared__ __align__(16) float ws[kTileK][kTileI + kPad];
  __shared__ int range[2];
  const int b = blockIdx.z, c0 = blockIdx.y * kTileC, i0 = blockIdx.x * kTileI;
  const int L = a.L, D = a.D;
  const int ci = (threadIdx.x % 16) * 4, ii = (threadIdx.x / 16) * 4;
  const Band band = make_band(a, b);
  if (!band.finite()) return;  // keygrad and unpermute write the NaNs
  const T* y = static_cast<const T*>(a.ybuf) + int64_t(b) * D * L;
  const T* g = static_cast<const T*>(a.g) + b * a.gb;
  const float* iz = a.inv_z + int64_t(b) * L;
  __shared__ float key_i[kTileI], key_k[kTileK];
  int klo, khi;
  load_keys(key_i, band, i0, kTileI);
  key_range(band, i0, min(i0 + kTileI, L) - 1, klo, khi, range);
  // acc[0] = K gh, acc[1] = W y, acc[2] = W gh, acc[3] = K y
  float acc[4][4][4] = {};
  for (int k0 = klo; k0 <= khi; k0 += kTileK) {
    load_tile<T>(ys, y, L, 1, c0, k0, D, L, nullptr);
    load_tile<T>(gs, g, a.gd, a.gl, c0, k0, D, L, iz);
    load_keys(key_k, band, k0, kTileK);
    __syncthreads();
    for (int e = threadIdx.x; e < kTileK * kTileI; e += blockDim.x) {
      const int kk = e / kTileI, il = e % kTileI, i = i0 + il, k = k0 + kk;
      float kv = 0.f, wv = 0.f;
      if (i < L && k < L) {
        band.kw(staged_dist(key_i[il], key_k[kk], i, k), kv, wv);
        if (k < i) wv = -wv;  // sign(k_i - k_j): keys before i are larger
      }
      ks[kk][il] = kv;
      ws[kk][il] = wv;
    }
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < kTileK; ++kk) {
      const float4 yv = *reinterpret_cast<const float4*>(&ys[kk][ci]);
      const float4 gv = *reinterpret_cast<const float4*>(&gs[kk][ci]);
      const float4 kv = *reinterpret_cast<const float4*>(&ks[kk][ii]);
      const float4 wv = *reinterpret_cast<const float4*>(&ws[kk][ii]);
      const float yy[4] = {yv.x, yv.y, yv.z, yv.w}, gg[4] = {gv.x, gv.y, gv.z, gv.w};
      const float kx[4] = {kv.x, kv.y, kv.z, kv.w}, wx[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
      for (int p = 0; p < 4; ++p)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          acc[0][p][q] = fmaf(gg[p], kx[q], acc[0][p][q]);
          acc[1][p][q] = fmaf(yy[p], wx[q], acc[1][p][q]);
          acc[2][p][q] = fmaf(gg[p], wx[q], acc[2][p][q]);
          acc[3][p][q] = fmaf(yy[p], kx[q], acc[3][p][q]);
        }
    }
    __syncthreads();
  }
  // dy in sorted order; q_i, c_i summed over this tile's channels.
  float qs[4] = {}, cs[4] = {};
#pragma unroll
  for (int p = 0; p < 4; ++p) {
    const int d = c0 + ci + p;
    if (d >= D) continue;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = i0 + ii + q;
      if (i >= L) continue;
      a.dybuf[(int64_t(b) * D + d) * L + i] = acc[0][p][q];
      const float yi = to_f(y[int64_t(d) * L + i]);
      const float gi = to_f(g[d * a.gd + i * a.gl]) * iz[i];
      qs[q] += gi * acc[1][p][q] + yi * acc[2][p][q];
      cs[q] += gi * acc[3][p][q] * iz[i];
    }
  }
#pragma unroll
  for (int q = 0; q < 4; ++q)
#pragma unroll
    for (int m = 8; m > 0; m >>= 1) {  // the 16 threads sharing these positions
      qs[q] += __shfl_xor_sync(kFull, qs[q], m);
      cs[q] += __shfl_xor_sync(kFull, cs[q], m);
    }
  if (threadIdx.x % 16 == 0) {
    float* part = a.part + (int64_t(b) * a.parts + blockIdx.y) * 2 * L;
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = i0 + ii + q;
      if (i < L) {
        part[i] = qs[q];
        part[L + i] = cs[q];
      }
    }
  }
}

// ---- dx in token order ------------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kMaxThreads) unpermute_kernel(const Args a) {
  extern __shared__ __align__(16) unsigned char dyn[];
  __shared__ float red[32];
  const int b = blockIdx.y, L = a.L, D = a.D;
  const ChannelRange cr(D);
  if (cr.rows() <= 0) return;
  T* dx = static_cast<T*>(a.dx) + (int64_t(b) * D + cr.d0) * L;
  if (!sorted_row_finite(a.t + int64_t(b) * L, L)) {
    fill_rows_nan(dx, cr.rows(), L);
    if (a.w)
      for (int d = cr.d0 + threadIdx.x; d < cr.d1; d += blockDim.x)
        a.dw_part[int64_t(b) * D + d] = nan_f();
    return;
  }
  T* dx_smem = reinterpret_cast<T*>(dyn);  // a.dx_chunk elements of the dx row
  const int* perm = a.perm32 + int64_t(b) * L;
  const float* dk = a.dk + int64_t(b) * L;
  for (int r = 0; r < cr.rows(); ++r) {
    const int d = cr.d0 + r;
    const float* dy = a.dybuf + (int64_t(b) * D + d) * L;
    const T* y = static_cast<const T*>(a.ybuf) + (int64_t(b) * D + d) * L;
    const T* g = static_cast<const T*>(a.g) + b * a.gb + d * a.gd;
    T* dxrow = dx + int64_t(r) * L;
    const float wd = a.w ? a.w[d] : 0.f;
    // dw first: the sorted tokens y may sit in this very dx row (the backward stages them there),
    // so they are read in full before the row is written.
    if (a.w) {
      float dwacc = 0.f;
      for (int s = threadIdx.x * kE; s < L; s += blockDim.x * kE) {
        float yv[kE], dks[kE];
        load_run<T, kE>(y, 1, s, L, yv);
        load_run<float, kE>(dk, 1, s, L, dks);  // (zero past L)
#pragma unroll
        for (int j = 0; j < kE; ++j) dwacc = fmaf(a.sign * dks[j], yv[j], dwacc);
      }
      const float sum = block_sum(dwacc, red);  // (its barriers also end the reads of y)
      if (threadIdx.x == 0) a.dw_part[int64_t(b) * D + d] = sum;
    }
    // The row is assembled in shared memory one chunk of token positions at a time (the whole
    // row when it fits), each chunk taking the sorted positions whose token falls in it.
    for (int base = 0; base < L; base += a.dx_chunk) {
      const int end = min(L, base + a.dx_chunk);
      __syncthreads();  // the previous copy out of dx_smem is done
      for (int s = threadIdx.x * kE; s < L; s += blockDim.x * kE) {
        float val[kE];
        if (a.hard)
          load_grad_run<T, kE>(g, a.gl, s, L, val);
        else
          load_run<float, kE>(dy, 1, s, L, val);
        int to[kE];
        load_indices<kE>(perm, s, L, -1, to);
        float dks[kE];
        if (a.w) load_run<float, kE>(dk, 1, s, L, dks);
#pragma unroll
        for (int j = 0; j < kE; ++j) {
          if (to[j] < base || to[j] >= end) continue;
          const float v = a.w ? fmaf(a.sign * dks[j], wd, val[j]) : val[j];
          dx_smem[to[j] - base] = from_f<T>(v);
        }
      }
      __syncthreads();
      copy_row(dxrow + base, dx_smem, end - base);
    }
  }
}

}  // namespace

void launch_band_norm(const Args& a, cudaStream_t s) {
  band_norm_kernel<<<dim3((a.L + 7) / 8, a.B), 256, 0, s>>>(a);
}

void launch_band_keygrad(const Args& a, cudaStream_t s) {
  band_keygrad_kernel<<<dim3((a.L + 7) / 8, a.B), 256, 0, s>>>(a);
}

void launch_band_fwd(const Args& a, cudaStream_t s) {
  const dim3 grid((a.L + kTileI - 1) / kTileI, (a.D + kTileC - 1) / kTileC, a.B);
  switch (a.dtype) {
    case DType::f16: band_fwd_kernel<__half><<<grid, 256, 0, s>>>(a); break;
    case DType::bf16: band_fwd_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(a); break;
    default: band_fwd_kernel<float><<<grid, 256, 0, s>>>(a); break;
  }
}

int band_channel_tiles(int D) { return (D + kTileC - 1) / kTileC; }

void launch_band_bwd(const Args& a, cudaStream_t s) {
  const dim3 grid((a.L + kTileI - 1) / kTileI, band_channel_tiles(a.D), a.B);
  switch (a.dtype) {
    case DType::f16: band_bwd_kernel<__half><<<grid, 256, 0, s>>>(a); break;
    case DType::bf16: band_bwd_kernel<__nv_bfloat16><<<grid, 256, 0, s>>>(a); break;
    default: band_bwd_kernel<float><<<grid, 256, 0, s>>>(a); break;
  }
}

const void* unpermute_kernel_handle(DType dtype) {
  switch (dtype) {
    case DType::f16: return reinterpret_cast<const void*>(&unpermute_kernel<__half>);
    case DType::bf16: return reinterpret_cast<const void*>(&unpermute_kernel<__nv_bfloat16>);
    default: return reinterpret_cast<const void*>(&unpermute_kernel<float>);
  }
}

void launch_unpermute(const Args& a, cudaStream_t s) {
  launch_handle(unpermute_kernel_handle(a.dtype), dim3(a.groups, a.B), a.threads, row_smem_bytes(a),
                a, s, "unpermute launch");
}

}  // namespace s6kit::cuda_softsort
