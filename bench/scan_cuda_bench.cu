// C++ benchmark of the CUDA selective scan (no Python): forward and backward time per shape,
// effective bandwidth against a measured device-to-device copy, and the ratio to mamba_ssm.
//
//   scan_cuda_bench [--shape=b,d,L,N] [--dtype=bf16|fp32|all] [--scalar_A=0|1] [--reps=30]
//                   [--json=PATH] [--once] [--variants] [--bwd_states=2|4|8]
//
// Without --shape: every selective-scan shape of ANCHORS.md in bf16 and fp32, plus scalar A at
// (8, 1536, 2048, 16). Inputs as in ANCHORS.md: D, z, delta_bias, softplus, B and C variable
// (batch, 1, N, L); A real (dim, N) unless --scalar_A. Times are medians of --reps runs (CUDA
// events) after warm-up; when one input set fits in L2 several sets are used in rotation.
// --once runs each direction once without timing (for profilers such as ncu and the sanitizers;
// --bwd_states forces the backward's states per thread there). --variants also times the forward
// with 2, 4 and 8 states per thread and 16-, 32- and 64-step tiles, and split along L into about 1
// (no split), 2, 4, ..., 64 chunks, and the backward with 2, 4 and 8 states per thread and split
// along L likewise (the kernels' internal launch API), to check the defaults of
// cuda/scan_fwd_layout.h and cuda/scan_layout.h on the machine at hand.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench_util.h"
#include "s6kit/scan.h"
#include "scan_launch.h"  // internal: plans and launches, the layout and split variants

using namespace s6kit;
using namespace s6kit::bench;

namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// mamba_ssm 2.x `selective_scan_cuda` on one H100 80GB HBM3, medians of 30 runs (ANCHORS.md,
// "Selective scan: mamba_ssm 2.x CUDA kernel"): D, z, delta_bias, softplus, A real, B/C variable.
struct Anchor {
  const char* dtype;
  int64_t b, d, L, N;
  double fwd_ms, bwd_ms;
};
const Anchor kMamba[] = {
    {"bf16", 8, 1536, 2048, 16, 0.470, 1.938},  {"bf16", 4, 2048, 4096, 16, 0.611, 2.553},
    {"bf16", 16, 768, 1024, 16, 0.236, 0.987},  {"bf16", 2, 4096, 8192, 16, 1.485, 5.095},
    {"fp32", 8, 1536, 2048, 16, 0.924, 2.156},  {"fp32", 4, 2048, 4096, 16, 1.229, 2.924},
    {"fp32", 16, 768, 1024, 16, 0.454, 1.239},  {"fp32", 2, 4096, 8192, 16, 2.590, 5.799},
    {"bf16", 128, 320, 196, 16, 0.339, 1.051},  {"bf16", 256, 160, 784, 16, 1.173, 4.247},
    {"bf16", 128, 640, 49, 16, 0.395, 1.052},   {"bf16", 8, 1536, 2048, 64, 1.493, 7.068},
    {"bf16", 1, 1536, 65536, 16, 2.243, 7.915},
};
const int64_t kShapes[][4] = {{8, 1536, 2048, 16}, {4, 2048, 4096, 16}, {16, 768, 1024, 16},
                              {2, 4096, 8192, 16}, {128, 320, 196, 16}, {256, 160, 784, 16},
                              {128, 640, 49, 16},  {8, 1536, 2048, 64}, {1, 1536, 65536, 16}};

const Anchor* find_anchor(const char* dtype, int64_t b, int64_t d, int64_t L, int64_t N) {
  for (const Anchor& a : kMamba)
    if (std::string(a.dtype) == dtype && a.b == b && a.d == d && a.L == L && a.N == N) return &a;
  return nullptr;
}

// Uniform values in [lo, hi) from a hash of the index (fast to generate on the device).
template <typename T>
__global__ void fill_uniform(T* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint32_t x = uint32_t(i) * 2654435761u ^ uint32_t(i >> 32) * 40503u ^ seed * 2246822519u;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    x *= 3266489917u;
    x ^= x >> 16;
    const float v = lo + (hi - lo) * (x >> 8) * (1.0f / 16777216.0f);
    p[i] = static_cast<T>(v);
  }
}

struct Buffer {
  void* ptr = nullptr;
  int64_t bytes = 0;
  Buffer() = default;
  explicit Buffer(int64_t n) : bytes(n) {
    if (n > 0) check(cudaMalloc(&ptr, size_t(n)), "cudaMalloc");
  }
  ~Buffer() {
    if (ptr) cudaFree(ptr);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : ptr(o.ptr), bytes(o.bytes) { o.ptr = nullptr; }
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      if (ptr) cudaFree(ptr);
      ptr = o.ptr;
      bytes = o.bytes;
      o.ptr = nullptr;
    }
    return *this;
  }
};

Buffer random_buffer(DType t, int64_t n, float lo, float hi, uint32_t seed) {
  Buffer b(n * dtype_size(t));
  const int threads = 256;
  const int blocks = int(std::min<int64_t>((n + threads - 1) / threads, 65535));
  if (n == 0) return b;
  if (t == DType::bf16)
    fill_uniform<<<blocks, threads>>>(static_cast<__nv_bfloat16*>(b.ptr), n, lo, hi, seed);
  else
    fill_uniform<<<blocks, threads>>>(static_cast<float*>(b.ptr), n, lo, hi, seed);
  check(cudaGetLastError(), "fill_uniform");
  return b;
}

TensorDesc cuda_desc(const Buffer& b, DType t, std::vector<int64_t> shape) {
  return make_desc(b.ptr, t, std::move(shape), Device::cuda);
}

// Device-to-device copy bandwidth (bytes read + bytes written per second), median of 10.
double copy_gbps(cudaStream_t s) {
  const int64_t bytes = int64_t(1) << 30;
  Buffer a(bytes), b(bytes);
  check(cudaMemsetAsync(a.ptr, 1, size_t(bytes), s), "memset");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> ms;
  for (int i = 0; i < 12; ++i) {
    cudaEventRecord(e0, s);
    check(cudaMemcpyAsync(b.ptr, a.ptr, size_t(bytes), cudaMemcpyDeviceToDevice, s), "memcpy");
    cudaEventRecord(e1, s);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    if (i >= 2) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return 2.0 * double(bytes) / (ms[ms.size() / 2] * 1e-3) / 1e9;
}

// One input set: the tensors a training step reads (and the states the forward saves).
struct InputSet {
  Buffer u, delta, z, B, C, dout, ckpt;
};

struct Result {
  std::string dtype, A;
  int64_t b, d, L, N;
  double fwd_ms, bwd_ms;
  int default_kS = 0, default_T = 0;
  struct Variant {
    int kS, T;
    double ms;
  };
  std::vector<Variant> fwd_variants;
  int default_bwd_kS = 0;
  std::vector<Variant> bwd_variants;  // T: the tile the backward chose for that kS
  int64_t default_chunks = 1, default_bwd_chunks = 1;
  struct Split {
    int64_t chunks;
    double ms;
  };
  std::vector<Split> fwd_splits, bwd_splits;
};

// The forward of `p` with a forced number of states per thread and tile length.
void fwd_with_layout(const ScanParams& p, int kS, int T, cudaStream_t s) {
  const cuda_scan::FwdArgs a = cuda_scan::make_fwd_args(p, static_cast<float*>(p.checkpoints), true, kS, T);
  if (p.input_type == DType::bf16)
    cuda_scan::launch_fwd<__nv_bfloat16>(a, s);
  else
    cuda_scan::launch_fwd<float>(a, s);
}

template <typename Fn>
double median_event_ms(cudaStream_t s, int warmup, int reps, Fn&& fn) {
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < warmup; ++i) fn(i);
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(e0, s);
    fn(i);
    cudaEventRecord(e1, s);
    check(cudaEventSynchronize(e1), "kernel");
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    t.push_back(ms);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Runs one direction of p as `plan` says, with the workspace ws: run(params, plan, stream).
template <typename Params, typename Plan, typename Run>
void run_planned(Params p, const Plan& plan, const Buffer& ws, Run run, cudaStream_t s) {
  p.workspace = ws.ptr;
  p.workspace_bytes = ws.bytes;
  run(p, plan, s);
}

// One direction split along L into about 1 (no split), 2, 4, ..., 64 chunks, each distinct chunk
// count timed once: plan_of(params, chunks) plans it, run(params, plan, stream) runs it.
template <typename Params, typename PlanOf, typename Run>
std::vector<Result::Split> time_splits(const std::vector<Params>& ps, int reps, cudaStream_t s,
                                       PlanOf plan_of, Run run) {
  std::vector<Result::Split> out;
  int64_t last_chunks = 0;
  for (int64_t k : {1, 2, 4, 8, 16, 32, 64}) {
    const auto plan = plan_of(ps[0], k);
    if (plan.split.nchunks == last_chunks) continue;  // L too short for more chunks
    last_chunks = plan.split.nchunks;
    Buffer ws(plan.bytes);
    const double ms = median_event_ms(
        s, 3, reps, [&](int i) { run_planned(ps[i % ps.size()], plan, ws, run, s); });
    out.push_back({plan.split.nchunks, ms});
  }
  return out;
}

Result run_shape(DType dt, bool scalar_A, int64_t b, int64_t d, int64_t L, int64_t N, int reps,
                 bool once, bool variants, int bwd_states, cudaStream_t s) {
  const int64_t bdl = b * d * L, bnl = b * N * L, nck = (L + kScanCheckpointInterval - 1) / kScanCheckpointInterval;
  const int64_t es = dtype_size(dt);
  // Rotate input sets so that a set is not still in the 50 MB L2 from the previous run.
  const int64_t set_bytes = (4 * bdl + 2 * bnl) * es;
  const int nsets = once ? 1 : int(std::clamp<int64_t>((int64_t(200) << 20) / std::max<int64_t>(set_bytes, 1), 2, 8));
  std::vector<InputSet> sets;
  for (int k = 0; k < nsets; ++k) {
    InputSet in;
    const uint32_t seed = 100 * uint32_t(k);
    in.u = random_buffer(dt, bdl, -1.f, 1.f, seed + 1);
    in.delta = random_buffer(dt, bdl, -3.f, 0.5f, seed + 2);
    in.z = random_buffer(dt, bdl, -2.f, 2.f, seed + 3);
    in.B = random_buffer(dt, bnl, -1.f, 1.f, seed + 4);
    in.C = random_buffer(dt, bnl, -1.f, 1.f, seed + 5);
    in.dout = random_buffer(dt, bdl, -1.f, 1.f, seed + 6);
    in.ckpt = Buffer(b * d * nck * N * 4);
    sets.push_back(std::move(in));
  }
  Buffer A = random_buffer(DType::f32, scalar_A ? d : d * N, -4.f, -0.5f, 7);
  Buffer D = random_buffer(DType::f32, d, -1.f, 1.f, 8), bias = random_buffer(DType::f32, d, -0.5f, 0.5f, 9);
  Buffer out(bdl * es), last(b * d * N * 4);
  Buffer du(bdl * es), ddelta(bdl * es), dz(bdl * es), dA((scalar_A ? d : d * N) * 4), dB(bnl * es),
      dC(bnl * es), dD(d * 4), dbias(d * 4);

  auto params = [&](InputSet& in, ScanInputs& si, TensorDesc& Dd, TensorDesc& zd, TensorDesc& bd,
                    TensorDesc& ckd) {
    si.u = cuda_desc(in.u, dt, {b, d, L});
    si.delta = cuda_desc(in.delta, dt, {b, d, L});
    si.A = scalar_A ? cuda_desc(A, DType::f32, {d}) : cuda_desc(A, DType::f32, {d, N});
    si.B = cuda_desc(in.B, dt, {b, 1, N, L});
    si.C = cuda_desc(in.C, dt, {b, 1, N, L});
    Dd = cuda_desc(D, DType::f32, {d});
    zd = cuda_desc(in.z, dt, {b, d, L});
    bd = cuda_desc(bias, DType::f32, {d});
    ckd = cuda_desc(in.ckpt, DType::f32, {b, d, nck, N});
    si.D = &Dd;
    si.z = &zd;
    si.delta_bias = &bd;
    si.checkpoints = &ckd;
    si.delta_softplus = true;
  };
  std::vector<ScanParams> fps(nsets);
  std::vector<ScanBwdParams> bps(nsets);
  std::vector<TensorDesc> keep(size_t(nsets) * 16);
  int64_t ws_bytes = 0;
  for (int k = 0; k < nsets; ++k) {
    ScanInputs si;
    TensorDesc* t = &keep[size_t(k) * 16];
    params(sets[k], si, t[0], t[1], t[2], t[3]);
    fps[k] = make_scan_params(si, cuda_desc(out, dt, {b, d, L}), cuda_desc(last, DType::f32, {b, d, N}));
    ScanGrads g;
    g.dout = cuda_desc(sets[k].dout, dt, {b, d, L});
    g.du = cuda_desc(du, dt, {b, d, L});
    g.ddelta = cuda_desc(ddelta, dt, {b, d, L});
    g.dA = scalar_A ? cuda_desc(dA, DType::f32, {d}) : cuda_desc(dA, DType::f32, {d, N});
    g.dB = cuda_desc(dB, dt, {b, 1, N, L});
    g.dC = cuda_desc(dC, dt, {b, 1, N, L});
    t[4] = cuda_desc(dD, DType::f32, {d});
    t[5] = cuda_desc(dz, dt, {b, d, L});
    t[6] = cuda_desc(dbias, DType::f32, {d});
    g.dD = &t[4];
    g.dz = &t[5];
    g.ddelta_bias = &t[6];
    bps[k] = make_scan_bwd_params(si, g);
    ws_bytes = std::max(ws_bytes, scan_bwd_workspace_bytes(bps[k]));
  }
  Buffer ws(ws_bytes);
  for (auto& bp : bps) {
    bp.workspace = ws.ptr;
    bp.workspace_bytes = ws_bytes;
  }
  int64_t fws_bytes = 0;
  for (const auto& fp : fps) fws_bytes = std::max(fws_bytes, scan_fwd_workspace_bytes(fp));
  Buffer fws(fws_bytes);
  for (auto& fp : fps) {
    fp.workspace = fws.ptr;
    fp.workspace_bytes = fws_bytes;
  }
  // The checkpoints of every set (the backward reads them, as after a training forward).
  for (int k = 0; k < nsets; ++k) scan_fwd(fps[k], s, 1);
  check(cudaStreamSynchronize(s), "forward");

  Result r{dt == DType::bf16 ? "bf16" : "fp32", scalar_A ? "scalar" : "real", b, d, L, N, 0, 0};
  if (once) {
    scan_fwd(fps[0], s, 1);
    if (bwd_states != 0) {
      const cuda_scan::BwdPlan plan = cuda_scan::plan_bwd(bps[0], 0, bwd_states);
      Buffer ws(plan.bytes);
      run_planned(bps[0], plan, ws, cuda_scan::run_bwd, s);
      check(cudaStreamSynchronize(s), "once");  // before ws goes
      return r;
    }
    scan_bwd(bps[0], s, 1);
    check(cudaStreamSynchronize(s), "once");
    return r;
  }
  r.fwd_ms = median_event_ms(s, 3, reps, [&](int i) { scan_fwd(fps[i % nsets], s, 1); });
  r.bwd_ms = median_event_ms(s, 3, reps, [&](int i) { scan_bwd(bps[i % nsets], s, 1); });
  const cuda_scan::FwdPlan def = cuda_scan::plan_fwd(fps[0]);
  r.default_kS = def.lay.kS;
  r.default_T = def.lay.T;
  r.default_chunks = def.split.nchunks;
  r.default_bwd_chunks = cuda_scan::plan_bwd(bps[0]).split.nchunks;
  if (variants) {
    for (int kS : {2, 4, 8})
      for (int T : {16, 32, 64}) {
        if (cuda_scan::fwd_states_per_thread(fps[0], kS) != kS) continue;
        const double ms = median_event_ms(s, 3, reps, [&](int i) { fwd_with_layout(fps[i % nsets], kS, T, s); });
        r.fwd_variants.push_back({kS, T, ms});
      }
    r.default_bwd_kS = cuda_scan::plan_bwd(bps[0]).lay.kS;
    for (int kS : {2, 4, 8}) {
      const cuda_scan::BwdPlan plan = cuda_scan::plan_bwd(bps[0], 0, kS);
      if (plan.lay.kS != kS) continue;
      Buffer ws(plan.bytes);
      const double ms = median_event_ms(
          s, 3, reps, [&](int i) { run_planned(bps[i % nsets], plan, ws, cuda_scan::run_bwd, s); });
      r.bwd_variants.push_back({kS, plan.lay.T, ms});
    }
    r.fwd_splits = time_splits(fps, reps, s, cuda_scan::plan_fwd, cuda_scan::run_fwd);
    r.bwd_splits = time_splits(
        bps, reps, s, [](const ScanBwdParams& p, int64_t k) { return cuda_scan::plan_bwd(p, k); },
        cuda_scan::run_bwd);
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string shape_flag = flag(argc, argv, "shape", "");
  const std::string dtype_flag = flag(argc, argv, "dtype", "all");
  const std::string json_path = flag(argc, argv, "json", "");
  const int reps = std::max(1, std::stoi(flag(argc, argv, "reps", "30")));
  const bool scalar_flag = std::stoi(flag(argc, argv, "scalar_A", "0")) != 0;
  const int bwd_states = std::stoi(flag(argc, argv, "bwd_states", "0"));
  bool once = false, variants = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--once") once = true;
    if (std::string(argv[i]) == "--variants") variants = true;
  }

  cudaStream_t s;
  check(cudaStreamCreate(&s), "cudaStreamCreate");
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  const double copy = once ? 0.0 : copy_gbps(s);

  struct Job {
    DType dt;
    bool scalar;
    std::vector<int64_t> shape;
  };
  std::vector<Job> jobs;
  std::vector<DType> dtypes;
  if (dtype_flag == "all" || dtype_flag == "bf16") dtypes.push_back(DType::bf16);
  if (dtype_flag == "all" || dtype_flag == "fp32") dtypes.push_back(DType::f32);
  if (!shape_flag.empty()) {
    const auto sh = parse_shape(shape_flag);
    if (sh.size() != 4) {
      std::fprintf(stderr, "--shape takes batch,dim,L,N\n");
      return 2;
    }
    for (DType t : dtypes) jobs.push_back({t, scalar_flag, sh});
  } else {
    for (DType t : dtypes)
      for (const auto& sh : kShapes) jobs.push_back({t, false, {sh[0], sh[1], sh[2], sh[3]}});
    for (DType t : dtypes) jobs.push_back({t, true, {8, 1536, 2048, 16}});
  }

  std::printf("scan_cuda_bench on %s; device-to-device copy %.0f GB/s (read + write)\n", prop.name, copy);
  std::printf("%-5s %-6s %-22s %-4s %9s %8s %7s %8s %9s %8s\n", "dtype", "A", "shape (b,d,L,N)", "dir",
              "ms", "GB/s", "%copy", "x floor", "mamba ms", "speedup");
  std::string json = "{\n  \"device\": \"" + std::string(prop.name) + "\",\n  \"copy_gbps\": " +
                     std::to_string(copy) + ",\n  \"results\": [\n";
  bool first = true;
  for (const Job& j : jobs) {
    const int64_t b = j.shape[0], d = j.shape[1], L = j.shape[2], N = j.shape[3];
    const Result r = run_shape(j.dt, j.scalar, b, d, L, N, reps, once, variants, bwd_states, s);
    if (once) {
      std::printf("ran %s %s (%lld, %lld, %lld, %lld) once\n", r.dtype.c_str(), r.A.c_str(), (long long)b,
                  (long long)d, (long long)L, (long long)N);
      continue;
    }
    const double es = dtype_size(j.dt);
    // Fewest bytes (ANCHORS.md): forward reads u, delta, z, B, C and writes out; backward reads
    // u, delta, z, dout, B, C and writes du, ddelta, dz, dB, dC.
    const double fwd_bytes = (4.0 * b * d * L + 2.0 * b * N * L) * es;
    const double bwd_bytes = (8.0 * b * d * L + 4.0 * b * N * L) * es;
    const Anchor* an = j.scalar ? nullptr : find_anchor(r.dtype.c_str(), b, d, L, N);
    char shape[64];
    std::snprintf(shape, sizeof shape, "%lld,%lld,%lld,%lld", (long long)b, (long long)d, (long long)L, (long long)N);
    for (int dir = 0; dir < 2; ++dir) {
      const double ms = dir == 0 ? r.fwd_ms : r.bwd_ms, bytes = dir == 0 ? fwd_bytes : bwd_bytes;
      const double gbps = bytes / (ms * 1e-3) / 1e9, floor_ms = bytes / (copy * 1e9) * 1e3;
      const double mamba = an ? (dir == 0 ? an->fwd_ms : an->bwd_ms) : 0.0;
      std::printf("%-5s %-6s %-22s %-4s %9.4f %8.0f %6.1f%% %8.2f %9s %8s\n", r.dtype.c_str(), r.A.c_str(), shape,
                  dir == 0 ? "fwd" : "bwd", ms, gbps, 100.0 * gbps / copy, ms / floor_ms,
                  an ? std::to_string(mamba).substr(0, 5).c_str() : "-",
                  an ? (std::to_string(mamba / ms).substr(0, 4) + "x").c_str() : "-");
      char rec[512];
      std::snprintf(rec, sizeof rec,
                    "%s    {\"dtype\": \"%s\", \"A\": \"%s\", \"shape\": [%s], \"dir\": \"%s\", \"ms\": %.5f, "
                    "\"gbps\": %.1f, \"pct_copy\": %.2f, \"floor_ms\": %.5f, \"x_floor\": %.3f, "
                    "\"mamba_ms\": %s, \"speedup_vs_mamba\": %s}",
                    first ? "" : ",\n", r.dtype.c_str(), r.A.c_str(), shape, dir == 0 ? "fwd" : "bwd", ms, gbps,
                    100.0 * gbps / copy, floor_ms, ms / floor_ms, an ? std::to_string(mamba).c_str() : "null",
                    an ? std::to_string(mamba / ms).c_str() : "null");
      json += rec;
      first = false;
    }
    for (const auto& v : r.fwd_variants) {
      const bool is_default = v.kS == r.default_kS && v.T == r.default_T;
      std::printf("      forward with %d states per thread, %2d-step tiles: %.4f ms%s\n", v.kS, v.T, v.ms,
                  is_default ? " (the default)" : "");
      char rec[256];
      std::snprintf(rec, sizeof rec,
                    ",\n    {\"dtype\": \"%s\", \"A\": \"%s\", \"shape\": [%s], \"dir\": \"fwd\", "
                    "\"states_per_thread\": %d, \"tile\": %d, \"default\": %s, \"ms\": %.5f}",
                    r.dtype.c_str(), r.A.c_str(), shape, v.kS, v.T, is_default ? "true" : "false", v.ms);
      json += rec;
    }
    for (const auto& v : r.bwd_variants) {
      const bool is_default = v.kS == r.default_bwd_kS;
      std::printf("      backward with %d states per thread (%2d-step tiles): %.4f ms%s\n", v.kS, v.T,
                  v.ms, is_default ? " (the default)" : "");
      char rec[256];
      std::snprintf(rec, sizeof rec,
                    ",\n    {\"dtype\": \"%s\", \"A\": \"%s\", \"shape\": [%s], \"dir\": \"bwd\", "
                    "\"states_per_thread\": %d, \"tile\": %d, \"default\": %s, \"ms\": %.5f}",
                    r.dtype.c_str(), r.A.c_str(), shape, v.kS, v.T, is_default ? "true" : "false", v.ms);
      json += rec;
    }
    for (int dir = 0; dir < 2; ++dir)
      for (const auto& v : dir == 0 ? r.fwd_splits : r.bwd_splits) {
        const bool is_default = v.chunks == (dir == 0 ? r.default_chunks : r.default_bwd_chunks);
        std::printf("      %s split along L into %3lld chunks: %.4f ms%s\n",
                    dir == 0 ? "forward" : "backward", (long long)v.chunks, v.ms,
                    is_default ? " (the default)" : "");
        char rec[256];
        std::snprintf(rec, sizeof rec,
                      ",\n    {\"dtype\": \"%s\", \"A\": \"%s\", \"shape\": [%s], \"dir\": \"%s\", "
                      "\"chunks\": %lld, \"default\": %s, \"ms\": %.5f}",
                      r.dtype.c_str(), r.A.c_str(), shape, dir == 0 ? "fwd" : "bwd", (long long)v.chunks,
                      is_default ? "true" : "false", v.ms);
        json += rec;
      }
    std::fflush(stdout);
  }
  json += "\n  ]\n}\n";
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fputs(json.c_str(), f);
    std::fclose(f);
  }
  cudaStreamDestroy(s);
  return 0;
}
