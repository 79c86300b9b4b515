// The ranking of the CUDA SoftSort forward: scores (given, or computed from w by softsort_aux.cu)
// sorted stably per batch element into the sorted scores t and the permutation perm.
//
// Scores become unsigned sort keys ordered as torch.sort(stable=True) orders floats (NaN above
// +inf, -0.0 equal to +0.0), complemented for a descending sort, and radix sorts (stable) order
// them: rows of up to 4096 positions in one block each (cub::BlockRadixSort, keys in registers),
// longer rows in one device-wide sort of (batch element, key) pairs.
#include <cub/block/block_radix_sort.cuh>
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cuda_check.h"
#include "softsort_device.cuh"
#include "softsort_kernels.h"

namespace s6kit::cuda_softsort {
namespace {

constexpr unsigned kPadKey = 0xffffffffu;  // after every real key (NaN's is 0xffc00000)

__device__ __forceinline__ unsigned sort_key(float s, bool descending) {
  const float c = isnan(s) ? __uint_as_float(0x7fc00000u) : (s == 0.f ? 0.f : s);
  const unsigned u = __float_as_uint(c);
  const unsigned o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return descending ? ~o : o;
}

__device__ __forceinline__ float key_score(unsigned key, bool descending) {
  const unsigned o = descending ? ~key : key;
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

// One block per batch element: kThreads x kItems >= L keys in registers.
template <int kThreads, int kItems>
__global__ void __launch_bounds__(kThreads) rank_block_kernel(const float* scores, float* t,
                                                              int64_t* perm, int L,
                                                              bool descending) {
  using Sort = cub::BlockRadixSort<unsigned, kThreads, kItems, int>;
  __shared__ typename Sort::TempStorage tmp;
  const int64_t row = int64_t(blockIdx.x) * L;
  unsigned key[kItems];
  int val[kItems];
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    const int l = int(threadIdx.x) * kItems + j;
    key[j] = l < L ? sort_key(scores[row + l], descending) : kPadKey;
    val[j] = l;
  }
  Sort(tmp).SortBlockedToStriped(key, val);
#pragma unroll
  for (int j = 0; j < kItems; ++j) {
    const int i = j * kThreads + int(threadIdx.x);
    if (i < L) {
      t[row + i] = key_score(key[j], descending);
      perm[row + i] = val[j];
    }
  }
}

// Longer rows: keys (b << 32 | key) of every position, sorted device-wide.
__global__ void rank_keys_kernel(const float* scores, unsigned long long* keys, int* vals, int L,
                                 int n, bool descending) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    keys[i] = (static_cast<unsigned long long>(i / L) << 32) | sort_key(scores[i], descending);
    vals[i] = i % L;
  }
}

__global__ void rank_finish_kernel(const unsigned long long* keys, const int* vals, float* t,
                                   int64_t* perm, int n, bool descending) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    t[i] = key_score(static_cast<unsigned>(keys[i]), descending);
    perm[i] = vals[i];
  }
}

constexpr int kBlockRankMax = 4096;

int key_bits(int B) {  // 32 bits of score key, then the batch element
  int bits = 32;
  while (bits < 64 && (int64_t(1) << (bits - 32)) < B) ++bits;
  return bits;
}

// Workspace pieces: the scores (with w), then for long rows the sort's keys, values and scratch.
struct RankLayout {
  size_t scores = 0, keys = 0, vals = 0, temp = 0, temp_bytes = 0, total = 0;
};

size_t align256(size_t n) { return (n + 255) / 256 * 256; }

RankLayout rank_layout(int B, int L, bool with_w) {
  RankLayout r;
  const size_t n = size_t(B) * L;
  size_t at = 0;
  if (with_w) {
    r.scores = at;
    at += align256(n * sizeof(float));
  }
  if (L > kBlockRankMax) {
    cuda_check(cub::DeviceRadixSort::SortPairs(nullptr, r.temp_bytes,
                                          static_cast<const unsigned long long*>(nullptr),
                                          static_cast<unsigned long long*>(nullptr),
                                          static_cast<const int*>(nullptr),
                                          static_cast<int*>(nullptr), int(n), 0, key_bits(B)),
          "cub::DeviceRadixSort (size query)");
    r.keys = at;
    at += 2 * align256(n * sizeof(unsigned long long));
    r.vals = at;
    at += 2 * align256(n * sizeof(int));
    r.temp = at;
    at += align256(r.temp_bytes);
  }
  r.total = at;
  return r;
}

}  // namespace

int64_t rank_workspace_bytes(int B, int L, bool with_w) {
  return int64_t(rank_layout(B, L, with_w).total);
}

void launch_rank(const RankArgs& a, void* workspace, cudaStream_t s) {
  const int B = a.B, L = a.L;
  const int n = B * L;
  const RankLayout lay = rank_layout(B, L, a.with_w);
  char* ws = static_cast<char*>(workspace);
  const float* scores = a.scores;
  if (a.with_w) {
    float* computed = reinterpret_cast<float*>(ws + lay.scores);
    launch_scores(a.x, a.xb, a.xd, a.w, computed, B, a.D, L, a.dtype, s);
    scores = computed;
  }
  if (L <= 256) {
    rank_block_kernel<32, 8><<<B, 32, 0, s>>>(scores, a.t, a.perm, L, a.descending);
  } else if (L <= 1024) {
    rank_block_kernel<128, 8><<<B, 128, 0, s>>>(scores, a.t, a.perm, L, a.descending);
  } else if (L <= kBlockRankMax) {
    rank_block_kernel<512, 8><<<B, 512, 0, s>>>(scores, a.t, a.perm, L, a.descending);
  } else {
    auto* keys = reinterpret_cast<unsigned long long*>(ws + lay.keys);
    auto* keys_out = keys + align256(size_t(n) * sizeof(unsigned long long)) / sizeof(*keys);
    auto* vals = reinterpret_cast<int*>(ws + lay.vals);
    auto* vals_out = vals + align256(size_t(n) * sizeof(int)) / sizeof(int);
    const int grid = std::min((n + 255) / 256, 4096);
    rank_keys_kernel<<<grid, 256, 0, s>>>(scores, keys, vals, L, n, a.descending);
    size_t temp_bytes = lay.temp_bytes;
    cuda_check(cub::DeviceRadixSort::SortPairs(ws + lay.temp, temp_bytes, keys, keys_out, vals, vals_out,
                                          n, 0, key_bits(B), s),
          "cub::DeviceRadixSort");
    rank_finish_kernel<<<grid, 256, 0, s>>>(keys_out, vals_out, a.t, a.perm, n, a.descending);
  }
}

}  // namespace s6kit::cuda_softsort
